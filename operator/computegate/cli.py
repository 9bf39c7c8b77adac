"""The ``computegate`` command: one subcommand per adapter, all wired here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="computegate", description="Admission control for export-controlled AI compute."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from computegate import evaluate

    evaluate.add_arguments(
        commands.add_parser(
            "evaluate",
            help="judge workload manifests against cluster state in YAML files, offline",
            description="One JSON verdict per workload; exit 0 all admitted, 1 any denied, 2 bad input.",
        )
    )
    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions as YAML")
    crds.set_defaults(handler=_print_crds)
    args = parser.parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


def _print_crds(_: argparse.Namespace) -> int:
    import yaml

    from computegate.models.crds import crd_manifests

    sys.stdout.write(yaml.safe_dump_all(crd_manifests(), sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
