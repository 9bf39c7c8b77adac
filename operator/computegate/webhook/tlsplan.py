"""What the webhook's TLS Secret should hold at a given instant: the CA, the serving certificate,
a CA being introduced and the CAs being retired, issued and rotated so that no TLS handshake
between the API server and any replica ever breaks (the protocol: ``selftls``, which reads and
writes the Secret, the files and the caBundles).

Pure, and tested with a clock: certificates in, certificates out; no Kubernetes client, no files.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from computegate import pki

__all__ = ["Lifetimes", "TlsMaterial", "plan_material", "service_hosts"]

logger = logging.getLogger("computegate.selftls")

_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Lifetimes:
    """How long certificates live and when they are replaced."""

    ca_validity: timedelta = timedelta(days=5 * 365)
    ca_renew_before: timedelta = timedelta(days=365)
    ca_publish_grace: timedelta = timedelta(minutes=10)
    serving_validity: timedelta = timedelta(days=90)
    serving_renew_before: timedelta = timedelta(days=30)


def service_hosts(service_name: str, namespace: str) -> tuple[str, ...]:
    """The names the API server may dial the Service by."""
    return (
        service_name,
        f"{service_name}.{namespace}",
        f"{service_name}.{namespace}.svc",
        f"{service_name}.{namespace}.svc.cluster.local",
    )


# -- certificates -------------------------------------------------------------------------------


def _new_ca(now: datetime, lifetimes: Lifetimes) -> tuple[bytes, bytes]:
    cert, key = pki.new_ca(
        f"computegate-webhook-ca-{now.strftime('%Y%m%d%H%M%S')}",
        not_before=now - _CLOCK_SKEW,
        not_after=now + lifetimes.ca_validity,
    )
    return pki.cert_pem(cert), pki.key_pem(key)


def _new_serving(
    ca_cert_pem: bytes, ca_key_pem: bytes, hosts: Sequence[str], now: datetime, lifetimes: Lifetimes
) -> tuple[bytes, bytes]:
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    cert, key = pki.issue(
        ca_cert,
        pki.load_ec_key(ca_key_pem),
        hosts[-2] if len(hosts) > 1 else hosts[0],
        not_before=now - _CLOCK_SKEW,
        not_after=min(now + lifetimes.serving_validity, ca_cert.not_valid_after_utc),
        hosts=hosts,
        server=True,
        key_encipherment=True,
    )
    return pki.cert_pem(cert), pki.key_pem(key)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _split_pems(data: bytes) -> list[bytes]:
    return [pki.cert_pem(cert) for cert in x509.load_pem_x509_certificates(data)] if data.strip() else []


# -- what the Secret holds ----------------------------------------------------------------------


@dataclass(frozen=True)
class TlsMaterial:
    """The Secret's contents, as PEM bytes."""

    ca_cert: bytes
    ca_key: bytes
    tls_cert: bytes
    tls_key: bytes
    next_ca_cert: bytes = b""
    next_ca_key: bytes = b""
    previous_ca_certs: tuple[bytes, ...] = field(default_factory=tuple)

    _KEYS = {
        "ca.crt": "ca_cert",
        "ca.key": "ca_key",
        "tls.crt": "tls_cert",
        "tls.key": "tls_key",
        "next-ca.crt": "next_ca_cert",
        "next-ca.key": "next_ca_key",
    }

    @classmethod
    def from_secret_data(cls, data: dict[str, str] | None) -> TlsMaterial | None:
        """From a Secret's base64 ``data``; None when a required key is missing."""
        decoded = {key: base64.b64decode(value) for key, value in (data or {}).items()}
        if not all(decoded.get(key) for key in ("ca.crt", "ca.key", "tls.crt", "tls.key")):
            return None
        return cls(
            **{attribute: decoded.get(key, b"") for key, attribute in cls._KEYS.items()},
            previous_ca_certs=tuple(_split_pems(decoded.get("previous-ca.crt", b""))),
        )

    def to_secret_data(self) -> dict[str, str]:
        values = {key: getattr(self, attribute) for key, attribute in self._KEYS.items()}
        values["previous-ca.crt"] = b"".join(self.previous_ca_certs)
        values["ca-bundle.crt"] = self.bundle()
        return {key: base64.b64encode(value).decode("ascii") for key, value in values.items() if value}

    def bundle(self, now: datetime | None = None) -> bytes:
        """Every CA the API server should trust: current, next, and still-valid previous ones."""
        now = now or datetime.now(UTC)
        trusted = [self.ca_cert]  # the signing CA, always (an expired one is replaced by planning)
        for pem in (self.next_ca_cert, *self.previous_ca_certs):
            if pem and pem not in trusted and pki.not_after(pem) > now:
                trusted.append(pem)
        return b"".join(trusted)


def plan_material(
    current: TlsMaterial | None,
    *,
    hosts: Sequence[str],
    now: datetime,
    lifetimes: Lifetimes = Lifetimes(),
    published_bundles: Sequence[bytes] = (),
) -> TlsMaterial | None:
    """What the Secret should hold at ``now``; None when ``current`` needs no change.

    ``published_bundles``: the caBundles now in the webhook configurations; a next CA is promoted
    to signing CA only when each of them already trusts it (and the publish grace has passed).
    """
    if current is None:
        return _fresh(hosts, now, lifetimes)
    try:
        ca = x509.load_pem_x509_certificate(current.ca_cert)
        serving = x509.load_pem_x509_certificate(current.tls_cert)
        pki.load_ec_key(current.ca_key)
        pki.load_ec_key(current.tls_key)
    except ValueError:
        logger.warning("the TLS Secret is unreadable; starting over with a new CA")
        return _fresh(hosts, now, lifetimes)
    if ca.not_valid_after_utc <= now:
        logger.warning("the webhook CA has expired; starting over with a new CA")
        return _fresh(hosts, now, lifetimes)
    if ca.not_valid_before_utc > now + _CLOCK_SKEW:
        logger.warning("the webhook CA is not valid yet (a clock far ahead made it); starting over")
        return _fresh(hosts, now, lifetimes)

    material = current
    # Retire previous CAs once they have expired.
    previous = tuple(pem for pem in material.previous_ca_certs if pki.not_after(pem) > now)
    if previous != material.previous_ca_certs:
        material = replace(material, previous_ca_certs=previous)
    # Introduce the next CA ahead of the current one's expiry.
    if not material.next_ca_cert and ca.not_valid_after_utc - now <= lifetimes.ca_renew_before:
        next_cert, next_key = _new_ca(now, lifetimes)
        material = replace(material, next_ca_cert=next_cert, next_ca_key=next_key)
    # Promote it once every webhook configuration trusts it and the grace has passed.
    if material.next_ca_cert:
        next_ca = x509.load_pem_x509_certificate(material.next_ca_cert)
        published = all(material.next_ca_cert in _split_pems(bundle) for bundle in published_bundles)
        old_enough = now >= next_ca.not_valid_before_utc + _CLOCK_SKEW + lifetimes.ca_publish_grace
        if published and old_enough:
            material = replace(
                material,
                ca_cert=material.next_ca_cert,
                ca_key=material.next_ca_key,
                next_ca_cert=b"",
                next_ca_key=b"",
                previous_ca_certs=(*material.previous_ca_certs, material.ca_cert),
            )
            ca = next_ca
    # Re-issue the serving certificate when it nears expiry, is not valid yet (a replica whose
    # clock runs ahead issued it), names other hosts, or is not the CA's.
    if (
        serving.not_valid_after_utc - now <= lifetimes.serving_renew_before
        or serving.not_valid_before_utc > now
        or pki.san_hosts(serving) != set(hosts)
        or not _signed_by(serving, ca)
    ):
        tls_cert, tls_key = _new_serving(material.ca_cert, material.ca_key, hosts, now, lifetimes)
        material = replace(material, tls_cert=tls_cert, tls_key=tls_key)
    return None if material == current else material


def _fresh(hosts: Sequence[str], now: datetime, lifetimes: Lifetimes) -> TlsMaterial:
    ca_cert, ca_key = _new_ca(now, lifetimes)
    tls_cert, tls_key = _new_serving(ca_cert, ca_key, hosts, now, lifetimes)
    return TlsMaterial(ca_cert=ca_cert, ca_key=ca_key, tls_cert=tls_cert, tls_key=tls_key)
