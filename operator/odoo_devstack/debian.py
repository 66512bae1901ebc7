"""Debian packages the local stack needs, installed with apt-get when this runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

from .binaries import ToolMissingError


def apt_install(missing: list[str], purpose: str, still_missing: Callable[[], list[str]]) -> None:
    """Install ``missing`` with apt-get, then ask ``still_missing`` whether it worked.

    Without apt-get or root, raises :class:`ToolMissingError` naming the packages and what
    they are for (``purpose``), so the person can install them by hand.
    """
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise ToolMissingError(
            f"{purpose} needs the packages {', '.join(missing)}; install them "
            "(apt-get as root was not available to do it automatically)"
        )
    print(f"[bootstrap] apt-get install {' '.join(missing)}", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([apt, "update", "-qq"], check=True, env=env, timeout=900)
    subprocess.run(
        [apt, "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
        timeout=1800,
    )
    left = still_missing()
    if left:
        raise ToolMissingError(f"still missing after apt-get: {', '.join(left)}")
