"""Real Odoo for the tests: cached runtimes, initialised template databases, served instances.

An :class:`OdooRuntime` is one Odoo version (17.0 or 18.0) installed from a source tree into
a virtualenv of its own under ``<cache>/odoo/<version>-<sha of inputs>/`` (``<cache>`` is
``$ODOO_OPERATOR_CACHE`` or ``~/.cache/odoo-operator``), with the community addons the
operator relies on: OCA's ``queue_job`` on both versions, Camptocamp's ``session_redis`` on
17.0, and OpenUpgrade's framework and scripts on 18.0 (the target of a 17.0 -> 18.0 upgrade).

The source comes from ``../shared/odoo/odoo-<version>.tar.xz`` beside the repository unless
``ODOO_OPERATOR_ODOO_SOURCE`` (or the ``source`` argument) names another: a folder holding
such archives, an unpacked source tree (a ``git clone --branch 17.0`` of Odoo), an archive,
or an http(s) URL of an archive; ``{version}`` in it is replaced by the version.

:func:`initialise_template` makes a database the way the operator does (a login role without
CREATEDB owning an empty UTF8 database) and lets ``odoo-bin -i`` initialise it as that role;
:func:`copy_database` copies such a template with ``CREATE DATABASE ... TEMPLATE``, which
takes a fraction of a second where an initialisation takes tens; :class:`OdooServer` serves
a database on loopback. docs/development.md lists what is installed and what it costs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from odoo_devstack.binaries import ToolMissingError, cache_root
from odoo_devstack.debian import apt_install
from odoo_devstack.processes import ComponentError, ManagedProcess
from odoo_operator.builders.postgres import (
    DATABASE_ENCODING,
    TENANT_ROLE_ATTRIBUTES,
    scram_sha256_verifier,
)

ODOO_VERSIONS = ("17.0", "18.0")
SOURCE_ENV = "ODOO_OPERATOR_ODOO_SOURCE"
CLOUD_PLATFORM_SOURCE_ENV = "ODOO_OPERATOR_CLOUD_PLATFORM_SOURCE"
# The repository root (operator/odoo_devstack/ is two levels below it); shared/ lies beside it.
REPO = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE_DIR = REPO.parent / "shared" / "odoo"


def default_source_dir() -> Path:
    """Where Odoo's sources are looked for when nothing names them: ``shared/odoo`` beside
    this checkout, else beside the repository it was cloned from (a fresh clone made
    elsewhere, as CI makes one, still finds the machine's shared folder)."""
    if DEFAULT_SOURCE_DIR.is_dir():
        return DEFAULT_SOURCE_DIR
    try:
        origin = subprocess.run(
            ["git", "-C", str(REPO), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    candidates: list[Path] = [*(parent / "shared" / "odoo" for parent in REPO.parents)]
    if origin and not _is_url(origin) and ":" not in origin.split("/")[0]:
        remote = Path(origin.removeprefix("file://")).resolve()
        candidates += [parent / "shared" / "odoo" for parent in remote.parents]
    # This workplace keeps the sources in /work/shared/odoo; a clone made anywhere else on
    # the machine (as CI's is) still finds them.
    candidates.append(Path("/work/shared/odoo"))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return DEFAULT_SOURCE_DIR


# Bump when the layout of a runtime or the way it is built changes, so that every cached
# runtime built the old way is rebuilt rather than trusted.
_LAYOUT_VERSION = 1
_HEARTBEAT_SECONDS = 30.0
_ARCHIVE_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")
_STAMP = ".complete"
# What ``odoo-bin -i base`` leaves as the password of the ``admin`` user: Odoo's own default,
# which a tenant must never keep (tests/integration/test_odoo_runtime.py proves it is there).
DEFAULT_ADMIN_PASSWORD = "admin"  # noqa: S105 - a published default, not a secret


class OdooSourceMissingError(ToolMissingError):
    """The Odoo (or cloud-platform) source named by the options does not exist."""


class RuntimeBuildError(ComponentError):
    """A step of building an Odoo runtime failed; the message names the step and log."""

    def __init__(self, version: str, step: str, message: str, log_tail: str = "") -> None:
        self.step = step
        super().__init__(f"odoo {version} runtime", f"{step}: {message}", log_tail)


@dataclass(frozen=True)
class RuntimeRecipe:
    """What goes into the virtualenv of one Odoo version besides the source tree.

    Every field feeds the cache key, so changing a pin rebuilds the runtime.
    """

    version: str
    # requirements.txt lines dropped, by distribution name. python-ldap needs libldap2-dev
    # and libsasl2-dev to build from source and serves only auth_ldap, which no tenant uses.
    excluded_requirements: tuple[str, ...] = ("python-ldap",)
    # Given to pip as PIP_CONSTRAINT, which its isolated build environments inherit: some
    # sdists still import pkg_resources from setup.py, which setuptools 80 removed.
    build_constraints: tuple[str, ...] = ("setuptools<80",)
    # Plain Python libraries installed with their dependencies, in the same resolution as
    # requirements.txt so that its pins hold.
    libraries: tuple[str, ...] = ()
    # The virtualenv's setuptools, installed in that same resolution. Prefork Odoo starts its
    # websocket process as `odoo-bin gevent`, whose gevent.monkey.patch_all() loads gevent's
    # plugins through pkg_resources; the setuptools a new virtualenv of Python 3.11 gets
    # (65.5) does not find distributions whose metadata folder has a normalised name
    # (zope_interface-8.7.dist-info), and the process dies with DistributionNotFound:
    # 'zope.interface' (no websocket on any prefork tenant). Below build_constraints' bound.
    setuptools: str = "setuptools==79.0.1"
    # Odoo addons published as wheels (OCA), installed with --no-deps: they require an
    # ``odoo`` distribution that no index carries; the source tree is Odoo here.
    addon_wheels: tuple[str, ...] = ()
    # Addons copied from Camptocamp's odoo-cloud-platform archive into the extra addons folder.
    cloud_platform_addons: tuple[str, ...] = ()
    # What keeps ``-i`` from loading demo data. Both versions still spell it --without-demo
    # (odoo/tools/config.py); 19.0 turns it around into --with-demo.
    without_demo_args: tuple[str, ...] = ("--without-demo=all",)
    # Python modules the last build step imports with the new interpreter.
    check_imports: tuple[str, ...] = ("psycopg2", "lxml.etree", "werkzeug", "requests")


RECIPES: dict[str, RuntimeRecipe] = {
    "17.0": RuntimeRecipe(
        version="17.0",
        addon_wheels=("odoo-addon-queue_job==17.0.1.5.4",),
        cloud_platform_addons=("session_redis",),
        check_imports=("psycopg2", "lxml.etree", "werkzeug", "requests", "redis"),
    ),
    "18.0": RuntimeRecipe(
        version="18.0",
        libraries=("openupgradelib==3.13.7",),
        addon_wheels=(
            "odoo-addon-queue_job==18.0.4.1.2.2",
            "odoo-addon-openupgrade-framework==18.0.1.0.3.2",
            # Newer 18.0 builds expect 18.0 data newer than the shared source tree (they
            # stop on a missing base.XCG currency).
            "odoo-addon-openupgrade-scripts==18.0.1.0.0.392",
        ),
        check_imports=("psycopg2", "lxml.etree", "werkzeug", "requests", "openupgradelib"),
    ),
}


# -- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceLocation:
    """Where one input comes from: a local archive, a URL of an archive, or an unpacked tree."""

    kind: Literal["archive", "url", "tree"]
    location: str


def _is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme in ("http", "https", "file")


def _is_odoo_tree(path: Path) -> bool:
    return (path / "odoo-bin").is_file() and (path / "odoo" / "release.py").is_file()


def _is_cloud_platform_tree(path: Path) -> bool:
    return (path / "session_redis" / "__manifest__.py").is_file()


def resolve_source(
    option: str | Path | None,
    env_var: str,
    version: str,
    stem: str,
    is_tree: Callable[[Path], bool],
) -> SourceLocation:
    """Turn a source option into a location: the option, else ``env_var``, else shared/odoo.

    ``{version}`` in the value is replaced. A folder that is not itself a source tree is
    searched for ``<stem>`` followed by an archive suffix, or a ``<stem>`` tree.
    """
    raw = str(option) if option is not None else os.environ.get(env_var) or ""
    expanded = (raw or str(default_source_dir())).replace("{version}", version)
    if _is_url(expanded):
        return SourceLocation("url", expanded)
    path = Path(expanded).expanduser()
    if path.is_file():
        return SourceLocation("archive", str(path.resolve()))
    if path.is_dir():
        if is_tree(path):
            return SourceLocation("tree", str(path.resolve()))
        for suffix in _ARCHIVE_SUFFIXES:
            candidate = path / f"{stem}{suffix}"
            if candidate.is_file():
                return SourceLocation("archive", str(candidate.resolve()))
        if is_tree(path / stem):
            return SourceLocation("tree", str((path / stem).resolve()))
    origin = f"{env_var}={raw!r}" if raw and option is None else repr(expanded)
    raise OdooSourceMissingError(
        f"no {stem} source at {origin}: expected an archive {stem}.tar.xz (or .tar.gz), a "
        f"folder holding one, an unpacked source tree or an http(s) URL; set {env_var} "
        f"(a path or URL, '{{version}}' is replaced by {version})"
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tree_fingerprint(root: Path) -> str:
    """A digest of every file's path, size and modification time under ``root``.

    Cheaper than hashing contents (tens of thousands of files) and enough to notice a
    checkout that moved on; Python caches and VCS metadata are left out.
    """
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in (".git", "__pycache__"))
        for name in sorted(files):
            stat = os.stat(os.path.join(folder, name))
            relative = os.path.relpath(os.path.join(folder, name), root)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def fingerprint(source: SourceLocation) -> str:
    """What identifies the content of ``source`` in the cache key.

    An archive is hashed; a URL is identified by itself (change the URL, or delete the cached
    runtime, to pick up new content behind the same URL); a tree by its files' metadata.
    """
    if source.kind == "archive":
        return "sha256:" + _file_sha256(Path(source.location))
    if source.kind == "url":
        return "url:" + source.location
    return "tree:" + _tree_fingerprint(Path(source.location))


# -- the runtime ------------------------------------------------------------------------------


def _interpreter_identity(python: str) -> str:
    result = subprocess.run(
        [python, "-c", "import sys; print(sys.version); print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise ToolMissingError(f"cannot run the Python interpreter {python}: {result.stderr}")
    return result.stdout.strip()


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an Odoo or pip child: ours, minus what would leak another
    Python's packages into the runtime's, plus ``extra``.

    The machine's pip settings (PIP_INDEX_URL, PIP_CERT, ...) stay: they may be what makes
    the package index reachable at all.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(extra or {})
    return env


class OdooRuntime:
    """One Odoo version in a cached virtualenv. Nothing is built until :meth:`ensure`."""

    def __init__(
        self,
        version: str,
        source: str | Path | None = None,
        *,
        cloud_platform_source: str | Path | None = None,
        python: str | Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """Describe the runtime of ``version``; ``source`` as in :func:`resolve_source`.

        ``python`` is the interpreter the virtualenv is made from (default: this one);
        ``cache_dir`` the folder runtimes are cached in (default ``<cache>/odoo``).
        """
        if version not in RECIPES:
            raise ValueError(f"no recipe for Odoo {version!r}: known are {', '.join(RECIPES)}")
        self.recipe = RECIPES[version]
        self.source = resolve_source(source, SOURCE_ENV, version, f"odoo-{version}", _is_odoo_tree)
        self.cloud_platform: SourceLocation | None = None
        if self.recipe.cloud_platform_addons:
            self.cloud_platform = resolve_source(
                cloud_platform_source,
                CLOUD_PLATFORM_SOURCE_ENV,
                version,
                f"odoo-cloud-platform-{version}",
                _is_cloud_platform_tree,
            )
        self.base_python = str(python or sys.executable)
        self.cache_dir = cache_dir or cache_root() / "odoo"
        self._root: Path | None = None
        self._inputs: dict[str, Any] | None = None
        self._interpreter: str | None = None
        # Set by ensure(): whether this call built the runtime, and how long that took.
        self.built_now = False
        self.build_seconds = 0.0
        self._step = ""

    def __repr__(self) -> str:
        return f"OdooRuntime({self.version!r}, source={self.source.location!r})"

    @property
    def version(self) -> str:
        """The Odoo series, ``"17.0"`` or ``"18.0"``."""
        return self.recipe.version

    def inputs(self) -> dict[str, Any]:
        """Everything the runtime is made from; its digest names the cache folder.

        Computed once per object: hashing an archive of 60 MB takes a moment.
        """
        if self._inputs is None:
            inputs: dict[str, Any] = {
                "layout": _LAYOUT_VERSION,
                "recipe": asdict(self.recipe),
                "source": fingerprint(self.source),
                "python": self._interpreter_identity(),
            }
            if self.cloud_platform is not None:
                inputs["cloud_platform"] = fingerprint(self.cloud_platform)
            self._inputs = inputs
        return self._inputs

    def _interpreter_identity(self) -> str:
        if self._interpreter is None:
            self._interpreter = _interpreter_identity(self.base_python)
        return self._interpreter

    @property
    def root(self) -> Path:
        """The runtime's cache folder, ``<cache>/odoo/<version>-<first 12 of the sha>``."""
        if self._root is None:
            key = hashlib.sha256(json.dumps(self.inputs(), sort_keys=True).encode()).hexdigest()
            self._root = self.cache_dir / f"{self.version}-{key[:12]}"
        return self._root

    @property
    def log_path(self) -> Path:
        """The build log: every step's command line and output (pip's included)."""
        return self.root / "build.log"

    @property
    def is_built(self) -> bool:
        """Whether a complete build is in the cache (its stamp is written last)."""
        return (self.root / _STAMP).is_file()

    @property
    def python(self) -> Path:
        """The virtualenv's interpreter, which every Odoo command runs with."""
        return self.root / "venv" / "bin" / "python"

    @property
    def source_dir(self) -> Path:
        """The Odoo source tree: unpacked into the cache, or the tree the source names."""
        if self.source.kind == "tree":
            return Path(self.source.location)
        return self.root / "src"

    @property
    def odoo_bin(self) -> Path:
        """``odoo-bin`` of the source tree."""
        return self.source_dir / "odoo-bin"

    @property
    def core_addons_paths(self) -> list[Path]:
        """Odoo's own addons: ``addons/`` and ``odoo/addons/`` of the source tree."""
        return [self.source_dir / "addons", self.source_dir / "odoo" / "addons"]

    @property
    def site_addons_path(self) -> Path:
        """Where the addon wheels (queue_job, OpenUpgrade) put their modules."""
        python_dir = f"python{self._venv_python_version()}"
        return self.root / "venv" / "lib" / python_dir / "site-packages" / "odoo" / "addons"

    @property
    def cloud_addons_path(self) -> Path | None:
        """The folder of the cloud-platform addons (session_redis), on versions that get them."""
        return self.root / "extra-addons" if self.recipe.cloud_platform_addons else None

    @property
    def extra_addons_paths(self) -> list[Path]:
        """Addons beyond Odoo's own: the wheels' folder, then the cloud-platform folder."""
        extra = [self.site_addons_path]
        if self.cloud_addons_path is not None:
            extra.append(self.cloud_addons_path)
        return extra

    @property
    def addons_paths(self) -> list[Path]:
        """The whole ``addons_path``: core first, then extra."""
        return self.core_addons_paths + self.extra_addons_paths

    @property
    def openupgrade_scripts_path(self) -> Path | None:
        """OpenUpgrade's migration scripts (an ``upgrade_path``), on 18.0 only."""
        if not any("openupgrade-scripts" in wheel for wheel in self.recipe.addon_wheels):
            return None
        return self.site_addons_path / "openupgrade_scripts" / "scripts"

    @property
    def without_demo_args(self) -> list[str]:
        """The ``odoo-bin`` arguments that keep ``-i`` from loading demo data."""
        return list(self.recipe.without_demo_args)

    def command(self, *args: str) -> list[str]:
        """An ``odoo-bin`` command line run by the runtime's interpreter."""
        return [str(self.python), str(self.odoo_bin), *args]

    def _venv_python_version(self) -> str:
        # The interpreter identity starts with sys.version, e.g. "3.11.7 (main, ...)".
        identity = self._interpreter_identity()
        major, minor = identity.split(".", 2)[:2]
        return f"{major}.{minor}"

    # -- building -----------------------------------------------------------------------------

    def ensure(self) -> OdooRuntime:
        """Build the runtime unless the cache has it; return self.

        Two processes asking at once build it once: the second waits on a lock file beside
        the cache folder, then finds the stamp. A folder without a stamp is what an
        interrupted build left: it is removed and built again.
        """
        self.built_now = False
        if self.is_built:
            return self
        label = f"Odoo {self.version}"
        lock_path = self.root.with_name(self.root.name + ".lock")
        with _exclusive_lock(lock_path, f"another process building {label} into {self.root}"):
            if self.is_built:
                return self
            started = time.monotonic()
            print(
                f"[odoo-runtime] building {label} into {self.root} "
                f"(a cold build takes a minute or more; log: {self.log_path})",
                file=sys.stderr,
                flush=True,
            )
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True)
            with _heartbeat(lambda: f"building {label}: {self._step}"):
                self._build()
            self.build_seconds = time.monotonic() - started
            self.built_now = True
            stamp = {"inputs": self.inputs(), "build_seconds": round(self.build_seconds, 1)}
            # Written last: its presence is what says the runtime is complete.
            (self.root / _STAMP).write_text(json.dumps(stamp, indent=2, sort_keys=True))
            print(
                f"[odoo-runtime] built {label} in {self.build_seconds:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        return self

    def _build(self) -> None:
        if self.source.kind != "tree":
            archive = self._fetch(self.source, "download the Odoo source")
            self._unpack(archive, self.source_dir, "unpack the Odoo source", _is_odoo_tree)
        self._run_step(
            "create the virtualenv",
            [self.base_python, "-m", "venv", str(self.root / "venv")],
            timeout=600,
        )
        constraints = self.root / "build-constraints.txt"
        constraints.write_text("".join(f"{line}\n" for line in self.recipe.build_constraints))
        requirements = self.root / "requirements.txt"
        requirements.write_text(
            filter_requirements(
                (self.source_dir / "requirements.txt").read_text(),
                self.recipe.excluded_requirements,
            )
        )
        pip_env = {
            "PIP_CONSTRAINT": str(constraints),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }
        pip = [str(self.python), "-m", "pip", "install", "--progress-bar", "off"]
        self._run_step(
            "pip install -r requirements.txt",
            [*pip, "-r", str(requirements), self.recipe.setuptools, *self.recipe.libraries],
            env=pip_env,
            timeout=3600,
        )
        if self.recipe.addon_wheels:
            self._run_step(
                "pip install the addon wheels",
                [*pip, "--no-deps", "--only-binary", ":all:", *self.recipe.addon_wheels],
                env=pip_env,
                timeout=1800,
            )
        if self.cloud_platform is not None and self.cloud_addons_path is not None:
            self._install_cloud_platform_addons(self.cloud_platform, self.cloud_addons_path)
        self._run_step(
            "check the runtime",
            [str(self.python), "-c", _import_check(self.recipe.check_imports)],
            timeout=300,
        )
        # What `odoo-bin gevent` does first (see RuntimeRecipe.setuptools).
        self._run_step(
            "check gevent's monkey patching",
            [str(self.python), "-c", "from gevent import monkey; monkey.patch_all()"],
            timeout=300,
        )
        self._run_step("odoo-bin --version", self.command("--version"), timeout=300)
        reported = self.log_path.read_text(errors="replace").splitlines()[-1]
        if f"Odoo Server {self.version}" not in reported:
            raise RuntimeBuildError(
                self.version,
                "odoo-bin --version",
                f"the source is not Odoo {self.version}: it says {reported!r}",
            )
        missing = [str(path) for path in self.addons_paths if not path.is_dir()]
        if missing:
            raise RuntimeBuildError(
                self.version, "check the runtime", f"missing addons folders: {missing}"
            )

    def _install_cloud_platform_addons(self, source: SourceLocation, target: Path) -> None:
        if source.kind == "tree":
            tree = Path(source.location)
        else:
            archive = self._fetch(source, "download the cloud-platform addons")
            tree = self.root / "cloud-platform"
            self._unpack(archive, tree, "unpack the cloud-platform addons", _is_cloud_platform_tree)
        target.mkdir(parents=True, exist_ok=True)
        for addon in self.recipe.cloud_platform_addons:
            if not (tree / addon / "__manifest__.py").is_file():
                raise RuntimeBuildError(
                    self.version,
                    "copy the cloud-platform addons",
                    f"{addon} is not in {source.location}",
                )
            shutil.copytree(tree / addon, target / addon)

    def _fetch(self, source: SourceLocation, step: str) -> Path:
        """A local archive for ``source``; a URL is downloaded once into the cache."""
        if source.kind == "archive":
            return Path(source.location)
        self._step = step
        url_digest = hashlib.sha256(source.location.encode()).hexdigest()[:16]
        name = Path(urllib.parse.urlsplit(source.location).path).name or "source.tar"
        target = self.cache_dir / "downloads" / url_digest / name
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(name + ".partial")
        try:
            # The scheme was checked to be http(s) or file by resolve_source.
            with (
                urllib.request.urlopen(source.location, timeout=60) as response,  # noqa: S310
                open(partial, "wb") as out,
            ):
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as error:
            raise RuntimeBuildError(
                self.version, step, f"cannot download {source.location}: {error}"
            ) from error
        partial.rename(target)
        return target

    def _unpack(
        self, archive: Path, target: Path, step: str, is_tree: Callable[[Path], bool]
    ) -> None:
        """Unpack ``archive`` and move its source tree (at its top or one level down) to
        ``target``."""
        staging = self.root / f"unpack-{target.name}"
        staging.mkdir()
        # GNU tar picks the decompressor itself; ownership stays with us, not the archive's.
        self._run_step(
            step,
            ["tar", "-xf", str(archive), "-C", str(staging), "--no-same-owner"],
            timeout=1200,
        )
        candidates = [staging, *sorted(p for p in staging.iterdir() if p.is_dir())]
        tree = next((candidate for candidate in candidates if is_tree(candidate)), None)
        if tree is None:
            raise RuntimeBuildError(
                self.version, step, f"{archive} holds no source tree at its top or one level down"
            )
        tree.rename(target)
        shutil.rmtree(staging, ignore_errors=True)

    def _run_step(
        self,
        step: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float,
    ) -> None:
        self._step = step
        with open(self.log_path, "a") as log:
            log.write(f"\n=== {step}: {' '.join(argv)}\n")
        process = ManagedProcess(
            f"odoo {self.version} runtime", argv, self.log_path, env=_child_env(env), cwd=self.root
        )
        try:
            process.start().finish(timeout)
        except ComponentError as error:
            raise RuntimeBuildError(
                self.version,
                step,
                f"failed (full log: {self.log_path})",
                process.log_tail(),
            ) from error


def filter_requirements(text: str, excluded: Sequence[str]) -> str:
    """``requirements.txt`` without the lines of the ``excluded`` distributions.

    Names compare as pip compares them: case-insensitive, with ``-``, ``_`` and ``.`` alike.
    """

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    dropped = {canonical(name) for name in excluded}
    kept = []
    for line in text.splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match and canonical(match.group(1)) in dropped:
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def _import_check(modules: Sequence[str]) -> str:
    imports = "; ".join(f"import {module}" for module in modules)
    return f"{imports}; print('imported: {', '.join(modules)}')"


@contextlib.contextmanager
def _heartbeat(describe: Callable[[], str]) -> Iterator[None]:
    """A progress line on stderr every 30 s while the block runs, so a slow build is not
    mistaken for a hung one."""
    started = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(_HEARTBEAT_SECONDS):
            print(
                f"[odoo-runtime] still {describe()} ({time.monotonic() - started:.0f}s)",
                file=sys.stderr,
                flush=True,
            )

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextlib.contextmanager
def _exclusive_lock(path: Path, waiting_for: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block; say so while waiting for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[odoo-runtime] waiting for {waiting_for}", file=sys.stderr, flush=True)
            with _heartbeat(lambda: f"waiting for {waiting_for}"):
                fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- Debian packages and the bootstrap ----------------------------------------------------------

# command that must be present -> Debian package providing it. psycopg2 (unlike
# psycopg2-binary) is published as source only: it compiles against libpq, found through
# pg_config. The compiler also serves the few other sdists with C code (rjsmin); lxml,
# Pillow, gevent, reportlab and the rest come as wheels on Python 3.11, so their -dev
# packages are not needed.
_BUILD_COMMANDS = {"pg_config": "libpq-dev", "gcc": "gcc"}


def missing_build_packages() -> list[str]:
    """The Debian packages a runtime build needs that are not installed."""
    missing = [pkg for cmd, pkg in _BUILD_COMMANDS.items() if shutil.which(cmd) is None]
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        # Only Debian's own Python gets its headers from a package.
        if sys.base_prefix != "/usr":
            raise ToolMissingError(
                f"Python.h is missing from {include}: install the headers of {sys.base_prefix}"
            )
        missing.append(f"python{sys.version_info.major}.{sys.version_info.minor}-dev")
    return missing


def install_build_packages() -> None:
    """Install the missing Debian build packages with apt-get, or say what to install."""
    apt_install(missing_build_packages(), "building the Odoo runtimes", missing_build_packages)


def prepare_runtimes(versions: Sequence[str] = ODOO_VERSIONS) -> list[OdooRuntime]:
    """Install the build packages and build (or find cached) the runtime of each version.

    One at a time: each build already keeps a core busy, and the machines are small.
    """
    install_build_packages()
    return [OdooRuntime(version).ensure() for version in versions]


# -- databases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OdooDatabase:
    """A database Odoo uses, the login role owning it and its filestore folder."""

    version: str
    name: str
    role: str
    password: str = field(repr=False)
    host: str
    port: int
    data_dir: Path

    @property
    def dsn(self) -> str:
        """libpq connection string of the owning role, for tests that look inside."""
        return (
            f"host={self.host} port={self.port} user={self.role} "
            f"password={self.password} dbname={self.name}"
        )

    def odoo_options(self, runtime: OdooRuntime) -> dict[str, str | int | bool]:
        """The odoo.conf options that point ``runtime`` at this database and nothing else."""
        return {
            "db_host": self.host,
            "db_port": self.port,
            "db_user": self.role,
            "db_password": self.password,
            "db_name": self.name,
            "dbfilter": f"^{re.escape(self.name)}$",
            "list_db": False,
            "data_dir": str(self.data_dir),
            "addons_path": ",".join(str(path) for path in runtime.addons_paths),
        }


@dataclass(frozen=True)
class InitialisedTemplate:
    """A database initialised by ``odoo-bin -i``, to be copied per test."""

    database: OdooDatabase
    modules: tuple[str, ...]
    # The admin user's password: Odoo's own "admin" unless initialise_template set another.
    admin_password: str = field(repr=False)
    # Seconds per step: create_database, odoo_init, and set_admin_password when asked.
    timings: dict[str, float] = field(default_factory=dict)
    log_path: Path | None = None


def render_odoo_conf(options: Mapping[str, str | int | bool | Sequence[str]]) -> str:
    """An odoo.conf with one ``[options]`` section.

    Booleans become True/False and sequences comma-separated lists, as Odoo reads them. A
    line break in a value is refused: configparser would read what follows as more options.
    """
    lines = ["[options]"]
    for key, value in options.items():
        if isinstance(value, bool):
            text = "True" if value else "False"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            text = ",".join(value)
        if "\n" in text or "\r" in text or "\n" in key:
            raise ValueError(f"odoo.conf option {key!r} has a line break in its value")
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def write_odoo_conf(path: Path, options: Mapping[str, str | int | bool | Sequence[str]]) -> Path:
    """Write :func:`render_odoo_conf` to ``path``, readable by its owner only (it holds the
    database password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(render_odoo_conf(options))
    return path


def _server_address(admin_dsn: str) -> tuple[str, int]:
    parameters = conninfo_to_dict(admin_dsn)
    host = str(parameters.get("host") or parameters.get("hostaddr") or "127.0.0.1")
    return host, int(parameters.get("port") or 5432)


def _admin(admin_dsn: str) -> psycopg.Connection[Any]:
    # CREATE DATABASE cannot run inside a transaction.
    return psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10)


def create_tenant_database(
    admin_dsn: str, version: str, name: str, data_dir: Path, role: str | None = None
) -> OdooDatabase:
    """A login role and an empty database it owns, made as the operator makes a tenant's.

    The role has LOGIN and none of SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS,
    and a SCRAM-SHA-256 password; the database is UTF8 from template0 with the C collation,
    and PUBLIC loses its default rights on it. (The operator's ownership comments are left
    out: they name an OdooInstance, which a test database does not have.)
    """
    role = role or name
    password = secrets.token_urlsafe(24)
    attributes = sql.SQL(" ").join(
        sql.SQL(attribute.keyword(wanted)) for attribute, wanted in TENANT_ROLE_ATTRIBUTES.items()
    )
    with _admin(admin_dsn) as connection:
        connection.execute(
            sql.SQL("CREATE ROLE {} WITH {} PASSWORD {}").format(
                sql.Identifier(role), attributes, sql.Literal(scram_sha256_verifier(password))
            )
        )
        connection.execute(
            sql.SQL(
                "CREATE DATABASE {} WITH OWNER {} ENCODING {} TEMPLATE template0 "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name), sql.Identifier(role), sql.Literal(DATABASE_ENCODING))
        )
        connection.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name))
        )
    host, port = _server_address(admin_dsn)
    data_dir.mkdir(parents=True, exist_ok=True)
    return OdooDatabase(version, name, role, password, host, port, data_dir)


def run_odoo(
    runtime: OdooRuntime,
    database: OdooDatabase,
    args: Sequence[str],
    workdir: Path,
    *,
    label: str,
    timeout: float = 1800.0,
) -> float:
    """Run one ``odoo-bin ... --stop-after-init`` command on ``database`` as its role.

    The odoo.conf and the log go into ``workdir``; returns the seconds it took. A failure
    raises :class:`ComponentError` with the tail of Odoo's log.
    """
    conf = write_odoo_conf(workdir / f"{label}.conf", database.odoo_options(runtime))
    argv = runtime.command(
        "-c", str(conf), "-d", database.name, *args, "--stop-after-init", "--no-http"
    )
    process = ManagedProcess(
        f"odoo {runtime.version} {label}",
        argv,
        workdir / f"{label}.log",
        env=_child_env(),
        cwd=workdir,
    )
    started = time.monotonic()
    process.start().finish(timeout)
    return time.monotonic() - started


def install_modules(
    runtime: OdooRuntime,
    database: OdooDatabase,
    modules: Sequence[str],
    workdir: Path,
    *,
    timeout: float = 1800.0,
) -> float:
    """Install ``modules`` (without demo data) into an initialised database; return seconds."""
    return run_odoo(
        runtime,
        database,
        ["-i", ",".join(modules), *runtime.without_demo_args],
        workdir,
        label=f"install-{'-'.join(modules)}"[:80],
        timeout=timeout,
    )


# Sets the admin user's password through the ORM, which hashes it as Odoo does on a login
# form. Run by the runtime's interpreter with the source tree first on sys.path; the
# password comes in the environment, never on a command line.
_ADMIN_LOGIN_SCRIPT = """
import os, sys
import odoo
from odoo.modules.registry import Registry
odoo.tools.config.parse_config(["-c", sys.argv[1], "-d", sys.argv[2]])
registry = Registry(sys.argv[2])
with registry.cursor() as cr:
    env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
    env.ref("base.user_admin").password = os.environ["ODOO_DEVSTACK_ADMIN_PASSWORD"]
print("admin password set")
"""


def set_admin_password(
    runtime: OdooRuntime, database: OdooDatabase, password: str, workdir: Path
) -> float:
    """Give Odoo's ``admin`` user (``base.user_admin``) ``password``; return seconds."""
    conf = write_odoo_conf(workdir / "set-admin-password.conf", database.odoo_options(runtime))
    script = workdir / "set_admin_password.py"
    script.write_text(_ADMIN_LOGIN_SCRIPT)
    process = ManagedProcess(
        f"odoo {runtime.version} set-admin-password",
        [str(runtime.python), str(script), str(conf), database.name],
        workdir / "set-admin-password.log",
        env=_child_env(
            {"PYTHONPATH": str(runtime.source_dir), "ODOO_DEVSTACK_ADMIN_PASSWORD": password}
        ),
        cwd=workdir,
    )
    started = time.monotonic()
    process.start().finish(600)
    return time.monotonic() - started


def initialise_template(
    runtime: OdooRuntime,
    admin_dsn: str,
    template_name: str,
    modules: Sequence[str],
    admin_password: str | None = None,
    *,
    workdir: Path | None = None,
    with_demo: bool = False,
) -> InitialisedTemplate:
    """Make ``template_name`` as the operator makes a tenant database, then let Odoo
    initialise it with ``modules`` and no demo data, as its own role.

    The command is ``odoo-bin -c <conf> -d <db> -i <modules> <without demo> --stop-after-init
    --no-http``. Odoo then leaves an ``admin`` user whose password is ``admin``; with
    ``admin_password`` that password is replaced afterwards. The filestore is in
    ``workdir/data`` (a new temporary folder by default); copy the template with
    :func:`copy_database`. ``timings`` has the seconds of each step. ``with_demo`` leaves
    out the demo flag, to show what Odoo does by default (it loads demo data).
    """
    if not modules:
        raise ValueError("initialise_template needs at least one module (base, say)")
    runtime.ensure()
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"odoo-template-{template_name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.monotonic()
    database = create_tenant_database(admin_dsn, runtime.version, template_name, workdir / "data")
    timings["create_database"] = time.monotonic() - started
    demo_args = [] if with_demo else runtime.without_demo_args
    timings["odoo_init"] = run_odoo(
        runtime,
        database,
        ["-i", ",".join(modules), *demo_args],
        workdir,
        label="init",
    )
    if admin_password is not None:
        timings["set_admin_password"] = set_admin_password(
            runtime, database, admin_password, workdir
        )
    return InitialisedTemplate(
        database=database,
        modules=tuple(modules),
        admin_password=admin_password if admin_password is not None else DEFAULT_ADMIN_PASSWORD,
        timings=timings,
        log_path=workdir / "init.log",
    )


def copy_database(
    admin_dsn: str, template: InitialisedTemplate, name: str, data_dir: Path
) -> OdooDatabase:
    """Copy ``template`` to a new database ``name`` owned by the template's role.

    Copies the filestore too (``data_dir/filestore/<name>``): Odoo keeps attachments there,
    compiled assets among them. The template must have no session open, which is the case
    once ``initialise_template`` returned.
    """
    source = template.database
    with _admin(admin_dsn) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {} WITH TEMPLATE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(source.name), sql.Identifier(source.role)
            )
        )
        # A copy gets the default rights, not the template's: take PUBLIC's away again.
        connection.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name))
        )
    filestore = source.data_dir / "filestore" / source.name
    if filestore.is_dir():
        shutil.copytree(filestore, data_dir / "filestore" / name)
    data_dir.mkdir(parents=True, exist_ok=True)
    return OdooDatabase(
        source.version, name, source.role, source.password, source.host, source.port, data_dir
    )


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name`` if it exists, ending its sessions first."""
    with _admin(admin_dsn) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def drop_template(admin_dsn: str, template: InitialisedTemplate) -> None:
    """Drop a template database and its role (drop every copy first: the role owns them)."""
    drop_database(admin_dsn, template.database.name)
    with _admin(admin_dsn) as connection:
        connection.execute(
            sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(template.database.role))
        )


# -- serving ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    """A status code and body from the served Odoo."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class OdooServer:
    """``odoo-bin -c <conf>`` serving HTTP on loopback, as a child that cannot outlive us.

    The caller renders the odoo.conf (with ``http_interface = 127.0.0.1`` and ``http_port``
    set to ``http_port``); :meth:`start` waits until ``/web/health`` answers 200.
    """

    def __init__(
        self,
        runtime: OdooRuntime,
        config_path: Path,
        http_port: int,
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Describe the server; nothing starts until :meth:`start`."""
        self.runtime = runtime
        self.config_path = config_path
        self.host = host
        self.http_port = http_port
        self.log_path = log_path or config_path.with_suffix(".log")
        self.env = dict(env or {})
        self.process: ManagedProcess | None = None
        self.startup_seconds = 0.0

    def start(self, timeout: float = 180.0) -> OdooServer:
        """Start Odoo and wait for ``GET /web/health`` to answer 200."""
        self.process = ManagedProcess(
            f"odoo {self.runtime.version} server",
            self.runtime.command("-c", str(self.config_path)),
            self.log_path,
            env=_child_env(self.env),
            cwd=self.config_path.parent,
        ).start()
        self.startup_seconds = self.process.wait_until(
            lambda: self.get("/web/health").status == 200, timeout, "answering /web/health", 0.5
        )
        return self

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (Odoo finishes its requests and exits), SIGKILL after ``grace`` seconds;
        return the exit code."""
        if self.process is None:
            return None
        self.process.stop(grace=grace)
        return self.process.exit_code()

    def __enter__(self) -> OdooServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self) -> str:
        """The end of the server's log, for assertion messages."""
        return self.process.log_tail() if self.process else ""

    def _request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpAnswer:
        # http.client rather than urllib: no proxy settings from the environment apply to a
        # loopback test server.
        connection = http.client.HTTPConnection(self.host, self.http_port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=dict(headers))
            response = connection.getresponse()
            return HttpAnswer(response.status, response.read())
        finally:
            connection.close()

    def get(self, path: str) -> HttpAnswer:
        """``GET path``."""
        return self._request("GET", path, None, {})

    def json_rpc(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON-RPC 2.0 ``call`` to ``path``; the whole response (``result`` or ``error``)."""
        payload = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": dict(params)}
        answer = self._request(
            "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        if answer.status != 200:
            raise ComponentError(
                f"odoo {self.runtime.version} server",
                f"POST {path} answered {answer.status}: {answer.body[:500]!r}",
                self.log_tail(),
            )
        response: dict[str, Any] = answer.json()
        return response

    def authenticate(self, database: str, login: str, password: str) -> dict[str, Any]:
        """``/web/session/authenticate``: the JSON-RPC response, with ``result`` on success."""
        return self.json_rpc(
            "/web/session/authenticate", {"db": database, "login": login, "password": password}
        )
