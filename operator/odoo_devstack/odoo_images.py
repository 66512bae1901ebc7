"""The official ``odoo:<version>`` images, played on the real node by the cached Odoo runtimes.

A pod-runner plugin (``ODOO_DEVSTACK_PODRUNNER_PLUGINS=odoo_devstack.odoo_images:register``):
it registers ``odoo:17.0`` and ``odoo:18.0`` so that the operator's pods, which give only
``args`` (``-c /etc/odoo/odoo.conf ...``) and rely on the image's entrypoint, run the
runtime's ``odoo-bin`` as they would run the image's ``odoo``.

What stands in for the image, per version, in ``<cache>/podrunner-images/odoo-<runtime>/bin``:

- ``odoo``: ``<venv>/bin/python <tree>/odoo-bin --addons-path=<runtime addons> "$@"``. The
  official image installs every addon under ``odoo/addons``, so a configuration without
  ``addons_path`` (the operator's: "modules come from the image") finds them all there; a
  source tree keeps them in ``addons/`` and ``odoo/addons/``, and the runtime's extra
  addons (queue_job, session_redis...) live elsewhere, hence the option. It comes first:
  ``odoo-bin --addons-path=... <command>`` is the form Odoo itself accepts before a
  sub-command, so ``odoo shell`` or ``odoo gevent`` still work.
- ``python3``: the runtime's interpreter, as the image's ``python3`` is the one Odoo runs
  with (the cron pod's probe runs ``python3 -c ...``).

Pods run as the image's user (uid 101), and the runtime lives under ``~/.cache`` of root
(0700): the runtime's folder, its base interpreter and the wrapper folder are the runtime's
``host_paths``, which the pod runner makes reachable, and nothing else of ``/root``.

Nothing is resolved when the runner starts: each image is looked up on its first pod, so a
machine without the Odoo sources (or a runtime not yet built) still runs every other pod; such
a pod waits in ``ErrImagePull`` with a message saying what is missing and how to build it.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import threading
from pathlib import Path

from .binaries import ToolMissingError, cache_root
from .odoo_runtime import ODOO_VERSIONS, OdooRuntime
from .podrunner.images import (
    ODOO_IMAGE,
    ImageRef,
    ImageRuntime,
    ImageUnavailableError,
    Resolver,
    RuntimeTable,
    directory_runtime,
)

PLUGIN = "odoo_devstack.odoo_images:register"
# The official image's environment: ODOO_RC names the configuration file Odoo reads when no
# -c is given; the image's user has its home on the data volume.
IMAGE_ENV = {"ODOO_RC": "/etc/odoo/odoo.conf", "LANG": "C.UTF-8", "HOME": "/var/lib/odoo"}

_lock = threading.Lock()
_resolved: dict[str, ImageRuntime] = {}


# Migration images, as a platform builds them for a major upgrade (``spec.upgrade.
# migrationImage``): Odoo of the target version whose entrypoint runs OpenUpgrade. The
# operator's upgrade Job gives them ``-d <copy> -u all --stop-after-init`` like any image.
MIGRATION_IMAGE = "odoo-openupgrade"
# The same, with one more migration script that raises: a migration that fails for real.
FAILING_MIGRATION_IMAGE = "odoo-openupgrade-failing"
REBUILT_TAG_SUFFIX = "-rebuilt"
FAILING_MIGRATION_MESSAGE = "this migration is made to fail (odoo_devstack.odoo_images)"


def register(table: RuntimeTable) -> None:
    """The plugin entry point: ``odoo:<version>`` for every version the harness builds, and
    the migration images for every version that has OpenUpgrade's scripts."""
    for version in ODOO_VERSIONS:
        table.register(f"{ODOO_IMAGE}:{version}", _resolver(version, ""))
        # A rebuild of the same version (a new patch release of the image): what a minor
        # upgrade moves a tenant to, run by the same runtime.
        table.register(f"{ODOO_IMAGE}:{version}{REBUILT_TAG_SUFFIX}", _resolver(version, ""))
        table.register(f"{MIGRATION_IMAGE}:{version}", _resolver(version, MIGRATION_IMAGE))
        table.register(
            f"{FAILING_MIGRATION_IMAGE}:{version}", _resolver(version, FAILING_MIGRATION_IMAGE)
        )


def _resolver(version: str, flavour: str) -> Resolver:
    def resolve(image: ImageRef) -> ImageRuntime:
        # The runner resolves an image at every container start: look the runtime up once.
        key = f"{flavour}:{version}"
        with _lock:
            if key not in _resolved:
                _resolved[key] = image_runtime(version, str(image), flavour)
            return _resolved[key]

    return resolve


def image_runtime(version: str, image: str = "", flavour: str = "") -> ImageRuntime:
    """What runs a container of ``odoo:<version>`` (or of a migration image, ``flavour``);
    :class:`ImageUnavailableError` when the runtime is not there (the runner never builds
    one: a build takes minutes)."""
    shown = image or f"{ODOO_IMAGE}:{version}"
    try:
        runtime = OdooRuntime(version)
        built = runtime.is_built
    except ToolMissingError as exc:
        raise ImageUnavailableError(f'image "{shown}": no Odoo {version} runtime: {exc}') from exc
    if not built:
        raise ImageUnavailableError(
            f'image "{shown}": the Odoo {version} runtime is not built in {runtime.root}; '
            "run `odoo-devstack bootstrap` (or OdooRuntime(version).ensure())"
        )
    folder = write_wrappers(runtime, flavour)
    return directory_runtime(
        folder,
        f"Odoo {version} from {runtime.root}",
        ("odoo",),
        IMAGE_ENV,
        host_paths=_runtime_paths(runtime),
    )


def _base_interpreter_prefix(runtime: OdooRuntime) -> str:
    """The installation the virtualenv's interpreter belongs to (``home`` in pyvenv.cfg is
    its ``bin`` folder): the venv's ``python`` is a link into it."""
    try:
        lines = (runtime.root / "venv" / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return sys.base_prefix
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return str(Path(value.strip()).parent)
    return sys.base_prefix


def _runtime_paths(runtime: OdooRuntime) -> tuple[str, ...]:
    paths = [str(runtime.root), str(runtime.source_dir), _base_interpreter_prefix(runtime)]
    # A source tree used in place may lie outside the runtime's folder; list each once.
    return tuple(dict.fromkeys(paths))


def wrapper_folder(runtime: OdooRuntime, flavour: str = "") -> Path:
    """Where the image's executables for ``runtime`` are written (one folder per build)."""
    suffix = f"-{flavour}" if flavour else ""
    return cache_root() / "podrunner-images" / f"odoo-{runtime.root.name}{suffix}"


def _migration_options(runtime: OdooRuntime, folder: Path, flavour: str) -> list[str]:
    """The options a migration image adds: OpenUpgrade's scripts as an upgrade path and its
    framework loaded, as OpenUpgrade's documentation runs it; the failing flavour adds a
    pre-migration of ``base`` that raises."""
    if not flavour:
        return []
    scripts = runtime.openupgrade_scripts_path
    if scripts is None:
        raise ImageUnavailableError(
            f'image "{flavour}:{runtime.version}": the Odoo {runtime.version} runtime has no '
            "OpenUpgrade scripts (only a target version of a major upgrade has them)"
        )
    paths = [str(scripts)]
    if flavour == FAILING_MIGRATION_IMAGE:
        # Odoo runs <upgrade path>/<module>/<version>/pre-*.py before updating the module,
        # for each version above the installed one up to the new one. base is "1.3" in every
        # series here, so only the full "<series>.1.3" is newer than the 17.0 one.
        step = folder / "failing-migration" / "base" / f"{runtime.version}.1.3"
        step.mkdir(parents=True, exist_ok=True)
        (step / "pre-migration.py").write_text(
            f"def migrate(cr, version):\n    raise RuntimeError({FAILING_MIGRATION_MESSAGE!r})\n"
        )
        for path in (folder / "failing-migration", step.parent, step):
            path.chmod(0o755)
        (step / "pre-migration.py").chmod(0o644)
        paths.append(str(folder / "failing-migration"))
    return ["--upgrade-path=" + ",".join(paths), "--load=base,web,openupgrade_framework"]


def write_wrappers(runtime: OdooRuntime, flavour: str = "") -> Path:
    """Write ``bin/odoo`` and ``bin/python3`` for ``runtime`` (of a migration image with
    ``flavour``); return their folder."""
    folder = wrapper_folder(runtime, flavour)
    folder.mkdir(parents=True, exist_ok=True)
    python = shlex.quote(str(runtime.python))
    addons = ",".join(str(path) for path in runtime.addons_paths)
    options = " ".join(
        shlex.quote(option)
        for option in ["--addons-path=" + addons, *_migration_options(runtime, folder, flavour)]
    )
    image = f"{flavour or ODOO_IMAGE}:{runtime.version}"
    scripts = {
        "odoo": (
            "#!/bin/sh\n"
            f"# The entrypoint of {image}, played by {runtime.root}.\n"
            f"exec {python} {shlex.quote(str(runtime.odoo_bin))} {options} "
            '"$@"\n'
        ),
        "python3": f'#!/bin/sh\nexec {python} "$@"\n',
    }
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    # The pod's user walks through these folders to its executables.
    for path in (folder.parent, folder, bin_dir):
        path.chmod(0o755)
    for name, text in scripts.items():
        target = bin_dir / name
        if target.is_file() and target.read_text() == text:
            continue
        # Written aside and renamed: two runners starting at once never exec a half file.
        handle, partial = tempfile.mkstemp(dir=bin_dir, prefix=f".{name}-")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        # Executables of every pod's user: readable and runnable by all, writable by root.
        os.chmod(partial, 0o755)  # noqa: S103
        os.replace(partial, target)
    return folder
