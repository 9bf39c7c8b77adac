"""The regulator's remote-user list: the engine's rows, and `computegate report remote-users`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate import cli
from computegate.catalog import remote_user_jurisdictions
from computegate.engine.remote_users import remote_users
from tests.unit.conftest import (
    H100,
    T4,
    StateFactory,
    license_,
    namespace,
    node,
    pod,
    profile,
    running,
    tenant,
)

PRODUCT = "nvidia.com/gpu.product"
H20 = "NVIDIA-H20"
H20_PROFILE = profile(
    "h20",
    vendor="NVIDIA",
    model="H20",
    resourceNames=["nvidia.com/gpu"],
    productLabels={PRODUCT: [H20]},
    tpp=2368,
    performanceDensity=2.9,
    memoryBandwidthGBps=4000,
    ioBandwidthGBps=1028,
)


def cluster() -> list[dict[str, Any]]:
    """Tenants in and out of the list, with running, finished and licensed pods."""
    return [
        node("h100-1", H100),
        node("h20-1", H20),
        node("t4-1", T4),
        H20_PROFILE,
        tenant("beijing-ai", "CN", namespaces=["bj"]),
        tenant("sg-sub", "SG", namespaces=["sg"], parent="RU", kyc="Pending"),
        tenant("us-lab", "US", namespaces=["us"]),
        tenant("labelled", "BY", namespaces=[]),
        namespace("by-ns", **{"computegate.io/tenant": "labelled"}),
        license_("bj-h100", "beijing-ai"),
        # beijing-ai: 2 H100 + 1 H20 running, a T4 (not controlled) and a finished H100.
        running(pod("train", "bj", gpus=2, node_selector={PRODUCT: H100}), license_name="bj-h100"),
        running(pod("serve", "bj", gpus=1, node_selector={PRODUCT: H20})),
        running(pod("agent", "bj", gpus=1, node_selector={PRODUCT: T4})),
        running(pod("done", "bj", gpus=4, node_selector={PRODUCT: H100}), phase="Succeeded"),
        # A pod carrying beijing-ai's license in a namespace it does not claim still counts for it.
        running(pod("stray", "elsewhere", gpus=1, node_selector={PRODUCT: H100}), license_name="bj-h100"),
        # us-lab's H20 is not controlled for a US tenant, and us-lab is not on the list anyway.
        running(pod("us-h20", "us", gpus=1, node_selector={PRODUCT: H20})),
        running(pod("sg-h20", "sg", gpus=2, node_selector={PRODUCT: H20})),
    ]


def test_the_list_holds_tenants_by_own_or_parent_jurisdiction(make_state: StateFactory) -> None:
    from tests.unit.test_bandwidth_controls import WITH_CONTROLS

    rows = remote_users(make_state(*cluster(), catalog=WITH_CONTROLS), ["BY", "CN", "RU"])
    assert [row.tenant for row in rows] == ["beijing-ai", "labelled", "sg-sub"]
    beijing, labelled, singapore = rows
    assert beijing.listed_for == (("CN", "own"),)
    assert singapore.listed_for == (("RU", "parent"),)
    assert singapore.kyc_status == "Pending"
    assert labelled.namespaces == ("by-ns",)
    assert beijing.licenses == ("bj-h100",)


def test_the_list_counts_controlled_accelerators_in_use_per_model(make_state: StateFactory) -> None:
    from tests.unit.test_bandwidth_controls import WITH_CONTROLS

    rows = remote_users(make_state(*cluster(), catalog=WITH_CONTROLS), ["CN", "RU"])
    beijing, singapore = rows
    assert [(u.profile, u.accelerators, u.tpp, u.pods) for u in beijing.uses] == [
        ("h100", 3, 3 * 15832, 2),  # 2 in its namespace + 1 under its license elsewhere
        ("h20", 1, 2368, 1),  # bandwidth-controlled for a tenant in China
    ]
    assert beijing.controlled_tpp == 3 * 15832 + 2368
    assert [(u.profile, u.accelerators) for u in singapore.uses] == [("h20", 2)]  # parent in RU (D:5)


def test_the_default_list_is_the_january_2026_list_with_its_source() -> None:
    default = remote_user_jurisdictions()
    assert set(default.jurisdictions) == {"BY", "CN", "CU", "IR", "MO", "KP", "RU", "VE"}
    assert "2026" in default.name
    assert default.source.strip()


# ----- the command, on a state folder -----


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "cluster.yaml").write_text(yaml.safe_dump_all(cluster()))
    return folder


def report(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["report", "remote-users", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_report_as_csv(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = report("--state", str(state_dir), capsys=capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    # The default list (BY, CN, ... RU ...) and the built-in catalog's bandwidth control.
    assert [row["tenant"] for row in rows] == ["beijing-ai", "labelled", "sg-sub"]
    beijing = rows[0]
    assert beijing["jurisdiction"] == "CN"
    assert beijing["listedFor"] == "CN (own)"
    assert beijing["kycStatus"] == "Verified"
    assert beijing["licenses"] == "bj-h100"
    assert beijing["controlledAccelerators"] == "4"
    assert beijing["controlledTPP"] == str(3 * 15832 + 2368)
    assert "h20: 1 x NVIDIA H20, 2368 TPP" in beijing["uses"]
    assert rows[2]["listedFor"] == "RU (parent)"
    assert rows[2]["parentJurisdiction"] == "RU"


def test_the_report_as_json(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = report(
        "--state", str(state_dir), "--format", "json", "--jurisdictions", "ru", capsys=capsys
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["jurisdictions"] == ["RU"]
    assert document["list"] is None  # a list given on the command line has no name or source
    (only,) = document["tenants"]
    assert only["tenant"] == "sg-sub"
    assert only["listedFor"] == [{"jurisdiction": "RU", "as": "parent"}]
    assert only["kyc"] == {"status": "Pending", "verifiedAt": None}
    assert only["uses"] == [
        {"profile": "h20", "model": "NVIDIA H20", "accelerators": 2, "tpp": 4736, "pods": 1}
    ]


def test_the_json_report_names_the_default_list_and_its_source(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = report("--state", str(state_dir), "--format", "json", capsys=capsys)
    assert code == 0
    about = json.loads(out)["list"]
    assert about["name"] == remote_user_jurisdictions().name
    assert about["source"]


@pytest.mark.parametrize("value", ["", "CHN", "C1", "CN,,X"])
def test_bad_jurisdictions_are_an_input_error(
    state_dir: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, out, err = report("--state", str(state_dir), "--jurisdictions", value, capsys=capsys)
    assert code == 2
    assert not out
    assert err.startswith("computegate report remote-users: --jurisdictions:")


def test_a_missing_state_folder_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = report("--state", str(tmp_path / "nope"), capsys=capsys)
    assert code == 2
    assert "--state must be a directory" in err


def test_a_state_file_error_names_the_file_and_field(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (state_dir / "broken.yaml").write_text(yaml.safe_dump(tenant("x", "China", namespaces=[])))
    code, _, err = report("--state", str(state_dir), capsys=capsys)
    assert code == 2
    assert "broken.yaml" in err
    assert "spec.jurisdiction" in err


def test_state_and_kubeconfig_exclude_each_other(state_dir: Path) -> None:
    with pytest.raises(SystemExit):
        cli.main(["report", "remote-users", "--state", str(state_dir), "--kubeconfig", "k"])
