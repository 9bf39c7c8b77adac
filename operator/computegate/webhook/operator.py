"""The operator, wired in one place: read it top to bottom.

1. Options (flags) → API access, serving certificates, the state, the reviewer, observers.
2. The health port (``/healthz``, ``/readyz``, ``/metrics``) starts first, so probes answer
   while the watches list.
3. Background work: our LIST and WATCH of every kind of the state (``watch.Watches``, into
   ``runtime.watched`` and ``runtime.listed``), the Lease election and the license ledger's
   reconciler (only the elected replica writes), our own webhook configurations
   (``--register``), and the self-managed certificate (``--tls-self-managed``).
4. The admission server (``server.WebhookServer``) answers reviews through ``runtime.admit``.
5. Kopf runs standalone (no peering), with only the login and settings of
   ``handlers.REGISTRY`` and no watch of its own, until SIGTERM/SIGINT or the ``stop`` event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import kopf

from computegate.catalog import builtin_catalog
from computegate.engine import ClusterState
from computegate.vocabulary import STATE_KINDS
from computegate.webhook import configuration
from computegate.webhook.certs import ServingFiles, ensure_serving_files
from computegate.webhook.compliance import Compliance
from computegate.webhook.handlers import REGISTRY
from computegate.webhook.health import serve_health
from computegate.webhook.kube import Kube
from computegate.webhook.ledger import Election, LedgerWriter, Reconciler
from computegate.webhook.observe import Metrics, configure_decision_log, configure_logging
from computegate.webhook.options import Options
from computegate.webhook.review import Reviewer
from computegate.webhook.runtime import Runtime
from computegate.webhook.server import WebhookServer
from computegate.webhook.tally import DenialTally
from computegate.webhook.usage import UsageRecorder
from computegate.webhook.watch import Watches

logger = logging.getLogger(__name__)


def build_runtime(options: Options, *, ca_changed: asyncio.Event) -> Runtime:
    files = ServingFiles.in_dir(options.cert_dir)
    if not options.tls_self_managed:
        ensure_serving_files(options.cert_dir, hosts=_hosts(options))
    state = ClusterState(builtin_catalog())
    server = WebhookServer(
        files=files,
        paths=configuration.WEBHOOK_PATHS,
        addr=options.addr,
        port=options.port,
        reload_interval=options.reload_interval,
        on_reload=lambda _: ca_changed.set(),
    )
    kube = Kube.connect(options.kubeconfig)
    metrics = Metrics()
    return Runtime(
        state=state,
        reviewer=Reviewer(
            state,
            admin_users=frozenset(options.admin_users),
            admin_groups=frozenset(options.admin_groups),
            exempt_namespaces=frozenset(options.exempt_namespaces),
        ),
        metrics=metrics,
        decisions=configure_decision_log(),
        kube=kube,
        ledger=LedgerWriter(kube, state, metrics, settle_within=options.settle_within)
        if options.ledger
        else None,
        server=server,
    )


def _hosts(options: Options) -> list[str]:
    first = options.host or (options.addr if options.addr not in ("0.0.0.0", "::") else "localhost")
    return list(dict.fromkeys([first, "127.0.0.1", "localhost"]))


def client_config(options: Options) -> dict[str, Any]:
    """The ``clientConfig`` of our configurations: the URL of this server and our CA."""
    host = options.host or options.addr
    ca = ServingFiles.in_dir(options.cert_dir).ca.read_bytes()
    port = options.advertise_port or options.port
    return {"url": f"https://{host}:{port}", "caBundle": base64.b64encode(ca).decode("ascii")}


def configurations(options: Options) -> list[dict[str, Any]]:
    common: dict[str, Any] = {
        "client_config": client_config(options),
        "exempt_namespaces": options.exempt_namespaces,
        "labels": {"app.kubernetes.io/part-of": "computegate"},
    }
    return [
        configuration.validating_configuration(
            **common, namespace_creation_failure_policy=options.namespace_creation_failure_policy
        ),
        configuration.mutating_configuration(**common),
    ]


async def keep_registered(runtime: Runtime, options: Options, ca_changed: asyncio.Event) -> None:
    """Register our configurations once serving, and again whenever the CA changes."""
    await runtime.server.listening.wait()
    while True:
        ca_changed.clear()
        try:
            for body in configurations(options):
                await runtime.kube.apply_configuration(body)
                logger.info("Registered %s %s", body["kind"], body["metadata"]["name"])
        except Exception as error:  # the API server may be briefly unavailable: try again
            logger.warning("Could not register the webhook configurations (retrying): %s", error)
            await asyncio.sleep(2)
            continue
        await ca_changed.wait()


async def self_managed_tls(options: Options, stop: asyncio.Event) -> None:
    # Owned by the chart: keeps tls.crt/tls.key/ca.crt in cert_dir and the caBundle current.
    from computegate.webhook.selftls import run_self_managed_tls

    await run_self_managed_tls(
        namespace=options.namespace,
        secret_name=options.secret_name,
        service_name=options.service_name,
        cert_dir=options.cert_dir,
        webhook_configurations=[configuration.VALIDATING_CONFIGURATION, configuration.MUTATING_CONFIGURATION],
        stop=stop,
        kubeconfig=options.kubeconfig,
    )


async def reconcile_when_synced(runtime: Runtime, reconciler: Reconciler, *, interval: float) -> None:
    # Only a complete view may lower what a license has committed.
    await runtime.synced.wait()
    await reconciler.run(runtime.licenses_changed, interval=interval)


async def serve_admission(runtime: Runtime, options: Options, stop: asyncio.Event) -> None:
    if options.tls_self_managed:
        # The server needs the files the Secret provides; they appear on the disk only.
        while not ServingFiles.in_dir(options.cert_dir).exist() and not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    await runtime.server.serve(runtime.admit)


async def run(options: Options, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    ca_changed = asyncio.Event()
    runtime = build_runtime(options, ca_changed=ca_changed)
    election = Election(runtime.kube, options.namespace)
    period = timedelta(seconds=options.usage_period)
    usage = UsageRecorder(
        runtime.kube,
        runtime.state,
        DenialTally(runtime.kube, options.namespace, election.identity, period=period),
        period=period,
        retention=timedelta(days=options.usage_retention_days),
    )
    runtime.usage = election.usage = usage
    reconciler = Reconciler(
        runtime.kube,
        runtime.state,
        runtime.metrics,
        election,
        ttl=timedelta(seconds=options.reservation_ttl),
        compliance=Compliance(
            runtime.kube, runtime.state, runtime.metrics, evictions_per_minute=options.evictions_per_minute
        ),
        usage=usage,
    )
    watches = Watches(
        runtime.kube.configuration, STATE_KINDS, on_event=runtime.watched, on_listed=runtime.listed
    )
    background: list[Awaitable[None]] = [
        watches.run(),
        election.run(),
        usage.tally.run(),
        reconcile_when_synced(runtime, reconciler, interval=options.reconcile_interval),
    ]
    if options.register:
        background.append(keep_registered(runtime, options, ca_changed))
    if options.tls_self_managed:
        background.append(self_managed_tls(options, stop))
    async with serve_health(
        addr=options.health_addr,
        port=options.health_port,
        ready=lambda: runtime.ready,
        registry=runtime.metrics.registry,
    ) as health_port:
        logger.info("Health, readiness and metrics on http://%s:%d", options.health_addr, health_port)
        tasks = [asyncio.ensure_future(work) for work in background]
        try:
            tasks.append(asyncio.ensure_future(serve_admission(runtime, options, stop)))
            await kopf.operator(
                registry=REGISTRY,
                standalone=True,
                clusterwide=True,
                memo=kopf.Memo(runtime=runtime),
                stop_flag=stop,
            )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            runtime.kube.close()


def main(options: Options) -> int:
    # One format for every line: Kopf's, aiohttp's and the decision records (observe.py).
    configure_logging(level=options.log_level, log_format=options.log_format)
    asyncio.run(run(options))
    return 0
