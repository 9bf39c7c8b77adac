"""The shell blocks of docs/install.md, by name, so tests run them verbatim.

A block is a fenced ``sh`` code block preceded by ``<!-- block: NAME -->``. Every ``sh`` block
must be named, and ``EXERCISED`` says which test runs or checks each one (test_docs.py holds the
two in step), so no documented command goes untested.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

INSTALL_MD = Path(__file__).resolve().parents[2] / "docs" / "install.md"

_NAMED = re.compile(
    r"<!-- block: ([a-z0-9-]+) -->[ \t]*\n(?:[ \t]*\n)*([ \t]*)```sh\n(.*?)\n[ \t]*```", re.DOTALL
)
_ANY_SH = re.compile(r"```sh\n")

# block name -> (test file, test function) that runs it verbatim (or, where it cannot run here,
# checks it by rendering: the cert-manager install and the kind demo).
_INSTALL = "test_install.py"
_HELM_INSTALL = "test_documented_helm_install_creates_the_release_objects_and_prints_next_steps"
_EMERGENCY = "test_documented_emergency_procedure_switches_to_audit_removes_and_restores_webhooks"
_UPGRADE = "test_documented_helm_upgrade_updates_the_crds_and_keeps_the_admins_policy_and_the_injected_ca"
_MANIFESTS = "test_documented_plain_manifests_apply_and_delete_on_a_fresh_cluster"
EXERCISED: dict[str, tuple[str, str]] = {
    "helm-install": (_INSTALL, _HELM_INSTALL),
    "helm-verify": (_INSTALL, _HELM_INSTALL),
    "helm-upgrade": (_INSTALL, _UPGRADE),
    "helm-uninstall": (
        _INSTALL,
        "test_documented_uninstall_removes_the_webhook_configurations_without_any_hook_and_keeps_the_data",
    ),
    "helm-monitoring": (
        _INSTALL,
        "test_documented_monitoring_upgrade_creates_the_service_monitor_alerts_and_dashboard",
    ),
    "helm-adopt": (
        _INSTALL,
        "test_documented_adoption_puts_objects_applied_from_manifests_under_a_helm_release",
    ),
    "helm-install-cert-manager": (
        "test_dry_run.py",
        "test_every_object_of_the_cert_manager_install_passes_server_side_dry_run",
    ),
    "manifests-apply": (_INSTALL, _MANIFESTS),
    "manifests-delete": (_INSTALL, _MANIFESTS),
    "kind-demo": (
        "test_kind.py",
        "test_make_kind_demo_runs_the_kind_demo_script_and_every_file_it_uses_exists",
    ),
    "emergency-audit": (_INSTALL, _EMERGENCY),
    "emergency-delete": (_INSTALL, _EMERGENCY),
    "emergency-restore": (_INSTALL, _EMERGENCY),
}


README_MD = INSTALL_MD.parents[1] / "README.md"


def blocks(path: Path = INSTALL_MD) -> dict[str, str]:
    text = path.read_text()
    found: dict[str, str] = {}
    for match in _NAMED.finditer(text):
        name, body = match.group(1), match.group(3)
        assert name not in found, f"{path.name}: block {name} appears twice"
        found[name] = textwrap.dedent(body)
    return found


def readme_install_section() -> str:
    text = README_MD.read_text()
    start = text.index("## Installing in a cluster")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def unnamed_block_count() -> int:
    return len(_ANY_SH.findall(INSTALL_MD.read_text())) - len(blocks())


def block(name: str) -> str:
    return blocks()[name]
