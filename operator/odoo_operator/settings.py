"""Kopf settings of the operator, in one place."""

from __future__ import annotations

from typing import Any

import kopf

from .model.names import GROUP


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Annotations under our own group; no Kopf 'progress' annotations on user objects."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = 30  # warnings and above as Events; our own transitions are explicit
