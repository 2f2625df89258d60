"""Penalty buckets: dollars rounded up to a power of two, as they travel on the wire.

Bucketing lets needs whose penalties differ by cents fold into one row. The
operator buckets raw dollars; the shard only ever reads a bucket back as its
upper bound, which overstates interruption cost (a deliberate, conservative
bias). Ordinals equal the wire enum `PenaltyBucket`.
"""

from __future__ import annotations

import math

UNSPECIFIED = 0
ZERO = 1
HALF_DOLLAR = 2
FIRST_POWER = 3  # B1 = $1; ordinal n in 3..26 is 2^(n-3) dollars
LAST_POWER = 26  # B8388608 = $2^23
PINNED = 27


def bucket_for_dollars(dollars: float) -> int:
    """The smallest bucket whose upper bound is at least `dollars`."""
    if dollars <= 0:
        return ZERO
    if dollars <= 0.5:
        return HALF_DOLLAR
    for exponent in range(LAST_POWER - FIRST_POWER + 1):
        if dollars <= 2**exponent:
            return FIRST_POWER + exponent
    return PINNED


def upper_bound(bucket: int) -> float:
    """Dollars a bucket stands for when the engine prices with it."""
    if bucket in (UNSPECIFIED, ZERO):
        return 0.0
    if bucket == HALF_DOLLAR:
        return 0.5
    if FIRST_POWER <= bucket <= LAST_POWER:
        return float(2 ** (bucket - FIRST_POWER))
    if bucket == PINNED:
        return math.inf
    raise ValueError(f"penalty bucket {bucket} is outside 0..27")
