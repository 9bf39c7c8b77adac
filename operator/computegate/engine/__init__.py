"""The decision: pure and synchronous. Models and a ``ClusterState`` in, a ``Verdict`` out.

No I/O and no Kubernetes client here (import-linter forbids kopf, kubernetes, aiohttp), so the
webhook, the offline evaluator and any audit give the same answer for the same input.
"""

from computegate.engine import consumption
from computegate.engine.bands import eccn_band
from computegate.engine.decide import decide, decide_update
from computegate.engine.indexes import Usage
from computegate.engine.state import Catalog, ClusterState
from computegate.engine.verdict import AcceleratorUse, Code, Operation, Verdict

__all__ = [
    "AcceleratorUse",
    "Catalog",
    "ClusterState",
    "Code",
    "Operation",
    "Usage",
    "Verdict",
    "consumption",
    "decide",
    "decide_update",
    "eccn_band",
]
