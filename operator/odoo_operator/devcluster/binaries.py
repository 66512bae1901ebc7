"""Find or build the binaries of the local control plane.

Lookup order for each binary:

1. ``KUBEBUILDER_ASSETS`` (the envtest convention: etcd, kube-apiserver, ...),
2. the per-version cache (``$ODOO_OPERATOR_CACHE`` or ``~/.cache/odoo-operator``),
3. ``PATH``, when the binary found there reports a supported version,
4. a build with the Go toolchain from the Go module proxy into the cache.

The Go wrapper modules under ``gomodules/`` pin exact versions (with their
``go.sum``), because ``k8s.io/kubernetes`` and etcd's server module cannot be
built from the module proxy directly: both rely on local ``replace`` lines that
consumers ignore.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "1.36.3"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.8.0"

_GO_MODULES = Path(__file__).parent / "gomodules"
_BUILD_HEARTBEAT_SECONDS = 30.0


@dataclass(frozen=True)
class Component:
    """A binary of the local stack and how to obtain it."""

    binary: str
    version: str
    version_flag: str
    version_pattern: str  # regex a PATH binary's version output must match
    family: str  # cache folder, shared by binaries built together


KUBE_APISERVER = Component(
    "kube-apiserver", KUBERNETES_VERSION, "--version", r"v1\.3[67]\.", "kubernetes"
)
KUBE_CONTROLLER_MANAGER = Component(
    "kube-controller-manager", KUBERNETES_VERSION, "--version", r"v1\.3[67]\.", "kubernetes"
)
KUBE_SCHEDULER = Component(
    "kube-scheduler", KUBERNETES_VERSION, "--version", r"v1\.3[67]\.", "kubernetes"
)
ETCD = Component("etcd", ETCD_VERSION, "--version", r"etcd Version: 3\.[67]\.", "etcd")
KWOK = Component("kwok", KWOK_VERSION, "--version", r"kwok version v0\.[78]\.", "kwok")
ALL_COMPONENTS = (ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KWOK)


class ToolMissingError(RuntimeError):
    """A tool needed to obtain a binary is not installed."""


def cache_root() -> Path:
    """The folder outside the repository where built binaries are kept."""
    configured = os.environ.get("ODOO_OPERATOR_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "odoo-operator"


def cached_path(component: Component) -> Path:
    """Where the cache keeps this component's binary for its pinned version."""
    return cache_root() / "bin" / f"{component.family}-v{component.version}" / component.binary


def _from_envtest_assets(component: Component) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return None
    candidate = Path(assets) / component.binary
    return candidate if os.access(candidate, os.X_OK) else None


def _from_path(component: Component) -> Path | None:
    found = shutil.which(component.binary)
    if not found:
        return None
    try:
        result = subprocess.run(
            [found, component.version_flag], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # An unsupported version on PATH (Debian's etcd 3.4, say) is skipped, not used.
    if re.search(component.version_pattern, result.stdout + result.stderr):
        return Path(found)
    return None


def locate(component: Component) -> Path | None:
    """The binary for ``component`` if one is available without building."""
    cached = cached_path(component)
    for candidate in (_from_envtest_assets(component), cached if cached.exists() else None):
        if candidate is not None:
            return candidate
    return _from_path(component)


def ensure(component: Component) -> Path:
    """Return the binary for ``component``, building it into the cache if needed."""
    found = locate(component)
    if found is not None:
        return found
    _build_family(component.family)
    built = cached_path(component)
    if not built.exists():
        raise ToolMissingError(f"building {component.family} did not produce {built}")
    return built


def ensure_all() -> dict[str, Path]:
    """Return every control-plane binary by name, building what is missing.

    Families build concurrently: module downloads of one overlap compilation of another.
    """
    missing = sorted({c.family for c in ALL_COMPONENTS if locate(c) is None})
    if missing:
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            for future in [pool.submit(_build_family, family) for family in missing]:
                future.result()
    return {component.binary: ensure(component) for component in ALL_COMPONENTS}


# KWOK's own lifecycle stages ("fast" set): nodes become Ready and keep a lease,
# Pods become Running, Job Pods Succeeded, deleted Pods go away. They ship in the
# KWOK module; kwok v0.8 refuses to start without stages.
_KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def ensure_kwok_stages() -> Path:
    """A KWOK config file with the default stages, taken from the KWOK module."""
    target = cached_path(KWOK).parent / "stages.yaml"
    if target.exists():
        return target
    documents = [_module_file("sigs.k8s.io/kwok", KWOK_VERSION, name) for name in _KWOK_STAGE_FILES]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n---\n".join(documents))
    return target


TRAEFIK_VERSION = "3.7.13"
_TRAEFIK_CRD_FILE = "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"


def _module_file(module: str, version: str, relative: str) -> str:
    """Read one file of a Go module, downloading the module through the proxy if needed."""
    result = subprocess.run(
        [_go(), "mod", "download", "-json", f"{module}@v{version}"],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, GOFLAGS=""),
    )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise ToolMissingError(f"cannot download {module}@v{version}: {info.get('Error')}")
    return (Path(info["Dir"]) / relative).read_text()


def ensure_traefik_crds() -> Path:
    """Traefik's own CRDs (IngressRoute, Middleware, ...), as shipped in its module.

    Installed into the local control plane so that tenant routes are validated by
    the real schemas, as on a cluster running Traefik.
    """
    target = cache_root() / "crds" / f"traefik-v{TRAEFIK_VERSION}.yaml"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            _module_file("github.com/traefik/traefik/v3", TRAEFIK_VERSION, _TRAEFIK_CRD_FILE)
        )
    return target


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ToolMissingError(
            "the Go toolchain is needed to build the local control plane "
            "(kube-apiserver, etcd, kwok) and 'go' is not on PATH: install Go >= 1.26, "
            "or point KUBEBUILDER_ASSETS at a folder holding the binaries"
        )
    return go


def _run_go(
    args: list[str], cwd: Path, label: str, log_path: Path, extra_env: dict[str, str]
) -> None:
    env = dict(os.environ, CGO_ENABLED="0", **extra_env)
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(_BUILD_HEARTBEAT_SECONDS):
            print(
                f"[devcluster] still building {label} ({time.monotonic() - started:.0f}s)",
                file=sys.stderr,
                flush=True,
            )

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        with open(log_path, "ab") as log:
            result = subprocess.run([_go(), *args], cwd=cwd, env=env, stdout=log, stderr=log)
    finally:
        done.set()
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise ToolMissingError(f"building {label} failed (log: {log_path}):\n{tail}")


def _build_family(family: str) -> None:
    members = [c for c in ALL_COMPONENTS if c.family == family]
    version = members[0].version
    out_dir = cached_path(members[0]).parent
    work_dir = cache_root() / "build" / f"{family}-v{version}"
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "build.log"
    label = f"{family} v{version}"
    print(
        f"[devcluster] building {label} with Go into {out_dir} "
        f"(cold builds take several minutes; log: {log_path})",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    flags = ["-trimpath", "-ldflags=-s -w"]
    if family == "kwok":
        # KWOK's module has no local replaces, so it builds straight from the proxy.
        args = ["install", *flags, f"sigs.k8s.io/kwok/cmd/kwok@v{version}"]
        _run_go(args, work_dir, label, log_path, {"GOBIN": str(staging), "GOFLAGS": ""})
    else:
        for name in ("go.mod", "go.sum", "main.go", "tools.go"):
            template = _GO_MODULES / family / name
            if template.exists():
                shutil.copyfile(template, work_dir / name)
        if family == "etcd":
            output, packages = str(staging / "etcd"), ["."]
        else:
            output, packages = f"{staging}/", [f"k8s.io/kubernetes/cmd/{c.binary}" for c in members]
        go_flags = {"GOFLAGS": "-mod=mod -buildvcs=false"}
        _run_go(["build", *flags, "-o", output, *packages], work_dir, label, log_path, go_flags)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    print(
        f"[devcluster] built {label} in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )
