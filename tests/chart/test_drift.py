"""The checked-in generated files are what their generators produce today."""

from __future__ import annotations

from pathlib import Path

import yaml

from computegate import chartgen
from tests.chart.conftest import CHART, MANIFESTS, Tools


def test_generated_chart_templates_match_the_crd_and_webhook_generators() -> None:
    stale = chartgen.drifted(CHART, chartgen.chart_templates())
    assert stale == [], f"run `make manifests`: stale chart templates {stale}"


def test_plain_manifests_match_the_chart_rendered_with_default_values(offline_tools: Tools) -> None:
    assert offline_tools.binaries.helm is not None
    rendered = chartgen.render_manifests(CHART, helm=offline_tools.binaries.helm)
    assert sorted(rendered) == ["compliancepolicy.yaml", "computegate.yaml", "crds.yaml", "namespace.yaml"]
    stale = chartgen.drifted(MANIFESTS, rendered)
    assert stale == [], f"run `make manifests`: stale manifests {stale}"


def test_plain_manifests_hold_crds_and_policy_apart_and_leave_out_the_helm_only_uninstall_hook() -> None:
    crds = [doc for doc in yaml.safe_load_all((MANIFESTS / "crds.yaml").read_text()) if doc]
    rest = [doc for doc in yaml.safe_load_all((MANIFESTS / "computegate.yaml").read_text()) if doc]
    assert {doc["kind"] for doc in crds} == {"CustomResourceDefinition"}
    assert len(crds) == 5
    kinds = [doc["kind"] for doc in rest]
    assert "CompliancePolicy" not in kinds and "Namespace" not in kinds
    policies = [doc for doc in yaml.safe_load_all((MANIFESTS / "compliancepolicy.yaml").read_text()) if doc]
    assert [(doc["kind"], doc["metadata"]["name"]) for doc in policies] == [("CompliancePolicy", "default")]
    assert "annotations" not in policies[0]["metadata"]
    (namespace,) = [doc for doc in yaml.safe_load_all((MANIFESTS / "namespace.yaml").read_text()) if doc]
    assert namespace["kind"] == "Namespace"
    assert {doc["metadata"].get("namespace") for doc in rest} <= {namespace["metadata"]["name"], None}
    assert "Job" not in kinds
    assert all("helm.sh/hook" not in (doc["metadata"].get("annotations") or {}) for doc in rest)
    assert {"Deployment", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} <= set(kinds)


def test_chart_sync_check_reports_a_stale_file_and_exits_one(tmp_path: Path) -> None:
    from computegate.cli import main

    chart = tmp_path / "chart"
    chartgen.write_files(chart, chartgen.chart_templates())
    assert main(["chart-sync", "--chart", str(chart), "--check"]) == 0
    (chart / chartgen.GENERATED_DIR / "crds.yaml").write_text("# edited by hand\n")
    assert main(["chart-sync", "--chart", str(chart), "--check"]) == 1
    assert main(["chart-sync", "--chart", str(chart)]) == 0
    assert chartgen.drifted(chart, chartgen.chart_templates()) == []
