"""Serving certificates for the webhook, made with ``cryptography`` (no kopf[dev]/oscrypto).

``ensure_serving_files`` leaves ``tls.crt``, ``tls.key`` and ``ca.crt`` in a folder, the same
layout a Kubernetes TLS Secret mounts, so the server reads files the same way in dev and in a
cluster. Files are replaced atomically: a reader never sees half a certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class ServingFiles:
    cert: Path
    key: Path
    ca: Path

    @classmethod
    def in_dir(cls, cert_dir: Path) -> ServingFiles:
        return cls(cert_dir / CERT_FILE, cert_dir / KEY_FILE, cert_dir / CA_FILE)

    def exist(self) -> bool:
        return self.cert.is_file() and self.key.is_file() and self.ca.is_file()


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def generate_serving_files(cert_dir: Path, hosts: Sequence[str]) -> ServingFiles:
    """A fresh CA and a serving certificate for ``hosts`` signed by it, written to ``cert_dir``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("computegate-webhook-ca"))
        .issuer_name(_name("computegate-webhook-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_dir.mkdir(parents=True, exist_ok=True)
    files = ServingFiles.in_dir(cert_dir)
    pem = serialization.Encoding.PEM
    # Key first, then the certificate: a reloader that sees the new certificate finds its key.
    _write_atomically(
        files.key,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    _write_atomically(files.ca, ca_cert.public_bytes(pem))
    _write_atomically(files.cert, cert.public_bytes(pem))
    return files


def ensure_serving_files(cert_dir: Path, hosts: Sequence[str]) -> ServingFiles:
    """Reuse the files in ``cert_dir`` if all three exist, otherwise generate them."""
    files = ServingFiles.in_dir(cert_dir)
    return files if files.exist() else generate_serving_files(cert_dir, hosts)
