"""Starting a local Ray, bound to loopback, or joining a cluster; Ray is imported only here.

Ray is an optional extra (`orket-pipeline[ray]`): `import_ray` imports it on first use and says
what to install when it is missing. A local Ray started without an address listens on 127.0.0.1
alone and sends nothing anywhere: its node address is the loopback one (Ray otherwise takes the
machine's outward address and binds its servers to every interface), there is no dashboard,
usage statistics are off (Ray sends them to an outside host), and its temp dir (sockets, logs)
is inside a directory of ours, removed when the session ends. Its token authentication is on,
with a token made for the session and kept in the environment, not in the home directory.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

from .._exceptions import InputError

__all__ = ["LOOPBACK_ENV", "import_ray", "ray_available", "ray_session"]

#: Set before Ray is imported (its processes inherit them): usage statistics off, and the node
#: address the loopback one (Ray reads this switch, meant for laptops, at import).
LOOPBACK_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

_INSTALL = "pip install 'orket-pipeline[ray]'"
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame


def ray_available() -> bool:
    """Whether Ray can be imported here, without importing it. Never raises."""
    return importlib.util.find_spec("ray") is not None


def import_ray() -> Any:
    """The `ray` module, imported now.

    Raises:
        InputError: Ray is not installed (one line saying what to install).
    """
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise InputError(f"--executor ray needs Ray ({_INSTALL}): {exc}") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect this process to Ray for the `with` block, then disconnect.

    Args:
        address: a cluster to join (`HOST:PORT` of its head, or `auto`); None starts a local
            Ray on loopback (see the module) and stops it at the end.
        num_cpus: CPUs the local Ray offers (default: this machine's); ignored when joining.

    Yields:
        The `ray` module. A session already open in this process (a test's, a notebook's) is
        used as it is and left open.

    Raises:
        InputError: Ray is missing, or the cluster could not be joined or started (one line).

    Blocks while Ray starts (seconds) and stops.
    """
    if address is None:
        # Before the import: Ray reads the loopback switch when it is imported.
        for name, value in LOOPBACK_ENV.items():
            os.environ.setdefault(name, value)
        _token_for_this_session()
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    temp_dir = None if address is not None else tempfile.mkdtemp(prefix="orket-ray-")
    try:
        _connect(ray, address, temp_dir, num_cpus)
        try:
            yield ray
        finally:
            ray.shutdown()
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _token_for_this_session() -> None:
    # Ray's token authentication, with a token of this session's held in the environment (its
    # processes inherit it) rather than one Ray would write to the home directory and announce.
    if "RAY_AUTH_MODE" in os.environ:
        return  # the user's choice
    os.environ["RAY_AUTH_MODE"] = "token"
    if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a `HOST:PORT` that is malformed, or where no gRPC server (a Ray head's GCS)
    answers, before Ray sees it: Ray retries such an address for minutes (and logs a traceback
    for a malformed one). `auto` is checked as the `$RAY_ADDRESS` Ray would join; `auto`
    without it, and `ray://` addresses, are left to Ray. Blocks up to `timeout` seconds to
    connect and as long again for the answer.

    Raises:
        InputError: one line naming the address.
    """
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or address  # what Ray joins for `auto`
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--ray-address {address}: expected HOST:PORT of a Ray head, or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            # A Ray head's GCS is a gRPC server: it answers HTTP/2's preface with a SETTINGS
            # frame (type 4). Anything else (an HTTP/1 server, a silent port) Ray would retry.
            conn.sendall(_H2_PREFACE + _H2_SETTINGS)
            reply = conn.recv(9)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise InputError(f"--ray-address {address}: nothing answers there ({reason})") from None
    if len(reply) < 4 or reply[3] != 4:
        raise InputError(f"--ray-address {address}: what answers there is not a Ray head")


def _connect(ray: Any, address: str | None, temp_dir: str | None, num_cpus: int | None) -> None:
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address is None:
        # The switch may come too late when Ray was imported before (tests): set it here too.
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
        # "local": a new Ray always; Ray's default (None) would join $RAY_ADDRESS instead.
        options.update(address="local", _node_ip_address="127.0.0.1", _temp_dir=temp_dir)
        options["num_cpus"] = num_cpus
    else:
        _check_reachable(address)
        options["address"] = address
    try:
        ray.init(**options)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
        where = "start a local Ray" if address is None else f"join the Ray cluster at {address}"
        message = " ".join(str(exc).split())[:300]
        raise InputError(f"--executor ray: cannot {where}: {message}") from None
