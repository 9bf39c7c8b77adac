"""CustomResourceDefinitions generated from the pydantic models, so schema and code agree.

The generated manifests are written into the chart and ``manifests/`` by
``computegate crds`` and a test checks the checked-in copies are current.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from computegate.models.resources import (
    GROUP,
    VERSION,
    AcceleratorProfileSpec,
    CompliancePolicySpec,
    ExportLicenseSpec,
    TenantSpec,
)

JsonSchema = dict[str, Any]

_DROPPED_KEYS = {"title", "$defs", "additionalProperties"}


def _structural(node: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    """Turn pydantic's JSON Schema into a Kubernetes structural schema: no refs, no null unions."""
    if "$ref" in node:
        referenced = _structural(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        # `kubectl explain` shows the field's own description before the type's.
        return {**referenced, "description": node["description"]} if "description" in node else referenced
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express {node} as a structural schema")
        merged = {**_structural(options[0], defs)}
        if "default" in node and node["default"] is not None:
            merged["default"] = node["default"]
        if "description" in node:
            merged["description"] = node["description"]
        return merged
    if "const" in node:
        return {"type": "string", "enum": [node["const"]]}
    out: JsonSchema = {key: value for key, value in node.items() if key not in _DROPPED_KEYS}
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(exclusive), int | float) and not isinstance(out[exclusive], bool):
            # JSON Schema 2020-12 gives the bound; Kubernetes' OpenAPI v3 schemas a flag beside it.
            out[bound], out[exclusive] = out[exclusive], True
    if "enum" in node and "type" not in node:
        out["type"] = "string"
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {name: _structural(sub, defs) for name, sub in node["properties"].items()}
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(node["additionalProperties"], defs)
    if "items" in node:
        out["items"] = _structural(node["items"], defs)
    if out.get("default") is None:
        out.pop("default", None)
    return out


def spec_schema(model: type[BaseModel]) -> JsonSchema:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(schema, schema.get("$defs", {}))


def _column(name: str, path: str, kind: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date")

_LICENSE_STATUS: JsonSchema = {
    "type": "object",
    "description": (
        "Kept by the operator (docs/webhook.md, the license ledger): ledger (committed figures and "
        "in-flight reservations by pod uid, written by compare-and-swap), consumedTPP, "
        "consumedAccelerators, reservedTPP, reservations, headroomTPP, headroomAccelerators, state "
        "(Active, Exhausted, Expired, Revoked, NotYetValid), violations (running pods under it the "
        "engine would refuse now) and conditions (Valid, Exhausted, Violations)."
    ),
    "x-kubernetes-preserve-unknown-fields": True,
}


_TENANT_STATUS: JsonSchema = {
    "type": "object",
    "description": (
        "Kept by the operator (docs/compliance.md): namespaces (resolved to this tenant), conflicts "
        "(namespaces another tenant claims too), licenses, consumedTPP, consumedAccelerators, "
        "violations (running pods the engine would refuse now), auditFindings (the same, under Audit "
        "enforcement), violationsByCode, violatingPods (namespace, name, uid, code and since: when "
        "the violation was first seen, from which the eviction grace period counts) and conditions "
        "(Compliant, NamespaceConflict)."
    ),
    "x-kubernetes-preserve-unknown-fields": True,
}


_USAGE_RECORD_SPEC: JsonSchema = {
    "type": "object",
    "description": (
        "One tenant's controlled compute in one period (a day by default), written once by the "
        "elected operator replica (docs/compliance.md): tenant, periodStart, periodEnd, licenses "
        "(name to tppHours, acceleratorHours and the lowest maxTPP and maxAccelerators of the "
        "period, as decimal strings), admissions, denials and violations (pods) by reason code, "
        "sequence, previousHash and hash (SHA-256 of the canonical JSON of the rest)."
    ),
    "required": ["tenant", "periodStart", "periodEnd", "sequence", "previousHash", "hash"],
    "properties": {
        "tenant": {"type": "string", "description": "The Tenant whose use this is"},
        "periodStart": {"type": "string", "description": "Start of the period (RFC 3339), inclusive"},
        "periodEnd": {"type": "string", "description": "End of the period (RFC 3339), exclusive"},
        "sequence": {"type": "integer", "minimum": 0, "description": "Place in the chain, from 0"},
        "previousHash": {"type": "string", "description": "hash of the record before (0s for the first)"},
        "hash": {"type": "string", "description": "SHA-256 of this record's canonical JSON without hash"},
    },
    "x-kubernetes-preserve-unknown-fields": True,
}


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    spec: JsonSchema,
    columns: list[dict[str, Any]],
    root_rules: list[dict[str, str]] | None = None,
    status: JsonSchema | None = None,
) -> dict[str, Any]:
    root: JsonSchema = {
        "type": "object",
        "description": spec.get("description", kind),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }
    if root_rules:
        root["x-kubernetes-validations"] = root_rules
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": root},
        "additionalPrinterColumns": [*columns, _AGE],
    }
    if status is not None:
        root["properties"]["status"] = status
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "computegate"}},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["computegate"],
            },
            "versions": [version],
        },
    }


def crd_manifests() -> list[dict[str, Any]]:
    """The five CRDs, in the order they are installed."""
    license_spec = spec_schema(ExportLicenseSpec)
    license_spec["x-kubernetes-validations"] = [
        {
            # date-time strings are CEL timestamps, so this compares instants, not text.
            "rule": "self.validUntil > self.validFrom",
            "message": "validUntil must be after validFrom",
        },
    ]
    tenant_spec = spec_schema(TenantSpec)
    tenant_spec["properties"]["namespaces"]["x-kubernetes-list-type"] = "set"
    policy_spec = spec_schema(CompliancePolicySpec)
    return [
        _crd(
            kind="Tenant",
            plural="tenants",
            short_names=["cgtenant"],
            spec=tenant_spec,
            columns=[
                _column("Jurisdiction", ".spec.jurisdiction"),
                _column("Parent", ".spec.parentJurisdiction"),
                _column("KYC", ".spec.kyc.status"),
                _column("Violations", ".status.violations", "integer"),
                _column("Display Name", ".spec.displayName", priority=1),
            ],
            status=_TENANT_STATUS,
        ),
        _crd(
            kind="ExportLicense",
            plural="exportlicenses",
            short_names=["exlic"],
            spec=license_spec,
            columns=[
                _column("Tenant", ".spec.tenant"),
                _column("License", ".spec.licenseNumber"),
                _column("Max TPP", ".spec.maxTPP", "number"),
                _column("Used TPP", ".status.consumedTPP", "number"),
                _column("Reserved TPP", ".status.reservedTPP", "number"),
                _column("Headroom TPP", ".status.headroomTPP", "number"),
                _column("Valid Until", ".spec.validUntil"),
                _column("State", ".status.state"),
                _column("Violations", ".status.violations", "integer", priority=1),
                _column("Revoked", ".spec.revoked", "boolean", priority=1),
                _column("Authority", ".spec.authority", priority=1),
                _column("Valid From", ".spec.validFrom", priority=1),
            ],
            status=_LICENSE_STATUS,
        ),
        _crd(
            kind="CompliancePolicy",
            plural="compliancepolicies",
            short_names=["cgpolicy"],
            spec=policy_spec,
            columns=[
                _column("Enforcement", ".spec.enforcement"),
                _column("Unknown Tenant", ".spec.unknownTenant", priority=1),
            ],
            root_rules=[
                {
                    "rule": "self.metadata.name == 'default'",
                    "message": "the CompliancePolicy must be named default",
                }
            ],
        ),
        _crd(
            kind="UsageRecord",
            plural="usagerecords",
            short_names=["cgusage"],
            spec=_USAGE_RECORD_SPEC,
            columns=[
                _column("Tenant", ".spec.tenant"),
                _column("From", ".spec.periodStart"),
                _column("Until", ".spec.periodEnd"),
                _column("Sequence", ".spec.sequence", "integer"),
                _column("Hash", ".spec.hash", priority=1),
            ],
            root_rules=[
                {"rule": "self.spec == oldSelf.spec", "message": "a usage record cannot be changed"},
            ],
        ),
        _crd(
            kind="AcceleratorProfile",
            plural="acceleratorprofiles",
            short_names=["accprofile"],
            spec=spec_schema(AcceleratorProfileSpec),
            columns=[
                _column("Vendor", ".spec.vendor"),
                _column("Model", ".spec.model"),
                _column("TPP", ".spec.tpp", "number"),
                _column("PD", ".spec.performanceDensity", "number"),
            ],
        ),
    ]
