"""Kopf glue: decorators that translate events into reconcile calls.

Importing this package registers every handler with Kopf.
"""

from . import admission as admission
from . import backups as backups
from . import odooinstance as odooinstance
from . import restores as restores
