"""Kopf settings and the operator's shared clients, in one place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kopf

from .backends.kube import KubeClient
from .model.config import CONFIG_ENV, OperatorConfig
from .model.names import GROUP
from .reconcile.clients import Clients


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure Kopf and create the shared clients."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = 30  # warnings and above as Events; our own transitions are explicit
    path = os.environ.get(CONFIG_ENV)
    config = OperatorConfig.load(Path(path)) if path else OperatorConfig()
    memo["clients"] = Clients(kube=await KubeClient.connect(), config=config)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Close the shared clients."""
    clients: Clients | None = memo.get("clients")
    if clients is not None:
        await clients.close()
