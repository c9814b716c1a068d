"""Group advantages: centred returns, optionally std-normalised (GRPO) or leave-one-out (RLOO).

For a group of returns ``r_1..r_n`` (one problem, ``n`` attempts):

- centred:        ``A_i = r_i - mean(r)``
- leave-one-out:  ``A_i = r_i - mean_{j≠i}(r_j) = n/(n-1)·(r_i - mean(r))``  (RLOO)
- ``normalize_std``: divide by ``std(r) + eps`` (GRPO; the sample std, ddof = 1, as TRL)

A group whose returns are all equal has zero advantages and contributes no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def group_advantages(
    returns: Sequence[float],
    *,
    normalize_std: bool = False,
    leave_one_out: bool = False,
    eps: float = 1e-4,
) -> list[float]:
    n = len(returns)
    if n == 0:
        return []
    mean = sum(returns) / n
    if leave_one_out:
        adv = [n / (n - 1) * (r - mean) for r in returns] if n > 1 else [0.0]
    else:
        adv = [r - mean for r in returns]
    if normalize_std:
        std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (n - 1)) if n > 1 else 0.0
        adv = [a / (std + eps) for a in adv]
    return adv
