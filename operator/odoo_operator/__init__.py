"""odoo-operator: finance-grade Odoo ERP tenants on Kubernetes."""

__version__ = "0.1.0"
