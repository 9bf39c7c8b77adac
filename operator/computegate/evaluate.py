"""``computegate evaluate``: the engine on YAML files, no cluster (DESIGN.md, offline evaluator)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import TypeAdapter, ValidationError

from computegate.catalog import builtin_catalog
from computegate.engine import ClusterState, Verdict, decide
from computegate.engine.state import StateObject
from computegate.models.base import Timestamp
from computegate.models.kube import Pod, Workload
from computegate.statefiles import (
    STATE_KINDS,
    InputError,
    load_state,
    parse_state_object,
    parse_workload,
    read_documents,
)
from computegate.vocabulary import LICENSE_ANNOTATION

EXIT_ADMITTED, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", type=Path, required=True, metavar="DIR", help="YAML of the cluster's state"
    )
    parser.add_argument("--at", metavar="RFC3339", help="evaluation time (default: now)")
    parser.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST", help="workloads to evaluate")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return evaluate(args.state, args.manifests, at=args.at, out=sys.stdout, err=sys.stderr)


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
        "tenant": verdict.tenant,
        "jurisdiction": verdict.jurisdiction,
        "accelerators": _number(verdict.accelerators),
        "tpp": _number(verdict.tpp),
        "controlledTpp": _number(verdict.controlled_tpp),
        "license": verdict.license,
        "message": verdict.message,
    }


def evaluate(state_dir: Path, manifests: list[Path], *, at: str | None, out: TextIO, err: TextIO) -> int:
    try:
        when = _parse_at(at)
        if not state_dir.is_dir():
            raise InputError(f"{state_dir}: --state must be a directory")
        state = load_state(state_dir, builtin_catalog())
        # Parse everything first: unusable input prints one error and no verdicts.
        # State objects in a manifest (a ResourceClaim beside its Pod) are applied in order.
        steps: list[tuple[Workload | None, StateObject | None]] = []
        for document in read_documents(manifests):
            if document.kind in STATE_KINDS and document.kind != "Pod":
                steps.append((None, parse_state_object(document)))
            else:
                steps.append((parse_workload(document), None))
    except InputError as error:
        err.write(f"computegate evaluate: {error}\n")
        return EXIT_BAD_INPUT
    denied = False
    for index, (workload, state_object) in enumerate(steps):
        if state_object is not None:
            state.upsert(state_object)
        if workload is None:
            continue
        verdict = decide(state, workload, at=when)
        out.write(json.dumps(verdict_record(workload, verdict)) + "\n")
        denied |= not verdict.allowed
        if isinstance(workload, Pod) and verdict.allowed:
            _count_admitted_pod(state, workload, verdict, index)
    return EXIT_DENIED if denied else EXIT_ADMITTED


def _count_admitted_pod(state: ClusterState, pod: Pod, verdict: Verdict, index: int) -> None:
    """An admitted pod consumes its license for the workloads evaluated after it."""
    annotations = dict(pod.metadata.annotations)
    annotations.pop(LICENSE_ANNOTATION, None)
    if verdict.license and not verdict.audit:
        annotations[LICENSE_ANNOTATION] = verdict.license
    name = pod.metadata.name or f"{pod.metadata.generate_name or 'pod-'}evaluated-{index}"
    metadata = pod.metadata.model_copy(update={"annotations": annotations, "name": name})
    state.upsert(pod.model_copy(update={"metadata": metadata}))
