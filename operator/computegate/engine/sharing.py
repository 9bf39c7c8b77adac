"""GPU-sharing resource names (DESIGN.md step 2): a unit that shares a chip never counts for less
TPP than its share of the chip.

Sharing schemes advertise a chip under names of their own: a count of virtual GPUs, a share of
the chip's memory, a share of its compute. Only a compute share limits the TPP a container can
reach, so:

- a *count* unit (one vGPU) counts as one whole chip (a vGPU is at most a chip);
- a *memory* unit does not cap compute: any amount counts as one whole chip;
- a *compute* unit counts as its share (``units_per_chip`` is a whole chip).

Within one container the resources of one scheme describe the same devices, so the scheme counts
as the largest of them (HAMi's ``nvidia.com/gpu: 2`` with ``nvidia.com/gpucores: 50`` is two
chips). All the schemes below share NVIDIA chips: their model is resolved as ``nvidia.com/gpu``'s
is (node labels, named product values). Names verified against each project's documentation
(see docs/catalog.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

__all__ = ["SHARED_CHIP_RESOURCE", "SHARING", "Share", "shared_asks"]

SHARED_CHIP_RESOURCE: Final = "nvidia.com/gpu"  # the resource whose profiles serve every scheme here


@dataclass(frozen=True)
class Share:
    scheme: str  # the resource the scheme's devices are counted (and shown) under
    unit: Literal["count", "memory", "compute"]
    units_per_chip: int = 1  # compute: how many units are a whole chip


SHARING: Final = {
    # HAMi (Project-HAMi/HAMi): nvidia.com/gpu is the number of vGPUs, each on its own chip.
    "nvidia.com/gpumem": Share("nvidia.com/gpu", "memory"),
    "nvidia.com/gpumem-percentage": Share("nvidia.com/gpu", "memory"),
    "nvidia.com/gpucores": Share("nvidia.com/gpu", "compute", 100),
    # Volcano vGPU (volcano-sh/volcano, HAMi's volcano-vgpu-device-plugin).
    "volcano.sh/vgpu-number": Share("volcano.sh/vgpu-number", "count"),
    "volcano.sh/vgpu-memory": Share("volcano.sh/vgpu-number", "memory"),
    "volcano.sh/vgpu-cores": Share("volcano.sh/vgpu-number", "compute", 100),
    # Alibaba Cloud ACK cGPU / gpushare (GiB of one chip's memory, a percentage of its compute).
    "aliyun.com/gpu-mem": Share("aliyun.com/gpu-mem", "memory"),
    "aliyun.com/gpu-count": Share("aliyun.com/gpu-mem", "count"),
    "aliyun.com/gpu-core.percentage": Share("aliyun.com/gpu-mem", "compute", 100),
    # Tencent GPU Manager (TKE qGPU/vcuda): 100 vcuda-core units are one chip.
    "tencent.com/vcuda-core": Share("tencent.com/vcuda-core", "compute", 100),
    "tencent.com/vcuda-memory": Share("tencent.com/vcuda-core", "memory"),
}


def _chips(share: Share, amount: Fraction) -> Fraction:
    if share.unit == "count":
        return amount
    if share.unit == "memory":
        return Fraction(1)
    return amount / share.units_per_chip


def shared_asks(ask: dict[str, Fraction]) -> dict[str, Fraction]:
    """One container's accelerator asks with the sharing units turned into chips, each scheme
    counted as its largest figure (under the scheme's resource name)."""
    if not any(name in SHARING for name in ask):
        return ask
    out: dict[str, Fraction] = {}
    for name, amount in ask.items():
        share = SHARING.get(name)
        if share is None:
            out[name] = max(out.get(name, Fraction(0)), amount)
            continue
        if amount <= 0:
            continue
        out[share.scheme] = max(out.get(share.scheme, Fraction(0)), _chips(share, amount))
    return out
