"""What the operator keeps of a pod: one copy of each container its replicas share."""

from __future__ import annotations

from typing import Any

from computegate.engine import ClusterState
from tests.unit.conftest import CATALOG, obj, pod


def replica(index: int, *, gpus: int = 1) -> dict[str, Any]:
    body = pod(f"worker-{index}", gpus=gpus, nodeName=f"node-{index % 3}")
    body["metadata"]["uid"] = f"uid-{index}"
    body["spec"]["initContainers"] = [{"name": "setup", "image": "x", "restartPolicy": "Always"}]
    return body


def test_replicas_of_a_template_share_their_containers_and_keep_their_own_node() -> None:
    state = ClusterState(CATALOG)
    for index in range(3):
        state.upsert(obj(replica(index)))
    state.upsert(obj(replica(3, gpus=2)))
    kept = [state.pods[("team", f"worker-{index}")] for index in range(4)]
    assert kept[0].spec.containers[0] is kept[1].spec.containers[0] is kept[2].spec.containers[0]
    assert kept[0].spec.init_containers[0] is kept[2].spec.init_containers[0]
    assert kept[3].spec.containers[0] is not kept[0].spec.containers[0]  # it asks for 2 GPUs
    assert [p.spec.node_name for p in kept] == ["node-0", "node-1", "node-2", "node-0"]
    assert kept[3].spec.containers[0].resources.limits["nvidia.com/gpu"] == 2


def test_a_kept_pod_equals_the_pod_it_was_read_from() -> None:
    state = ClusterState(CATALOG)
    original = obj(replica(0))
    state.upsert(original)
    assert state.pods[("team", "worker-0")] == original
