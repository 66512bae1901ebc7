"""A component that cannot start says which one, and why, within its timeout."""

from __future__ import annotations

import socket
import time

import pytest

from odoo_devstack.processes import ComponentError
from odoo_devstack.services import RedisServer


def test_a_server_on_a_taken_port_fails_fast_naming_itself_and_the_cause() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = RedisServer(port=squatter.getsockname()[1])
        started = time.monotonic()
        try:
            with pytest.raises(ComponentError) as failure:
                server.start()
        finally:
            server.stop()
    assert time.monotonic() - started < 30
    assert failure.value.component == "redis"
    assert "Address already in use" in failure.value.log_tail
    assert server.password not in str(failure.value)
