"""Start one container's process: the few steps a container runtime takes before exec.

The runner executes this file (``python -I -S launcher.py SPEC``) once per container start,
as root, in a new session whose stdout and stderr are the container's log file. It reads
the JSON spec the runner wrote (and deletes it: it holds the container's secrets), then:

1. asks the kernel to SIGKILL it if the runner dies (``PR_SET_PDEATHSIG``);
2. joins the pod's network namespace, and unshares a mount and a UTS namespace of its own,
   with every mount private so nothing it mounts reaches the host;
3. for a container that runs as another user than root, makes the folders its image
   runtime lives in reachable (an interpreter under ``/root``, see ``_open_the_way``);
4. makes every mount point exist without writing to the host's filesystem: where a
   ``mountPath`` (or the ``workingDir``) is missing, the deepest folder that exists gets an
   overlay whose upper layer is a tmpfs of this namespace (``/var/lib`` for
   ``/var/lib/odoo``), and the folder is created there;
5. bind-mounts each volume at its ``mountPath`` (read-only when asked), shallowest first;
   sources are opened before anything is mounted, so a volume mounted at ``/tmp`` cannot
   hide the sources of the others when the runner's state folder lives under ``/tmp``;
6. takes the pod's user, group and supplementary groups, then ``exec``s the command with
   the container's environment, looked up on the container's ``PATH``.

Anything that fails before ``exec`` is written to the spec's ``startError`` file and the
launcher exits with 128; the runner reports it as a ``StartError`` termination.

Only the standard library is imported: this runs before every container start.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import stat
import sys
from typing import Any, NoReturn

_PR_SET_PDEATHSIG = 1
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
START_ERROR_EXIT = 128

_libc = ctypes.CDLL(None, use_errno=True)


class LaunchError(Exception):
    """A step before exec failed; the message is what the pod's status will show."""


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise LaunchError(f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source or fstype} on {target}",
    )


def _depth(path: str) -> int:
    return len([part for part in path.split("/") if part])


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _deepest_existing(path: str) -> str:
    current = path
    while not os.path.lexists(current):
        current = os.path.dirname(current)
    return current


def _overlay_missing_folders(targets: list[str], scratch_fd: int) -> None:
    """Put an overlay on the deepest existing folder of each missing target, so the
    target can be created in this namespace's tmpfs instead of on the host's disk."""
    bases: set[str] = set()
    for target in targets:
        if not os.path.lexists(target):
            base = _deepest_existing(target)
            if base == "/":
                raise LaunchError(
                    f"cannot create {target}: the pod runner does not overlay the root folder; "
                    "use a mountPath below an existing folder (e.g. /var/lib, /etc, /opt)"
                )
            bases.add(base)
    # An overlay on /var covers /var/lib as well; overlaying both would hide the first.
    outermost = sorted(b for b in bases if not any(o != b and _inside(b, o) for o in bases))
    for index, base in enumerate(outermost):
        upper = f"/proc/self/fd/{scratch_fd}/upper{index}"
        work = f"/proc/self/fd/{scratch_fd}/work{index}"
        os.mkdir(upper)
        os.mkdir(work)
        _mount(
            "overlay",
            base,
            "overlay",
            0,
            f"lowerdir={base},upperdir={upper},workdir={work}",
        )


def _first_closed_folder(path: str) -> tuple[str, str] | None:
    """The first folder on the way to ``path`` that other users may not traverse, and the
    name of the next step below it; None when the way is open."""
    current = "/"
    for part in [p for p in path.split("/") if p]:
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return current, part
        current = os.path.join(current, part)
    return None


def _open_the_way(paths: list[str]) -> None:
    """Let an unprivileged container reach a runtime's files below a closed folder.

    An interpreter installed under /root (0700) is out of reach of the pod's user. The
    closed folder gets a tmpfs of this namespace (mode 0711) holding only the entries on
    the way, bind-mounted from the originals (opened before the tmpfs hides them): the
    container sees the runtime, and nothing else of that folder.
    """
    for _ in range(8):
        closed: dict[str, set[str]] = {}
        for path in paths:
            found = _first_closed_folder(path) if os.path.exists(path) else None
            if found is not None:
                closed.setdefault(found[0], set()).add(found[1])
        if not closed:
            return
        for folder, names in sorted(closed.items()):
            descriptors = {name: os.open(os.path.join(folder, name), os.O_PATH) for name in names}
            _mount("tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0711")
            for name, fd in descriptors.items():
                source = f"/proc/self/fd/{fd}"
                target = os.path.join(folder, name)
                _make_mount_point(target, stat.S_ISDIR(os.stat(source).st_mode))
                _mount(source, target, None, _MS_BIND | _MS_REC)
                os.close(fd)
    raise LaunchError(f"cannot open the way to {paths} for the container's user")


def _make_mount_point(target: str, is_dir: bool) -> None:
    if os.path.lexists(target):
        return
    try:
        if is_dir:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "a"):
                pass
    except OSError as exc:
        raise LaunchError(f"cannot create mount point {target}: {exc.strerror}") from exc


def prepare(spec: dict[str, Any]) -> None:
    """Every step up to (not including) exec; see the module documentation."""
    mounts: list[dict[str, Any]] = spec["mounts"]
    netns_fd = os.open(spec["netns"], os.O_RDONLY)
    _check(_libc.setns(netns_fd, _CLONE_NEWNET), f"join network namespace {spec['netns']}")
    os.close(netns_fd)
    _check(_libc.unshare(_CLONE_NEWNS | _CLONE_NEWUTS), "unshare mount and UTS namespaces")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # Opened before any mount (later mounts may hide the paths, see the module documentation)
    # and after unshare: a bind mount's source must belong to this mount namespace.
    source_fds = [os.open(m["source"], os.O_PATH) for m in mounts]
    host_paths = [os.path.realpath(p) for p in spec.get("hostPaths") or []]
    host_fds = {path: os.open(path, os.O_PATH) for path in host_paths if os.path.isdir(path)}
    socket.sethostname(spec["hostname"])
    _mount("tmpfs", spec["scratch"], "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0700")
    scratch_fd = os.open(spec["scratch"], os.O_PATH)

    if spec.get("uid") not in (None, 0):
        _open_the_way(host_paths)

    targets = [os.path.realpath(m["target"]) for m in mounts]
    working_dir = os.path.realpath(spec["workingDir"])
    # Targets inside another mount's target are created inside that volume, not overlaid.
    own_targets = [
        t for t in [*targets, working_dir] if not any(o != t and _inside(t, o) for o in targets)
    ]
    _overlay_missing_folders(own_targets, scratch_fd)

    for index in sorted(range(len(mounts)), key=lambda i: _depth(targets[i])):
        mount, target, fd = mounts[index], targets[index], source_fds[index]
        source = f"/proc/self/fd/{fd}"
        _make_mount_point(target, stat.S_ISDIR(os.stat(source).st_mode))
        _mount(source, target, None, _MS_BIND | _MS_REC)
        if mount.get("readOnly"):
            _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
    # A runtime's folder below a volume's mount point (the project's virtualenv in a checkout
    # under /tmp, where Jobs mount an emptyDir) would be hidden by the volume: it is put back
    # at its own path, inside the volume of this pod only.
    for path, fd in host_fds.items():
        if any(path != target and _inside(path, target) for target in targets):
            _make_mount_point(path, True)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
    for fd in [*source_fds, *host_fds.values(), scratch_fd]:
        os.close(fd)

    _make_mount_point(working_dir, True)
    os.chdir(working_dir)
    if spec.get("gid") is not None or spec.get("uid") is not None:
        os.setgroups(spec.get("groups") or [])
    if spec.get("gid") is not None:
        os.setgid(spec["gid"])
    if spec.get("uid") is not None:
        os.setuid(spec["uid"])


def _die_with_runner(runner_pid: int) -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The runner may have died between our fork and the prctl: then nobody would kill us.
    if os.getppid() != runner_pid:
        os._exit(START_ERROR_EXIT)


def main(argv: list[str]) -> None:
    """Read the spec, prepare the namespaces and mounts, exec the container's command."""
    with open(argv[1]) as handle:
        spec: dict[str, Any] = json.load(handle)
    os.unlink(argv[1])
    error_fd = os.open(spec["startError"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    _die_with_runner(spec["runnerPid"])
    command: list[str] = spec["argv"]
    try:
        if not command:
            raise LaunchError("no command: the container sets none and its image has none")
        prepare(spec)
        # setuid cleared the parent-death signal; set it again for the container's process.
        _die_with_runner(spec["runnerPid"])
    except (LaunchError, OSError) as exc:
        _fail(error_fd, str(exc))
    try:
        # error_fd is close-on-exec (Python opens files non-inheritable): a successful exec
        # leaves it empty, which is how the runner tells a start from a start error.
        os.execvpe(command[0], command, spec["env"])  # noqa: S606 - the container's command
    except FileNotFoundError:
        _fail(error_fd, f'exec: "{command[0]}": executable file not found in $PATH')
    except OSError as exc:
        _fail(error_fd, f'exec: "{command[0]}": {exc.strerror}')


def _fail(error_fd: int, message: str) -> NoReturn:
    os.write(error_fd, message.encode())
    os.close(error_fd)
    print(f"pod runner: cannot start the container: {message}", file=sys.stderr, flush=True)
    os._exit(START_ERROR_EXIT)


if __name__ == "__main__":
    main(sys.argv)
