"""`run --executor local|ray` and its options: where the suite's tasks run.

Kept apart from `_run` so that the options, their checks and the Ray seam read in one place.
Ray is imported only when `--executor ray` is used (`engine._ray_cluster`).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from .._exceptions import InputError
from ..engine._suite import Suite
from ..providers import Provider
from ..report._model import Report
from ._args import positive_int
from ._gen_options import generation_options, provider_options

__all__ = [
    "add_executor_options",
    "check_executor",
    "executor",
    "executor_session",
    "label",
    "memory_line",
]

_RAY_ONLY = ("ray_address", "workers", "worker_concurrency")


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """Add `--executor`, `--ray-address`, `--workers`, `--worker-concurrency`. Never raises."""
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where the tasks run: this process (local) or Ray workers (needs "
        "orket-pipeline[ray]); with ray, --concurrency counts runs in flight in all",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --executor ray: join this cluster (HOST:PORT of its head, or auto) "
        "(default: start a local Ray on 127.0.0.1 for this run)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="with --executor ray: Ray workers to start (default: the cluster's CPUs, at "
        "least one per --provider)",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=positive_int,
        metavar="N",
        help="with --executor ray: runs in flight on one worker (default: --concurrency "
        "spread evenly over the workers)",
    )


def check_executor(args: argparse.Namespace) -> None:
    """Refuse (exit 2, one line) options that do not go together, before anything starts."""
    if args.executor == "ray":
        if args.memory_pid is not None:
            raise InputError(
                "run: --memory-pid measures a process on this machine; with --executor ray "
                "each worker measures its own process"
            )
        if args.gate_concurrency is not None:
            raise InputError(
                "run: --gate-concurrency is not used with --executor ray (a worker runs as "
                "many gates at once as runs: --worker-concurrency)"
            )
        return
    given = [name for name in _RAY_ONLY if getattr(args, name) is not None]
    if given:
        raise InputError(f"run: --{given[0].replace('_', '-')} goes with --executor ray")
    if args.provider is not None and len(args.provider) > 1:
        raise InputError("run: --provider given more than once needs --executor ray (replicas)")


def label(args: argparse.Namespace, spec: str) -> str:
    """The provider as the report and the journal name it: the specs, joined. Never raises."""
    if args.executor == "ray" and args.provider:
        return ", ".join(args.provider)
    return spec


def memory_line(args: argparse.Namespace, local: str) -> str:
    """The line saying whose memory is measured: `local`'s, or each Ray worker's. Never
    raises."""
    if args.executor != "ray" or args.no_telemetry:
        return local
    return "memory: each Ray worker's own process, on its node (a run's `worker`: NODE/PID)"


def executor_session(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """A Ray session for the run (started on loopback, or joined), or nothing for local.

    Raises `InputError` when Ray is missing or cannot start or be joined; blocks meanwhile.
    """
    if args.executor != "ray":
        return contextlib.nullcontext()
    return _ray_session(args.ray_address)


@contextlib.contextmanager
def _ray_session(address: str | None) -> Iterator[Any]:
    from ..engine._ray_cluster import ray_session

    with ray_session(address) as ray:
        yield ray


def executor(
    args: argparse.Namespace, local: Callable[..., Awaitable[Report]]
) -> Callable[..., Awaitable[Report]]:
    """The engine entry point with `execute`'s signature: `local` itself, or one that runs the
    suite on Ray with the `--provider` specs (the provider given is only closed). Never
    raises."""
    if args.executor != "ray":
        return local
    specs = [_absolute(spec) for spec in args.provider or []]

    async def on_ray(
        suite: Suite, provider: Provider, *, memory_pid: int | None = None, **options: Any
    ) -> Report:
        from ..engine._ray import execute_on_ray

        del memory_pid  # refused with ray by `check_executor`: each worker measures itself
        options.pop("gate_concurrency", None)
        try:
            return await execute_on_ray(
                suite,
                specs or [str(options.get("provider_name"))],
                workers=args.workers,
                worker_concurrency=args.worker_concurrency,
                # What the driver's provider was built with, for each worker's own.
                provider_options=provider_options(args, generation_options(args, suite)),
                **options,
            )
        finally:
            aclose = getattr(provider, "aclose", None)  # loaded here only to check the spec
            if aclose is not None and inspect.iscoroutinefunction(aclose):
                await aclose()

    return on_ray


def _absolute(spec: str) -> str:
    """`spec` with its file made absolute (`python:FILE.py:NAME`, `replay:FILE`), since a
    worker's directory is not the driver's. Never raises."""
    scheme, _, rest = spec.partition(":")
    if scheme == "replay" and rest:
        return f"replay:{Path(rest).absolute()}"
    location, _, name = rest.rpartition(":")
    if scheme == "python" and (location.endswith(".py") or "/" in location):
        return f"python:{Path(location).absolute()}:{name}"
    return spec
