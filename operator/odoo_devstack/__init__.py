"""The development and test harness of odoo-operator, kept apart from the product.

Everything here exists to run the operator's tests and demos against real components on one
machine: real Odoo runtimes (:mod:`.odoo_runtime`), and, as it moves over from
``odoo_devstack``, the local control plane and data services. The harness may
import the product; the product (``odoo_operator``) never imports this package, so nothing
here can end up on a code path of the operator running in a cluster.

pytest fixtures built on it live in :mod:`.pytest_fixtures`.
"""
