"""The dev cluster's certificates: one CA, serving and client certificates, service-account keys."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from computegate import pki

__all__ = ["CertificateAuthority", "KeyPair", "write_private", "write_service_account_keys"]

_VALIDITY = timedelta(days=365)
_CLOCK_SKEW = timedelta(hours=1)


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` readable by the owner only (keys, kubeconfigs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: Path, key_path: Path) -> tuple[Path, Path]:
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(self.cert_pem)
        write_private(key_path, self.key_pem)
        return cert_path, key_path


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA (ECDSA P-256) that issues every certificate of one dev cluster."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, common_name: str = "computegate-dev-ca") -> CertificateAuthority:
        now = datetime.now(UTC)
        cert, key = pki.new_ca(common_name, not_before=now - _CLOCK_SKEW, not_after=now + _VALIDITY)
        return cls(cert=cert, key=key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            key = pki.load_ec_key(key_path.read_bytes())
        except ValueError as error:
            raise ValueError(f"{key_path}: {error}") from error
        return cls(cert=cert, key=key)

    @property
    def cert_pem(self) -> bytes:
        return pki.cert_pem(self.cert)

    def write(self, cert_path: Path, key_path: Path) -> tuple[Path, Path]:
        return KeyPair(self.cert_pem, pki.key_pem(self.key)).write(cert_path, key_path)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        hosts: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> KeyPair:
        """A leaf certificate. Kubernetes reads a client's user from CN and its groups from O.

        ``hosts`` become subjectAltNames (IP addresses or DNS names); a serving certificate
        needs the address its clients dial (``127.0.0.1`` for everything in the dev cluster).
        """
        now = datetime.now(UTC)
        cert, key = pki.issue(
            self.cert,
            self.key,
            common_name,
            not_before=now - _CLOCK_SKEW,
            not_after=now + _VALIDITY,
            organizations=organizations,
            hosts=hosts,
            server=server,
            client=client,
        )
        return KeyPair(pki.cert_pem(cert), pki.key_pem(key))


def write_service_account_keys(private_path: Path, public_path: Path) -> tuple[Path, Path]:
    """An RSA key pair with which the API server signs and verifies service-account tokens."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(private_path, pki.key_pem(key))
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path
