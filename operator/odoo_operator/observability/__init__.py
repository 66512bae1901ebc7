"""What feeds :mod:`odoo_operator.metrics` besides the handlers' own calls.

- :mod:`.tenant_probe`: a background loop that reads business signals (overdue scheduled
  actions, queue_job backlog, database size, connections, long transactions) from each
  tenant's database, read-only and as the tenant's own role, with bounded concurrency and a
  timeout per tenant.
- :mod:`.restores`: counts OdooRestores as they finish, from the watch stream.
"""
