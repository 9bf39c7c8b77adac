"""``computegate webhook`` flags (no heavy imports: the CLI builds its parser from this)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Options:
    kubeconfig: Path | None = None
    addr: str = "127.0.0.1"  # loopback by default: in a cluster the chart sets 0.0.0.0
    port: int = 9443
    host: str | None = None  # the host in the registered URL (default: addr)
    advertise_port: int | None = None  # the port in the registered URL (default: port)
    cert_dir: Path = Path("webhook-certs")
    health_addr: str = "127.0.0.1"
    health_port: int = 8080
    register: bool = False
    exempt_namespaces: tuple[str, ...] = ("kube-system",)
    namespace_creation_failure_policy: str = "Fail"  # what a webhook outage does to them
    admin_users: tuple[str, ...] = ()
    admin_groups: tuple[str, ...] = field(default_factory=lambda: ("system:masters",))
    tls_self_managed: bool = False
    namespace: str = "computegate-system"
    secret_name: str = "computegate-webhook-tls"
    service_name: str = "computegate-webhook"
    reload_interval: float = 2.0
    reconcile_interval: float = 10.0  # the ledger's reconciler looks at least this often
    reservation_ttl: float = 120.0  # longer than the API server's request timeout (60 s)
    usage_period: float = 86400.0  # one usage record per tenant and period (a day)
    usage_retention_days: float = 35.0  # records older than this are deleted (export them first)
    evictions_per_minute: float = 10.0  # onViolation: Evict, at most this many
    settle_within: float = 3.0  # a reservation not settled by then is refused as retryable
    ledger: bool = True  # off only to measure what the ledger costs (bench/)
    log_level: str = "info"
    log_format: str = "json"  # every line one JSON object; "text" for people at a terminal


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Options()
    parser.add_argument("--kubeconfig", type=Path, help="default: in-cluster, else $KUBECONFIG")
    parser.add_argument("--addr", default=d.addr, help=f"listen address of the webhook (default {d.addr})")
    parser.add_argument("--port", type=int, default=d.port, help=f"webhook HTTPS port (default {d.port})")
    parser.add_argument("--host", help="host name in the registered webhook URL (default: --addr)")
    parser.add_argument(
        "--advertise-port",
        type=int,
        help="port in the registered webhook URL (default: --port): a forwarder in front of replicas",
    )
    parser.add_argument(
        "--cert-dir",
        type=Path,
        default=d.cert_dir,
        help="folder with tls.crt, tls.key, ca.crt; generated if absent (unless --tls-self-managed); "
        "reloaded when they change",
    )
    parser.add_argument("--health-addr", default=d.health_addr)
    parser.add_argument("--health-port", type=int, default=d.health_port, help="/healthz /readyz /metrics")
    parser.add_argument(
        "--register",
        action="store_true",
        help="create/replace the webhook configurations, pointing at https://HOST:PORT (dev and tests)",
    )
    parser.add_argument(
        "--exempt-namespace",
        action="append",
        dest="exempt_namespaces",
        metavar="NS",
        help="never sent to the webhook (repeatable; default kube-system)",
    )
    parser.add_argument(
        "--namespace-creation-failure-policy",
        choices=("Fail", "Ignore"),
        default=d.namespace_creation_failure_policy,
        help="while the webhook is unreachable, Fail refuses namespace creations by non-admins (none "
        "can squat a Tenant's or an exempt namespace), Ignore lets them through (default Fail)",
    )
    parser.add_argument(
        "--admin-user",
        action="append",
        dest="admin_users",
        default=[],
        metavar="USER",
        help="may set a namespace's computegate.io/tenant label (repeatable)",
    )
    parser.add_argument(
        "--admin-group",
        action="append",
        dest="admin_groups",
        default=[],
        metavar="GROUP",
        help="may set the tenant label, besides system:masters (repeatable)",
    )
    parser.add_argument(
        "--tls-self-managed",
        action="store_true",
        help="in a cluster: keep the serving certificate in a Secret and the caBundle current",
    )
    parser.add_argument(
        "--namespace", default=d.namespace, help="own namespace: the ledger's Lease, the TLS Secret"
    )
    parser.add_argument("--secret-name", default=d.secret_name, help="TLS Secret (--tls-self-managed)")
    parser.add_argument("--service-name", default=d.service_name, help="webhook Service (--tls-self-managed)")
    parser.add_argument(
        "--reload-interval",
        type=float,
        default=d.reload_interval,
        help="seconds between checks of the certificate files",
    )
    parser.add_argument(
        "--reservation-ttl",
        type=float,
        default=d.reservation_ttl,
        help="seconds after which a reservation whose pod never appeared is dropped (keep it above the "
        "API server's request timeout)",
    )
    parser.add_argument(
        "--ledger",
        choices=["on", "off"],
        default="on",
        help="off: no reservations, caps hold only per replica's view (for benchmarks, never in a cluster)",
    )
    parser.add_argument(
        "--reconcile-interval",
        type=float,
        default=d.reconcile_interval,
        help="seconds between the ledger reconciler's passes when nothing changes",
    )
    parser.add_argument(
        "--usage-period",
        type=float,
        default=d.usage_period,
        help="seconds per usage record of a tenant (default a day; shorter only for tests)",
    )
    parser.add_argument(
        "--usage-retention-days",
        type=float,
        default=d.usage_retention_days,
        help=f"days a UsageRecord is kept in the cluster (default {d.usage_retention_days:g}); export first",
    )
    parser.add_argument(
        "--evictions-per-minute",
        type=float,
        default=d.evictions_per_minute,
        help="at most this many evictions of violating pods a minute (onViolation: Evict)",
    )

    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=d.log_level,
        help=f"least severe level logged (default {d.log_level})",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=d.log_format,
        help=f"every log line, Kopf's and the decision records included (default {d.log_format})",
    )


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        kubeconfig=args.kubeconfig,
        addr=args.addr,
        port=args.port,
        host=args.host,
        advertise_port=args.advertise_port,
        cert_dir=args.cert_dir,
        health_addr=args.health_addr,
        health_port=args.health_port,
        register=args.register,
        exempt_namespaces=tuple(args.exempt_namespaces or ("kube-system",)),
        namespace_creation_failure_policy=args.namespace_creation_failure_policy,
        admin_users=tuple(args.admin_users),
        admin_groups=("system:masters", *args.admin_groups),
        tls_self_managed=args.tls_self_managed,
        namespace=args.namespace,
        secret_name=args.secret_name,
        service_name=args.service_name,
        reload_interval=args.reload_interval,
        reservation_ttl=args.reservation_ttl,
        reconcile_interval=args.reconcile_interval,
        ledger=args.ledger == "on",
        log_level=args.log_level,
        log_format=args.log_format,
        usage_period=args.usage_period,
        usage_retention_days=args.usage_retention_days,
        evictions_per_minute=args.evictions_per_minute,
    )
