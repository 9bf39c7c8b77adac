"""``computegate report remote-users``: the regulator's remote-user list as CSV or JSON.

The rows come from the engine (``computegate.engine.remote_users``); this adapter only reads the
state (a folder of YAML, or a live cluster) and writes the rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from computegate.catalog import JurisdictionList, builtin_catalog, remote_user_jurisdictions
from computegate.engine.remote_users import RemoteUser, remote_users
from computegate.engine.state import ClusterState
from computegate.statefiles import InputError, load_state

EXIT_OK, EXIT_BAD_INPUT = 0, 2
_COUNTRY = re.compile(r"^[A-Z]{2}$")
CSV_COLUMNS = (
    "tenant",
    "displayName",
    "jurisdiction",
    "parentJurisdiction",
    "listedFor",
    "kycStatus",
    "kycVerifiedAt",
    "namespaces",
    "licenses",
    "controlledAccelerators",
    "controlledTPP",
    "uses",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    reports = parser.add_subparsers(dest="report", required=True, metavar="REPORT")
    default = remote_user_jurisdictions()
    remote = reports.add_parser(
        "remote-users",
        help="tenants located in, or controlled by a parent from, the listed jurisdictions",
        description=(
            "Every tenant whose own or parent jurisdiction is in the list, with its KYC status, "
            "licenses and the controlled accelerators it uses now. Default list: "
            f"{default.name} ({', '.join(default.jurisdictions)})."
        ),
    )
    source = remote.add_mutually_exclusive_group()
    source.add_argument(
        "--state", type=Path, metavar="DIR", help="YAML of the cluster's state, as for evaluate"
    )
    source.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="FILE",
        help="read a live cluster (default without --state: $KUBECONFIG, ~/.kube/config or in-cluster)",
    )
    remote.add_argument(
        "--jurisdictions",
        metavar="CC,CC,...",
        help="ISO 3166-1 alpha-2 codes, comma-separated (default: the built-in list)",
    )
    remote.add_argument("--format", choices=("csv", "json"), default="csv")
    remote.set_defaults(handler=run)
    from computegate import usagereport

    usagereport.add_parser(reports)


def run(args: argparse.Namespace) -> int:
    return report_remote_users(
        state_dir=args.state,
        kubeconfig=args.kubeconfig,
        jurisdictions=args.jurisdictions,
        output_format=args.format,
        out=sys.stdout,
        err=sys.stderr,
    )


def report_remote_users(
    *,
    state_dir: Path | None,
    kubeconfig: Path | None,
    jurisdictions: str | None,
    output_format: str,
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        listed, named_list = _jurisdictions(jurisdictions)
        state = _state(state_dir, kubeconfig)
    except InputError as error:
        err.write(f"computegate report remote-users: {error}\n")
        return EXIT_BAD_INPUT
    rows = remote_users(state, listed)
    if output_format == "json":
        json.dump(_document(rows, listed, named_list), out, indent=2)
        out.write("\n")
    else:
        _write_csv(rows, out)
    return EXIT_OK


def _jurisdictions(value: str | None) -> tuple[tuple[str, ...], JurisdictionList | None]:
    if value is None:
        default = remote_user_jurisdictions()
        return default.jurisdictions, default
    codes = tuple(code.strip().upper() for code in value.split(",") if code.strip())
    wrong = [code for code in codes if not _COUNTRY.match(code)]
    if not codes or wrong:
        raise InputError(f"--jurisdictions: expected ISO 3166-1 alpha-2 codes such as BY,CN, got {value!r}")
    return codes, None


def _state(state_dir: Path | None, kubeconfig: Path | None) -> ClusterState:
    if state_dir is not None:
        if not state_dir.is_dir():
            raise InputError(f"{state_dir}: --state must be a directory")
        return load_state(state_dir, builtin_catalog())
    from computegate.livestate import load_live_state  # the Kubernetes client only when needed

    return load_live_state(kubeconfig, builtin_catalog())


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


def _record(row: RemoteUser) -> dict[str, Any]:
    return {
        "tenant": row.tenant,
        "displayName": row.display_name,
        "jurisdiction": row.jurisdiction,
        "parentJurisdiction": row.parent_jurisdiction,
        "listedFor": [{"jurisdiction": country, "as": whose} for country, whose in row.listed_for],
        "kyc": {
            "status": row.kyc_status,
            "verifiedAt": row.kyc_verified_at.isoformat() if row.kyc_verified_at else None,
        },
        "namespaces": list(row.namespaces),
        "licenses": list(row.licenses),
        "controlledAccelerators": _number(row.controlled_accelerators),
        "controlledTPP": _number(row.controlled_tpp),
        "uses": [
            {
                "profile": use.profile,
                "model": use.model,
                "accelerators": _number(use.accelerators),
                "tpp": _number(use.tpp),
                "pods": use.pods,
            }
            for use in row.uses
        ],
    }


def _document(
    rows: list[RemoteUser], listed: tuple[str, ...], named_list: JurisdictionList | None
) -> dict[str, Any]:
    about = (
        {"name": named_list.name, "source": named_list.source, "effective": named_list.effective}
        if named_list
        else None
    )
    return {"list": about, "jurisdictions": list(listed), "tenants": [_record(row) for row in rows]}


def _write_csv(rows: list[RemoteUser], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        record = _record(row)
        writer.writerow(
            [
                row.tenant,
                row.display_name or "",
                row.jurisdiction,
                row.parent_jurisdiction or "",
                "; ".join(f"{country} ({whose})" for country, whose in row.listed_for),
                row.kyc_status,
                record["kyc"]["verifiedAt"] or "",
                "; ".join(row.namespaces),
                "; ".join(row.licenses),
                record["controlledAccelerators"],
                record["controlledTPP"],
                "; ".join(
                    f"{use['profile']}: {use['accelerators']} x {use['model']}, {use['tpp']} TPP"
                    for use in record["uses"]
                ),
            ]
        )
