-- Argo CD health of an OdooRestore (odoo.tenantops.io/v1alpha1), from status.phase:
-- Pending and Running are Progressing, Failed is Degraded, Succeeded is Healthy.
local hs = {status = "Progressing", message = "Waiting for the operator to start the restore"}
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local phase = obj.status.phase
local text = obj.status.message
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = text or "The restore failed"
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = text or "The restore succeeded"
else
  hs.message = text or ("The restore is " .. string.lower(phase))
end
return hs
