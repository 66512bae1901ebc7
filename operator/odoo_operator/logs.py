"""Log formats of ``odoo-operator run``: Kopf's text lines, or one JSON object per line.

Both formats drop Kopf's ``Timer '...' succeeded.`` lines: every timer of every tenant
writes one per run (the drift and upgrade timers: several a minute per tenant), which buries
everything else. Failures of timers, and every other line, are kept.

JSON lines carry ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and
``message``; ``instance`` when the line is about one OdooInstance (Kopf's per-object
logger, or a line written during a reconcile pass); ``object`` (``Kind/name``) for Kopf's
per-object lines about other kinds; ``reconcile`` and ``trigger`` inside a reconcile pass;
``exception`` with the traceback when there is one.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

LOG_FORMATS = ("text", "json")
_TIMER_SUCCEEDED = re.compile(r"^Timer '[^']*' succeeded\.$")
_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "odoo_operator_log_context", default=None
)


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Add ``fields`` to every JSON line written by this task until the block ends."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class DropTimerSuccess(logging.Filter):
    """Drops Kopf's per-run ``Timer 'x' succeeded.`` INFO lines; keeps everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith("kopf"):
            return True
        return not _TIMER_SUCCEEDED.match(record.getMessage())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and what is known of the object."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_CONTEXT.get() or {})
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and ref.get("name"):
            if ref.get("kind") == "OdooInstance":
                line["instance"] = ref["name"]
            else:
                line["object"] = f"{ref.get('kind')}/{ref['name']}"
        explicit = getattr(record, "instance", None)
        if explicit:
            line["instance"] = str(explicit)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(log_format: str) -> None:
    """Apply ``log_format`` and the timer filter to the root logger's handlers.

    Called after ``kopf.configure``, which installs the handler and the level.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
        if not any(isinstance(f, DropTimerSuccess) for f in handler.filters):
            handler.addFilter(DropTimerSuccess())
