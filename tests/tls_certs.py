"""Certificates for the TLS tests, made fresh by each test run: a CA, a
server certificate for 127.0.0.1 and localhost, client certificates
signed by that CA, and a second CA that nobody trusts. PEM files."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    cert: Path  # the certificate (and its chain up to, not including, the CA)
    key: Path
    both: Path  # key then certificate: a PEM keystore


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pybroker tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts))
    return path


class Authority:
    def __init__(self, folder: Path, name: str):
        self.folder = folder
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.path = _write(folder / f"{name}.pem", self.pem)

    def issue(self, cn: str, server: bool, password: bytes | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        encryption = (serialization.BestAvailableEncryption(password) if password
                      else serialization.NoEncryption())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        base = self.folder / cn
        return Issued(_write(base.with_suffix(".crt"), cert), _write(base.with_suffix(".key"), key_pem),
                      _write(base.with_suffix(".both.pem"), key_pem, cert))


@dataclass
class Certs:
    ca: Authority
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from a CA nobody trusts
    encrypted_server: Issued  # its key encrypted with ``password``
    password: str = "keystore-secret"


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    ca = Authority(folder, "test-ca")
    other = Authority(folder, "other-ca")
    return Certs(
        ca=ca,
        server=ca.issue("broker", server=True),
        client=ca.issue("alice", server=False),
        stranger=other.issue("mallory", server=False),
        encrypted_server=ca.issue("broker-encrypted", server=True, password=b"keystore-secret"),
    )
