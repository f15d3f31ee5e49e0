"""Joining a running Ray cluster: `RayEngine(address=...)` and `sample --engine ray --address`.

The cluster is a real `ray start --head` on this machine (loopback address, 2 CPUs, no
dashboard, its own temporary folder) with token authentication on, as Ray turns it on by
default once a token exists. Its token lies in a temporary file that the cluster and the
drivers find through RAY_AUTH_TOKEN_PATH, one of the places Ray looks (with RAY_AUTH_TOKEN and
~/.ray/auth_token), so the test neither reads nor writes the user's ~/.ray. Drivers run in
fresh processes: Ray caches its auth mode and token per process, and each test needs its own.

The cluster's processes share one process group, which the fixture kills at the end (not
`ray stop`, which would kill every Ray on the machine, other test runs' included), and the
test fails if any of its processes is left.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from facelatent.cli import main
from facelatent.errors import FacelatentError
from facelatent.latents.fill import sample_to_store
from facelatent.latents.store import LatentStore

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")         # a dependency of Ray
from test_ray import SCORED, TINY, assert_same_store, random_models

from facelatent.runs.ray import RayEngine

pytestmark = pytest.mark.usefixtures("one_thread")

START_S = 90                # `ray start` takes 2-10 s here; a busy machine gets some slack
DRIVER_S = 180              # one driver process: imports, join, 2 stores on 2 workers
CLI_ARGS = ["sample", "--model", TINY, "--n", "6", "--shard-size", "3", "--attributes", "none",
            "--identity", "none", "--device", "cpu", "--batch", "2"]


@dataclass
class Cluster:
    address: str
    token_file: Path
    folder: Path

    def driver_env(self, **changes: str | None) -> dict[str, str]:
        """This process's environment without Ray's settings, the cluster's token where Ray
        looks for it, and ``changes`` (None removes a variable)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RAY_") or k == "RAY_AUTH_TOKEN_PATH"}
        env["RAY_AUTH_TOKEN_PATH"] = str(self.token_file)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                          os.environ.get("PYTHONPATH")]))
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_members(pgid: int, folder: Path) -> list[psutil.Process]:
    """Live processes in process group ``pgid`` or naming ``folder`` (the cluster's)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.pid) == pgid or str(folder) in " ".join(proc.info["cmdline"]
                                                                        or ()):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """`ray start --head` on 127.0.0.1 with token authentication, killed at the end."""
    # A short folder: Ray's socket paths under it must stay within 107 characters.
    folder = Path(tempfile.mkdtemp(prefix="flray-", dir="/tmp" if Path("/tmp").is_dir()
                                   else None))
    token_file = folder / "token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    port = free_port()
    cluster = Cluster(f"127.0.0.1:{port}", token_file, folder)
    env = cluster.driver_env(RAY_AUTH_MODE="token")
    ray_cli = Path(sys.executable).with_name("ray")
    log = folder / "start.log"
    t0 = time.perf_counter()
    with log.open("wb") as out:
        start = subprocess.Popen(
            [str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
             str(port), "--num-cpus", "2", "--include-dashboard=false", "--temp-dir",
             str(folder), "--disable-usage-stats"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pgid = start.pid                 # a new session: the cluster's processes share this group
    try:
        try:
            code = start.wait(START_S)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            pytest.fail(f"`ray start --head` {'timed out' if code is None else f'exited {code}'}"
                        f":\n{log.read_text(errors='replace')[-3000:]}")
        print(f"\nray start --head took {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        yield cluster
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for proc in group_members(pgid, folder):   # any that left the group
            proc.kill()
        deadline = time.monotonic() + 30
        while (left := group_members(pgid, folder)) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"Ray processes left behind: {[p.pid for p in left]}"


def run_driver(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                          capture_output=True, text=True, timeout=DRIVER_S, check=False)


JOIN_AND_SAMPLE = """
    import sys
    from facelatent.cli import main
    from facelatent.latents.fill import sample_to_store
    from facelatent.runs.ray import RayEngine
    from test_ray import SCORED, random_models
    from test_ray_cluster import CLI_ARGS

    address, folder = sys.argv[1:]
    # The user's command, then the API with injected tiny random networks, scored.
    code = main([*CLI_ARGS, "--store", folder + "/cli", "--engine", "ray", "--address", address,
                 "--workers", "2"])
    assert code == 0, code
    models = random_models()
    with RayEngine(address=address, workers=2, models=models) as engine:
        assert engine.started and engine.cpus == 2, (engine.started, engine.cpus)
        report = sample_to_store(folder + "/api", 5, SCORED, shard_size=3, engine=engine,
                                 models=models)
    assert (report.action, report.shards_written) == ("created", 2), report
    print("joined and sampled")
"""


def test_joining_a_cluster_with_token_auth_writes_the_local_engines_store(
        cluster: Cluster, tmp_path: Path, capsys) -> None:
    # RAY_AUTH_MODE unset, as in a fresh shell: the token is picked up as ray.init("auto") does.
    t0 = time.perf_counter()
    done = run_driver(JOIN_AND_SAMPLE, cluster.driver_env(), cluster.address, str(tmp_path))
    print(f"driver took {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "joined and sampled" in done.stdout
    assert "Traceback" not in done.stderr
    assert main([*CLI_ARGS, "--store", str(tmp_path / "cli-local")]) == 0
    capsys.readouterr()
    sample_to_store(tmp_path / "api-local", 5, SCORED, shard_size=3, models=random_models())
    for name in ("cli", "api"):
        got = LatentStore.open(tmp_path / name)
        assert_same_store(got, LatentStore.open(tmp_path / f"{name}-local"))
        assert [r["engine"] for r in got.manifest["runs"]] == ["ray"]


JOIN_ONLY = """
    import sys
    from facelatent.errors import FacelatentError
    from facelatent.runs.ray import RayEngine
    try:
        RayEngine(address=sys.argv[1], workers=1).close()
    except FacelatentError as exc:
        print(exc)
    else:
        print("joined")
"""


@pytest.mark.parametrize(("changes", "want"), [
    ({"RAY_AUTH_MODE": "disabled"}, "requires token authentication; set RAY_AUTH_MODE=token"),
    ({"RAY_AUTH_MODE": "token"}, "joined"),       # the workaround before: still works
], ids=["auth-off-here", "auth-mode-set"])
def test_auth_settings_join_or_say_in_one_line_what_to_set(cluster: Cluster, changes: dict[str, str],
                                                       want: str) -> None:
    t0 = time.perf_counter()
    done = run_driver(JOIN_ONLY, cluster.driver_env(**changes), cluster.address)
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().count("\n") == 0 and want in done.stdout, done.stdout
    if want != "joined":
        assert f"--address {cluster.address}" in done.stdout
        assert "ray get-auth-token" in done.stdout
        # Refused at once rather than after Ray's 20 s of retries; the time is printed, not
        # asserted (a loaded machine can take longer either way; timings belong in bench/).
        print(f"refused in {seconds:.1f} s", file=sys.stderr)


def test_cli_join_with_a_wrong_token_is_one_line(cluster: Cluster, tmp_path: Path) -> None:
    env = cluster.driver_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="1" * 64)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("facelatent")), *CLI_ARGS, "--store",
         str(tmp_path / "s"), "--engine", "ray", "--address", cluster.address],
        env=env, capture_output=True, text=True, timeout=DRIVER_S, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "refused this machine's auth token" in lines[0]
    assert f"--address {cluster.address}" in lines[0]
    print(f"refused in {time.perf_counter() - t0:.1f} s", file=sys.stderr)   # printed, not asserted


# -- addresses where no cluster is ---------------------------------------------------------------
def http_listener() -> tuple[int, threading.Event]:
    """A port on 127.0.0.1 that answers like a web server (the dashboard, say), until set."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        with server:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(2)
                    try:
                        conn.recv(1024)
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    except OSError:
                        pass

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], stop


def test_a_wrong_address_is_one_line_and_quick() -> None:
    assert not ray.is_initialized()          # else RayEngine would use that Ray instead
    port, stop = http_listener()
    cases = {
        f"127.0.0.1:{free_port()}": "no Ray cluster answers at --address",
        f"ray://127.0.0.1:{free_port()}": "no Ray cluster answers at --address",
        f"127.0.0.1:{port}": "is not a Ray cluster; give the GCS address",
        "127.0.0.1": "is not host:port",
        "127.0.0.1:99999": "is not host:port",
        "no-such-host.invalid:6379": "cannot resolve host",
    }
    try:
        for address, want in cases.items():
            t0 = time.perf_counter()
            with pytest.raises(FacelatentError) as info:
                RayEngine(address=address)
            message = str(info.value)
            assert want in message and "--address" in message and "\n" not in message, message
            print(f"{address}: refused in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            assert not ray.is_initialized()
    finally:
        stop.set()


def test_ray_failures_to_join_are_explained_in_one_line() -> None:
    from facelatent.runs.ray_join import _explain

    mismatch = RuntimeError("Version mismatch: The cluster was started with:\n    Ray: 2.9.0\n"
                            "    Python: 3.10.1\nThis process on node 10.0.0.1 was started "
                            "with:\n    Ray: 2.60.0\n    Python: 3.11.7\n")
    try:
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from mismatch
    except ConnectionError as exc:
        text = _explain(ray, "10.0.0.1:6379", exc)
    assert "\n" not in text and "--address 10.0.0.1:6379" in text
    assert "Ray: 2.9.0 Python: 3.10.1" in text and "install the cluster's versions" in text
    text = _explain(ray, "auto", ConnectionError("Could not find any running Ray instance.\n"
                                                 "Please specify the one to connect to."))
    assert text == ("could not join the Ray cluster at --address auto: Could not find any "
                    "running Ray instance. Please specify the one to connect to.; check the "
                    "address (`ray status` on the head node)")
