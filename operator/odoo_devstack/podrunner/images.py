"""Which local runtime stands in for a container image.

The real node runs no image: it runs a container's command with executables that already
exist on this machine. A :class:`RuntimeTable` maps image references to an
:class:`ImageRuntime` (directories put ahead of the system ``PATH``, environment variables,
and the image's ``ENTRYPOINT``/``CMD`` for containers that do not set ``command``/``args``).

Entries are keyed by repository (``ghcr.io/tenantops/odoo-operator``: every tag) or by
repository and tag (``odoo:17.0``: that tag only); the exact tag wins over the repository,
and the longest repository prefix wins among repositories. A reference is normalised the way
container runtimes read it: ``odoo:17.0`` is ``docker.io/library/odoo`` with tag ``17.0``.

An image without an entry makes its container wait with reason ``ErrImagePull`` and a
message naming the image, as a kubelet does for an image it cannot pull.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The operator's own image, as the manifests and OperatorConfig.operator_image name it.
OPERATOR_IMAGE = "ghcr.io/tenantops/odoo-operator"
# Tests use this image name for "the tools of this machine" (python3, sh, sleep...).
SYSTEM_IMAGE = "podrunner.local/system"
# The Odoo images the operator deploys by default (``odoo:<version>``).
ODOO_IMAGE = "odoo"
# The PATH a container starts from, after its runtime's own directories.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_DEFAULT_REGISTRY = "docker.io"


class ImageUnavailableError(LookupError):
    """No local runtime stands in for an image; the message says which and what is known."""


@dataclass(frozen=True)
class ImageRef:
    """An image reference split into normalised repository, tag and digest."""

    repository: str
    tag: str | None
    digest: str | None
    original: str

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        """Read ``[registry/]path[:tag][@digest]``; a bare name lives on Docker Hub."""
        name, _, digest = image.strip().partition("@")
        last_slash = name.rfind("/")
        tag: str | None = None
        # A colon after the last slash separates the tag; one before it is a registry port.
        colon = name.rfind(":")
        if colon > last_slash:
            name, tag = name[:colon], name[colon + 1 :]
        return cls(_normalise_repository(name), tag or None, digest or None, image)

    def __str__(self) -> str:
        return self.original


def _normalise_repository(name: str) -> str:
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return name.lower()
    if rest:
        return f"{_DEFAULT_REGISTRY}/{name}".lower()
    return f"{_DEFAULT_REGISTRY}/library/{name}".lower()


@dataclass(frozen=True)
class ImageRuntime:
    """What a container of an image runs with on this machine.

    ``path``: directories searched for executables before :data:`SYSTEM_PATH`;
    ``env``: the image's environment (the container's own ``env`` overrides it);
    ``entrypoint``/``cmd``: the image's ``ENTRYPOINT`` and ``CMD``, used as Kubernetes does
    when the container leaves ``command`` or ``args`` out; ``working_dir``: the image's
    ``WORKDIR``, used when the container sets no ``workingDir``; ``host_paths``: folders
    the runtime's processes read, which a container running as an unprivileged user must
    reach even when they lie below a folder closed to it (an interpreter under ``/root``).
    """

    description: str
    path: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = "/"
    host_paths: tuple[str, ...] = ()

    def environment(self) -> dict[str, str]:
        """The image's environment with its ``PATH`` in front of the system's."""
        env = dict(self.env)
        env["PATH"] = ":".join([*self.path, env.get("PATH", SYSTEM_PATH)])
        return env

    def argv(self, command: list[str] | None, args: list[str] | None) -> list[str]:
        """The process's argv, combining the container's and the image's as Kubernetes does.

        ``command`` replaces the entrypoint and drops the image's CMD; ``args`` alone
        replaces CMD and keeps the entrypoint.
        """
        if command:
            return [*command, *(args or [])]
        return [*self.entrypoint, *(args or self.cmd)]


Resolver = Callable[[ImageRef], ImageRuntime]


def _constant(runtime: ImageRuntime) -> Resolver:
    def resolve(image: ImageRef) -> ImageRuntime:
        return runtime

    return resolve


class RuntimeTable:
    """Image references to local runtimes; see the module documentation for matching."""

    def __init__(self) -> None:
        self._by_repository: dict[str, Resolver] = {}
        self._by_tag: dict[tuple[str, str], Resolver] = {}

    def register(self, image: str, runtime: ImageRuntime | Resolver) -> None:
        """Map ``image`` (a repository, or repository:tag) to a runtime or to a function
        that builds one from the reference (and may raise :class:`ImageUnavailableError`).

        A later registration of the same key replaces the earlier one.
        """
        resolver = _constant(runtime) if isinstance(runtime, ImageRuntime) else runtime
        ref = ImageRef.parse(image)
        if ref.digest:
            raise ValueError(f"register {image!r} by repository or tag, not by digest")
        if ref.tag is None:
            self._by_repository[ref.repository] = resolver
        else:
            self._by_tag[(ref.repository, ref.tag)] = resolver

    def known(self) -> list[str]:
        """Every registered key, for messages: repositories and repository:tag pairs."""
        keys = list(self._by_repository) + [f"{repo}:{tag}" for repo, tag in self._by_tag]
        return sorted(keys)

    def resolve(self, image: str) -> ImageRuntime:
        """The runtime for ``image``; :class:`ImageUnavailableError` names what is missing."""
        ref = ImageRef.parse(image)
        if ref.tag is not None and (ref.repository, ref.tag) in self._by_tag:
            return self._by_tag[(ref.repository, ref.tag)](ref)
        matches = [
            repository
            for repository in self._by_repository
            if ref.repository == repository or ref.repository.startswith(f"{repository}/")
        ]
        if matches:
            return self._by_repository[max(matches, key=len)](ref)
        tags = sorted(tag for repo, tag in self._by_tag if repo == ref.repository)
        if tags:
            raise ImageUnavailableError(
                f'image "{image}" has no local runtime on this node: tag {ref.tag or "(none)"} '
                f"is not registered for {ref.repository} (registered tags: {', '.join(tags)})"
            )
        raise ImageUnavailableError(
            f'image "{image}" has no local runtime on this node; the pod runner knows '
            f"{', '.join(self.known()) or 'no image'} (register one with RuntimeTable.register "
            "or the runner's --image/--plugin options)"
        )


def _dockerfile_instruction(dockerfile: Path, instruction: str) -> tuple[str, ...]:
    """The exec-form value of ENTRYPOINT or CMD in a Dockerfile's last stage, or ()."""
    value: tuple[str, ...] = ()
    try:
        lines = dockerfile.read_text().splitlines()
    except OSError:
        return value
    for line in lines:
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == instruction:
            try:
                parsed = json.loads(rest)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, list) and all(isinstance(part, str) for part in parsed):
                value = tuple(parsed)
    return value


def operator_runtime(venv: Path | None = None, dockerfile: Path | None = None) -> ImageRuntime:
    """The operator's image played by the project's virtualenv.

    ENTRYPOINT and CMD are read from the repository's Dockerfile, so a container that only
    gives ``args`` (the backup Job does) runs ``odoo-operator <args>`` as in the real image.
    """
    bin_dir = Path(venv) / "bin" if venv else Path(sys.executable).parent
    repo = Path(__file__).resolve().parents[3]
    source = dockerfile or repo / "Dockerfile"
    return ImageRuntime(
        description=f"the project's virtualenv ({bin_dir.parent})",
        path=(str(bin_dir),),
        env={"VIRTUAL_ENV": str(bin_dir.parent)},
        entrypoint=_dockerfile_instruction(source, "ENTRYPOINT"),
        cmd=_dockerfile_instruction(source, "CMD"),
        # The Job runs as an unprivileged user; the interpreter the virtualenv links to may
        # live under a folder closed to it (pyenv under /root).
        host_paths=(str(bin_dir.parent), sys.base_prefix, str(repo / "operator")),
    )


def system_runtime() -> ImageRuntime:
    """The machine's own tools, for test pods: ``python3``, ``sh``, ``sleep``..."""
    return ImageRuntime(description="this machine's system tools")


def directory_runtime(
    directory: Path,
    description: str = "",
    entrypoint: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    host_paths: tuple[str, ...] = (),
) -> ImageRuntime:
    """A runtime whose executables live in ``directory`` (or its ``bin`` folder); the
    directory itself is one of its ``host_paths``."""
    bin_dir = directory / "bin" if (directory / "bin").is_dir() else directory
    return ImageRuntime(
        description=description or f"executables of {bin_dir}",
        path=(str(bin_dir),),
        env=dict(env or {}),
        entrypoint=entrypoint,
        host_paths=(str(directory), *host_paths),
    )


def register_odoo_runtime(
    table: RuntimeTable,
    version: str,
    directory: Path,
    env: Mapping[str, str] | None = None,
    host_paths: tuple[str, ...] = (),
) -> None:
    """The hook for Odoo runtimes: ``odoo:<version>`` runs the ``odoo`` executable found in
    ``directory`` (or ``directory/bin``).

    The official image's entrypoint ends in ``odoo`` with the container's args, so the
    runtime's entrypoint is ``odoo``: the operator's ``args: [-c, /etc/odoo/odoo.conf, ...]``
    run as they would in the image. Odoo pods run as an unprivileged user: ``host_paths``
    names what else the runtime reads (its base interpreter, addon folders), see
    :class:`ImageRuntime`.
    """
    table.register(
        f"{ODOO_IMAGE}:{version}",
        directory_runtime(
            directory, f"Odoo {version} from {directory}", ("odoo",), env, host_paths
        ),
    )


def _no_odoo_runtime(image: ImageRef) -> ImageRuntime:
    raise ImageUnavailableError(
        f'image "{image}" has no local runtime on this node: no Odoo runtime is registered '
        f"for version {image.tag or '(no tag)'} (register one with "
        "odoo_devstack.podrunner.images.register_odoo_runtime from a runner plugin)"
    )


def default_table() -> RuntimeTable:
    """The operator's image, the system image for tests, and the Odoo hook (empty)."""
    table = RuntimeTable()
    table.register(OPERATOR_IMAGE, operator_runtime())
    table.register(SYSTEM_IMAGE, system_runtime())
    # Registered tags (register_odoo_runtime) win over this catch-all, which explains itself.
    table.register(ODOO_IMAGE, _no_odoo_runtime)
    return table


def load_plugins(table: RuntimeTable, plugins: Iterable[str]) -> None:
    """Call each ``module:function`` with the table, so it can register runtimes."""
    for plugin in plugins:
        module_name, _, function_name = plugin.partition(":")
        if not module_name or not function_name:
            raise ValueError(f"plugin {plugin!r} must read module:function")
        function = getattr(importlib.import_module(module_name), function_name)
        function(table)


def parse_image_option(option: str) -> tuple[str, ImageRuntime]:
    """``IMAGE=DIRECTORY`` from the command line: the image runs executables of DIRECTORY."""
    image, sep, directory = option.partition("=")
    if not sep or not image or not directory:
        raise ValueError(f"--image {option!r} must read IMAGE=DIRECTORY")
    path = Path(os.path.expanduser(directory))
    if not path.is_dir():
        raise ValueError(f"--image {option!r}: {path} is not a directory")
    return image, directory_runtime(path)
