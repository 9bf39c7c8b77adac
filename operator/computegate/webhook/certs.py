"""Serving certificates for the webhook, made with ``cryptography`` (no kopf[dev]/oscrypto).

``ensure_serving_files`` leaves ``tls.crt``, ``tls.key`` and ``ca.crt`` in a folder, the same
layout a Kubernetes TLS Secret mounts, so the server reads files the same way in dev and in a
cluster. Files are replaced atomically: a reader never sees half a certificate.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from computegate import pki

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
_VALIDITY = datetime.timedelta(days=365)
_CLOCK_SKEW = datetime.timedelta(minutes=5)


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


def generate_serving_files(cert_dir: Path, hosts: Sequence[str]) -> ServingFiles:
    """A fresh CA and a serving certificate for ``hosts`` signed by it, written to ``cert_dir``."""
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - _CLOCK_SKEW, now + _VALIDITY
    ca_cert, ca_key = pki.new_ca(
        "computegate-webhook-ca", not_before=not_before, not_after=not_after, subject_key_identifier=False
    )
    cert, key = pki.issue(
        ca_cert,
        ca_key,
        hosts[0],
        not_before=not_before,
        not_after=not_after,
        hosts=hosts,
        server=True,
        key_usage=False,
        authority_key_identifier=False,
    )
    cert_dir.mkdir(parents=True, exist_ok=True)
    files = ServingFiles.in_dir(cert_dir)
    # Key first, then the certificate: a reloader that sees the new certificate finds its key.
    _write_atomically(files.key, pki.key_pem(key), 0o600)
    _write_atomically(files.ca, pki.cert_pem(ca_cert))
    _write_atomically(files.cert, pki.cert_pem(cert))
    return files


def ensure_serving_files(cert_dir: Path, hosts: Sequence[str]) -> ServingFiles:
    """Reuse the files in ``cert_dir`` if all three exist, otherwise generate them."""
    files = ServingFiles.in_dir(cert_dir)
    return files if files.exist() else generate_serving_files(cert_dir, hosts)
