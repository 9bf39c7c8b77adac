"""Self-managed TLS for the webhook: a CA and a serving certificate kept in one Secret.

Every replica runs ``run_self_managed_tls``; together they keep, without a coordinator:

- **One Secret** (release namespace) holding the CA (``ca.crt``/``ca.key``), the serving pair
  (``tls.crt``/``tls.key``), a CA being introduced (``next-ca.crt``/``next-ca.key``) and CAs
  being retired (``previous-ca.crt``). The first replica creates it; a replica that loses the
  race (409 AlreadyExists) reads the winner's. Updates carry the resourceVersion that was read,
  so two replicas never both rotate: the loser (409 Conflict) reads again and re-plans.
- **Files** ``tls.crt``, ``tls.key`` and ``ca.crt`` (the trust bundle) in the cert dir, switched
  atomically (a ``..data`` symlink to a fresh folder, as the kubelet does for Secret volumes),
  and only when they change; the webhook server reloads them.
- **caBundle** of every webhook in the named Validating/MutatingWebhookConfigurations: the
  bundle of every CA that is still valid and in use (current, next, previous).

Rotation never breaks a TLS handshake between the API server and any replica:

- The serving certificate is re-issued by the same CA ``serving_renew_before`` its expiry; the
  old one stays trusted (same CA) until each replica has loaded the new files.
- A new CA is first *published* next to the current one (bundle = old + new), and becomes the
  signing CA only once every webhook configuration carries it and ``ca_publish_grace`` has
  passed. The old CA then stays in the bundle until it expires, so a replica still serving an
  old-CA certificate for a moment is still trusted.

The planning (what the Secret should hold at a given instant) is ``tlsplan``: pure, and tested
with a clock. Here: the files, and the Kubernetes calls (the sync ``kubernetes`` client, in a
thread).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from computegate.kubeclient import api_client
from computegate.webhook.tlsplan import Lifetimes, TlsMaterial, plan_material, service_hosts

__all__ = [
    "CERT_FILES",
    "apply_material",
    "run_self_managed_tls",
    "sync_once",
    "write_cert_dir",
]

logger = logging.getLogger("computegate.selftls")

CERT_FILES = ("tls.crt", "tls.key", "ca.crt")
_CHECK_INTERVAL = 30.0  # seconds between checks once the files are in place
_RETRY_INTERVAL = 5.0  # seconds between attempts while something fails
_SECRET_LABELS = {"app.kubernetes.io/part-of": "computegate", "app.kubernetes.io/component": "webhook-tls"}


# -- files --------------------------------------------------------------------------------------


def write_cert_dir(cert_dir: Path, material: TlsMaterial, *, now: datetime | None = None) -> bool:
    """Make ``cert_dir/{tls.crt,tls.key,ca.crt}`` show ``material``, all three switched at once.

    The files are symlinks into ``..data``, itself a symlink to a fresh folder that is swapped
    with one rename (the kubelet's layout for Secret volumes), so a reader never sees a new
    certificate with an old key. Returns False when the files already hold this material.
    """
    wanted = {"tls.crt": material.tls_cert, "tls.key": material.tls_key, "ca.crt": material.bundle(now)}
    if all(_read(cert_dir / name) == content for name, content in wanted.items()):
        return False
    cert_dir.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix="..tls-", dir=cert_dir))
    for name, content in wanted.items():
        mode = 0o600 if name.endswith(".key") else 0o644
        fd = os.open(fresh / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
    fresh.chmod(0o755)  # mkdtemp made it 0700
    data_link = cert_dir / "..data"
    old_target = str(data_link.readlink()) if data_link.is_symlink() else None
    staging = cert_dir / "..data_tmp"
    staging.unlink(missing_ok=True)
    staging.symlink_to(fresh.name)
    staging.replace(data_link)
    for name in wanted:
        link = cert_dir / name
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(Path("..data") / name)
    if old_target and old_target != fresh.name:
        shutil.rmtree(cert_dir / old_target, ignore_errors=True)
    return True


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


# -- the cluster --------------------------------------------------------------------------------


def _data(secret: Any) -> dict[str, str]:
    return {str(key): str(value) for key, value in (secret.data or {}).items()}


@dataclass
class _Target:
    kind: str  # "validating" | "mutating"
    name: str
    body: Any


def _webhook_targets(api_client: Any, names: Sequence[str]) -> list[_Target]:
    """The named configurations that exist, whichever of the two kinds each one is.

    A kind the caller may not read under that name (403, RBAC limits both kinds by name) or that
    has no such object (404) is skipped.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.AdmissionregistrationV1Api(api_client)
    readers = {
        "validating": api.read_validating_webhook_configuration,
        "mutating": api.read_mutating_webhook_configuration,
    }
    found = []
    for name in names:
        for kind, read in readers.items():
            try:
                found.append(_Target(kind, name, read(name)))
                break
            except ApiException as error:
                if error.status not in (403, 404):
                    raise
    return found


def _published_bundles(targets: Sequence[_Target]) -> list[bytes]:
    bundles = []
    for target in targets:
        for webhook in target.body.webhooks or []:
            encoded = webhook.client_config.ca_bundle
            bundles.append(base64.b64decode(encoded) if encoded else b"")
    return bundles


def _inject(api_client: Any, targets: Sequence[_Target], bundle: bytes) -> list[str]:
    """Patch ``bundle`` into every webhook of ``targets`` that lacks it; return what was patched."""
    from kubernetes import client

    api = client.AdmissionregistrationV1Api(api_client)
    encoded = base64.b64encode(bundle).decode("ascii")
    patched = []
    for target in targets:
        webhooks = target.body.webhooks or []
        if all(webhook.client_config.ca_bundle == encoded for webhook in webhooks):
            continue
        # Webhooks merge by name (strategic merge patch), so only the caBundle field changes.
        body = {
            "webhooks": [
                {"name": webhook.name, "clientConfig": {"caBundle": encoded}} for webhook in webhooks
            ]
        }
        patch = (
            api.patch_validating_webhook_configuration
            if target.kind == "validating"
            else api.patch_mutating_webhook_configuration
        )
        patch(target.name, body, _content_type="application/strategic-merge-patch+json")
        patched.append(f"{target.kind}webhookconfiguration/{target.name}")
    return patched


def apply_material(
    api_client: Any,
    *,
    namespace: str,
    secret_name: str,
    hosts: Sequence[str],
    webhook_configurations: Sequence[str],
    now: datetime | None = None,
    lifetimes: Lifetimes = Lifetimes(),
    attempts: int = 5,
) -> TlsMaterial:
    """Bring the Secret up to date (create-if-absent; optimistic update) and return its material.

    Safe to run on every replica at once: a lost create race (409) or a lost update race (409)
    reads the Secret again and plans from what the winner wrote.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    for _ in range(attempts):
        at = now or datetime.now(UTC)
        try:
            secret = core.read_namespaced_secret(secret_name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            secret = None
        current = TlsMaterial.from_secret_data(_data(secret)) if secret is not None else None
        targets = _webhook_targets(api_client, webhook_configurations)
        wanted = plan_material(
            current, hosts=hosts, now=at, lifetimes=lifetimes, published_bundles=_published_bundles(targets)
        )
        if wanted is None:
            assert current is not None
            return current
        metadata: dict[str, Any] = {
            "name": secret_name,
            "namespace": namespace,
            "labels": dict(_SECRET_LABELS),
        }
        body: Any = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque"}
        body["data"] = wanted.to_secret_data()
        try:
            if secret is None:
                core.create_namespaced_secret(namespace, body)
                logger.info("created the webhook TLS Secret %s/%s", namespace, secret_name)
            else:
                old: Any = secret.metadata
                metadata["resourceVersion"] = old.resource_version  # optimistic concurrency
                metadata["labels"] = {**(old.labels or {}), **_SECRET_LABELS}
                metadata["annotations"] = old.annotations or {}
                core.replace_namespaced_secret(secret_name, namespace, body)
                logger.info("updated the webhook TLS Secret %s/%s", namespace, secret_name)
        except ApiException as error:
            if error.status == 409:  # another replica created or updated it first: re-read
                continue
            raise
        return wanted
    raise RuntimeError(f"the Secret {namespace}/{secret_name} kept changing under {attempts} attempts")


def sync_once(
    api_client: Any,
    *,
    namespace: str,
    secret_name: str,
    service_name: str,
    cert_dir: Path,
    webhook_configurations: Sequence[str],
    now: datetime | None = None,
    lifetimes: Lifetimes = Lifetimes(),
) -> TlsMaterial:
    """One pass: Secret up to date, files written, caBundles injected. Blocking (a thread)."""
    material = apply_material(
        api_client,
        namespace=namespace,
        secret_name=secret_name,
        hosts=service_hosts(service_name, namespace),
        webhook_configurations=webhook_configurations,
        now=now,
        lifetimes=lifetimes,
    )
    if write_cert_dir(cert_dir, material, now=now):
        logger.info("wrote the serving certificate to %s", cert_dir)
    targets = _webhook_targets(api_client, webhook_configurations)
    for patched in _inject(api_client, targets, material.bundle(now)):
        logger.info("injected the CA bundle into %s", patched)
    return material


async def run_self_managed_tls(
    *,
    namespace: str,
    secret_name: str,
    service_name: str,
    cert_dir: Path,
    webhook_configurations: Sequence[str],
    stop: asyncio.Event,
    kubeconfig: Path | None = None,
) -> None:
    """Keep the webhook's TLS current until ``stop`` is set (see the module's docstring).

    Checks every 30 seconds (so a configuration re-created by `helm upgrade` gets its caBundle
    back quickly), every 5 seconds while something fails (an error is logged, never
    raised: the server keeps serving the last good files).
    """
    api = await asyncio.to_thread(api_client, kubeconfig)
    try:
        while not stop.is_set():
            try:
                await asyncio.to_thread(
                    sync_once,
                    api,
                    namespace=namespace,
                    secret_name=secret_name,
                    service_name=service_name,
                    cert_dir=cert_dir,
                    webhook_configurations=webhook_configurations,
                )
                interval = _CHECK_INTERVAL
            except Exception:
                logger.exception("self-managed TLS: this pass failed; retrying in %.0fs", _RETRY_INTERVAL)
                interval = _RETRY_INTERVAL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        await asyncio.to_thread(api.close)
