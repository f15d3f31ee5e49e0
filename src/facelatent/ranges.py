"""Lists of seeds and layers as people type them: ``0-3,7,9-10``.

One parser for every command. Sizes are checked before a list is built, so ``0-100000000``
fails at once with the count and the limit instead of allocating gigabytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MAX_SEEDS", "SEED_LIMIT", "parse_count_or_seeds", "parse_layers", "parse_seeds"]

SEED_LIMIT = 2**32               # seeds are numpy RandomState seeds: [0, 2**32)
MAX_SEEDS = 1_000_000            # longest explicit seed list a command accepts by default
_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def _ranges(spec: str, what: str, example: str) -> list[tuple[int, int]]:
    """Inclusive ``(lo, hi)`` pairs of a comma-separated list, checked for order."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{what} must be a list like {example!r}, got {spec!r}")
    out = []
    for part in spec.split(","):
        match = _PART.match(part)
        if not match:
            raise ValueError(f"bad {what} {spec!r}: expected numbers and inclusive ranges like "
                             f"{example!r}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"bad {what} range {part.strip()!r}: the end is below the start")
        out.append((lo, hi))
    return out


def parse_seeds(spec: str, *, limit: int = MAX_SEEDS, option: str = "--seeds") -> list[int]:
    """``'0-3,7,9-10'`` -> ``[0, 1, 2, 3, 7, 9, 10]``; ranges are inclusive, order is kept.

    Raises ValueError naming ``option`` for a malformed list, a seed outside [0, 2**32), or
    more than ``limit`` seeds (counted before any list is built).
    """
    ranges = _ranges(spec, f"{option} list", "0-3,7,9-10")
    count = sum(hi - lo + 1 for lo, hi in ranges)
    if count > limit:
        raise ValueError(f"{option} {spec!r} names {count:,} seeds, more than the {limit:,} "
                         "this command takes; ask for fewer")
    top = max(hi for _, hi in ranges)
    if top >= SEED_LIMIT:
        raise ValueError(f"{option}: seed {top} is out of range; seeds are 0 to {SEED_LIMIT - 1}")
    seeds: list[int] = []
    for lo, hi in ranges:
        seeds.extend(range(lo, hi + 1))
    return seeds


def parse_count_or_seeds(spec: str, *, limit: int = MAX_SEEDS,
                         option: str = "--references") -> int | list[int]:
    """``'1000'`` -> 1000 (a count); ``'3,17,42'`` or ``'0-99'`` -> a seed list."""
    text = spec.strip() if isinstance(spec, str) else spec
    if isinstance(text, str) and text.isdigit():
        count = int(text)
        if not 1 <= count <= limit:
            raise ValueError(f"{option} {count} must be between 1 and {limit:,}")
        return count
    return parse_seeds(spec, limit=limit, option=option)


def parse_layers(spec: str | Sequence[int] | None, num_ws: int,
                 option: str = "--layers") -> list[int] | None:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]``; None or ``'all'`` -> None (every layer).

    Layers are the generator's style inputs ``0 .. num_ws - 1``; anything outside is a
    ValueError naming ``option``.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return None
    if isinstance(spec, str):
        ranges = _ranges(spec, f"{option} list", "0-3,7")
    else:
        ranges = [(int(i), int(i)) for i in spec]
        if not ranges:
            raise ValueError(f"{option} must name at least one layer (or 'all')")
    out: list[int] = []
    for lo, hi in ranges:
        if lo < 0 or hi >= num_ws:
            raise ValueError(f"{option}: layer {hi if hi >= num_ws else lo} is out of range; "
                             f"this generator's layers are 0-{num_ws - 1}")
        out.extend(range(lo, hi + 1))
    return out
