"""What a Pod's spec asks of the node before a process starts: environment and volumes.

Environment: ``envFrom`` (ConfigMaps and Secrets, with ``prefix``), then ``env`` in order:
literal values with ``$(VAR)`` expansion against the variables defined before them,
``secretKeyRef``, ``configMapKeyRef``, ``fieldRef`` and ``resourceFieldRef``. A missing
object or key that is not ``optional`` is a :class:`ContainerConfigError`, which the pod's
status shows as ``CreateContainerConfigError``, as on a kubelet.

Volumes are folders under the pod's state folder, filled before the containers start:
``secret`` and ``configMap`` (all keys, or ``items`` with their paths and modes),
``emptyDir``, ``downwardAPI``, ``projected`` (secrets, ConfigMaps, downward API fields and
ServiceAccount tokens from the TokenRequest API), ``hostPath`` (the host's folder itself),
and ``persistentVolumeClaim``: a folder per claim under the runner's state folder, keyed by
the claim's uid, so every pod of the claim shares it and it outlives the pods, as a volume
does. Contents are written once, when the pod starts: updates of a Secret or ConfigMap do
not reach a running pod.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from odoo_operator.builders.quantities import quantity_value

from .kubeapi import JsonObject, KubeApi

_DEFAULT_FILE_MODE = 0o644
_TOKEN_SECONDS = 3600
_VAR_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


class ContainerConfigError(Exception):
    """The container cannot be configured yet (a missing Secret, key or ConfigMap)."""


class VolumeError(Exception):
    """A volume cannot be set up yet (a missing Secret, an unbound claim...)."""


@dataclass(frozen=True)
class PodAddresses:
    """The addresses the downward API exposes."""

    pod_ip: str
    host_ip: str


class ObjectSource:
    """Reads of the objects a pod refers to, fresh for each container start or volume."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self._api = api
        self._namespace = namespace

    async def secret(self, name: str) -> dict[str, bytes] | None:
        """The decoded data of a Secret, or None if it does not exist."""
        found = await self._api.get(
            f"/api/v1/namespaces/{self._namespace}/secrets/{name}", absent_ok=True
        )
        if found is None:
            return None
        return {key: base64.b64decode(value) for key, value in (found.get("data") or {}).items()}

    async def config_map(self, name: str) -> dict[str, bytes] | None:
        """The data and binaryData of a ConfigMap, or None if it does not exist."""
        found = await self._api.get(
            f"/api/v1/namespaces/{self._namespace}/configmaps/{name}", absent_ok=True
        )
        if found is None:
            return None
        data = {key: value.encode() for key, value in (found.get("data") or {}).items()}
        for key, value in (found.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value)
        return data

    async def claim(self, name: str) -> JsonObject | None:
        """A PersistentVolumeClaim, or None."""
        return await self._api.get(
            f"/api/v1/namespaces/{self._namespace}/persistentvolumeclaims/{name}",
            absent_ok=True,
        )

    async def token(self, pod: JsonObject, source: Mapping[str, Any]) -> bytes:
        """A ServiceAccount token bound to the pod (TokenRequest), as the kubelet asks."""
        account = pod["spec"].get("serviceAccountName") or "default"
        spec: dict[str, Any] = {
            "expirationSeconds": int(source.get("expirationSeconds") or _TOKEN_SECONDS),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        answer = await self._api.request(
            "POST",
            f"/api/v1/namespaces/{self._namespace}/serviceaccounts/{account}/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        assert answer is not None
        return str(answer["status"]["token"]).encode()


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, ``$$`` is ``$``,
    and a reference to an undefined variable stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REFERENCE.sub(replace, text)


def field_value(pod: JsonObject, path: str, addresses: PodAddresses) -> str:
    """A ``fieldRef``'s value: metadata (name, namespace, uid, a label or annotation, or all
    of them as the downward API writes them), spec.nodeName, spec.serviceAccountName,
    status.podIP(s), status.hostIP(s)."""
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": addresses.pod_ip,
        "status.podIPs": addresses.pod_ip,
        "status.hostIP": addresses.host_ip,
        "status.hostIPs": addresses.host_ip,
    }
    if path in simple:
        return str(simple[path])
    for kind in ("labels", "annotations"):
        values: Mapping[str, str] = meta.get(kind) or {}
        if path == f"metadata.{kind}":
            return "\n".join(f'{key}="{values[key]}"' for key in sorted(values))
        match = re.fullmatch(rf"metadata\.{kind}\['(.+)'\]", path)
        if match:
            return str(values.get(match.group(1), ""))
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(
    container: Mapping[str, Any], reference: Mapping[str, Any], allocatable: Mapping[str, str]
) -> str:
    """A ``resourceFieldRef``'s value: the container's request or limit (the node's
    allocatable for an unset limit) divided by ``divisor``, rounded up, as the kubelet does."""
    resource = str(reference["resource"])
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None:
        raw = allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = quantity_value(str(reference.get("divisor") or "1"))
    value = quantity_value(str(raw))
    return str(math.ceil(value / divisor))


async def container_environment(
    pod: JsonObject,
    container: Mapping[str, Any],
    objects: ObjectSource,
    addresses: PodAddresses,
    allocatable: Mapping[str, str],
) -> dict[str, str]:
    """The variables the container's spec defines, resolved (see the module documentation)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, reference in (("configmap", "configMapRef"), ("secret", "secretRef")):
            if reference not in source:
                continue
            ref = source[reference]
            data = await (
                objects.config_map(ref["name"])
                if kind == "configmap"
                else objects.secret(ref["name"])
            )
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind} "{ref["name"]}" not found')
            for key, content in data.items():
                env[f"{prefix}{key}"] = content.decode(errors="replace")
    for variable in container.get("env") or []:
        name = variable["name"]
        source = variable.get("valueFrom")
        if source is None:
            env[name] = expand(variable.get("value") or "", env)
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            value = await _key_ref(source, objects)
            if value is not None:
                env[name] = value
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"], addresses)
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"], allocatable)
        else:
            raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env


async def _key_ref(source: Mapping[str, Any], objects: ObjectSource) -> str | None:
    if "secretKeyRef" in source:
        kind, ref = "secret", source["secretKeyRef"]
        data = await objects.secret(ref["name"])
    else:
        kind, ref = "configmap", source["configMapKeyRef"]
        data = await objects.config_map(ref["name"])
    if data is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'{kind} "{ref["name"]}" not found')
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
    return data[ref["key"]].decode(errors="replace")


@dataclass(frozen=True)
class VolumeDir:
    """A materialised volume: the folder to bind-mount and whether it is read-only."""

    path: Path
    read_only: bool = False


@dataclass(frozen=True)
class VolumeContext:
    """Where volumes go and what they may read."""

    pod: JsonObject
    pod_dir: Path
    claims_dir: Path
    objects: ObjectSource
    addresses: PodAddresses
    allocatable: Mapping[str, str]
    fs_group: int | None


def _safe_relative(path: str) -> PurePosixPath:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise VolumeError(f"volume item path {path!r} must be relative and stay in the volume")
    return relative


def _write_files(
    folder: Path, files: Mapping[str, tuple[bytes, int]], fs_group: int | None
) -> None:
    for name, (content, mode) in files.items():
        target = folder / _safe_relative(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
        if fs_group is not None:
            os.chown(target, -1, fs_group)


def _select_items(
    kind: str,
    name: str,
    data: Mapping[str, bytes] | None,
    source: Mapping[str, Any],
    default_mode: int,
) -> dict[str, tuple[bytes, int]]:
    if data is None:
        if source.get("optional"):
            return {}
        raise VolumeError(f'{kind} "{name}" not found')
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"{kind} {name} has no key {item['key']}")
        files[item["path"]] = (data[item["key"]], int(item.get("mode", default_mode)))
    return files


async def _downward_files(
    items: list[Mapping[str, Any]], context: VolumeContext, default_mode: int
) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    containers = {c["name"]: c for c in context.pod["spec"].get("containers") or []}
    for item in items:
        mode = int(item.get("mode", default_mode))
        try:
            if "fieldRef" in item:
                value = field_value(context.pod, item["fieldRef"]["fieldPath"], context.addresses)
            else:
                reference = item["resourceFieldRef"]
                container = containers.get(reference.get("containerName", ""), {})
                value = resource_value(container, reference, context.allocatable)
        except ContainerConfigError as exc:
            raise VolumeError(str(exc)) from exc
        files[item["path"]] = (value.encode(), mode)
    return files


async def _projected_files(
    sources: list[Mapping[str, Any]], context: VolumeContext, default_mode: int
) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    for source in sources:
        if "secret" in source:
            ref = source["secret"]
            data = await context.objects.secret(ref["name"])
            files.update(_select_items("secret", ref["name"], data, ref, default_mode))
        elif "configMap" in source:
            ref = source["configMap"]
            data = await context.objects.config_map(ref["name"])
            files.update(_select_items("configmap", ref["name"], data, ref, default_mode))
        elif "downwardAPI" in source:
            items = source["downwardAPI"].get("items") or []
            files.update(await _downward_files(items, context, default_mode))
        elif "serviceAccountToken" in source:
            token_source = source["serviceAccountToken"]
            token = await context.objects.token(context.pod, token_source)
            files[token_source["path"]] = (token, default_mode)
        else:
            raise VolumeError(f"unsupported projected volume source {sorted(source)}")
    return files


async def materialise_volume(volume: Mapping[str, Any], context: VolumeContext) -> VolumeDir:
    """Create one volume's folder and contents; see the module documentation."""
    name = volume["name"]
    folder = context.pod_dir / "volumes" / name
    if "emptyDir" in volume:
        folder.mkdir(parents=True, exist_ok=True)
        # As the kubelet makes it: writable by whatever user the containers run as.
        folder.chmod(0o777)
        return VolumeDir(folder)
    if "hostPath" in volume:
        return _host_path(volume["hostPath"])
    if "persistentVolumeClaim" in volume:
        return await _claim_folder(volume["persistentVolumeClaim"], context)
    files: dict[str, tuple[bytes, int]]
    if "secret" in volume:
        source = volume["secret"]
        mode = int(source.get("defaultMode", _DEFAULT_FILE_MODE))
        data = await context.objects.secret(source["secretName"])
        files = _select_items("secret", source["secretName"], data, source, mode)
    elif "configMap" in volume:
        source = volume["configMap"]
        mode = int(source.get("defaultMode", _DEFAULT_FILE_MODE))
        data = await context.objects.config_map(source["name"])
        files = _select_items("configmap", source["name"], data, source, mode)
    elif "downwardAPI" in volume:
        source = volume["downwardAPI"]
        mode = int(source.get("defaultMode", _DEFAULT_FILE_MODE))
        files = await _downward_files(source.get("items") or [], context, mode)
    elif "projected" in volume:
        source = volume["projected"]
        mode = int(source.get("defaultMode", _DEFAULT_FILE_MODE))
        files = await _projected_files(source.get("sources") or [], context, mode)
    else:
        kinds = sorted(set(volume) - {"name"})
        raise VolumeError(f"volume {name}: unsupported volume type {kinds}")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    _write_files(folder, files, context.fs_group)
    # These volumes are read-only in every container, whatever the mount says.
    return VolumeDir(folder, read_only=True)


def _host_path(source: Mapping[str, Any]) -> VolumeDir:
    path = Path(source["path"])
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind == "Directory" and not path.is_dir():
        raise VolumeError(f"hostPath type check failed: {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise VolumeError(f"hostPath type check failed: {path} is not a file")
    elif not path.exists():
        raise VolumeError(f"hostPath {path} does not exist")
    return VolumeDir(path)


async def _claim_folder(source: Mapping[str, Any], context: VolumeContext) -> VolumeDir:
    claim_name = source["claimName"]
    claim = await context.objects.claim(claim_name)
    if claim is None:
        raise VolumeError(f'persistentvolumeclaim "{claim_name}" not found')
    if (claim.get("status") or {}).get("phase") != "Bound":
        raise VolumeError(f'persistentvolumeclaim "{claim_name}" is not bound')
    namespace = claim["metadata"]["namespace"]
    folder = context.claims_dir / namespace / f"{claim_name}-{claim['metadata']['uid']}"
    if not folder.exists():
        folder.mkdir(parents=True)
        # Containers run as the pod's user: a fresh volume must be writable by it.
        folder.chmod(0o777)
    return VolumeDir(folder, read_only=bool(source.get("readOnly")))


def container_mounts(
    container: Mapping[str, Any], volumes: Mapping[str, VolumeDir], env: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The launcher's bind mounts for a container: source folder (or ``subPath`` in it),
    target ``mountPath``, and read-only-ness (the mount's or the volume's)."""
    mounts: list[dict[str, Any]] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ContainerConfigError(f"volume {mount['name']} is not a volume of the pod")
        source = volume.path
        sub_path = mount.get("subPath") or expand(mount.get("subPathExpr") or "", env)
        if sub_path:
            source = volume.path / _safe_relative(sub_path)
            if not source.resolve().is_relative_to(volume.path.resolve()):
                raise ContainerConfigError(f"subPath {sub_path!r} leaves volume {mount['name']}")
            if not source.exists():
                source.mkdir(parents=True)
        mounts.append(
            {
                "source": str(source),
                "target": mount["mountPath"],
                "readOnly": bool(mount.get("readOnly")) or volume.read_only,
            }
        )
    return mounts
