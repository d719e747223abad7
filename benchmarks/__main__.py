"""Run every benchmark: python -m benchmarks [--quick] [--smoke] [--only NAME] [--json OUT].

Full mode (no flag) gives the figures for benchmarks/README.md; `--quick` (under a minute) is
`tox -e bench`; `--smoke` (CI) is quick with smaller counts still. The exit status is non-zero
only when a benchmark crashes (a lossy run counts as a crash); a missed target is printed as
MISSED but is not a failure, since figures vary by machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

from benchmarks import _results
from benchmarks._common import machine

# Own benchmarks take --quick/--smoke; the others take --quick only (smoke runs them quick).
OWN = (
    "overhead",
    "openllmetry",
    "cli",
    "throughput",
    "memory_accuracy",
    "ttft",
    "loop_lag",
    "html",
    "ray",
    "http_ttft",
    "concurrency",
)
OTHERS = ("bus", "validator", "gates")
NAMES = OWN + OTHERS


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy."""

    def __init__(self, out: io.TextIOBase) -> None:
        self.out, self.copy = out, io.StringIO()

    def write(self, text: str) -> int:
        self.out.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def _argv(name: str, mode: str) -> list[str]:
    if mode == "full":
        return []
    return [f"--{mode}"] if name in OWN else ["--quick"]


def _load(name: str) -> Callable[[list[str]], int | None] | None:
    """The benchmark's `main` as a function of argv; None when the module does not exist."""
    try:
        module = importlib.import_module(f"benchmarks.bench_{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"benchmarks.bench_{name}":
            return None  # not written yet: skipped, not a crash
        raise
    main = module.main
    if inspect.signature(main).parameters:
        return main  # type: ignore[no-any-return]

    def with_sys_argv(argv: list[str]) -> int | None:
        # A main() that reads sys.argv itself.
        saved, sys.argv = sys.argv, [f"bench_{name}", *argv]
        try:
            return main()  # type: ignore[no-any-return]
        finally:
            sys.argv = saved

    return with_sys_argv


def _run_one(name: str, mode: str) -> dict[str, object]:
    first = len(_results.RESULTS)
    tee = _Tee(sys.stdout)  # type: ignore[arg-type]
    t0 = perf_counter()
    status = "ok"
    with contextlib.redirect_stdout(tee):
        try:
            main = _load(name)
            if main is None:
                status = "skipped (no module)"
            elif main(_argv(name, mode)) not in (0, None):
                status = "failed (non-zero exit)"
        except Exception:
            traceback.print_exc(file=sys.stdout)
            status = "crashed"
    seconds = perf_counter() - t0
    print(f"[{name}: {status}, {seconds:.1f} s]\n", flush=True)
    return {
        "name": name,
        "status": status,
        "seconds": round(seconds, 2),
        "targets": _results.RESULTS[first:],
        "output": tee.copy.getvalue(),
    }


def _load_line() -> str:
    """The load average: other work on the machine skews every figure."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return ""
    return f"\nload average: {one:.2f} (1 min), {five:.2f} (5 min)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="under a minute")
    parser.add_argument("--smoke", action="store_true", help="CI: smaller than quick")
    parser.add_argument(
        "--only", action="append", choices=NAMES, metavar="NAME", help=", ".join(NAMES)
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    print(f"# orket-pipeline benchmarks, {mode} mode\n({machine()}){_load_line()}\n", flush=True)
    t0 = perf_counter()
    runs = [_run_one(name, mode) for name in args.only or NAMES]
    total = perf_counter() - t0
    targets = [t for run in runs for t in run["targets"]]  # type: ignore[attr-defined]
    met = sum(1 for t in targets if t["met"])
    crashed = [run["name"] for run in runs if str(run["status"]).startswith(("crashed", "failed"))]
    print(f"# {met} of {len(targets)} targets met; {total:.1f} s in all{_load_line()}")
    for target in targets:
        mark = "MET   " if target["met"] else "MISSED"
        print(f"  {mark} {target['bench']}: {target['name']}")
    if crashed:
        print(f"# crashed: {', '.join(map(str, crashed))}")
    if args.json:
        payload = {"mode": mode, "machine": machine(), "seconds": round(total, 2), "runs": runs}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
