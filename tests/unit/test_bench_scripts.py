"""The benchmark scripts import and parse their arguments (they are run by hand, never timed here)."""

from __future__ import annotations

import importlib

import pytest
from bench import apiserver, common, engine, https, memory, run


@pytest.mark.parametrize(
    "name", ["bench.engine", "bench.https", "bench.apiserver", "bench.memory", "bench.run"]
)
def test_every_script_imports(name: str) -> None:
    assert importlib.import_module(name).main


def test_arguments() -> None:
    assert run.parser().parse_args(["--quick", "--only", "https", "--only", "engine"]).only == [
        "https",
        "engine",
    ]
    assert https.parser().parse_args(["--quick"]).quick
    serve = https.parser().parse_args(["serve-computegate", "--port", "1", "--cert-dir", "x"])
    assert (serve.command, serve.port) == ("serve-computegate", 1)
    assert apiserver.parser().parse_args(["--rounds", "2"]).rounds == 2
    assert memory.scale_of(memory.parser().parse_args(["--quick"])).pods == 10_000
    assert memory.scale_of(memory.parser().parse_args([])) == memory.FULL
    assert memory.parser().parse_args(["list-state", "--kubeconfig", "k", "--keep-all"]).keep_all
    with pytest.raises(SystemExit):
        run.parser().parse_args(["--only", "nothing"])


def test_the_rego_and_the_pods_are_what_the_benchmarks_send() -> None:
    assert (https.HERE / "opa" / "computegate.rego").is_file()
    review = https.review(0)["request"]
    assert review["dryRun"] and review["object"]["spec"]["nodeSelector"]
    assert apiserver._pod("gpu", dry=True)["spec"]["containers"][0]["resources"]["limits"]
    phases = memory.objects(memory.Scale(tenants=4, licenses=8, nodes=2, pods=8))
    assert [len(items) for items in phases.values()] == [10, 8, 8]


def test_helpers() -> None:
    assert common.Spread.of([3.0, 1.0, 2.0]) == common.Spread(1.0, 2.0, 3.0)
    assert common._quantile([1.0, 2.0, 3.0], 0.5) == 2.0
    assert common._ns("2026-01-01T00:00:00.5Z") == 1767225600_500000000
    assert common.pinned(["x"], None) == ["x"]
    assert engine.Size(1, 2, 3, 4).times(2) == engine.Size(2, 4, 6, 8)
