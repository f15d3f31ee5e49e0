"""Joining a Ray cluster: address checks, the auth token, and one line for every failure.

Ray 2.60 clusters started with ``ray start --head`` require an auth token, and a driver sends
its token only when ``RAY_AUTH_MODE=token`` is set; ``ray.init`` then takes 20 s to fail on an
auth error and nearly forever on a closed port or a port that is not Ray's. So before
``ray.init``: the address is checked for form, the port for an answer (bounded to
`CONNECT_TIMEOUT_S`) and for speaking gRPC, and the cluster is asked who it is, as ``ray status``
does. A cluster on this machine gets the token Ray keeps here (``RAY_AUTH_TOKEN``, the file
``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``), as ``ray.init(address="auto")`` does;
one elsewhere needs ``RAY_AUTH_MODE=token`` and its token, as Ray's own tools do (Ray never sends
a token to an address it was not told to trust). Every failure is one `FacelatentError` that
names ``--address`` and what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from facelatent.errors import FacelatentError

__all__ = ["import_ray", "join"]

CONNECT_TIMEOUT_S = 5     # how long a cluster's address may take to answer before we give up
_AUTH_MODE = "RAY_AUTH_MODE"
_TOKEN_PLACES = ("RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token")
# The first bytes of every HTTP/2 (so gRPC) connection, then an empty SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise FacelatentError("the Ray engine needs Ray, which is not installed; install it "
                              "with: pip install 'facelatent[ray]'") from exc
    return ray

# -- joining a cluster ----------------------------------------------------------------------------
def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of "host:port", "[v6]:port" or "ray://host:port"; None for "auto" and
    "local", which Ray resolves itself."""
    if address in ("auto", "local"):
        return None
    rest = address.removeprefix("ray://")
    match = re.fullmatch(r"\[([^\]]+)\]:(\d{1,5})|([^\s:/\[\]]+):(\d{1,5})", rest)
    if match is None or not 0 < int(match[2] or match[4]) < 65536:
        raise FacelatentError(f"--address {address!r} is not host:port (e.g. 127.0.0.1:6379, "
                              "the address `ray start --head` prints), ray://host:port or auto")
    return match[1] or match[3], int(match[2] or match[4])


def _check_answers(address: str, host: str, port: int) -> None:
    """Fail within `CONNECT_TIMEOUT_S` unless something at host:port speaks HTTP/2, as Ray's
    GCS and client server (gRPC) do; Ray itself would retry for minutes."""
    try:
        conn = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except socket.gaierror as exc:
        raise FacelatentError(f"--address {address}: cannot resolve host {host!r} "
                              f"({exc.strerror}); give the head node's name or IP") from exc
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise FacelatentError(
            f"no Ray cluster answers at --address {address} ({why}); start one there with "
            "`ray start --head`, or give the address it printed (default port 6379)") from exc
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        conn.close()                       # a TLS cluster would not answer plain HTTP/2
        return
    with conn:
        try:
            conn.sendall(_H2_PREFACE)
            head = conn.recv(9)
        except OSError:
            head = b""
    if len(head) < 4 or head[3] != 4:      # an HTTP/2 server first sends SETTINGS (type 4)
        raise FacelatentError(
            f"what answers at --address {address} is not a Ray cluster; give the GCS address "
            "`ray start --head` printed (default port 6379), not the dashboard's (8265)")


def _on_this_machine(host: str) -> bool:
    """Whether ``host`` is an address of this machine (it can be bound here)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((sockaddr[0], 0))
            return True
        except OSError:
            continue
    return False


def _use_local_token() -> bool:
    """Turn on token authentication if ``RAY_AUTH_MODE`` is unset and Ray finds a token here,
    as ``ray.init(address="auto")`` does for a cluster on this machine. True if it did."""
    if os.environ.get(_AUTH_MODE) is not None:
        return False                       # the user chose; Ray respects it, so do we
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available as enable,
        )
    except ImportError:                    # a Ray without token authentication
        return False
    quiet = logging.getLogger(enable.__module__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)          # it would say "enabled for this cluster", a half-truth
    try:
        return bool(enable(warn_if_disabled=False))
    finally:
        quiet.setLevel(level)


def _auth_error(ray: Any) -> type[BaseException] | None:
    return getattr(getattr(ray, "exceptions", None), "AuthenticationError", None)


def _check_auth(ray: Any, address: str, host: str, port: int) -> None:
    """Ask the cluster's GCS who we are, as `ray status` does: an auth failure shows at once,
    where ray.init would retry for 20 s. Anything else is left to ray.init to report."""
    auth_error = _auth_error(ray)
    client = getattr(getattr(ray, "_raylet", None), "GcsClient", None)
    if auth_error is None or client is None:
        return
    with _stderr_kept_unless_refused() as refused:
        try:
            client(address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        except auth_error as exc:
            refused.append(True)
            raise FacelatentError(_explain(ray, address, exc)) from exc
        except Exception:  # noqa: BLE001 - any other failure is ray.init's to report
            return


@contextlib.contextmanager
def _stderr_kept_unless_refused() -> Iterator[list[bool]]:
    """Hold back what Ray's C++ side writes to stderr (fd 2) meanwhile, and write it out after
    unless the block appended to the list it got: a refusal is said in one line instead."""
    refused: list[bool] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):          # no usable fd 2: nothing to hold back
        yield refused
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield refused
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not refused:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
                sys.stderr.flush()


def _explain(ray: Any, address: str, exc: BaseException) -> str:
    """One line saying why joining the cluster at ``address`` failed and what to do."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    auth_error = _auth_error(ray)
    if (auth_error is not None and any(isinstance(e, auth_error) for e in chain)) or \
            "InvalidAuthToken" in text:
        if os.environ.get(_AUTH_MODE, "").lower() == "token":
            return (f"the Ray cluster at --address {address} refused this machine's auth "
                    f"token; put the cluster's token (`ray get-auth-token` on its head node) "
                    f"in {_TOKEN_PLACES}")
        return (f"the Ray cluster at --address {address} requires token authentication; set "
                f"RAY_AUTH_MODE=token and put its token (`ray get-auth-token` on its head node) "
                f"in {_TOKEN_PLACES}")
    mismatch = re.search(r"(?is)version mismatch.*", text)
    if mismatch:
        versions = " ".join(mismatch[0].split())
        return (f"the Ray cluster at --address {address} runs other Ray or Python versions than "
                f"this process ({versions[:300]}); install the cluster's versions here")
    last = next((str(e).strip() for e in reversed(chain) if str(e).strip()), type(exc).__name__)
    return (f"could not join the Ray cluster at --address {address}: "
            f"{' '.join(last.split())[:300]}; check the address (`ray status` on the head node)")


def join(ray: Any, address: str) -> None:
    """``ray.init(address)``, with every failure to join as one `FacelatentError`."""
    target = _host_port(address)
    if target is not None:
        _check_answers(address, *target)
    if target is None or (not address.startswith("ray://") and _on_this_machine(target[0])):
        _use_local_token()                 # ray.init does this itself for "auto"
    try:
        if target is not None and not address.startswith("ray://"):
            _check_auth(ray, address, *target)
        ray.init(address=address, logging_level=logging.WARNING)
    except FacelatentError:
        raise
    except Exception as exc:               # ConnectionError, RuntimeError, RayError, ...
        raise FacelatentError(_explain(ray, address, exc)) from exc
