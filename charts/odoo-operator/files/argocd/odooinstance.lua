-- Argo CD health of an OdooInstance (odoo.tenantops.io/v1alpha1), from the status the
-- operator publishes: observedGeneration and the kstatus conditions Ready, Reconciling and
-- Stalled. Progressing until the operator has seen the current spec; Degraded when Stalled
-- (a human must act: the message says what); Suspended while the tenant is held at zero pods
-- on purpose (Ready False with reason Suspended, Maintenance or Hibernating); Healthy when
-- Ready.
local hs = {status = "Progressing", message = "Waiting for the operator to report status"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
for _, condition in ipairs(obj.status.conditions or {}) do
  conditions[condition.type] = condition
end
local function message(condition, default)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return default
end
local stalled = conditions["Stalled"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message(stalled, "Stalled")
  return hs
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "Ready")
  return hs
end
-- Held at zero pods on purpose (spec.suspend, a restore or an upgrade under way, or outside
-- the awake windows of spec.hibernation): Ready is
-- False with the phase as its reason, and nothing is wrong.
if ready ~= nil and ready.status == "False" and
    (ready.reason == "Suspended" or ready.reason == "Maintenance" or
     ready.reason == "Hibernating") then
  hs.status = "Suspended"
  hs.message = message(ready, ready.reason)
  return hs
end
local reconciling = conditions["Reconciling"]
if ready ~= nil and ready.status == "False" and
    (reconciling == nil or reconciling.status ~= "True") then
  hs.status = "Degraded"
  hs.message = message(ready, "Not ready")
  return hs
end
hs.message = message(ready, message(reconciling, hs.message))
return hs
