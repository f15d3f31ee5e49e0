"""Start-up of the `facelatent` command: parsing and --help import no heavy library, every command
in the table builds its parser, and the BLAS thread policy. No timings here (bench/cli.py
measures them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from facelatent import cli
from facelatent.cli import COMMANDS, LazyCommands, build_parser, command_parser
from facelatent.runtime import one_blas_thread

HEAVY = ("torch", "sklearn", "zarr", "ray", "scipy", "matplotlib", "onnx", "onnxruntime",
         "openvino", "pandas", "pyarrow", "gradio", "numpy", "PIL", "cv2")

# Runs the CLI on argv (or only builds the parser for an empty argv) and prints which of HEAVY
# were imported, as JSON.
PROBE = """
import contextlib, io, json, sys
from facelatent.cli import build_parser, main
argv, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(argv) if argv else build_parser()
        code = None
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(),
                  "heavy": [m for m in heavy if m in sys.modules]}))
"""


def probe(argv: list[str]) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                          capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_building_the_parser_imports_nothing_heavy() -> None:
    assert probe([])["heavy"] == []


@pytest.mark.parametrize("argv", [["--help"], ["boundary", "fit", "--help"],
                                  ["mapping", "train", "--help"], ["fr", "train", "--help"],
                                  ["fr", "evaluate", "--help"],
                                  *([name, "--help"] for name in COMMANDS)],
                         ids=lambda argv: " ".join(argv))
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    result = probe(argv)
    assert result["code"] == 0
    assert result["heavy"] == []
    assert f"usage: facelatent {' '.join(argv[:-1])}".rstrip() in str(result["out"])


def test_top_level_help_lists_every_command_with_its_help() -> None:
    text = build_parser().format_help()
    for name, (_, help) in COMMANDS.items():
        assert name in text and help in text


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_resolves_and_builds_its_parser(name: str) -> None:
    parser = command_parser(name)
    assert parser.prog == f"facelatent {name}"
    assert "--help" in parser.format_help()
    # The table's help line is the one the module itself registers.
    top = build_parser()
    commands = next(a for a in top._actions if isinstance(a, LazyCommands))
    commands.load(name)
    helps = {a.dest: a.help for a in commands._choices_actions}
    assert helps[name] == COMMANDS[name][1]
    assert list(helps) == list(COMMANDS)        # the listing keeps the table's order


def test_the_modules_register_exactly_the_table() -> None:
    top = build_parser()
    commands = next(a for a in top._actions if isinstance(a, LazyCommands))
    for name in COMMANDS:
        commands.load(name)
    assert commands.stand_ins == {}
    assert sorted(commands._name_parser_map) == sorted(COMMANDS)   # none the table lacks
    assert [a.dest for a in commands._choices_actions] == list(COMMANDS)


def test_a_command_parses_through_its_loaded_parser() -> None:
    args = build_parser().parse_args(["boundary", "fit", "--store", "s", "--attribute", "age",
                                      "--out", "b.npz"])
    assert args.command == "boundary" and args.boundary_command == "fit"
    assert args.attribute == "age" and callable(args.func)


def test_an_unknown_command_is_refused_with_the_list() -> None:
    result = probe(["nonsense"])
    assert result["code"] == 2 and result["heavy"] == []


def test_copied_constants_match_the_library() -> None:
    from facelatent.cli import constants
    from facelatent.faces import registry
    from facelatent.latents import sampling, store

    assert constants.IDENTITY_MODELS == registry.IDENTITY_MODELS == store.IDENTITY_MODELS
    assert constants.DEFAULT_ATTRIBUTES == registry.DEFAULT_ATTRIBUTES
    assert constants.STORE_ATTRIBUTES == registry.STORE_ATTRIBUTES
    assert (constants.MIN_SIZE, constants.MAX_SIZE) == (sampling.MIN_SIZE, sampling.MAX_SIZE)
    assert constants.MAX_BATCH == sampling.MAX_BATCH
    assert constants.GENERATE_MAX_SEEDS == sampling.GENERATE_MAX_SEEDS
    from facelatent.boundaries import linear
    assert constants.SOLVERS == linear.SOLVERS
    assert constants.DEFAULT_SOLVER == linear.LinearBoundary().solver
    from facelatent.datasets import sampling as dsampling
    from facelatent.datasets import shard
    assert constants.SAMPLE_MODES == dsampling.SAMPLE_MODES
    assert constants.OFFSET_UNITS == shard.OFFSET_UNITS
    assert constants.DEFAULT_MAX_OFF == shard.DEFAULT_MAX_OFF == shard.DatasetSettings().max_off


# --- BLAS threads ---------------------------------------------------------------------------

def test_one_blas_thread_leaves_a_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert one_blas_thread() is False
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert one_blas_thread() is True
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"


THREADS = """
import json
from facelatent.runtime import one_blas_thread
one_blas_thread()
import numpy
from threadpoolctl import threadpool_info
print(json.dumps(sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs to tell 1 thread from 2")
@pytest.mark.parametrize("env, expected", [({}, [1]), ({"OPENBLAS_NUM_THREADS": "2"}, [2])])
def test_blas_pools_get_the_policys_threads(env: dict[str, str], expected: list[int]) -> None:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", THREADS], env={**base, **env},
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == expected


def test_main_sets_the_policy_before_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
