"""``computegate evaluate``: the engine on YAML files, no cluster (DESIGN.md, offline evaluator).

Fit for CI: it reads whatever a chart or kustomize renders (``-`` is standard input), judges
the workloads, applies the state objects it finds in order, and skips every other document,
naming each on stderr. A custom resource that carries a pod template (an operator's workload
kind) cannot be judged here, since its pods exist only once its controller makes them; it is
skipped with a warning, or refused with ``--strict``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import TypeAdapter, ValidationError

from computegate import __version__
from computegate.catalog import builtin_catalog
from computegate.engine import ClusterState, Verdict, decide
from computegate.engine.state import StateObject
from computegate.models.base import Timestamp
from computegate.models.kube import Pod, Workload
from computegate.statefiles import (
    STATE_KINDS,
    Document,
    InputError,
    load_state,
    parse_state_object,
    parse_workload,
    read_documents,
)
from computegate.vocabulary import LICENSE_ANNOTATION, WORKLOAD_BY_KIND

EXIT_ADMITTED, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", type=Path, required=True, metavar="DIR", help="YAML of the cluster's state"
    )
    parser.add_argument("--at", metavar="RFC3339", help="evaluation time (default: now)")
    parser.add_argument(
        "--output",
        "-o",
        choices=OUTPUTS,
        default="json",
        help="json: one JSON object per workload (default); table: aligned columns for people",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 2) a custom resource that carries a pod template, instead of skipping it",
    )
    parser.add_argument("--version", action="version", version=f"computegate {__version__}")
    parser.add_argument(
        "manifests",
        nargs="+",
        type=Path,
        metavar="MANIFEST",
        help="YAML files or folders of workloads; - reads standard input",
    )
    parser.set_defaults(handler=run)


OUTPUTS = ("json", "table")


def run(args: argparse.Namespace) -> int:
    return evaluate(
        args.state,
        args.manifests,
        at=args.at,
        out=sys.stdout,
        err=sys.stderr,
        output=args.output,
        strict=args.strict,
    )


def _parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return _TIMESTAMP.validate_python(value)
    except ValidationError as error:
        raise InputError(f"--at: {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def verdict_record(workload: Workload, verdict: Verdict) -> dict[str, Any]:
    return {
        "kind": workload.kind,
        "namespace": workload.metadata.namespace,
        "name": workload.metadata.name or workload.metadata.generate_name,
        "allowed": verdict.allowed,
        "code": verdict.code.value,
        "audit": verdict.audit,
        "tenant": verdict.tenant,
        "jurisdiction": verdict.jurisdiction,
        "accelerators": _number(verdict.accelerators),
        "tpp": _number(verdict.tpp),
        "controlledTpp": _number(verdict.controlled_tpp),
        "license": verdict.license,
        "message": verdict.message,
    }


def _group(document: Document) -> str:
    api_version = str(document.body.get("apiVersion") or "")
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _is_workload(document: Document) -> bool:
    """A kind that makes pods, in its own API group (a custom `example.com/v1 Deployment` is not)."""
    known = WORKLOAD_BY_KIND.get(document.kind)
    return known is not None and (not document.body.get("apiVersion") or _group(document) == known.group)


def _is_custom(document: Document) -> bool:
    group = _group(document)
    return "." in group and not group.endswith(".k8s.io") and document.kind not in STATE_KINDS


def _has_pod_template(value: Any) -> bool:
    """Somewhere inside, a pod spec: a mapping with a list of containers."""
    if isinstance(value, dict):
        if isinstance(value.get("containers"), list):
            return True
        return any(_has_pod_template(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_pod_template(item) for item in value)
    return False


def skip_reason(document: Document) -> str | None:
    """Why a document that is neither a workload nor state is skipped (None: it is not skipped)."""
    if _is_workload(document) or (document.kind in STATE_KINDS and document.kind != "Pod"):
        return None
    if not document.kind:
        return None  # unusable: parse_workload says what is missing
    if _is_custom(document) and _has_pod_template(document.body.get("spec")):
        return "custom resource with a pod template"
    return "not a workload"


def evaluate(
    state_dir: Path,
    manifests: list[Path],
    *,
    at: str | None,
    out: TextIO,
    err: TextIO,
    output: str = "json",
    strict: bool = False,
) -> int:
    skipped: list[tuple[Document, str]] = []
    try:
        when = _parse_at(at)
        if not state_dir.is_dir():
            raise InputError(f"{state_dir}: --state must be a directory")
        state = load_state(state_dir, builtin_catalog())
        # Parse everything first: unusable input prints one error and no verdicts.
        # State objects in a manifest (a ResourceClaim beside its Pod) are applied in order.
        steps: list[tuple[Workload | None, StateObject | None]] = []
        for document in read_documents(manifests):
            reason = skip_reason(document)
            if reason is not None:
                if strict and reason != "not a workload":
                    raise InputError(
                        f"{document.where}: a {reason}, whose pods cannot be judged offline "
                        "(--strict; without it the document is skipped with a warning)"
                    )
                skipped.append((document, reason))
            elif document.kind in STATE_KINDS and document.kind != "Pod":
                steps.append((None, parse_state_object(document)))
            else:
                steps.append((parse_workload(document), None))
    except InputError as error:
        err.write(f"computegate evaluate: {error}\n")
        return EXIT_BAD_INPUT
    for document, reason in skipped:
        warning = "warning: " if reason != "not a workload" else ""
        detail = (
            ": its pods are judged by the webhook when its controller creates them; --strict refuses it"
            if warning
            else ""
        )
        err.write(f"computegate evaluate: {warning}skipped {document.where}: {reason}{detail}\n")
    denied = False
    records: list[dict[str, Any]] = []
    for index, (workload, state_object) in enumerate(steps):
        if state_object is not None:
            state.upsert(state_object)
        if workload is None:
            continue
        verdict = decide(state, workload, at=when)
        record = verdict_record(workload, verdict)
        if output == "json":
            out.write(json.dumps(record) + "\n")
        records.append(record)
        denied |= not verdict.allowed
        if isinstance(workload, Pod) and verdict.allowed:
            _count_admitted_pod(state, workload, verdict, index)
    if output == "table":
        out.write(table(records))
    return EXIT_DENIED if denied else EXIT_ADMITTED


_COLUMNS = (
    ("KIND", "kind"),
    ("NAMESPACE", "namespace"),
    ("NAME", "name"),
    ("ALLOWED", "allowed"),
    ("CODE", "code"),
    ("AUDIT", "audit"),
    ("TENANT", "tenant"),
    ("ACCELERATORS", "accelerators"),
    ("CONTROLLED TPP", "controlledTpp"),
    ("LICENSE", "license"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(records: list[dict[str, Any]]) -> str:
    """kubectl-style columns, then the message of every denial and would-be denial."""
    rows = [[title for title, _ in _COLUMNS]] + [[_cell(r[key]) for _, key in _COLUMNS] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    notes = [
        f"{r['kind']} {r['namespace']}/{r['name']}: {r['message']}"
        for r in records
        if not r["allowed"] or r["audit"]
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _count_admitted_pod(state: ClusterState, pod: Pod, verdict: Verdict, index: int) -> None:
    """An admitted pod consumes its license for the workloads evaluated after it."""
    annotations = dict(pod.metadata.annotations)
    annotations.pop(LICENSE_ANNOTATION, None)
    if verdict.license and not verdict.audit:
        annotations[LICENSE_ANNOTATION] = verdict.license
    name = pod.metadata.name or f"{pod.metadata.generate_name or 'pod-'}evaluated-{index}"
    metadata = pod.metadata.model_copy(update={"annotations": annotations, "name": name})
    state.upsert(pod.model_copy(update={"metadata": metadata}))
