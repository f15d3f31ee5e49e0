"""What a latent store does when its files are damaged or raced: checksums on every chunk,
`facelatent store verify`, repair by `facelatent sample`, and a writer that re-reads the
manifest under its lock. Each test here failed before the store carried checksums."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from facelatent.cli import main
from facelatent.latents.fill import SampleSettings, sample_to_store
from facelatent.latents.store import LatentStore, StoreCorruptError
from facelatent.runs import LocalEngine

TINY = "mobilestylegan-tiny"
UNSCORED = SampleSettings(TINY, device="cpu", batch=4)

pytestmark = pytest.mark.usefixtures("one_thread")


def chunk(store: Path, array: str, shard: int) -> Path:
    """The file of one shard's chunk of ``array`` (zarr v3's default chunk key encoding)."""
    tail = ["0"] if array in ("z", "w") or array.startswith("identity/") else []
    return store.joinpath(*array.split("/"), "c", str(shard), *tail)


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    path = tmp_path / "st"
    sample_to_store(path, 12, UNSCORED, shard_size=4, command=["test"])
    return path


def test_a_flipped_bit_is_caught_named_and_repaired(store: Path, capsys) -> None:
    clean = LatentStore.open(store).latents("w")
    target = chunk(store, "w", 1)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=r"shard 1 \(rows 4-7\), array 'w'"):
        LatentStore.open(store).latents("w")
    assert main(["store", "verify", str(store)]) == 1
    out = capsys.readouterr().out
    assert "damaged: shard 1 (rows 4-7), array 'w'" in out and "1 of 3 shards" in out
    report = sample_to_store(store, 12, UNSCORED)
    assert (report.repaired, report.shards_written, report.samples) == (1, 1, 12)
    np.testing.assert_array_equal(LatentStore.open(store).latents("w"), clean)
    assert main(["store", "verify", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["damaged"] == []


def test_a_deleted_chunk_is_not_read_as_fill_values(store: Path, capsys) -> None:
    clean = LatentStore.open(store).seeds()
    chunk(store, "seeds", 0).unlink()            # zarr would read it back as -1s
    with pytest.raises(StoreCorruptError, match=r"shard 0 .*array 'seeds'"):
        LatentStore.open(store).seeds()
    args = ["sample", "--model", TINY, "--n", "12", "--store", str(store), "--attributes",
            "none", "--identity", "none", "--device", "cpu", "--batch", "4"]
    assert main(args) == 0                       # not "nothing to do": the shard is rewritten
    assert "1 damaged shards were found and rewritten" in capsys.readouterr().out
    np.testing.assert_array_equal(LatentStore.open(store).seeds(), clean)


def test_a_truncated_chunk_and_a_deleted_array_give_one_line(store: Path, capsys) -> None:
    target = chunk(store, "z", 2)
    target.write_bytes(target.read_bytes()[:7])
    assert main(["store", "verify", str(store)]) == 1
    assert "shard 2 (rows 8-11), array 'z': fails its crc32c checksum" in capsys.readouterr().out
    (store / "w" / "zarr.json").unlink()
    assert main(["store", "verify", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "arrays ['w'] are missing" in err[0]


def test_a_second_handle_never_shrinks_what_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "st"
    sample_to_store(path, 8, UNSCORED, shard_size=4)
    stale = LatentStore.open(path)               # opened while the store planned 8 rows
    sample_to_store(path, 16, UNSCORED)          # "another process" extends it to 16
    with pytest.raises(ValueError, match="a store cannot shrink: it plans 16"), stale.writing():
        stale.extend(12)
    got = LatentStore.open(path)
    np.testing.assert_array_equal(got.seeds(), np.arange(16))
    assert got.size == 16


def test_planning_a_huge_store_builds_no_per_sample_objects(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    class FirstJobOnly(LocalEngine):
        def map(self, fn, jobs):  # type: ignore[no-untyped-def]
            self.first = next(iter(jobs))
            raise Stop

    engine = FirstJobOnly()
    tracemalloc.start()
    with pytest.raises(Stop):
        sample_to_store(tmp_path / "big", 10_000_000, UNSCORED, engine=engine)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Ten million seeds as Python ints in tuples would take about 400 MB.
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB"
    assert engine.first.seeds == tuple(range(256))


def test_a_memory_store_is_refused_by_the_command(capsys) -> None:
    assert main(["sample", "--model", TINY, "--n", "4", "--store", "memory://x",
                 "--attributes", "none", "--identity", "none"]) == 2
    assert "memory:// store lives only as long as this command" in capsys.readouterr().err
