"""Row counts rounded up to a few bucket sizes, so fits on nearby N share a program.

XLA compiles one program per data shape: a loop of fits over groups, folds or
resamples of different sizes would compile once per size. Padding the units
to a bucket size by repeating some of them, spread evenly over the data, and
splitting each repeated unit's weight between its copies leaves every
weighted sum, so the objective and each M-step, unchanged.

Bucket sizes: 1, 2, …, 8, then four per doubling (``m · 2^e`` with ``m`` in
5, 6, 7, 8), so padding adds at most a quarter of the rows; above 2^15 a
multiple of 4096 (at most 12.5%).
"""

from __future__ import annotations

import numpy as np

#: above this many units, no padding: the fit outweighs its compilation, and a
#: copy of the data would cost memory
MAX_UNITS = 1 << 20


def size(n: int, floor: int = 1) -> int:
    """The bucket size for ``n`` units (at least ``floor``)."""
    n = max(n, floor)
    if n <= 8:
        return n
    if n <= 1 << 15:
        step = 1 << ((n - 1).bit_length() - 3)
        return -(-n // step) * step
    return -(-n // 4096) * 4096


def index(n: int, floor: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    """``(idx, share)``: unit ``idx[j]`` fills slot ``j`` with ``share[j]`` of its weight.

    ``None`` when ``n`` is already a bucket size. The repeated units are
    spread evenly (not the first ones), so random starts drawn from the padded
    rows favour no part of the data; with ``n >= floor`` every unit appears
    once or twice (``size(n) < 2n``), so the shares are 1 or 1/2, exact in binary.
    """
    padded = size(n, floor)
    if padded == n:
        return None
    idx = np.arange(padded) * n // padded
    copies = np.bincount(idx, minlength=n)
    return idx, 1.0 / copies[idx]
