"""X.509 for the dev cluster and the webhook: ECDSA P-256 CAs and the certificates they sign.

Pure functions over ``cryptography`` objects and PEM bytes: no files, no clock (callers pass
the validity window), no Kubernetes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "cert_pem",
    "issue",
    "key_pem",
    "load_ec_key",
    "new_ca",
    "not_after",
    "san_hosts",
    "subject_alt_name",
]


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_ec_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """An unencrypted PEM ECDSA private key; ValueError for anything else."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an ECDSA private key")
    return key


def not_after(pem: bytes) -> datetime:
    """When the PEM certificate expires (UTC)."""
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def subject_alt_name(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    """An IP address SAN for each host that parses as one, a DNS name SAN for the others."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def san_hosts(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses (as text) a certificate is for; empty without a SAN."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return set(names.get_values_for_type(x509.DNSName)) | ips


def _key_usage(*, ca: bool, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def new_ca(
    common_name: str,
    *,
    not_before: datetime,
    not_after: datetime,
    subject_key_identifier: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh P-256 key and a self-signed CA certificate for it (path length 0, SHA-256).

    Key usage: digitalSignature, keyCertSign, cRLSign (critical).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
    )
    if subject_key_identifier:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    return builder.sign(key, hashes.SHA256()), key


def issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    not_before: datetime,
    not_after: datetime,
    organizations: Sequence[str] = (),
    hosts: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    key_usage: bool = True,
    key_encipherment: bool = False,
    authority_key_identifier: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh P-256 key and a leaf certificate for it, signed by the CA (SHA-256).

    Subject: an O per organization, then the CN (Kubernetes reads a client's groups from O and
    its user from CN). ``hosts`` become subjectAltNames (see ``subject_alt_name``); none, no SAN.
    Extended key usage: serverAuth and/or clientAuth. ``key_usage``: a critical KeyUsage with
    digitalSignature (and keyEncipherment if asked); ``authority_key_identifier``: the CA's.
    """
    if not (server or client):
        raise ValueError("a certificate must be for a server, a client, or both")
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if hosts:
        builder = builder.add_extension(subject_alt_name(hosts), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if key_usage:
        builder = builder.add_extension(
            _key_usage(ca=False, key_encipherment=key_encipherment), critical=True
        )
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if authority_key_identifier:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key
