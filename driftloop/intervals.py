"""Confidence intervals in pure Python: the control layer (the decision Lambda) reports them without numpy.

``driftloop.ml.accuracy_estimate`` uses the same function, so a labelled accuracy and a label-free
estimate of one batch have intervals of one kind.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n`` (``n`` may be an effective size).

    Wilson rather than the normal approximation: it stays inside [0, 1] and keeps its coverage for
    the small, nearly perfect samples a few labelled images give.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    # At k = 0 or k = n the bound is exactly 0 or 1; rounding must not move it off.
    lower = 0.0 if k == 0 else max(0.0, centre - half)
    upper = 1.0 if k == n else min(1.0, centre + half)
    return lower, upper
