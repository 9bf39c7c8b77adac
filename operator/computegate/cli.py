"""The ``computegate`` command: one subcommand per adapter, all wired here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="computegate", description="Admission control for export-controlled AI compute."
    )
    from computegate import __version__

    parser.add_argument("--version", action="version", version=f"computegate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from computegate import evaluate

    evaluate.add_arguments(
        commands.add_parser(
            "evaluate",
            help="judge workload manifests against cluster state in YAML files, offline",
            description="One JSON verdict per workload; exit 0 all admitted, 1 any denied, 2 bad input.",
        )
    )
    from computegate import report

    report.add_arguments(
        commands.add_parser(
            "report",
            help="compliance reports from cluster state (remote-users: the regulator's list)",
            description="Reports computed by the engine from a state folder or a live cluster.",
        )
    )
    from computegate import usagecli

    usagecli.add_verify_arguments(
        commands.add_parser(
            "verify",
            help="check the usage record's hash chain (and the chain heads in the API server's audit log)",
            description="Exit 0 when every UsageRecord is intact, in order and none is missing; 1 otherwise.",
        )
    )
    usagecli.add_usage_arguments(
        commands.add_parser("usage", help="the usage record: export it to a folder (docs/compliance.md)")
    )
    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions as YAML")
    crds.set_defaults(handler=_print_crds)
    from computegate import chartgen, uninstall  # light: no kopf, no client until run

    chartgen.add_arguments(
        commands.add_parser(
            "chart-sync",
            help="write the chart's generated templates (and, with --manifests, manifests/) from the source",
        )
    )
    uninstall.add_arguments(
        commands.add_parser(
            "uninstall-webhooks",
            help="delete ComputeGate's two webhook configurations (the chart's pre-delete hook; emergency)",
        )
    )
    dev = commands.add_parser(
        "dev",
        help="a local cluster for trials: control plane, controllers, scheduler, kwok's simulated nodes "
        "(docs/dev-cluster.md)",
    )
    dev.set_defaults(handler=_dev)
    dev_actions = dev.add_subparsers(dest="dev_action", required=True, metavar="ACTION")
    dev_up = dev_actions.add_parser("up", help="start it in the background, install the CRDs, seed --state")
    dev_up.add_argument(
        "--state",
        type=Path,
        help="folder of YAML objects to restore (default: examples/cluster when it exists here)",
    )
    dev_up.add_argument("--empty", action="store_true", help="seed nothing, not even the default examples")
    dev_up.add_argument(
        "--bare",
        action="store_true",
        help="etcd and kube-apiserver only: no controllers, scheduler or simulated nodes (pods stay Pending)",
    )
    dev_up.add_argument(
        "--webhook-replicas",
        type=int,
        default=1,
        metavar="N",
        help="N webhook operators behind one loopback endpoint, as a Service spreads replicas (default 1)",
    )
    dev_down = dev_actions.add_parser("down", help="stop it; no process is left behind")
    for action in (dev_up, dev_down):
        action.add_argument("--data-dir", type=Path, help="default: ~/.cache/computegate/dev")
    from computegate.webhook import options as webhook_options  # flags only: kopf loads on run

    webhook = commands.add_parser(
        "webhook",
        help="run the admission webhook and operator (Kopf, standalone)",
        description="Serve the validating and mutating webhooks; keep the license ledger and status current.",
    )
    webhook_options.add_arguments(webhook)
    webhook.set_defaults(handler=_webhook)
    demo = commands.add_parser(
        "demo", help="the live demo of `make run`: a local cluster, the webhook, kubectl"
    )
    demo.add_argument(
        "--keep", action="store_true", help="leave the cluster running (stop: computegate dev down)"
    )
    demo.add_argument(
        "--examples",
        type=Path,
        default=Path("examples"),
        help="the repository's examples folder (cluster/, rbac/, workloads/); default: ./examples",
    )
    demo.set_defaults(handler=_demo)
    args = parser.parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


# The repository's sample cluster: `dev up` in a clone seeds it unless told otherwise.
_DEFAULT_DEV_STATE = Path("examples") / "cluster"


def _print_crds(_: argparse.Namespace) -> int:
    import yaml

    from computegate.models.crds import crd_manifests

    sys.stdout.write(yaml.safe_dump_all(crd_manifests(), sort_keys=False))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from computegate.devcluster import run_dev_command

    state_dir: Path | None = getattr(args, "state", None)
    if args.dev_action == "up" and state_dir is None and not args.empty and _DEFAULT_DEV_STATE.is_dir():
        state_dir = _DEFAULT_DEV_STATE
    bare = bool(getattr(args, "bare", False))
    replicas = int(getattr(args, "webhook_replicas", 1))
    if replicas < 1:
        print("computegate dev up: --webhook-replicas: expected 1 or more", file=sys.stderr)
        return 2
    return run_dev_command(
        args.dev_action, state_dir=state_dir, data_dir=args.data_dir, bare=bare, webhook_replicas=replicas
    )


def _webhook(args: argparse.Namespace) -> int:
    from computegate.webhook.operator import main
    from computegate.webhook.options import options_from

    return main(options_from(args))


def _demo(args: argparse.Namespace) -> int:
    from computegate.demo import run_demo

    return run_demo(examples=args.examples, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
