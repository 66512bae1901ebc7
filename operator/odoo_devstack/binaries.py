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

import copy
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
from typing import Any

import yaml

KUBERNETES_VERSION = "1.36.3"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.8.0"
HELM_VERSION = "3.22.0"
KUBECONFORM_VERSION = "0.8.0"
# Prometheus tags its Go module v0.3xx.y for release 3.xx.y: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_VERSION = "0.316.0"
TRAEFIK_VERSION = "3.7.13"

_GO_MODULES = Path(__file__).parent / "gomodules"
_BUILD_HEARTBEAT_SECONDS = 30.0


@dataclass(frozen=True)
class Component:
    """A binary of the local stack and how to obtain it."""

    binary: str
    version: str
    version_flag: str  # the arguments that make it print its version, space-separated
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
# The client side, built with the control plane from the same module: kubectl, and a checker
# that runs sigs.k8s.io/cli-utils' kstatus (gomodules/kubernetes/kstatus) on objects.
KUBECTL = Component(
    "kubectl", KUBERNETES_VERSION, "version --client", r"Client Version: v1\.3[67]\.", "kubernetes"
)
KSTATUS = Component(
    "kstatus",
    KUBERNETES_VERSION,
    "--version",
    r"kstatus checker on sigs.k8s.io/cli-utils",
    "kubernetes",
)
ALL_COMPONENTS = (
    ETCD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    KUBE_SCHEDULER,
    KUBECTL,
    KSTATUS,
    KWOK,
)
# Packaging tools: the chart tests render with helm and validate with kubeconform; the
# alert-rule tests check and unit-test monitoring/prometheus-rules.yaml with promtool.
HELM = Component("helm", HELM_VERSION, "version", r'Version:"v3\.', "helm")
KUBECONFORM = Component("kubeconform", KUBECONFORM_VERSION, "-v", r"v0\.[6-9]\.", "kubeconform")
# A release build says "version 3.16.0", the bootstrap's own build "version v0.316.0".
PROMTOOL = Component(
    "promtool", PROMTOOL_VERSION, "--version", r"promtool, version (3\.|v0\.3\d\d\.)", "promtool"
)
# The ingress controller of the local stack, the version whose CRDs the stack installs.
TRAEFIK = Component("traefik", TRAEFIK_VERSION, "version", r"Version:\s+v?3\.7\.", "traefik")
PACKAGING_TOOLS = (HELM, KUBECONFORM, PROMTOOL, TRAEFIK)
# Main package of each tool built from a wrapper module, and the variable its version goes in.
_TOOL_MAIN = {
    "helm": ("helm.sh/helm/v3/cmd/helm", "helm.sh/helm/v3/internal/version.version"),
    "kubeconform": ("github.com/yannh/kubeconform/cmd/kubeconform", "main.version"),
    "promtool": (
        "github.com/prometheus/prometheus/cmd/promtool",
        "github.com/prometheus/common/version.Version",
    ),
    "traefik": (
        "github.com/traefik/traefik/v3/cmd/traefik",
        "github.com/traefik/traefik/v3/pkg/version.Version",
    ),
}
# Modules Traefik's wrapper module replaces with local folders, prepared from the module
# cache before the build: (module, version, folder, files removed, files added from the
# wrapper module's templates). lego without its DNS provider factory (many providers' SDKs are
# not served by the proxy); go-http-auth, upstream, with what Traefik's unserved fork adds.
_TRAEFIK_LOCAL_MODULES: tuple[tuple[str, str, str, tuple[str, ...], dict[str, str]], ...] = (
    (
        "github.com/go-acme/lego/v5",
        "v5.4.1",
        "lego",
        ("providers/dns/zz_gen_dns_providers.go", "providers/dns/dns_providers_test.go"),
        {"providers/dns/dns_providers.go": "lego_dns_providers.go.txt"},
    ),
    (
        "github.com/abbot/go-http-auth",
        "v0.4.0",
        "go-http-auth",
        (),
        {"traefik_compat.go": "go_http_auth_compat.go.txt"},
    ),
)


class ToolMissingError(RuntimeError):
    """A tool needed to obtain a binary is not installed."""


def cache_root() -> Path:
    """The folder outside the repository where built binaries are kept."""
    configured = os.environ.get("ODOO_OPERATOR_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "odoo-operator"


# Bumped when a family's build changes while its version does not (new members, flags), so
# a cache filled by the previous build is not taken for the new one.
_FAMILY_BUILD = {"kubernetes": "-b2"}


def _family_folder(family: str, version: str) -> str:
    return f"{family}-v{version}{_FAMILY_BUILD.get(family, '')}"


def cached_path(component: Component) -> Path:
    """Where the cache keeps this component's binary for its pinned version."""
    folder = _family_folder(component.family, component.version)
    return cache_root() / "bin" / folder / component.binary


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
            [found, *component.version_flag.split()], capture_output=True, text=True, timeout=10
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


def ensure_all(with_packaging_tools: bool = False) -> dict[str, Path]:
    """Return every control-plane binary by name, building what is missing.

    With ``with_packaging_tools``, helm, kubeconform and promtool too (what the bootstrap
    does).
    Families build concurrently: module downloads of one overlap compilation of another.
    """
    components = ALL_COMPONENTS + (PACKAGING_TOOLS if with_packaging_tools else ())
    missing = sorted({c.family for c in components if locate(c) is None})
    if missing:
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            for future in [pool.submit(_build_family, family) for family in missing]:
                future.result()
    return {component.binary: ensure(component) for component in components}


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


# Images the tests use to make KWOK decide a pod's fate, since nothing runs in its pods:
# a Job pod with FAILING_IMAGE fails (exit code 1); a pod with NEVER_READY_IMAGE never
# becomes ready (a failed health gate).
FAILING_IMAGE = "devcluster.invalid/odoo:fails"
NEVER_READY_IMAGE = "devcluster.invalid/odoo:never-ready"
_IMAGE_KEY = ".spec.containers.[].image"


def ensure_kwok_stages() -> Path:
    """A KWOK config file with the default stages, taken from the KWOK module, plus the
    test stages keyed on :data:`FAILING_IMAGE` and :data:`NEVER_READY_IMAGE`."""
    target = cached_path(KWOK).parent / "stages-v3.yaml"
    if target.exists():
        return target
    documents = [
        yaml.safe_load(_module_file("sigs.k8s.io/kwok", KWOK_VERSION, name))
        for name in _KWOK_STAGE_FILES
    ]
    for stage in documents:
        expressions = stage["spec"]["selector"]["matchExpressions"]
        if stage["metadata"]["name"] == "pod-ready":
            # Job pods with that image still run (an upgrade Job must finish to reach the gate).
            job_pods = copy.deepcopy(stage)
            expressions.append(
                {"key": _IMAGE_KEY, "operator": "NotIn", "values": [NEVER_READY_IMAGE]}
            )
            job_pods["metadata"]["name"] = "pod-ready-job-never-ready-image"
            job_pods["spec"]["selector"]["matchExpressions"] += [
                {"key": _IMAGE_KEY, "operator": "In", "values": [NEVER_READY_IMAGE]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ]
            documents.append(job_pods)
        if stage["metadata"]["name"] == "pod-complete":
            failing = copy.deepcopy(stage)
            expressions.append({"key": _IMAGE_KEY, "operator": "NotIn", "values": [FAILING_IMAGE]})
            failing["metadata"]["name"] = "pod-fail"
            failing["spec"]["selector"]["matchExpressions"].append(
                {"key": _IMAGE_KEY, "operator": "In", "values": [FAILING_IMAGE]}
            )
            failing["spec"]["next"]["statusTemplate"] = (
                failing["spec"]["next"]["statusTemplate"]
                .replace("exitCode: 0", "exitCode: 1")
                .replace("reason: Completed", "reason: Error")
                .replace("phase: Succeeded", "phase: Failed")
            )
            documents.append(failing)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return target


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
    members = [c for c in ALL_COMPONENTS + PACKAGING_TOOLS if c.family == family]
    version = members[0].version
    out_dir = cached_path(members[0]).parent
    work_dir = cache_root() / "build" / _family_folder(family, version)
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
        for name in ("go.mod", "go.sum", "main.go", "tools.go", "kstatus/main.go"):
            template = _GO_MODULES / family / name
            if template.exists():
                (work_dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(template, work_dir / name)
        if family == "traefik":
            _prepare_traefik_module(work_dir, label, log_path)
        if family == "etcd":
            output, packages = str(staging / "etcd"), ["."]
        elif family in _TOOL_MAIN:
            main, version_variable = _TOOL_MAIN[family]
            flags = ["-trimpath", f"-ldflags=-s -w -X {version_variable}=v{version}"]
            output, packages = str(staging / family), [main]
        else:
            flags = ["-trimpath", f"-ldflags=-s -w {_kubernetes_version_stamp(version)}"]
            output, packages = (
                f"{staging}/",
                [
                    "./kstatus" if c is KSTATUS else f"k8s.io/kubernetes/cmd/{c.binary}"
                    for c in members
                ],
            )
        go_flags = {"GOFLAGS": "-mod=mod -buildvcs=false"}
        _run_go(["build", *flags, "-o", output, *packages], work_dir, label, log_path, go_flags)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    print(
        f"[devcluster] built {label} in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )


def _kubernetes_version_stamp(version: str) -> str:
    """The linker flags that give Kubernetes binaries their version, as the release build
    does: without them they call themselves ``v0.0.0-master`` and kubectl warns of skew."""
    major, minor = version.split(".")[:2]
    values = {"gitVersion": f"v{version}", "gitMajor": major, "gitMinor": minor}
    values["gitTreeState"] = "clean"
    return " ".join(
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in values.items()
    )


def _prepare_traefik_module(work_dir: Path, label: str, log_path: Path) -> None:
    """The local folders Traefik's wrapper module replaces modules with: ``ext`` (a stand-in
    for a nested module of Traefik's repository) and :data:`_TRAEFIK_LOCAL_MODULES`."""
    template = _GO_MODULES / "traefik"
    shutil.rmtree(work_dir / "ext", ignore_errors=True)
    shutil.copytree(template / "ext", work_dir / "ext")
    for module, version, folder, removed, added in _TRAEFIK_LOCAL_MODULES:
        result = subprocess.run(
            [_go(), "mod", "download", "-json", f"{module}@{version}"],
            cwd=work_dir,
            env=dict(os.environ, GOFLAGS="-mod=mod"),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise ToolMissingError(
                f"building {label}: downloading {module}@{version} failed: "
                f"{result.stderr.decode(errors='replace')[-2000:]} (log: {log_path})"
            )
        local = work_dir / folder
        shutil.rmtree(local, ignore_errors=True)
        # From the read-only module cache: plain copies, then folders made writable.
        shutil.copytree(json.loads(result.stdout)["Dir"], local, copy_function=shutil.copyfile)
        for path, _, _ in os.walk(local):
            os.chmod(path, 0o700)
        for name in removed:
            (local / name).unlink(missing_ok=True)
        for name, source in added.items():
            shutil.copyfile(template / source, local / name)
        if not (local / "go.mod").exists():  # a module from before go.mod files
            (local / "go.mod").write_text(f"module {module}\n\ngo 1.16\n")


# -- Kubernetes JSON schemas for kubeconform ------------------------------------------------
#
# kubeconform validates against one standalone JSON schema per kind, which it would fetch
# from GitHub. They are generated here instead from the OpenAPI document that ships in the
# k8s.io/kubernetes module of the pinned version, so rendered manifests are checked against
# exactly the API of the clusters the project targets, without network access.

_SWAGGER_FILE = "api/openapi-spec/swagger.json"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def kubeconform_schema_dir() -> Path:
    """The folder of generated schemas (pass ``-schema-location`` with ``schema_location``)."""
    return cache_root() / "schemas" / f"kubernetes-v{KUBERNETES_VERSION}"


def kubeconform_schema_location() -> str:
    """kubeconform's ``-schema-location`` template for the generated schemas."""
    return str(kubeconform_schema_dir()) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"


def ensure_kubeconform_schemas() -> Path:
    """Generate the strict, standalone schema of every built-in kind once; return their folder."""
    target = kubeconform_schema_dir()
    if (target / ".complete").exists():
        return target
    swagger = json.loads(_module_file("k8s.io/kubernetes", KUBERNETES_VERSION, _SWAGGER_FILE))
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, schema in write_kind_schemas(swagger["definitions"]).items():
        (staging / name).write_text(json.dumps(schema, sort_keys=True))
    (staging / ".complete").write_text(KUBERNETES_VERSION)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def kind_schema_file(group: str, version: str, kind: str) -> str:
    """The file kubeconform looks for: ``deployment-apps-v1.json``, ``service-v1.json``, ..."""
    prefix = (group.split(".")[0] + "-") if group else ""
    return f"{kind.lower()}-{prefix}{version}.json".lower()


def write_kind_schemas(definitions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Standalone strict schemas by file name, for every definition that is a kind."""
    schemas: dict[str, dict[str, Any]] = {}
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", ()):
            file_name = kind_schema_file(gvk["group"], gvk["version"], gvk["kind"])
            schema = _standalone(name, definitions, ())
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            schemas[file_name] = schema
    return schemas


def _standalone(name: str, definitions: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    """One definition with every reference inlined, strict about unknown fields.

    A recursive reference (only JSONSchemaProps has one) accepts anything below it.
    """
    if name in seen:
        return {}
    if name == _QUANTITY:  # "1", 1 and 0.5 are all quantities
        return {"oneOf": [{"type": "string"}, {"type": "number"}]}
    return _convert(definitions[name], definitions, (*seen, name))


def _convert(
    node: dict[str, Any], definitions: dict[str, Any], seen: tuple[str, ...]
) -> dict[str, Any]:
    if "$ref" in node:
        return _standalone(node["$ref"].rsplit("/", 1)[-1], definitions, seen)
    if node.get("format") == "int-or-string":
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    result: dict[str, Any] = {}
    for key in ("type", "format", "enum", "required"):
        if key in node:
            result[key] = node[key]
    if "items" in node:
        result["items"] = _convert(node["items"], definitions, seen)
    if "properties" in node:
        result["properties"] = {
            key: _nullable(_convert(value, definitions, seen))
            for key, value in node["properties"].items()
        }
        # Strict: a field the API does not know is an error, as kubectl --validate=strict.
        result["additionalProperties"] = False
    elif isinstance(node.get("additionalProperties"), dict):
        result["additionalProperties"] = _convert(node["additionalProperties"], definitions, seen)
    return result


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field may be given as null (the API server drops it)."""
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return schema
