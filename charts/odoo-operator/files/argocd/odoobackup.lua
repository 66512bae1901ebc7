-- Argo CD health of an OdooBackup (odoo.tenantops.io/v1alpha1), from status.phase:
-- Pending and Running are Progressing, Failed is Degraded, Succeeded is Healthy unless the
-- verification (a restore into a scratch database) failed, which is Degraded as well.
local hs = {status = "Progressing", message = "Waiting for the operator to start the backup"}
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local phase = obj.status.phase
local text = obj.status.message
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = text or "The backup failed"
elseif phase == "Succeeded" then
  local verification = obj.status.verification
  if verification ~= nil and verification.result == "Failed" then
    hs.status = "Degraded"
    hs.message = "The backup's verification failed: " .. tostring(verification.message)
  else
    hs.status = "Healthy"
    hs.message = text or "The backup succeeded"
  end
else
  hs.message = text or ("The backup is " .. string.lower(phase))
end
return hs
