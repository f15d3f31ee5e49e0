"""facelatent.ranges: the one parser of seed and layer lists, with its limits.

Defect 7 of issue 10: `generate --seeds 0-100000000` built a 1e8-element list (4 GB) before
anything was checked. The count is now checked first; the tests below measure that too.
"""

from __future__ import annotations

import tracemalloc

import pytest

from facelatent.ranges import (
    MAX_SEEDS,
    SEED_LIMIT,
    parse_count_or_seeds,
    parse_layers,
    parse_seeds,
)


@pytest.mark.parametrize("spec,expected", [
    ("0-3,7,9-10", [0, 1, 2, 3, 7, 9, 10]),
    ("5", [5]),
    (" 2 - 4 , 1", [2, 3, 4, 1]),   # spaces are allowed, order is kept
    ("3-3", [3]),
    ("1,1", [1, 1]),                 # repeats are kept, as typed
    (f"{SEED_LIMIT - 1}", [SEED_LIMIT - 1]),
])
def test_parse_seeds(spec: str, expected: list[int]) -> None:
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("3-1", "bad --seeds list range '3-1': the end is below the start"),
    ("a", "bad --seeds list 'a': expected numbers and inclusive ranges like '0-3,7,9-10'"),
    ("", "--seeds list must be a list like '0-3,7,9-10', got ''"),
    ("  ", "must be a list like"),
    ("1,,2", "bad --seeds list '1,,2'"),
    ("1-", "bad --seeds list"),
    ("-2", "bad --seeds list"),
    ("1.5", "bad --seeds list"),
    ("1-2-3", "bad --seeds list"),
    (f"{SEED_LIMIT}", (f"--seeds: seed {SEED_LIMIT} is out of range; seeds are 0 to "
                      f"{SEED_LIMIT - 1}")),
    (f"0,{SEED_LIMIT - 2}-{SEED_LIMIT + 3}", f"seed {SEED_LIMIT + 3} is out of range"),
])
def test_parse_seeds_rejects(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_seeds(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_seeds_rejects_a_non_string() -> None:
    with pytest.raises(ValueError, match="must be a list like"):
        parse_seeds(None)  # type: ignore[arg-type]


def test_seed_count_is_checked_before_any_list_is_built() -> None:
    """Defect 7: 1e8 seeds fail at once, in well under a megabyte."""
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"--seeds '0-100000000' names 100,000,001 seeds, more "
                                         r"than the 1,000,000 this command takes"):
        parse_seeds("0-100000000")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000          # the memory shows no list was built (no timing asserted)
    # the count is over the whole list, not per range
    with pytest.raises(ValueError, match="names 11 seeds, more than the 10 "):
        parse_seeds("0-5,10-14", limit=10)
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS  # the limit itself is fine


def test_option_name_is_used_in_messages() -> None:
    with pytest.raises(ValueError, match="bad --references list range '9-2'"):
        parse_seeds("9-2", option="--references")
    with pytest.raises(ValueError, match="^--identities '0-99' names 100 seeds, more than the 50"):
        parse_seeds("0-99", limit=50, option="--identities")


@pytest.mark.parametrize("spec,expected", [
    ("1000", 1000), (" 7 ", 7), ("1", 1), ("3,17,42", [3, 17, 42]), ("0-2", [0, 1, 2]),
])
def test_parse_count_or_seeds(spec: str, expected: int | list[int]) -> None:
    assert parse_count_or_seeds(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("0", "--references 0 must be between 1 and 1,000,000"),
    (str(MAX_SEEDS + 1), f"--references {MAX_SEEDS + 1} must be between 1 and 1,000,000"),
    ("0-100000000", "names 100,000,001 seeds"),
    ("x", "bad --references list 'x'"),
])
def test_parse_count_or_seeds_rejects(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_count_or_seeds(spec)


@pytest.mark.parametrize("spec,expected", [
    (None, None), ("all", None), (" ALL ", None),
    ("0-3,7", [0, 1, 2, 3, 7]), ("10", [10]), ("0", [0]),
    ([2, 4], [2, 4]), ((0,), [0]),
])
def test_parse_layers(spec: str | list[int] | None, expected: list[int] | None) -> None:
    assert parse_layers(spec, num_ws=11) == expected


@pytest.mark.parametrize("spec,message", [
    ("11", "--layers: layer 11 is out of range; this generator's layers are 0-10"),
    ("3-12", "layer 12 is out of range"),
    ([-1], "--layers: layer -1 is out of range"),
    ([0, 11], "layer 11 is out of range"),
    ([], "--layers must name at least one layer (or 'all')"),
    ("5-2", "bad --layers list range '5-2'"),
    ("one", "bad --layers list 'one': expected numbers and inclusive ranges like '0-3,7'"),
    ("", "--layers list must be a list like '0-3,7'"),
])
def test_parse_layers_rejects(spec: str | list[int], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_layers(spec, num_ws=11)
    assert message in str(info.value)


def test_parse_layers_huge_range_fails_before_building() -> None:
    tracemalloc.start()
    with pytest.raises(ValueError, match="layer 100000000 is out of range"):
        parse_layers("0-100000000", num_ws=23, option="--layer-range")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000
