"""Self-managed webhook TLS: one Secret kept by racing replicas, files, caBundle, rotation.

The planning is checked with a clock (no cluster); the rest against the real API server, with
webhook configurations of their own (names apart from the chart's) so nothing else is touched.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client

from computegate.devcluster import ControlPlane
from computegate.webhook import selftls, tlsplan

HOSTS = tlsplan.service_hosts("computegate", "computegate-system")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LIFE = tlsplan.Lifetimes()


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _trusted_by(serving_pem: bytes, bundle: bytes) -> bool:
    """Would a client holding ``bundle`` as its CA pool accept this serving certificate?"""
    serving = _cert(serving_pem)
    for ca in x509.load_pem_x509_certificates(bundle):
        try:
            serving.verify_directly_issued_by(ca)
        except Exception:
            continue
        return True
    return False


# -- planning, with a clock -----------------------------------------------------------------------


def test_a_fresh_plan_is_a_ca_and_a_serving_certificate_for_every_service_name() -> None:
    material = tlsplan.plan_material(None, hosts=HOSTS, now=NOW)
    assert material is not None
    serving = _cert(material.tls_cert)
    extension = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    sans = set(extension.value.get_values_for_type(x509.DNSName))
    assert sans == {
        "computegate",
        "computegate.computegate-system",
        "computegate.computegate-system.svc",
        "computegate.computegate-system.svc.cluster.local",
    }
    assert _trusted_by(material.tls_cert, material.bundle(NOW))
    assert _cert(material.ca_cert).extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tlsplan.plan_material(material, hosts=HOSTS, now=NOW + timedelta(days=1)) is None


def test_the_serving_certificate_is_renewed_by_the_same_ca_before_it_expires() -> None:
    material = tlsplan.plan_material(None, hosts=HOSTS, now=NOW)
    assert material is not None
    before = NOW + LIFE.serving_validity - LIFE.serving_renew_before - timedelta(hours=1)
    assert tlsplan.plan_material(material, hosts=HOSTS, now=before) is None
    renewed = tlsplan.plan_material(material, hosts=HOSTS, now=before + timedelta(hours=2))
    assert renewed is not None
    assert renewed.ca_cert == material.ca_cert and renewed.tls_cert != material.tls_cert
    # Both the old and the new serving certificate are trusted by the (unchanged) bundle.
    assert renewed.bundle(before) == material.bundle(before)
    assert _trusted_by(material.tls_cert, renewed.bundle(before))
    assert _trusted_by(renewed.tls_cert, renewed.bundle(before))
    assert _cert(material.tls_cert).not_valid_after_utc > before + timedelta(hours=2), "renewed before expiry"


def test_certificates_from_a_clock_ahead_of_ours_are_replaced() -> None:
    ahead = tlsplan.plan_material(None, hosts=HOSTS, now=NOW + timedelta(hours=2))
    assert ahead is not None
    fixed = tlsplan.plan_material(ahead, hosts=HOSTS, now=NOW)
    assert fixed is not None and fixed.ca_cert != ahead.ca_cert, "a CA not valid yet is useless"
    serving_ahead = tlsplan.plan_material(fixed, hosts=HOSTS, now=NOW + timedelta(days=65))  # renewal
    assert serving_ahead is not None and serving_ahead.ca_cert == fixed.ca_cert
    reissued = tlsplan.plan_material(serving_ahead, hosts=HOSTS, now=NOW + timedelta(days=1))
    assert reissued is not None and reissued.ca_cert == fixed.ca_cert
    assert _cert(reissued.tls_cert).not_valid_before_utc <= NOW + timedelta(days=1)


def test_a_changed_service_name_gets_a_new_serving_certificate() -> None:
    material = tlsplan.plan_material(None, hosts=HOSTS, now=NOW)
    assert material is not None
    other = tlsplan.service_hosts("renamed", "computegate-system")
    changed = tlsplan.plan_material(material, hosts=other, now=NOW)
    assert changed is not None and changed.ca_cert == material.ca_cert
    names = _cert(changed.tls_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "renamed.computegate-system.svc" in names.get_values_for_type(x509.DNSName)
    assert _trusted_by(changed.tls_cert, changed.bundle(NOW))


def test_ca_rotation_publishes_the_new_ca_before_signing_with_it_and_never_breaks_trust() -> None:
    start = tlsplan.plan_material(None, hosts=HOSTS, now=NOW)
    assert start is not None
    ca_expiry = _cert(start.ca_cert).not_valid_after_utc
    # Keep the serving certificate fresh up to the CA renewal window, as the loop would.
    t = ca_expiry - LIFE.ca_renew_before - timedelta(days=1)
    current = tlsplan.plan_material(start, hosts=HOSTS, now=t) or start
    assert not current.next_ca_cert
    # 1. Inside the window: a next CA appears in the bundle, the old one still signs.
    t += timedelta(days=2)
    published = tlsplan.plan_material(current, hosts=HOSTS, now=t)
    assert published is not None and published.next_ca_cert
    assert published.ca_cert == current.ca_cert
    assert len(x509.load_pem_x509_certificates(published.bundle(t))) == 2
    # 2. Not promoted while a webhook configuration does not carry it yet, even after the grace.
    later = t + LIFE.ca_publish_grace + timedelta(minutes=10)
    old_bundle = current.bundle(t)
    held = tlsplan.plan_material(published, hosts=HOSTS, now=later, published_bundles=[old_bundle])
    assert held is None or held.ca_cert == current.ca_cert
    # 3. Once every configuration trusts both, the next CA signs a new serving certificate.
    promoted = tlsplan.plan_material(
        published, hosts=HOSTS, now=later, published_bundles=[published.bundle(t), published.bundle(t)]
    )
    assert promoted is not None
    assert promoted.ca_cert == published.next_ca_cert and not promoted.next_ca_cert
    assert promoted.previous_ca_certs == (current.ca_cert,)
    bundle = promoted.bundle(later)
    # A replica still serving the old certificate, and one serving the new, are both trusted.
    assert _trusted_by(current.tls_cert, bundle) and _trusted_by(promoted.tls_cert, bundle)
    assert not _trusted_by(promoted.tls_cert, old_bundle), "the new certificate needs the new CA"
    # 4. After the old CA expires it leaves the bundle.
    after = ca_expiry + timedelta(days=1)
    retired = tlsplan.plan_material(promoted, hosts=HOSTS, now=after)
    assert retired is not None and retired.previous_ca_certs == ()
    assert len(x509.load_pem_x509_certificates(retired.bundle(after))) == 1


def test_an_unreadable_or_expired_secret_starts_over_with_a_new_ca() -> None:
    material = tlsplan.plan_material(None, hosts=HOSTS, now=NOW)
    assert material is not None
    broken = tlsplan.TlsMaterial(
        ca_cert=b"garbage", ca_key=material.ca_key, tls_cert=material.tls_cert, tls_key=material.tls_key
    )
    fresh = tlsplan.plan_material(broken, hosts=HOSTS, now=NOW)
    assert fresh is not None and fresh.ca_cert != material.ca_cert
    expired = tlsplan.plan_material(material, hosts=HOSTS, now=NOW + LIFE.ca_validity + timedelta(days=1))
    assert expired is not None and expired.ca_cert != material.ca_cert
    assert tlsplan.TlsMaterial.from_secret_data({"ca.crt": base64.b64encode(b"x").decode()}) is None


def test_cert_files_are_switched_at_once_and_left_alone_when_unchanged(tmp_path: Path) -> None:
    first = tlsplan.plan_material(None, hosts=HOSTS, now=NOW)
    assert first is not None
    assert selftls.write_cert_dir(tmp_path, first, now=NOW)
    assert (tmp_path / "tls.crt").read_bytes() == first.tls_cert
    assert (tmp_path / "ca.crt").read_bytes() == first.bundle(NOW)
    assert (tmp_path / "tls.key").resolve().stat().st_mode & 0o077 == 0
    assert not selftls.write_cert_dir(tmp_path, first, now=NOW)
    second = tlsplan.plan_material(first, hosts=HOSTS, now=NOW + timedelta(days=61))
    assert second is not None
    assert selftls.write_cert_dir(tmp_path, second, now=NOW + timedelta(days=61))
    assert (tmp_path / "tls.crt").read_bytes() == second.tls_cert
    assert (tmp_path / "tls.key").read_bytes() == second.tls_key
    assert all((tmp_path / name).is_symlink() for name in selftls.CERT_FILES)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("..tls-")]) == 1, "old folders removed"


# -- against the API server -----------------------------------------------------------------------


def _configuration(kind: str, name: str) -> dict[str, Any]:
    webhooks = [
        {
            "name": f"hook{index}.test.computegate.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"url": f"https://127.0.0.1:1/hook{index}"},
            "rules": [
                {
                    "apiGroups": ["example.com"],
                    "apiVersions": ["v1"],
                    "resources": ["things"],
                    "operations": ["CREATE"],
                }
            ],
        }
        for index in range(2)
    ]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": f"{kind}WebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks,
    }


@pytest.fixture
def tls_setup(chart_plane: ControlPlane, admin: Any) -> Iterator[dict[str, Any]]:
    """A namespace and a validating + a mutating configuration of this test's own."""
    suffix = uuid.uuid4().hex[:6]
    namespace = f"tls-{suffix}"
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    admission = client.AdmissionregistrationV1Api(admin)
    validating, mutating = f"tls-validating-{suffix}", f"tls-mutating-{suffix}"
    admission.create_validating_webhook_configuration(_configuration("Validating", validating))
    admission.create_mutating_webhook_configuration(_configuration("Mutating", mutating))
    yield {
        "namespace": namespace,
        "secret_name": "webhook-tls",
        "service_name": "computegate",
        "webhook_configurations": [validating, mutating],
    }
    admission.delete_validating_webhook_configuration(validating)
    admission.delete_mutating_webhook_configuration(mutating)


def _bundles(admin: Any, names: list[str]) -> list[bytes]:
    admission = client.AdmissionregistrationV1Api(admin)
    configurations = [
        admission.read_validating_webhook_configuration(names[0]),
        admission.read_mutating_webhook_configuration(names[1]),
    ]
    return [base64.b64decode(hook.client_config.ca_bundle) for c in configurations for hook in c.webhooks]


@pytest.mark.e2e
def test_three_racing_replicas_create_one_secret_and_serve_the_same_certificate(
    admin: Any, tls_setup: dict[str, Any], tmp_path: Path
) -> None:
    results: dict[int, tlsplan.TlsMaterial] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def replica(index: int) -> None:
        try:
            barrier.wait()
            results[index] = selftls.sync_once(admin, cert_dir=tmp_path / f"replica{index}", **tls_setup)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=replica, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len({material.tls_cert for material in results.values()}) == 1
    stored = client.CoreV1Api(admin).read_namespaced_secret(tls_setup["secret_name"], tls_setup["namespace"])
    assert tlsplan.TlsMaterial.from_secret_data(stored.data) == results[0]
    assert {(tmp_path / f"replica{i}" / "tls.crt").read_bytes() for i in range(3)} == {results[0].tls_cert}
    bundles = _bundles(admin, tls_setup["webhook_configurations"])
    assert len(bundles) == 4 and set(bundles) == {results[0].bundle()}
    # A second pass changes nothing: same resourceVersion, same files.
    again = selftls.sync_once(admin, cert_dir=tmp_path / "replica0", **tls_setup)
    assert again == results[0]
    reread = client.CoreV1Api(admin).read_namespaced_secret(tls_setup["secret_name"], tls_setup["namespace"])
    assert reread.metadata.resource_version == stored.metadata.resource_version


@pytest.mark.e2e
def test_rotation_through_the_api_server_keeps_every_replica_trusted_at_every_step(
    admin: Any, tls_setup: dict[str, Any], tmp_path: Path
) -> None:
    names = tls_setup["webhook_configurations"]
    first = selftls.sync_once(admin, cert_dir=tmp_path / "a", **tls_setup)
    ca_expiry = _cert(first.ca_cert).not_valid_after_utc
    served = [first.tls_cert]
    steps = [
        datetime.now(UTC) + timedelta(days=70),  # serving renewal, same CA
        ca_expiry - LIFE.ca_renew_before + timedelta(days=1),  # next CA published
        ca_expiry - LIFE.ca_renew_before + timedelta(days=1, hours=1),  # promoted (configs carry it)
        ca_expiry + timedelta(days=1),  # old CA retired
    ]
    for index, at in enumerate(steps):
        material = selftls.sync_once(
            admin, cert_dir=tmp_path / ("a" if index % 2 else "b"), now=at, **tls_setup
        )
        bundles = _bundles(admin, names)
        assert set(bundles) == {material.bundle(at)}
        # The certificate a replica served before this step, and the new one, are both trusted.
        assert all(_trusted_by(pem, bundles[0]) for pem in (served[-1], material.tls_cert))
        served.append(material.tls_cert)
    assert material.ca_cert != first.ca_cert, "the CA itself was rotated"
    assert len(x509.load_pem_x509_certificates(material.bundle(steps[-1]))) == 1


@pytest.mark.e2e
def test_run_self_managed_tls_keeps_the_files_until_stopped(
    chart_plane: ControlPlane,
    admin: Any,
    tls_setup: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(chart_plane.kubeconfig_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cert_dir = tmp_path / "certs"

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(selftls.run_self_managed_tls(cert_dir=cert_dir, stop=stop, **tls_setup))
        for _ in range(200):
            if (cert_dir / "tls.crt").exists():
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    asyncio.run(scenario())
    stored = client.CoreV1Api(admin).read_namespaced_secret(tls_setup["secret_name"], tls_setup["namespace"])
    material = tlsplan.TlsMaterial.from_secret_data(stored.data)
    assert material is not None
    assert (cert_dir / "tls.crt").read_bytes() == material.tls_cert
    assert set(_bundles(admin, tls_setup["webhook_configurations"])) == {material.bundle()}
