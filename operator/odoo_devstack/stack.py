"""The whole local stack: control plane plus PostgreSQL, Redis and Azurite."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .controlplane import DEFAULT_NODES, PRE_CREATED_VOLUMES, ControlPlane, FakeNode
from .services import AzuriteServer, PostgresServer, RedisServer


@dataclass
class LocalStack:
    """Everything the operator talks to, on loopback. Use as a context manager."""

    nodes: tuple[FakeNode, ...] = DEFAULT_NODES
    workdir: Path | None = None
    volumes: int = PRE_CREATED_VOLUMES
    control_plane: ControlPlane = field(init=False)
    postgres: PostgresServer = field(init=False, default_factory=PostgresServer)
    redis: RedisServer = field(init=False, default_factory=RedisServer)
    azurite: AzuriteServer = field(init=False, default_factory=AzuriteServer)

    def __post_init__(self) -> None:
        self.control_plane = ControlPlane(
            workdir=self.workdir, nodes=self.nodes, volumes=self.volumes
        )

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        """Start the data services alongside the control plane."""
        started = time.monotonic()
        # Sequential on purpose: the parent-death signal that guards against orphans
        # fires when the *thread* that started a child exits, so no worker threads here.
        self.control_plane.start()
        for service in (self.postgres, self.redis, self.azurite):
            service.start()
        print(
            f"[devcluster] local stack ready in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
            flush=True,
        )
        return self

    def stop(self) -> None:
        """Stop everything that was started."""
        for service in (self.azurite, self.redis, self.postgres):
            service.stop()
        self.control_plane.stop()
