"""The auditor's report, from operations journals to a page a headless browser draws.

Journals of three tenants over 90 days, in the operator's own format and hash chain (the
benchmark's generator, seeded), go through ``odoo-operator evidence-report``. Its JSON must
carry the figures of the journals and a digest of its data that anyone can recompute; the
HTML page must show the charts when Debian's Chromium renders it headless (the screenshot
holds the colours of the backup-age line, the RPO line and the drill bars); and a journal
whose entry was rewritten makes the command fail and the report say which journal.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from odoo_devstack.bench_evidence import START, report_command, write_journal

CHROMIUM = Path("/usr/bin/chromium")
DAYS = 90
AGE_LINE, RPO_LINE, DRILL_PASSED = (0x1F, 0x77, 0xB4), (0xC0, 0x39, 0x2B), (0x27, 0xAE, 0x60)


def _report(folder: Path, out: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    until = START + datetime.timedelta(days=DAYS)
    result = subprocess.run(
        report_command(folder, until, out / "report.html", out / "report.json"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, json.loads((out / "report.json").read_text())


def _pixels_near(image: Image.Image, colour: tuple[int, int, int]) -> int:
    rgb = image.convert("RGB")
    data: Any = rgb.getdata()
    return sum(
        1 for pixel in data if all(abs(a - b) <= 12 for a, b in zip(pixel, colour, strict=True))
    )


def test_the_report_carries_the_journals_figures_and_a_digest_and_the_browser_draws_its_charts(
    tmp_path: Path,
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make bootstrap` installs Debian's chromium")
    folder = tmp_path / "journals"
    folder.mkdir()
    rng = random.Random(7)  # noqa: S311 - synthetic data
    entries = sum(write_journal(folder, f"books-{n}", DAYS, rng) for n in range(3))
    lines = [
        json.loads(line)
        for path in folder.iterdir()
        for line in path.read_bytes().splitlines()
        if line
    ]
    result, report = _report(folder, tmp_path)
    assert result.returncode == 0, result.stderr
    assert report["tenants"] == ["books-0", "books-1", "books-2"]
    assert report["entries"] == entries
    assert report["chains"] == dict.fromkeys(report["tenants"], "intact")
    assert report["backups"]["succeeded"] == sum(
        1 for e in lines if e["action"] == "BackupSucceeded"
    )
    assert len(report["drills"]) == sum(1 for e in lines if e["details"].get("drill"))
    assert len(report["refusals"]) == sum(1 for e in lines if e["action"] == "AdmissionRefused")
    # The digest is the SHA-256 of the data without it, as canonical JSON.
    data = {key: value for key, value in report.items() if key != "digest"}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert report["digest"] == hashlib.sha256(canonical.encode()).hexdigest()
    page = (tmp_path / "report.html").read_text()
    assert report["digest"] in page
    # Self-contained: no script, and nothing fetched from anywhere.
    assert "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page

    shot = tmp_path / "report.png"
    drawn = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=900,1200",
            f"--screenshot={shot}",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shot.exists(), drawn.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (900, 1200)
        assert _pixels_near(image, AGE_LINE) > 300, "no backup-age line"
        assert _pixels_near(image, RPO_LINE) > 100, "no RPO line or failed drill"
        assert _pixels_near(image, DRILL_PASSED) > 50, "no passed drill bar"

    # One entry of one journal rewritten: the command fails and names the journal.
    journal = folder / "books-1.jsonl"
    forged = journal.read_bytes().splitlines()
    entry = json.loads(forged[4])
    entry["details"]["message"] = "nothing happened"
    forged[4] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    journal.write_bytes(b"\n".join(forged) + b"\n")
    result, report = _report(folder, tmp_path)
    assert result.returncode == 1, result.stdout
    assert json.loads(result.stdout)["brokenJournals"] == ["books-1"]
    assert report["chains"]["books-1"].startswith("entry 5 is not what entry 6 recorded")
    assert "BROKEN journals" in (tmp_path / "report.html").read_text()
