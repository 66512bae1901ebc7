"""Log lines of ``odoo-operator run`` an SRE can grep: text, or one JSON object per line.

Every line names, in both formats:

- the **object** it is about, lower-case kind and name: ``odooinstance/acme``,
  ``odoobackup/acme-20261130-0200`` (``kind/namespace/name`` for a namespaced kind). Kopf's
  per-object loggers give it (the ``k8s_ref`` of their records); otherwise an explicit
  ``extra={"instance": name}``, or the instance of the reconcile pass the line is written in
  (:func:`log_context`). Lines about no object have none (``-`` in text);
- a stable **event** name. Kopf's lines are named after their message (the tables
  ``_HANDLER_EVENTS`` and ``_KOPF_EVENTS``):

  - ``handler-succeeded``;
  - ``handler-retry``: a ``kopf.TemporaryError``, a routine wait retried in a few seconds;
  - ``handler-failed``: given up without an unexpected exception (``kopf.PermanentError``,
    a time-out, too many retries);
  - ``handler-error``: an unexpected exception, retried or not (the message says which);
  - ``handler-cancelled``, ``handler-invoked``, ``handler-exiting``, ``handler-orphaned``;
  - ``cause-processed``, ``cause-superseded``, ``cause-in-progress``, ``cause-diff``;
  - ``activity-started``, ``activity-finished``, ``activity-failed``; ``throttling``,
    ``throttling-over``, ``operator-stopping``, ``permission-denied``,
    ``patch-inconsistent``, ``peering-pause``, ``peering-resume``, ``peering-conflict``,
    ``processing-error``, ``webhook-configured``;
  - ``kopf``: any other line of Kopf's.

  The ``handler-*`` events cover all of Kopf's handler kinds (handlers, timers, daemons,
  activities, webhooks, indexers) and carry the handler's id in ``handler``. The
  operator's own lines may name theirs with ``extra={"event": "..."}``; otherwise the event
  is the last part of the logger's name, ``_`` as ``-`` (``odoo_operator.reconcile.backups``
  → ``backups``, ``odoo_operator.observability.tenant_probe`` → ``tenant-probe``). Lines
  written through the ``logger`` Kopf hands a handler are Kopf's by their logger
  (``kopf.objects``): without an explicit event they are ``kopf``. Any other library's lines
  are named after its top package (``aiohttp.access`` → ``aiohttp``);
- the **reason** when one is known, as one word: the class of the failure (``TemporaryError``,
  ``PermanentError``, ``HandlerTimeoutError``, ``HandlerRetriesError``, or the exception's
  class, e.g. ``ValueError``, when the line carries one), or an explicit
  ``extra={"reason": "..."}``. The readable cause is in the message.

Levels mean what they say: Kopf logs a handler's ``kopf.TemporaryError`` ("failed
temporarily") at ERROR; the operator raises it for routine waits (a Job still running), so
:class:`LowerRoutineWaits` makes those lines INFO. Unexpected exceptions and permanent
failures stay ERROR.

No value is of unbounded length: a message longer than :data:`MESSAGE_LIMIT` characters is
cut, ending with ``… [N more characters]``; a traceback longer than :data:`EXCEPTION_LIMIT`
keeps its beginning and its end around the same marker; every other field is cut at
:data:`FIELD_LIMIT`. Secrets are kept out of messages where they are written (the backends
scrub passwords and signatures from errors before logging them); nothing here adds any.

Text lines (:class:`TextFormatter`), one line each (wrapped here)::

    2026-11-30T10:00:00.123Z INFO  odooinstance/acme handler-retry handler=reconcile_on_change
    reason=TemporaryError Handler 'reconcile_on_change' failed temporarily: Job odoo-acme/odoo-init
    is running

time (RFC 3339, UTC, milliseconds, ``Z``), level (``DEBUG``, ``INFO``, ``WARN``, ``ERROR``,
``FATAL``, padded to 5), object (or ``-``), event, then ``key=value`` fields when present
(``handler``, ``reason``, then the pass's ``reconcile`` and ``trigger``; values with spaces or
quotes are JSON-quoted), then the message with its line breaks written ``\\n``. A traceback
follows on lines of its own, each ``    <object> | <line>``, so grepping the object finds it.

JSON lines (:class:`JsonFormatter`) carry ``time`` (RFC 3339, UTC, milliseconds), ``level``
(``debug`` … ``critical``), ``object``, ``event``, ``handler``, ``reason``, ``message``,
``logger``; ``instance`` (the OdooInstance's name) when the line is about one OdooInstance
or written during its reconcile pass; ``reconcile`` and ``trigger`` inside a reconcile pass;
``exception`` with the traceback when there is one. Fields without a value are left out.

Both formats drop Kopf's ``Timer '...' succeeded.`` lines: every timer of every tenant
writes one per run (the drift and upgrade timers: several a minute per tenant), which buries
everything else. Failures of timers, and every other line, are kept.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

LOG_FORMATS = ("text", "json")
# Longest message kept whole, in characters; a longer one is cut and says by how much.
MESSAGE_LIMIT = 2_000
# Longest traceback kept whole; a longer one keeps its beginning and end.
EXCEPTION_LIMIT = 8_000
# Longest value of any other field (object, event, handler, reason, context).
FIELD_LIMIT = 256
INSTANCE_KIND = "OdooInstance"

# Successes that happen all the time and say nothing: each timer run, and each watch event
# the claims index records (every status write of every tenant, in every shard).
_ROUTINE_SUCCEEDED = re.compile(r"^(?:Timer '[^']*'|Handler 'keep_claims_index') succeeded\.$")
_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "odoo_operator_log_context", default=None
)

# "<Kind> '<id>' <outcome>": Kopf's lines about one handler (str() of its handler types).
_KOPF_HANDLER = re.compile(
    r"^(?:Handler|Timer|Daemon|Activity|Webhook|Indexer) '(?P<id>[^']*)' (?P<rest>.*)$",
    re.DOTALL,
)
_TEMPORARY_WAIT = re.compile(r"failed temporarily: ")
# (pattern of what follows the handler's name, event, reason); the first match wins.
_HANDLER_EVENTS: tuple[tuple[re.Pattern[str], str, str | None], ...] = (
    (re.compile(r"succeeded\.$"), "handler-succeeded", None),
    (_TEMPORARY_WAIT, "handler-retry", "TemporaryError"),
    (re.compile(r"failed temporarily but will time out"), "handler-failed", "HandlerTimeoutError"),
    (re.compile(r"failed temporarily but will exceed"), "handler-failed", "HandlerRetriesError"),
    (re.compile(r"has timed out after"), "handler-failed", "HandlerTimeoutError"),
    (re.compile(r"has exceeded \S+ retries"), "handler-failed", "HandlerRetriesError"),
    (re.compile(r"failed permanently: "), "handler-failed", "PermanentError"),
    (re.compile(r"failed with an exception"), "handler-error", None),
    (re.compile(r"is cancelled\."), "handler-cancelled", None),
    (re.compile(r"has unfinished sub-handlers"), "handler-retry", None),
    (re.compile(r"is invoked\."), "handler-invoked", None),
    (re.compile(r"did not exit in time"), "handler-orphaned", None),
    (re.compile(r"is signalled to exit|is still exiting|has exited"), "handler-exiting", None),
)
# Kopf's other lines: (pattern of the message, event).
_KOPF_EVENTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\w+ is processed: "), "cause-processed"),
    (re.compile(r"^\w+ is superseded by "), "cause-superseded"),
    (re.compile(r"^\w+ is in progress: "), "cause-in-progress"),
    (re.compile(r"^\w+ diff: "), "cause-diff"),
    (re.compile(r"^[\w -]+ has been initiated\.$"), "activity-started"),
    (re.compile(r"^[\w -]+ has finished\.$"), "activity-finished"),
    (re.compile(r"^[\w -]+ has failed: "), "activity-failed"),
    (re.compile(r"^Throttling for "), "throttling"),
    (re.compile(r"^Throttling is over\."), "throttling-over"),
    (re.compile(r"Operator is stopping\.$"), "operator-stopping"),
    (re.compile(r"^Not enough (?:RBAC )?permissions"), "permission-denied"),
    (re.compile(r"^Merge-patching finished with inconsistencies"), "patch-inconsistent"),
    (re.compile(r"^Pausing "), "peering-pause"),
    (re.compile(r"^Resuming operations"), "peering-resume"),
    (re.compile(r"^Possibly conflicting operators"), "peering-conflict"),
    (re.compile(r"^Event processing has failed"), "processing-error"),
    (re.compile(r"^(?:Reconfiguring|Cleaning up) the .*webhook"), "webhook-configured"),
)
_TEXT_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_BARE_VALUE = re.compile(r"[\w.:/@+\-]+")
# Fields of a line that its context cannot replace.
_OWN = frozenset({"time", "level", "object", "event", "handler", "reason", "message", "logger"})


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Add ``fields`` to every line written by this task until the block ends.

    ``instance`` names the object of lines that name none themselves; the other fields
    (``reconcile``, ``trigger``) are written as they are.
    """
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def shorten(text: str, limit: int, tail: int = 0) -> str:
    """``text`` if at most ``limit`` characters, else cut to ``limit`` with a marker.

    The marker says how many characters were left out; with ``tail``, the last ``tail`` of
    the ``limit`` characters kept are the end of ``text`` (a traceback's last line).
    """
    if len(text) <= limit:
        return text
    left_out = len(text) - limit
    head = limit - tail
    marker = f"… [{left_out} more characters]"
    if tail <= 0:
        return text[:head] + marker
    return f"{text[:head]}\n{marker}\n{text[-tail:]}"


def object_name(kind: str, name: str, namespace: str | None = None) -> str:
    """``odooinstance/acme``; ``kind/namespace/name`` for a namespaced object."""
    kind = kind.lower() or "object"
    name = f"{namespace}/{name}" if namespace else name
    return shorten(f"{kind}/{name}", FIELD_LIMIT)


@dataclass(frozen=True)
class LineFields:
    """What a line says beside its message, the same in both formats."""

    object: str | None
    instance: str | None
    event: str
    handler: str | None
    reason: str | None
    context: dict[str, str]


def _event_of_logger(name: str) -> str:
    parts = [part for part in name.split(".") if part]
    if not parts:
        return "root"
    part = parts[-1] if parts[0] == "odoo_operator" else parts[0]
    return part.strip("_").replace("_", "-") or "root"


def _kopf_event(message: str) -> tuple[str, str | None, str | None]:
    """(event, handler id, reason) of one of Kopf's messages."""
    handler = _KOPF_HANDLER.match(message)
    if handler is not None:
        for pattern, event, reason in _HANDLER_EVENTS:
            if pattern.match(handler["rest"]):
                return event, handler["id"], reason
        return "kopf", handler["id"], None
    for pattern, event in _KOPF_EVENTS:
        if pattern.search(message[:200]):
            return event, None, None
    return "kopf", None, None


def _is_kopf(logger: str) -> bool:
    return logger == "kopf" or logger.startswith("kopf.")


def _single_word(value: str) -> str:
    return shorten("-".join(value.split()), FIELD_LIMIT)


def describe(record: logging.LogRecord) -> LineFields:
    """The object, event, handler, reason and context of ``record``."""
    context = {
        key: shorten(str(value), FIELD_LIMIT) for key, value in (_CONTEXT.get() or {}).items()
    }
    instance = context.pop("instance", None)
    explicit = getattr(record, "instance", None)
    if explicit:
        instance = shorten(str(explicit), FIELD_LIMIT)
    subject = object_name(INSTANCE_KIND, instance) if instance else None
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict) and ref.get("name"):
        kind, name = str(ref.get("kind") or ""), str(ref["name"])
        subject = object_name(kind, name, ref.get("namespace") or None)
        if kind == INSTANCE_KIND and not explicit:
            instance = shorten(name, FIELD_LIMIT)

    handler: str | None = None
    reason: str | None = None
    if _is_kopf(record.name):
        event, handler, reason = _kopf_event(record.getMessage())
    else:
        event = _event_of_logger(record.name)
    explicit_event = getattr(record, "event", None)
    if explicit_event:
        event = _single_word(str(explicit_event))
    if record.exc_info and record.exc_info[0] is not None:
        reason = record.exc_info[0].__name__
    explicit_reason = getattr(record, "reason", None)
    if explicit_reason:
        reason = _single_word(str(explicit_reason))
    return LineFields(
        object=subject,
        instance=instance,
        event=event,
        handler=shorten(handler, FIELD_LIMIT) if handler else None,
        reason=reason,
        context=context,
    )


class DropRoutineSuccess(logging.Filter):
    """Drops Kopf's per-run ``Timer 'x' succeeded.`` INFO lines, and those of the claims
    index's watch handler; keeps everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _is_kopf(record.name):
            return True
        return not _ROUTINE_SUCCEEDED.match(record.getMessage())


class LowerRoutineWaits(logging.Filter):
    """Kopf's ``Handler 'x' failed temporarily: ...`` lines become INFO.

    Kopf logs a handler's ``kopf.TemporaryError`` at ERROR; the operator raises it for
    routine waits (``Job odoo-acme/odoo-init is running``), retried in a few seconds. A
    temporary error that ends the handler (it would time out or exceed its retries) stays
    ERROR, as do exceptions and permanent failures. A lowered line is dropped when its
    logger does not log INFO.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.INFO or not _is_kopf(record.name):
            return True
        handler = _KOPF_HANDLER.match(record.getMessage())
        if handler is None or not _TEMPORARY_WAIT.match(handler["rest"]):
            return True
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


class _Formatter(logging.Formatter):
    """The bounded message and traceback of a record."""

    def message(self, record: logging.LogRecord) -> str:
        return shorten(record.getMessage(), MESSAGE_LIMIT)

    def exception(self, record: logging.LogRecord) -> str | None:
        parts: list[str] = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        if not parts:
            return None
        return shorten("\n".join(parts), EXCEPTION_LIMIT, tail=EXCEPTION_LIMIT // 4)


def _text_value(value: str) -> str:
    if _BARE_VALUE.fullmatch(value):
        return value
    return json.dumps(value, ensure_ascii=False)


class TextFormatter(_Formatter):
    """``<time> <LEVEL> <object> <event> [key=value ...] <message>``, then the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        fields = describe(record)
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        level = _TEXT_LEVELS.get(record.levelname, record.levelname)
        subject = fields.object or "-"
        parts = [
            when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            f"{level:<5}",
            subject,
            fields.event,
        ]
        pairs = [("handler", fields.handler), ("reason", fields.reason)]
        pairs += [(key, value) for key, value in fields.context.items() if key not in _OWN]
        parts.extend(f"{key}={_text_value(value)}" for key, value in pairs if value)
        message = self.message(record).replace("\r", "\\r").replace("\n", "\\n")
        line = " ".join(parts) + (f" {message}" if message else "")
        exception = self.exception(record)
        if exception:
            line += "".join(f"\n    {subject} | {text}" for text in exception.splitlines())
        return line


class JsonFormatter(_Formatter):
    """One JSON object per line: the same fields as the text lines, by name."""

    def format(self, record: logging.LogRecord) -> str:
        fields = describe(record)
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
        }
        if fields.object:
            line["object"] = fields.object
        line["event"] = fields.event
        if fields.handler:
            line["handler"] = fields.handler
        if fields.reason:
            line["reason"] = fields.reason
        line["message"] = self.message(record)
        line["logger"] = record.name
        if fields.instance:
            line["instance"] = fields.instance
        for key, value in fields.context.items():
            if key not in _OWN:
                line.setdefault(key, value)
        exception = self.exception(record)
        if exception:
            line["exception"] = exception
        return json.dumps(line, default=str, ensure_ascii=False)


def install(handler: logging.Handler, log_format: str) -> None:
    """Give ``handler`` the formatter of ``log_format`` and the operator's filters."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    for kind in (LowerRoutineWaits, DropRoutineSuccess):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())


AZURE_HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def configure(log_format: str) -> None:
    """Apply ``log_format`` and the filters to the root logger's handlers.

    Called after ``kopf.configure``, which installs the handler and the level; the
    formatter replaces Kopf's.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        install(handler, log_format)
    # The Azure SDK logs every request and response, headers and all, at INFO: a dozen lines
    # per journal entry. Its warnings and errors still reach the log.
    logging.getLogger(AZURE_HTTP_LOGGER).setLevel(logging.WARNING)
