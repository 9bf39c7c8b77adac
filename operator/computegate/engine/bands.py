"""ECCN 3A090 bands from TPP and performance density (15 CFR 774, as amended Oct 2023)."""

from __future__ import annotations

from computegate.vocabulary import Band

TPP_A = 4800.0
TPP_FLOOR = 1600.0
TPP_B = 2400.0
PD_A = 5.92
PD_B_LOW = 1.6
PD_B_HIGH = 3.2


def eccn_band(tpp: float, performance_density: float | None, datacenter: bool) -> Band | None:
    """The band a chip falls in, or None when it is outside 3A090.

    An unknown performance density is taken as high: a chip whose die area nobody has
    published is treated as the densest it could be, never as uncontrolled by default.
    """
    if not datacenter and tpp < TPP_A:
        return None  # Note 2 to 3A090: not designed or marketed for data centres
    pd = float("inf") if performance_density is None else performance_density
    if tpp >= TPP_A or (tpp >= TPP_FLOOR and pd >= PD_A):
        return "3A090.a"
    if (TPP_B <= tpp < TPP_A and PD_B_LOW <= pd < PD_A) or (tpp >= TPP_FLOOR and PD_B_HIGH <= pd < PD_A):
        return "3A090.b"
    return None
