"""TLS for the operator's admission webhook on the local stack.

The apiserver calls a webhook given by URL over HTTPS only, verifies its
certificate against the configuration's CA bundle and checks that a SAN
matches the URL's host. The local operator is reached on loopback, so its
serving certificate covers 127.0.0.1 and localhost, signed by a CA of its own
(separate from the control plane's, as a cluster's webhook CA would be).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from odoo_operator.model.config import (
    WEBHOOK_ADDR_ENV,
    WEBHOOK_CA_ENV,
    WEBHOOK_CERT_ENV,
    WEBHOOK_HOST_ENV,
    WEBHOOK_KEY_ENV,
    WEBHOOK_PORT_ENV,
)

from .pki import LocalPKI

LOOPBACK_HOST = "127.0.0.1"


@dataclass(frozen=True)
class WebhookCertificates:
    """PEM files of the webhook's serving certificate, its key and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


def issue_webhook_certificates(directory: Path) -> WebhookCertificates:
    """Create a CA in ``directory`` and a serving certificate for 127.0.0.1 and localhost."""
    pki = LocalPKI(directory)
    serving = pki.issue(
        "webhook",
        "odoo-operator-webhook",
        server_names=("localhost",),
        server_ips=(LOOPBACK_HOST,),
    )
    return WebhookCertificates(cert=serving.cert, key=serving.key, ca=pki.ca.cert)


def webhook_environment(certificates: WebhookCertificates, port: int) -> dict[str, str]:
    """The operator's environment for a webhook served on loopback at ``port``.

    It listens on loopback only: nothing but the local apiserver needs to reach it.
    """
    return {
        WEBHOOK_CERT_ENV: str(certificates.cert),
        WEBHOOK_KEY_ENV: str(certificates.key),
        WEBHOOK_CA_ENV: str(certificates.ca),
        WEBHOOK_HOST_ENV: LOOPBACK_HOST,
        WEBHOOK_PORT_ENV: str(port),
        WEBHOOK_ADDR_ENV: LOOPBACK_HOST,
    }
