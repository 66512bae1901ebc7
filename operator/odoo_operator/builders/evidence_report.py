"""The auditor's report: operations journals over a period, as figures, charts and JSON.

Pure: journal entries in (builders/journal.py), a report out. The same data gives the JSON
(``report.json``) and the self-contained HTML page (inline CSS and SVG: no script, no
network), and both carry the report's digest: the SHA-256 of its data as canonical JSON, so
a copy handed to an auditor can be checked against the one kept.

Charts, drawn here as plain SVG (a charting library would need a browser runtime or a
renderer the report must not depend on):

1. backup age against the RPO over the period: at each sample, the newest successful
   backup's age as a percentage of the tenant's RPO (the worst tenant, for a fleet);
2. verification and drill outcomes: each drill's RTO against its objective, failures marked;
3. changes on a timeline: spec generations applied, upgrades, restores, refusals.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .schedule import parse_duration

REPORT_FORMAT = "odoo-operator.evidence-report/v1"
_BACKUP_OK, _BACKUP_FAILED = "BackupSucceeded", "BackupFailed"
_VERIFIED, _VERIFY_FAILED = "Verified", "VerificationFailed"
_UPGRADES = ("UpgradeStarted", "Upgraded", "UpgradeFailed", "RollingBack")
_RESTORES = ("Restored", "RestoreFailed")
_SAMPLES = 120
_WIDTH, _HEIGHT, _PAD = 760, 220, 40


def _time(entry: Mapping[str, Any]) -> datetime.datetime:
    return datetime.datetime.fromisoformat(str(entry["time"]))


# What the report reads of an entry's details; the rest (messages of routine Events, mostly)
# is left in the journal, so a fleet's year fits in memory.
_REPORTED_DETAILS = (
    "drill",
    "result",
    "rtoSeconds",
    "rtoObjectiveSeconds",
    "generation",
    "changedBy",
    "backupRpo",
    "user",
    "operation",
    "problems",
)


def compact_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a journal entry the report uses."""
    details = entry.get("details") or {}
    kept = {key: details[key] for key in _REPORTED_DETAILS if key in details}
    if entry.get("action") in (*_UPGRADES, *_RESTORES):
        kept["message"] = details.get("message")
    return {
        "time": entry["time"],
        "instance": entry["instance"],
        "action": entry["action"],
        "details": kept,
    }


@dataclass(frozen=True)
class EvidenceReport:
    """What the journals say about a period."""

    since: datetime.datetime
    until: datetime.datetime
    tenants: tuple[str, ...]
    backups: Mapping[str, int]  # succeeded / failed
    verifications: Mapping[str, int]  # passed / failed
    drills: tuple[Mapping[str, Any], ...]
    changes: tuple[Mapping[str, Any], ...]
    refusals: tuple[Mapping[str, Any], ...]
    backup_age: tuple[tuple[str, float | None], ...]  # (sample time, worst age in % of RPO)
    rpo_breaches: int  # samples over 100 %
    entries: int
    chains: Mapping[str, str] = field(default_factory=dict)  # tenant -> "intact" or why not

    def data(self) -> dict[str, Any]:
        """The report's data, as the JSON holds it (without the digest)."""
        return {
            "format": REPORT_FORMAT,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "tenants": list(self.tenants),
            "entries": self.entries,
            "chains": dict(self.chains),
            "backups": dict(self.backups),
            "verifications": dict(self.verifications),
            "drills": [dict(d) for d in self.drills],
            "changes": [dict(c) for c in self.changes],
            "refusals": [dict(r) for r in self.refusals],
            "backupAgePercentOfRpo": [[t, v] for t, v in self.backup_age],
            "rpoBreachSamples": self.rpo_breaches,
        }

    @property
    def digest(self) -> str:
        """SHA-256 of :meth:`data` as canonical JSON."""
        text = json.dumps(self.data(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        """The JSON document: the data and its digest."""
        return {**self.data(), "digest": self.digest}


def build_report(
    entries: Iterable[Mapping[str, Any]],
    since: datetime.datetime,
    until: datetime.datetime,
    chains: Mapping[str, str] | None = None,
) -> EvidenceReport:
    """Summarize journal entries of one or many tenants over [since, until)."""
    timed = sorted(((_time(e), e) for e in entries), key=lambda pair: pair[0])
    in_period = [e for moment, e in timed if since <= moment < until]
    tenants = tuple(sorted({str(e["instance"]) for _, e in timed}))
    counts = {"succeeded": 0, "failed": 0}
    verifications = {"passed": 0, "failed": 0}
    drills, changes, refusals = [], [], []
    for entry in in_period:
        action, details = str(entry["action"]), entry.get("details") or {}
        when, tenant = str(entry["time"]), str(entry["instance"])
        if action == _BACKUP_OK:
            counts["succeeded"] += 1
        elif action == _BACKUP_FAILED:
            counts["failed"] += 1
        elif action in (_VERIFIED, _VERIFY_FAILED):
            verifications["passed" if action == _VERIFIED else "failed"] += 1
        elif details.get("drill"):
            drills.append(
                {
                    "time": when,
                    "tenant": tenant,
                    "result": details.get("result") or action,
                    "rtoSeconds": details.get("rtoSeconds"),
                    "rtoObjectiveSeconds": details.get("rtoObjectiveSeconds"),
                }
            )
        elif action == "SpecApplied" or action in _UPGRADES or action in _RESTORES:
            changes.append(
                {
                    "time": when,
                    "tenant": tenant,
                    "action": action,
                    "generation": details.get("generation"),
                    "by": details.get("changedBy"),
                    "message": details.get("message"),
                }
            )
        elif action == "AdmissionRefused":
            refusals.append(
                {
                    "time": when,
                    "tenant": tenant,
                    "user": details.get("user"),
                    "operation": details.get("operation"),
                    "problems": details.get("problems"),
                }
            )
    age = _backup_age(timed, since, until)
    return EvidenceReport(
        since=since,
        until=until,
        tenants=tenants,
        backups=counts,
        verifications=verifications,
        drills=tuple(drills),
        changes=tuple(changes),
        refusals=tuple(refusals),
        backup_age=age,
        rpo_breaches=sum(1 for _, value in age if value is not None and value > 100),
        entries=len(in_period),
        chains=dict(chains or {}),
    )


def _backup_age(
    timed: Sequence[tuple[datetime.datetime, Mapping[str, Any]]],
    since: datetime.datetime,
    until: datetime.datetime,
) -> tuple[tuple[str, float | None], ...]:
    """At each sample, the worst tenant's backup age in % of its RPO (None: no tenant with
    backups yet). A tenant counts from its first successful backup."""
    step = (until - since) / _SAMPLES
    rpo: dict[str, float] = {}
    newest: dict[str, datetime.datetime] = {}
    samples: list[tuple[str, float | None]] = []
    index = 0
    for number in range(_SAMPLES + 1):
        moment = since + step * number
        while index < len(timed) and timed[index][0] <= moment:
            taken_at, entry = timed[index]
            tenant, details = str(entry["instance"]), entry.get("details") or {}
            if entry["action"] == "SpecApplied" and details.get("backupRpo"):
                with contextlib.suppress(ValueError):  # an RPO admission would have refused
                    rpo[tenant] = parse_duration(str(details["backupRpo"])).total_seconds()
            elif entry["action"] == _BACKUP_OK:
                newest[tenant] = taken_at
            elif entry["action"] == "Deleted":
                newest.pop(tenant, None)
            index += 1
        ratios = [
            100 * (moment - taken).total_seconds() / rpo[tenant]
            for tenant, taken in newest.items()
            if tenant in rpo
        ]
        samples.append((moment.isoformat(), round(max(ratios), 1) if ratios else None))
    return tuple(samples)


# -- HTML --------------------------------------------------------------------------------------


def _x(moment: str, since: datetime.datetime, until: datetime.datetime) -> float:
    span = (until - since).total_seconds() or 1.0
    fraction = (datetime.datetime.fromisoformat(moment) - since).total_seconds() / span
    return _PAD + fraction * (_WIDTH - 2 * _PAD)


def _svg(title: str, body: str, report: EvidenceReport | None = None) -> str:
    axis = (
        f'<text x="{_PAD}" y="{_HEIGHT - _PAD + 16}" font-size="10">'
        f"{html.escape(report.since.date().isoformat())}</text>"
        f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - _PAD + 16}" font-size="10" text-anchor="end">'
        f"{html.escape(report.until.date().isoformat())}</text>"
        if report is not None
        else ""
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="{html.escape(title)}">'
        f'<rect x="0" y="0" width="{_WIDTH}" height="{_HEIGHT}" fill="#ffffff"/>'
        f'<line x1="{_PAD}" y1="{_HEIGHT - _PAD}" x2="{_WIDTH - _PAD}" y2="{_HEIGHT - _PAD}" '
        'stroke="#444"/>'
        f'<line x1="{_PAD}" y1="{_PAD / 2}" x2="{_PAD}" y2="{_HEIGHT - _PAD}" stroke="#444"/>'
        f"{axis}{body}</svg>"
    )


def _age_chart(report: EvidenceReport) -> str:
    values = [v for _, v in report.backup_age if v is not None]
    top = max([150.0, *values])

    def y(value: float) -> float:
        return _HEIGHT - _PAD - value / top * (_HEIGHT - 1.5 * _PAD)

    points = " ".join(
        f"{_x(t, report.since, report.until):.1f},{y(v):.1f}"
        for t, v in report.backup_age
        if v is not None
    )
    return _svg(
        "backup age against RPO",
        f'<line x1="{_PAD}" y1="{y(100):.1f}" x2="{_WIDTH - _PAD}" y2="{y(100):.1f}" '
        'stroke="#c0392b" stroke-dasharray="6 4"/>'
        f'<text x="{_WIDTH - _PAD - 4}" y="{y(100) - 4:.1f}" text-anchor="end" '
        'font-size="11" fill="#c0392b">RPO (100 %)</text>'
        + (
            f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="2"/>'
            if points
            else '<text x="60" y="100" font-size="12">no backups in the period</text>'
        ),
        report,
    )


def _drill_chart(report: EvidenceReport) -> str:
    drills = [d for d in report.drills if d.get("rtoSeconds") is not None]
    top = max(
        [60.0]
        + [float(d["rtoSeconds"]) for d in drills]
        + [float(d["rtoObjectiveSeconds"]) for d in drills if d.get("rtoObjectiveSeconds")]
    )

    def y(value: float) -> float:
        return _HEIGHT - _PAD - value / top * (_HEIGHT - 1.5 * _PAD)

    bars = []
    for drill in report.drills:
        x = _x(str(drill["time"]), report.since, report.until)
        failed = drill.get("result") not in ("Passed",)
        color = "#c0392b" if failed else "#27ae60"
        rto = float(drill["rtoSeconds"]) if drill.get("rtoSeconds") is not None else top
        bars.append(
            f'<rect x="{x - 4:.1f}" y="{y(rto):.1f}" width="8" '
            f'height="{_HEIGHT - _PAD - y(rto):.1f}" fill="{color}"/>'
        )
        if drill.get("rtoObjectiveSeconds"):
            level = y(float(drill["rtoObjectiveSeconds"]))
            bars.append(
                f'<line x1="{x - 8:.1f}" y1="{level:.1f}" x2="{x + 8:.1f}" y2="{level:.1f}" '
                'stroke="#333" stroke-width="2"/>'
            )
    empty = '<text x="60" y="100" font-size="12">no drills in the period</text>'
    return _svg("restore drills: RTO against objective", "".join(bars) or empty, report)


_CHANGE_COLORS = {"SpecApplied": "#1f77b4", "Restored": "#27ae60", "RestoreFailed": "#c0392b"}


def _timeline(report: EvidenceReport) -> str:
    marks = []
    rows = {"change": 60.0, "upgrade": 100.0, "restore": 140.0, "refusal": 180.0}
    for label, row in rows.items():
        marks.append(f'<text x="2" y="{row + 4}" font-size="9">{label}</text>')
    for change in report.changes:
        action = str(change["action"])
        row = (
            rows["upgrade"]
            if action in _UPGRADES
            else rows["restore"]
            if action in _RESTORES
            else rows["change"]
        )
        color = _CHANGE_COLORS.get(action, "#8e44ad")
        x = _x(str(change["time"]), report.since, report.until)
        marks.append(f'<circle cx="{x:.1f}" cy="{row}" r="4" fill="{color}"/>')
    for refusal in report.refusals:
        x = _x(str(refusal["time"]), report.since, report.until)
        marks.append(f'<circle cx="{x:.1f}" cy="{rows["refusal"]}" r="4" fill="#e67e22"/>')
    return _svg("changes, upgrades, restores and refusals", "".join(marks), report)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], limit: int = 200) -> str:
    cells = []
    for count, row in enumerate(rows):
        if count == limit:
            cells.append(f'<tr><td colspan="{len(headers)}">... (all in the JSON)</td></tr>')
            break
        cells.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v or ''))}</td>" for v in row) + "</tr>"
        )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(cells)}</table>"


def render_html(report: EvidenceReport) -> str:
    """The report as one self-contained HTML page."""
    scope = report.tenants[0] if len(report.tenants) == 1 else f"{len(report.tenants)} tenants"
    broken = {t: why for t, why in report.chains.items() if why != "intact"}
    chain_line = (
        f"every journal's hash chain is intact ({len(report.chains)} checked)"
        if report.chains and not broken
        else f"BROKEN journals: {html.escape(json.dumps(broken))}"
        if broken
        else "journal chains not checked"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Operations evidence: {html.escape(scope)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
.figures span {{ display: inline-block; margin-right: 2em; }}
code {{ font-size: 0.85em; }}
</style></head><body>
<h1>Operations evidence: {html.escape(scope)}</h1>
<p>Period {html.escape(report.since.isoformat())} to {html.escape(report.until.isoformat())};
{report.entries} journal entries; {html.escape(chain_line)}.</p>
<p class="figures">
<span>backups: {report.backups["succeeded"]} succeeded, {report.backups["failed"]} failed</span>
<span>verifications: {report.verifications["passed"]} passed,
{report.verifications["failed"]} failed</span>
<span>drills: {len(report.drills)}</span>
<span>changes: {len(report.changes)}</span>
<span>refusals: {len(report.refusals)}</span>
<span>samples over the RPO: {report.rpo_breaches} of {len(report.backup_age)}</span>
</p>
<h2>Backup age against the RPO (worst tenant, % of its RPO)</h2>
{_age_chart(report)}
<h2>Restore drills: recovery time against the objective</h2>
{_drill_chart(report)}
<h2>Changes, upgrades, restores and refusals</h2>
{_timeline(report)}
<h2>Restore drills</h2>
{
        _table(
            ["time", "tenant", "result", "RTO (s)", "objective (s)"],
            (
                [
                    d["time"],
                    d["tenant"],
                    d["result"],
                    d.get("rtoSeconds"),
                    d.get("rtoObjectiveSeconds"),
                ]
                for d in report.drills
            ),
        )
    }
<h2>Changes</h2>
{
        _table(
            ["time", "tenant", "action", "generation", "changed by"],
            (
                [c["time"], c["tenant"], c["action"], c.get("generation"), c.get("by")]
                for c in report.changes
            ),
        )
    }
<h2>Refusals at admission</h2>
{
        _table(
            ["time", "tenant", "user", "operation", "why"],
            (
                [r["time"], r["tenant"], r.get("user"), r.get("operation"), r.get("problems")]
                for r in report.refusals
            ),
        )
    }
<p>Report digest (SHA-256 of its data as canonical JSON): <code>{report.digest}</code></p>
</body></html>
"""
