"""The operator's log lines, text and JSON: the object, a stable event, honest levels, bounds.

Kopf's lines come from Kopf itself: its per-object logger, and its own execution of a
handler (``execute_handler_once``, the code that writes "failed temporarily" and friends).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import bodies, patches, references
from kopf._core.actions import execution, loggers, progression
from kopf._core.intents import causes

from odoo_operator import logs
from odoo_operator.model.names import GROUP, INSTANCE_PLURAL, VERSION

INSTANCE = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "OdooInstance",
    "metadata": {"name": "acme", "uid": "u-1"},
}
BACKUP = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "OdooBackup",
    "metadata": {"name": "acme-1", "uid": "u-2"},
}
# The head of a text line: time, level, object, event, then the rest.
TEXT_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>[A-Z]+) +"
    r"(?P<object>\S+) (?P<event>\S+)(?: (?P<rest>.*))?$"
)
# Every field a JSON line may carry.
JSON_FIELDS = {
    "time",
    "level",
    "object",
    "event",
    "handler",
    "reason",
    "message",
    "logger",
    "instance",
    "reconcile",
    "trigger",
    "exception",
}


@contextlib.contextmanager
def captured(log_format: str, level: int = logging.DEBUG) -> Iterator[io.StringIO]:
    """What the root logger writes meanwhile, through the operator's formatter and filters."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logs.install(handler, log_format)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def object_logger(resource: dict[str, Any]) -> loggers.ObjectLogger:
    """Kopf's logger of one object, as handlers receive it."""
    return loggers.ObjectLogger(body=bodies.Body(resource), settings=kopf.OperatorSettings())


async def run_handler(
    fn: Callable[..., Awaitable[None]],
    handler_id: str = "reconcile_on_change",
    resource: dict[str, Any] = INSTANCE,
    **options: Any,
) -> None:
    """Kopf executes ``fn`` once as a creation handler of ``resource``, and logs how it went."""
    registry = kopf.OperatorRegistry()
    settings = kopf.OperatorSettings()
    kopf.on.create(GROUP, VERSION, INSTANCE_PLURAL, registry=registry, id=handler_id, **options)(fn)
    body = bodies.Body(resource)
    cause = causes.ChangingCause(
        logger=loggers.ObjectLogger(body=body, settings=settings),
        indices={},
        memo=kopf.Memo(),
        resource=references.Resource(GROUP, VERSION, INSTANCE_PLURAL),
        patch=patches.Patch(),
        body=body,
        initial=False,
        reason=causes.Reason.CREATE,
    )
    (handler,) = registry._changing.get_all_handlers()
    state = progression.HandlerState.from_scratch(basetime=datetime.datetime.now(datetime.UTC))
    await execution.execute_handler_once(
        settings=settings, handler=handler, cause=cause, state=state
    )


def text_lines(stream: io.StringIO) -> list[re.Match[str]]:
    """The head lines written (not a traceback's lines), parsed."""
    heads = [line for line in stream.getvalue().splitlines() if not line.startswith(" ")]
    parsed = [TEXT_LINE.match(line) for line in heads]
    assert all(parsed), heads
    return [match for match in parsed if match]


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def record(
    message: str, name: str = "kopf.objects", level: int = logging.INFO, **extra: Any
) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


async def test_a_temporary_wait_is_logged_at_info_naming_the_tenant() -> None:
    async def waits(**_: Any) -> None:
        raise kopf.TemporaryError("Job odoo-acme/odoo-init is running", delay=5)

    with captured("text") as text:
        await run_handler(waits)
    with captured("json") as lines:
        await run_handler(waits)
    (line,) = (m for m in text_lines(text) if m["event"] != "handler-invoked")
    assert (line["level"], line["object"], line["event"]) == (
        "INFO",
        "odooinstance/acme",
        "handler-retry",
    )
    assert line["rest"] == (
        "handler=reconcile_on_change reason=TemporaryError Handler 'reconcile_on_change' "
        "failed temporarily: Job odoo-acme/odoo-init is running"
    )
    (found,) = (j for j in json_lines(lines) if j["event"] != "handler-invoked")
    assert found["level"] == "info"
    assert (found["object"], found["instance"], found["event"]) == (
        "odooinstance/acme",
        "acme",
        "handler-retry",
    )
    assert (found["handler"], found["reason"]) == ("reconcile_on_change", "TemporaryError")
    assert found["message"].endswith("failed temporarily: Job odoo-acme/odoo-init is running")


async def test_an_unexpected_exception_stays_an_error_naming_the_tenant_and_its_class() -> None:
    async def breaks(**_: Any) -> None:
        raise ValueError("Invalid number format: x")

    with captured("text") as text:
        await run_handler(breaks)
    (line,) = (m for m in text_lines(text) if m["event"] != "handler-invoked")
    assert (line["level"], line["object"], line["event"]) == (
        "ERROR",
        "odooinstance/acme",
        "handler-error",
    )
    assert line["rest"].startswith("handler=reconcile_on_change reason=ValueError Handler ")
    assert line["rest"].endswith("will try again in 60 seconds: Invalid number format: x")
    trace = [row for row in text.getvalue().splitlines() if row.startswith(" ")]
    assert trace[0] == "    odooinstance/acme | Traceback (most recent call last):"
    assert trace[-1] == "    odooinstance/acme | ValueError: Invalid number format: x"

    with captured("json") as lines:
        await run_handler(breaks)
    (found,) = (j for j in json_lines(lines) if j["event"] != "handler-invoked")
    assert (found["level"], found["event"], found["reason"]) == (
        "error",
        "handler-error",
        "ValueError",
    )
    assert found["exception"].endswith("ValueError: Invalid number format: x")


@pytest.mark.parametrize(
    ("error", "options", "reason"),
    [
        (kopf.PermanentError("the spec names no version"), {}, "PermanentError"),
        # A temporary error that would exceed the retries ends the handler: a failure.
        (kopf.TemporaryError("still running"), {"retries": 1}, "HandlerRetriesError"),
        (kopf.TemporaryError("still running", delay=60), {"timeout": 30}, "HandlerTimeoutError"),
    ],
)
async def test_a_handler_given_up_stays_an_error(
    error: Exception, options: dict[str, Any], reason: str
) -> None:
    async def fails(**_: Any) -> None:
        raise error

    with captured("text") as text:
        await run_handler(fails, **options)
    (line,) = (m for m in text_lines(text) if m["event"] != "handler-invoked")
    assert (line["level"], line["object"], line["event"]) == (
        "ERROR",
        "odooinstance/acme",
        "handler-failed",
    )
    assert line["rest"].startswith(f"handler=reconcile_on_change reason={reason} Handler ")


async def test_a_lowered_wait_is_dropped_when_its_logger_does_not_log_info() -> None:
    async def waits(**_: Any) -> None:
        raise kopf.TemporaryError("Job odoo-acme/odoo-init is running", delay=5)

    async def breaks(**_: Any) -> None:
        raise ValueError("boom")

    with captured("text", level=logging.WARNING) as text:
        await run_handler(waits)
        await run_handler(breaks)
    assert [m["event"] for m in text_lines(text)] == ["handler-error"]


def test_text_and_json_lines_carry_the_same_object_and_event() -> None:
    written: dict[str, list[Any]] = {}
    for log_format in logs.LOG_FORMATS:
        with captured(log_format) as stream:
            object_logger(INSTANCE).info("Handler 'reconcile_on_change' succeeded.")
            object_logger(BACKUP).info("Handler 'take_backup' failed permanently: no blob store")
            object_logger(BACKUP).info("pruned OdooBackup acme-0", extra={"event": "backup-pruned"})
            with logs.log_context(instance="acme", reconcile="beef", trigger="drift"):
                logging.getLogger("odoo_operator.reconcile.backups").warning("backup failed")
            logging.getLogger("odoo_operator.observability.tenant_probe").info(
                "synthetic check of tenant acme recovered", extra={"instance": "acme"}
            )
            logging.getLogger("kopf._core.reactor.running").info(
                "Signal SIGTERM is received. Operator is stopping."
            )
            logging.getLogger("aiohttp.access").info("GET /healthz 200")
        written[log_format] = text_lines(stream) if log_format == "text" else json_lines(stream)
    expected = [
        ("odooinstance/acme", "handler-succeeded"),
        ("odoobackup/acme-1", "handler-failed"),
        ("odoobackup/acme-1", "backup-pruned"),
        ("odooinstance/acme", "backups"),
        ("odooinstance/acme", "tenant-probe"),
        ("-", "operator-stopping"),
        ("-", "aiohttp"),
    ]
    assert [(m["object"], m["event"]) for m in written["text"]] == expected
    assert [(j.get("object", "-"), j["event"]) for j in written["json"]] == expected
    assert [j.get("instance") for j in written["json"]] == [
        "acme",
        None,
        None,
        "acme",
        "acme",
        None,
        None,
    ]
    inside_text, inside_json = written["text"][3], written["json"][3]
    assert inside_text["rest"] == "reconcile=beef trigger=drift backup failed"
    assert (inside_json["reconcile"], inside_json["trigger"]) == ("beef", "drift")
    for line in written["json"]:
        assert set(line) <= JSON_FIELDS


def test_json_lines_keep_the_fields_they_had() -> None:
    """time, level, logger, message and instance, as e2e/test_observability.py reads them."""
    formatter = logs.JsonFormatter()
    ref = {"kind": "OdooInstance", "name": "acme", "apiVersion": f"{GROUP}/{VERSION}"}
    line = json.loads(formatter.format(record("Handler 'x' succeeded.", k8s_ref=ref)))
    assert line["level"] == "info"
    assert line["logger"] == "kopf.objects"
    assert line["message"] == "Handler 'x' succeeded."
    assert line["instance"] == "acme"
    assert line["time"].endswith("+00:00")
    backup = json.loads(
        formatter.format(record("done", k8s_ref={"kind": "OdooBackup", "name": "acme-1"}))
    )
    assert backup["object"] == "odoobackup/acme-1"
    assert "instance" not in backup
    with logs.log_context(instance="acme", reconcile="beef"):
        inside = json.loads(formatter.format(record("re-keyed", name="odoo_operator.x")))
    assert (inside["instance"], inside["reconcile"]) == ("acme", "beef")
    assert inside["object"] == "odooinstance/acme"


def test_a_namespaced_object_is_named_kind_namespace_name() -> None:
    ref = {"kind": "Job", "name": "odoo-init", "namespace": "odoo-acme"}
    line = json.loads(logs.JsonFormatter().format(record("x", k8s_ref=ref)))
    assert line["object"] == "job/odoo-acme/odoo-init"


@pytest.mark.parametrize(
    ("message", "event", "handler", "reason"),
    [
        (
            "Handler 'reconcile_on_change' succeeded.",
            "handler-succeeded",
            "reconcile_on_change",
            None,
        ),
        ("Timer 'repair_drift' succeeded.", "handler-succeeded", "repair_drift", None),
        (
            "Handler 'take_backup' failed temporarily: the backup succeeded.",
            "handler-retry",
            "take_backup",
            "TemporaryError",
        ),
        (
            "Handler 'h' failed temporarily but will exceed 3 retries: waiting",
            "handler-failed",
            "h",
            "HandlerRetriesError",
        ),
        (
            "Handler 'h' failed temporarily but will time out after 60 seconds: waiting",
            "handler-failed",
            "h",
            "HandlerTimeoutError",
        ),
        ("Handler 'h' has timed out after 0:10:00.", "handler-failed", "h", "HandlerTimeoutError"),
        ("Handler 'h' has exceeded 3 retries.", "handler-failed", "h", "HandlerRetriesError"),
        ("Handler 'h' failed permanently: no", "handler-failed", "h", "PermanentError"),
        (
            "Timer 'repair_drift' failed with an exception and will try again in 60 seconds: x",
            "handler-error",
            "repair_drift",
            None,
        ),
        ("Handler 'h' failed with an exception and will stop now: x", "handler-error", "h", None),
        ("Handler 'h' is cancelled. Will escalate.", "handler-cancelled", "h", None),
        ("Handler 'h' is invoked.", "handler-invoked", "h", None),
        ("Activity 'configure' succeeded.", "handler-succeeded", "configure", None),
        ("Creation is processed: 1 succeeded; 0 failed.", "cause-processed", None, None),
        ("Updating is in progress: {'spec': {}}", "cause-in-progress", None, None),
        (
            "Resuming is superseded by updating: 0 succeeded; 0 failed.",
            "cause-superseded",
            None,
            None,
        ),
        ("Throttling for 1 seconds due to an unexpected error: x", "throttling", None, None),
        ("Signal SIGTERM is received. Operator is stopping.", "operator-stopping", None, None),
        ("Not enough permissions to watch for resources: x", "permission-denied", None, None),
        ("Serving health status at http://0.0.0.0:8080/healthz", "kopf", None, None),
        ("Handler 'h' says something new.", "kopf", "h", None),
    ],
)
def test_kopf_lines_are_named_by_stable_events(
    message: str, event: str, handler: str | None, reason: str | None
) -> None:
    fields = logs.describe(record(message))
    assert (fields.event, fields.handler, fields.reason) == (event, handler, reason)


@pytest.mark.parametrize(
    ("logger", "extra", "event"),
    [
        ("odoo_operator.reconcile.backups", {}, "backups"),
        ("odoo_operator.observability.tenant_probe", {}, "tenant-probe"),
        ("odoo_operator.settings", {}, "settings"),
        ("odoo_operator.reconcile.backups", {"event": "backup-failed"}, "backup-failed"),
        ("odoo_operator.x", {"event": "two words"}, "two-words"),
        ("kubernetes_asyncio.client.rest", {}, "kubernetes-asyncio"),
        ("root", {}, "root"),
    ],
)
def test_the_operators_own_lines_are_named_after_their_logger_or_their_explicit_event(
    logger: str, extra: dict[str, str], event: str
) -> None:
    assert logs.describe(record("m", name=logger, **extra)).event == event


def test_a_long_value_is_cut_and_says_how_much() -> None:
    """The field's case: a 120 KB annotation, logged whole in Kopf's debug line."""
    annotation = "a" * 120_000
    resource = {**INSTANCE, "metadata": {"name": "acme", "annotations": {"big": annotation}}}
    body = bodies.Body(resource)
    message = f"Updating is in progress: {body!r}"
    left_out = len(message) - logs.MESSAGE_LIMIT
    marker = f"… [{left_out} more characters]"
    for log_format in logs.LOG_FORMATS:
        with captured(log_format) as stream:
            object_logger(resource).debug(f"Updating is in progress: {body!r}")
        (written,) = stream.getvalue().splitlines()
        assert len(written) < logs.MESSAGE_LIMIT + 300
        assert annotation not in written
        if log_format == "json":
            line = json.loads(written)
            assert line["message"] == message[: logs.MESSAGE_LIMIT] + marker
            assert (line["object"], line["event"]) == ("odooinstance/acme", "cause-in-progress")
        else:
            assert written.endswith(marker)
            assert " DEBUG odooinstance/acme cause-in-progress Updating is in progress: " in written


def test_a_long_traceback_keeps_its_beginning_and_end_and_says_how_much() -> None:
    huge = "b" * 50_000
    for log_format in logs.LOG_FORMATS:
        with captured(log_format) as stream:
            try:
                raise RuntimeError(f"{huge} the end")
            except RuntimeError:
                object_logger(INSTANCE).exception("Handler 'h' failed with an exception: x")
        written = stream.getvalue()
        if log_format == "json":
            (line,) = json_lines(stream)
            exception = line["exception"]
            assert line["reason"] == "RuntimeError"
        else:
            head, *trace = written.splitlines()
            assert head.endswith(
                "handler-error handler=h reason=RuntimeError Handler 'h' "
                "failed with an exception: x"
            )
            assert all(row.startswith("    odooinstance/acme | ") for row in trace)
            exception = "\n".join(row.removeprefix("    odooinstance/acme | ") for row in trace)
        assert exception.startswith("Traceback (most recent call last):")
        assert exception.endswith(" the end")
        assert re.search(r"\n… \[\d+ more characters\]\n", exception)
        assert len(exception) < logs.EXCEPTION_LIMIT + 100
        assert len(written) < logs.EXCEPTION_LIMIT * 2


def test_no_field_of_a_line_is_of_unbounded_length() -> None:
    long = "c" * 10_000
    for log_format in logs.LOG_FORMATS:
        with captured(log_format) as stream:
            with logs.log_context(instance=long, reconcile=long, trigger=long):
                logging.getLogger("odoo_operator.x").info(
                    "m", extra={"event": long, "reason": long}
                )
            object_logger({**INSTANCE, "metadata": {"name": long}}).info(f"Handler '{long}' x")
        for written in stream.getvalue().splitlines():
            assert long not in written
            assert len(written) < logs.MESSAGE_LIMIT + 6 * (logs.FIELD_LIMIT + 40)


def test_a_message_with_line_breaks_stays_one_text_line() -> None:
    with captured("text") as stream:
        object_logger(INSTANCE).warning("first\nsecond\r\nthird")
    (written,) = stream.getvalue().splitlines()
    assert written.endswith(" odooinstance/acme kopf first\\nsecond\\r\\nthird")
    assert " WARN  odooinstance/acme " in written


def test_text_values_with_spaces_or_quotes_are_quoted() -> None:
    with captured("text") as stream, logs.log_context(instance="acme", trigger='a "b"'):
        logging.getLogger("odoo_operator.x").info("m")
    (line,) = text_lines(stream)
    assert line["rest"] == 'trigger="a \\"b\\"" m'


def test_only_the_documented_fields_are_written_so_extras_carrying_a_secret_stay_out() -> None:
    """Kopf's own JSON formatter writes every extra of a record; these formatters do not."""
    secret = "s3cr3t-Pa55w0rd"
    for log_format in logs.LOG_FORMATS:
        with captured(log_format) as stream:
            logging.getLogger("odoo_operator.x").info(
                "connected", extra={"password": secret, "dsn": f"postgresql://u:{secret}@db"}
            )
            object_logger(INSTANCE).info("done", extra={"token": secret})
        assert secret not in stream.getvalue()
        if log_format == "json":
            for line in json_lines(stream):
                assert set(line) <= JSON_FIELDS


def test_a_scrubbed_message_is_written_as_it_was_scrubbed() -> None:
    """The backends redact before logging: a line passes that on, and cutting it adds nothing."""
    scrubbed = "cannot reach https://acct.blob.core.windows.net/c?sv=1&sig=<redacted>"
    long = " ".join([scrubbed] * 100)
    redacted = {"<redacted>"[:n] for n in range(len("<redacted>") + 1)}
    for log_format in logs.LOG_FORMATS:
        with captured(log_format) as stream:
            logging.getLogger("odoo_operator.backends.blobstore").warning(scrubbed)
            logging.getLogger("odoo_operator.backends.blobstore").warning(long)
        first, second = stream.getvalue().splitlines()
        assert scrubbed in first
        signatures = re.findall(r"sig=([^&\s\"…]*)", second)
        assert len(signatures) >= logs.MESSAGE_LIMIT // (len(scrubbed) + 1)
        assert set(signatures) <= redacted


def test_kopf_timer_and_claims_index_successes_are_dropped_and_everything_else_kept() -> None:
    drop = logs.DropRoutineSuccess()
    assert not drop.filter(record("Timer 'repair_drift' succeeded."))
    assert not drop.filter(record("Handler 'keep_claims_index' succeeded."))
    assert drop.filter(record("Handler 'reconcile_on_change' succeeded."))
    failed = record(
        "Timer 'repair_drift' failed with an exception. Will retry.", level=logging.ERROR
    )
    assert drop.filter(failed)
    assert drop.filter(record("Timer 'repair_drift' succeeded.", name="odoo_operator.x"))


def test_only_kopfs_temporary_waits_are_lowered() -> None:
    lower = logs.LowerRoutineWaits()
    wait = record("Handler 'h' failed temporarily: waiting", level=logging.ERROR)
    lower.filter(wait)
    assert (wait.levelno, wait.levelname) == (logging.INFO, "INFO")
    for message, name in [
        ("Handler 'h' failed temporarily but will exceed 3 retries: waiting", "kopf.objects"),
        ("Handler 'h' failed permanently: no", "kopf.objects"),
        ("Handler 'h' failed temporarily: waiting", "odoo_operator.x"),
    ]:
        kept = record(message, name=name, level=logging.ERROR)
        assert lower.filter(kept)
        assert kept.levelno == logging.ERROR


def test_configure_gives_every_root_handler_the_format_and_the_filters_once() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    saved = root.handlers[:]
    root.handlers[:] = [handler]  # pytest's own handlers keep their formatters
    try:
        logs.configure("text")
        logs.configure("json")
        assert isinstance(handler.formatter, logs.JsonFormatter)
        kinds = [type(f) for f in handler.filters]
        assert sorted(k.__name__ for k in kinds) == ["DropRoutineSuccess", "LowerRoutineWaits"]
        logs.configure("text")
        assert isinstance(handler.formatter, logs.TextFormatter)
        with pytest.raises(ValueError, match="log format must be one of text, json"):
            logs.configure("xml")
    finally:
        root.handlers[:] = saved


def test_the_azure_sdks_request_and_response_dumps_stay_out_of_the_log() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [logging.StreamHandler(io.StringIO())]
    try:
        logs.configure("text")
        azure = logging.getLogger(logs.AZURE_HTTP_LOGGER)
        assert not azure.isEnabledFor(logging.INFO)
        assert azure.isEnabledFor(logging.WARNING)
    finally:
        root.handlers[:] = saved
