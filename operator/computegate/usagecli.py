"""``computegate verify`` and ``computegate usage export``: the usage record, read back.

Records come from a live cluster (``UsageRecord`` objects) or from a folder that ``usage
export`` wrote (one YAML file per record). ``verify`` recomputes every record's hash and the
chain's links (``computegate.engine.usage.verify_chain``) and, given the API server's audit log
(``--audit-log``, JSON lines), checks that every chain head the admissions carried there is in
the chain with the same hash. Exit 0: the record holds; 1: a problem, each on its own line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from computegate.engine.usage import heads_in_audit_log, verify_chain
from computegate.models.resources import GROUP, VERSION
from computegate.statefiles import InputError, read_documents

RECORDS = f"/apis/{GROUP}/{VERSION}/usagerecords"


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--folder", type=Path, help="an exported folder (default: the live cluster)")
    source.add_argument("--kubeconfig", type=Path, help="the cluster to read (default: as kubectl)")
    parser.add_argument(
        "--audit-log",
        type=Path,
        action="append",
        default=[],
        help="the API server's audit log (JSON lines); the chain heads it holds must be in the chain",
    )
    parser.set_defaults(handler=run_verify)


def add_usage_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="usage_action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write every UsageRecord to a folder, one YAML file each")
    export.add_argument("--to", type=Path, required=True, help="the folder (created if missing)")
    export.add_argument("--kubeconfig", type=Path)
    export.set_defaults(handler=run_export)


def live_records(kubeconfig: Path | None, *, page_size: int = 500) -> list[dict[str, Any]]:
    """Every UsageRecord of the cluster, ``page_size`` a request (``limit`` and ``continue``)."""
    from computegate.kubeclient import KubeApiError, api_client, list_all

    api = api_client(kubeconfig)
    try:
        return list_all(api, RECORDS, limit=page_size)  # none when the CRD is not installed
    except (KubeApiError, ConnectionError) as error:
        raise SystemExit(f"computegate: cannot list UsageRecords: {error}") from None
    finally:
        api.close()


def folder_records(folder: Path) -> list[dict[str, Any]]:
    """The UsageRecords of an exported folder, read as every state folder is read (one-line
    errors naming the file and the document)."""
    try:
        documents = read_documents([folder])
    except InputError as error:
        raise SystemExit(f"computegate: {error}") from None
    return [d.body for d in documents if d.body.get("kind") == "UsageRecord"]


def heads_from(paths: list[Path]) -> list[tuple[int, str]]:
    heads: list[tuple[int, str]] = []
    for path in paths:
        heads += heads_in_audit_log(path.read_text().splitlines())
    return sorted(set(heads))


def run_verify(args: argparse.Namespace) -> int:
    records = folder_records(args.folder) if args.folder else live_records(args.kubeconfig)
    pairs = [(str(r["metadata"]["name"]), r.get("spec") or {}) for r in records]
    heads = heads_from(args.audit_log)
    problems = verify_chain(pairs, heads=heads)
    for problem in problems:
        print(f"computegate verify: {problem}", file=sys.stderr)
    if problems:
        return 1
    last = max((int(spec.get("sequence", -1)) for _, spec in pairs), default=-1)
    print(
        f"computegate verify: {len(pairs)} usage record(s), chain intact up to sequence {last}"
        + (f"; {len(heads)} chain head(s) from the audit log found in it" if args.audit_log else "")
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    records = live_records(args.kubeconfig)
    args.to.mkdir(parents=True, exist_ok=True)
    for record in records:
        clean = {
            "apiVersion": record.get("apiVersion"),
            "kind": "UsageRecord",
            "metadata": {
                "name": record["metadata"]["name"],
                "labels": record["metadata"].get("labels") or {},
            },
            "spec": record.get("spec") or {},
        }
        (args.to / f"{record['metadata']['name']}.yaml").write_text(yaml.safe_dump(clean, sort_keys=True))
    print(f"computegate usage export: {len(records)} record(s) written to {args.to}")
    return 0
