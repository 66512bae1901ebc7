"""The local PKI issues certificates the apiserver and its clients accept."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from odoo_devstack.pki import LocalPKI


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_serving_certificate_names_its_hosts_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    pki = LocalPKI(tmp_path)
    pair = pki.issue(
        "apiserver", "kube-apiserver", server_names=("kubernetes",), server_ips=("127.0.0.1",)
    )
    cert, ca = _load(pair.cert), _load(pki.ca.cert)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kubernetes"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages


def test_a_client_certificate_carries_the_group_as_organization(tmp_path: Path) -> None:
    pki = LocalPKI(tmp_path)
    pair = pki.issue("admin", "devcluster-admin", organization="system:masters")
    cert = _load(pair.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_private_keys_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    pki = LocalPKI(tmp_path)
    pair = pki.service_account_keys()
    assert pair.key.stat().st_mode & 0o777 == 0o600
    assert pki.ca.key.stat().st_mode & 0o777 == 0o600
