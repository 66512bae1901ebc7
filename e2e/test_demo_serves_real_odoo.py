"""`make demo` serves a real Odoo that a person signs in to with a browser.

The demo runs as a person runs it (``odoo-devstack demo``, waiting for Ctrl-C). The test
reads the login page's address and the command that reads the admin password from what the
demo prints, and signs in through that page in headless Chromium, driven over the Chrome
DevTools Protocol: the browser loads the form, the test fills in the login and the password and
clicks its button, as a person would, and the screenshot is of the page Odoo answers with. The
session cookie the browser then holds is asked back from Odoo (``get_session_info``), so the
page is known to be the signed-in admin's, not a login page that merely looks different.

Chromium is Debian's, installed by ``odoo-devstack bootstrap`` (which the demo runs first):
when apt cannot install it the demo fails, and so does this test, with apt's output.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import websocket
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from odoo_devstack.demo import (
    CA_PREFIX,
    EXPORT_PREFIX,
    LOGIN_PAGE_PREFIX,
    PASSWORD_COMMAND_PREFIX,
    RESOLVE_PREFIX,
    WAITING_LINE,
)

REPO = Path(__file__).parents[1]
CHROMIUM = "/usr/bin/chromium"
# Bootstrap, the local stack, the real node and a real Odoo's first start on the shared
# 2-core development machine.
DEMO_START_SECONDS = 1200.0
DEMO_STOP_SECONDS = 120.0
SIGN_IN_SECONDS = 180.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WINDOW = (1280, 800)


def _tail(path: Path, characters: int = 4000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else ""


@pytest.fixture
def running_demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """The demo as a person runs it, up; yields the process and what it printed to use it.

    Both outputs go to files, read while the demo runs: a pipe nobody drains would stop it.
    """
    stdout_path, stderr_path = tmp_path / "demo.stdout", tmp_path / "demo.stderr"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "odoo_devstack.cli", "demo", "--repo", str(REPO)],
            stdout=stdout,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + DEMO_START_SECONDS
        while WAITING_LINE not in stdout_path.read_text(errors="replace"):
            if demo.poll() is not None:
                pytest.fail(
                    f"the demo exited ({demo.returncode}) before serving; its stderr:\n"
                    f"{_tail(stderr_path)}\nits stdout:\n{_tail(stdout_path)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the demo did not come up within {DEMO_START_SECONDS:.0f}s; its stdout:\n"
                    f"{_tail(stdout_path)}"
                )
            time.sleep(2.0)
        printed: dict[str, str] = {}
        for line in stdout_path.read_text().splitlines():
            for key, prefix in (
                ("login", LOGIN_PAGE_PREFIX),
                ("password", PASSWORD_COMMAND_PREFIX),
                ("ca", CA_PREFIX),
                ("resolve", RESOLVE_PREFIX),
                ("export", EXPORT_PREFIX),
            ):
                if line.startswith(prefix):
                    printed[key] = line[len(prefix) :].strip()
        assert set(printed) == {"login", "password", "ca", "resolve", "export"}, _tail(stdout_path)
        printed["transcript"] = stdout_path.read_text()
        yield demo, printed
    finally:
        if demo.poll() is None:
            # Ctrl-C, as the demo asks; the test checks the clean exit, this only cleans up.
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(DEMO_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()


class DevTools:
    """One page of a headless Chromium, driven over the Chrome DevTools Protocol."""

    def __init__(self, profile: Path, log_path: Path, extra: tuple[str, ...] = ()) -> None:
        profile.mkdir()
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed by close()
        self.browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                # Port 0: the browser picks a free one and writes it to DevToolsActivePort.
                "--remote-debugging-port=0",
                *extra,
                "about:blank",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not active_port.exists() or not active_port.read_text().strip():
            if self.browser.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"Chromium did not open its DevTools port: {_tail(log_path)}")
            time.sleep(0.2)
        port = active_port.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page = next(target for target in targets if target["type"] == "page")
        # Without an Origin header: Chromium refuses DevTools clients from other origins.
        self._socket = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result, skipping the events that come between."""
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next_id:
                assert "error" not in message, f"{method}: {message['error']}"
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = SIGN_IN_SECONDS) -> Any:
        """Poll a JavaScript expression until it is truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                location = self.evaluate("location.href")
                body = self.evaluate("document.body ? document.body.innerText.slice(0, 500) : ''")
                pytest.fail(f"timed out waiting for {what}; at {location}: {body!r}")
            time.sleep(0.5)

    def close(self) -> None:
        """Stop the browser."""
        if hasattr(self, "_socket"):
            self._socket.close()
        if self.browser.poll() is None:
            self.browser.terminate()
            try:
                self.browser.wait(30)
            except subprocess.TimeoutExpired:
                self.browser.kill()
                self.browser.wait()
        self._log.close()


class Ingress:
    """The tenant's host on the demo's Traefik: names resolved to this machine, the served
    certificate checked against the CA the demo printed."""

    def __init__(self, login_url: str, ca_file: str) -> None:
        parts = urlsplit(login_url)
        assert parts.scheme == "https", login_url
        assert parts.hostname is not None
        assert parts.port is not None
        self.host, self.port = parts.hostname, parts.port
        self.context = ssl.create_default_context(cafile=ca_file)

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """One request through Traefik; its status and body."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        tls = self.context.wrap_socket(raw, server_hostname=self.host)
        connection = http.client.HTTPConnection(self.host)
        connection.sock = tls
        try:
            connection.request(method, path, body=body, headers={"Host": self.host, **headers})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def spki_sha256(self) -> str:
        """The base64 SHA-256 of the served certificate's public key, the form Chromium's
        ``--ignore-certificate-errors-spki-list`` takes: the browser then trusts exactly the
        certificate this side checked against the CA."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        with self.context.wrap_socket(raw, server_hostname=self.host) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        key = x509.load_der_x509_certificate(der).public_key()
        spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _session_info(ingress: Ingress, session_id: str) -> dict[str, Any]:
    """Odoo's own account of a session cookie: who it is signed in as, to which database."""
    status, body = ingress.request(
        "POST",
        "/web/session/get_session_info",
        json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {}}).encode(),
        {"Content-Type": "application/json", "Cookie": f"session_id={session_id}"},
    )
    assert status == 200, status
    response: dict[str, Any] = json.loads(body)
    assert response.get("error") is None, response["error"]
    return dict(response["result"])


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, which the format puts first."""
    assert data.startswith(PNG_SIGNATURE), data[:16]
    assert data[12:16] == b"IHDR", data[8:32]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# Longer than the suite's default: the demo bootstraps and starts a real Odoo first.
@pytest.mark.timeout(DEMO_START_SECONDS + 2 * SIGN_IN_SECONDS + DEMO_STOP_SECONDS + 120)
@pytest.mark.skipif(
    bool(os.environ.get("ODOO_OPERATOR_TEST_KUBECONFIG")),
    reason="the demo starts its own local stack; it is not a scenario for a foreign cluster",
)
def test_the_demo_tenant_signs_admin_in_through_its_login_page_in_a_browser(
    running_demo: tuple[subprocess.Popen[bytes], dict[str, str]], tmp_path: Path
) -> None:
    demo, printed = running_demo
    # The demo ran each command it suggests (it stops if one fails), and shows what each said.
    transcript = printed["transcript"]
    for shown in ("$ kubectl get odoo\n", "$ kubectl describe odoo acme\n", "$ curl --resolve"):
        assert shown in transcript, transcript[-3000:]
    assert re.search(r"Normal\s+Ready\s+.*the tenant is ready", transcript), transcript[-3000:]
    login_url = printed["login"]
    assert urlsplit(login_url).path == "/web/login", login_url
    base = login_url.removesuffix("/web/login")
    # Through the demo's Traefik, with the tenant's certificate from the printed CA.
    ingress = Ingress(login_url, printed["ca"])
    assert f"--host-resolver-rules='MAP {ingress.host} 127.0.0.1'" in printed["resolve"]
    # The printed commands, run as printed: what a person pastes into a shell.
    read = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"export {printed['export']}; {printed['password']}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    password = read.stdout
    assert len(password) >= 12, "the generated admin password is missing or short"

    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing although the demo's bootstrap installs Debian's chromium; "
        f"found on PATH: {shutil.which('chromium')}"
    )
    browser = DevTools(
        tmp_path / "chromium-profile",
        tmp_path / "chromium.log",
        (
            f"--host-resolver-rules=MAP {ingress.host} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={ingress.spki_sha256()}",
        ),
    )
    try:
        # The page's own size: a headless window's viewport is the window less its frame.
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=WINDOW[0],
            height=WINDOW[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call("Page.enable")
        browser.call("Network.enable")
        browser.call("Page.navigate", url=login_url)
        browser.wait_for(
            "document.readyState === 'complete' && !!document.querySelector('form input#password')",
            "the login form",
        )
        submitted = browser.evaluate(
            "(() => {"
            " const form = document.querySelector('input#password').form;"
            f" document.querySelector('input#login').value = {json.dumps('admin')};"
            f" document.querySelector('input#password').value = {json.dumps(password)};"
            # Clicked, as a person does: form.requestSubmit() posted nothing here.
            " form.querySelector('button[type=submit]').click();"
            " return true; })()"
        )
        assert submitted is True
        # The web client: navigated away from the login page, and its navigation bar drawn.
        landed = browser.wait_for(
            "document.readyState === 'complete'"
            " && !location.pathname.startsWith('/web/login')"
            " && !!document.querySelector('.o_main_navbar')"
            " && !!document.querySelector('.o_action_manager .o_view_controller')"
            " && location.pathname",
            "the signed-in web client",
        )
        # The view's records arrive after its frame: on a loaded machine the first frames
        # show an empty action, so give the page a moment to paint them.
        time.sleep(3)
        screenshot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        cookies = browser.call("Network.getCookies", urls=[base])["cookies"]
    finally:
        browser.close()
    shot = tmp_path / "acme-signed-in.png"
    shot.write_bytes(screenshot)

    assert landed.startswith(("/odoo", "/web")), landed
    assert _png_size(shot.read_bytes()) == WINDOW
    # A blank or error page compresses to a few kilobytes; the web client's does not.
    assert shot.stat().st_size > 20_000, f"{shot} is only {shot.stat().st_size} bytes"
    session_id = next(cookie["value"] for cookie in cookies if cookie["name"] == "session_id")
    info = _session_info(ingress, session_id)
    assert info["uid"] == 2, info  # base.user_admin
    assert info["username"] == "admin", info
    assert info["db"] == "odoo_acme", info

    # Ctrl-C, as the demo says, stops it cleanly.
    demo.send_signal(signal.SIGINT)
    assert demo.wait(DEMO_STOP_SECONDS) == 0
