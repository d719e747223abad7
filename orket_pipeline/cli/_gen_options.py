"""`run`'s generation options: what every request asks of the model, and what is kept of it.

`--max-tokens`, `--temperature`, `--seed`, `--system`, `--stop` (repeatable) and `--no-stream`
go into every request of an HTTP provider (`ProviderOptions`) and into the report's metadata
(`options`); a suite may set the same at its top level (`"options": {...}`), and each flag given
here overrides the suite's value. `--retries N` retries transient failures before any output;
`--output-cap BYTES` / `--no-save-output` decide how much of each answer the report keeps.
A `python:` or `replay:` provider is the user's own: the options are recorded, not sent, and
the run says so once on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..engine._suite import Suite, SuiteOptions
from ..providers import ProviderOptions
from ..report._model import GenerationOptions, Metadata
from ..telemetry.stages.latency import DEFAULT_OUTPUT_CAP
from ._args import non_negative_int, positive_int

__all__ = [
    "add_generation_options",
    "generation_options",
    "output_cap",
    "provider_options",
    "recorded_options",
    "run_metadata",
    "say_if_not_sent",
]

_OWN_PROVIDERS = ("python", "replay")  # schemes whose provider the user wrote or recorded
_FROM_SUITE = "(default: the suite's, else the server's)"
_SENT = ("max_tokens", "temperature", "seed", "system", "stop", "stream")


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """Add the generation and output options to `run`'s parser. Never blocks or raises."""
    group = parser.add_argument_group(
        "generation options (override the suite's `options`; sent by openai: and ollama:)"
    )
    group.add_argument(
        "--max-tokens",
        type=positive_int,
        metavar="N",
        help=f"at most N tokens per answer {_FROM_SUITE}",
    )
    group.add_argument(
        "--temperature", type=_temperature, metavar="T", help=f"sampling temperature {_FROM_SUITE}"
    )
    group.add_argument("--seed", type=_integer, metavar="S", help=f"sampling seed {_FROM_SUITE}")
    group.add_argument(
        "--system",
        type=_text,
        metavar="TEXT",
        help=f"a system prompt before every prompt {_FROM_SUITE}",
    )
    group.add_argument(
        "--stop",
        action="append",
        type=_stop,
        metavar="TEXT",
        help=f"a stop sequence; repeat for more {_FROM_SUITE}",
    )
    group.add_argument(
        "--no-stream",
        action="store_true",
        help="ask for whole replies, not streams (init_latency is then null)",
    )
    group.add_argument(
        "--retries",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="retry a transient failure before any output (429/503, connection reset) N times",
    )
    kept = group.add_mutually_exclusive_group()
    kept.add_argument(
        "--output-cap",
        type=positive_int,
        default=DEFAULT_OUTPUT_CAP,
        metavar="BYTES",
        help="keep at most BYTES of each answer in the report",
    )
    kept.add_argument(
        "--no-save-output", action="store_true", help="keep no answer text in the report"
    )


def generation_options(args: argparse.Namespace, suite: Suite) -> SuiteOptions:
    """The suite's options with every flag given on the command line put over them."""
    chosen: dict[str, Any] = {}
    if suite.options is not None:
        chosen = {name: getattr(suite.options, name) for name in _SENT}
    for name in ("max_tokens", "temperature", "seed", "system"):
        if getattr(args, name) is not None:
            chosen[name] = getattr(args, name)
    if args.stop:
        chosen["stop"] = tuple(args.stop)
    if args.no_stream:
        chosen["stream"] = False
    return SuiteOptions(**{k: v for k, v in chosen.items() if v is not None})


def provider_options(args: argparse.Namespace, options: SuiteOptions) -> ProviderOptions:
    """What the provider gets: the options, `--retries`, and a pool of `--concurrency`."""
    return ProviderOptions(
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        seed=options.seed,
        system=options.system,
        stop=options.stop or (),
        stream=options.stream,
        retries=args.retries,
        max_connections=args.concurrency,
    )


def recorded_options(options: SuiteOptions, streaming: bool | None) -> GenerationOptions:
    """The report's `options`: what was asked, and whether the provider streamed."""
    return GenerationOptions(
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        seed=options.seed,
        stream=streaming,
        system=options.system,
        stop=None if not options.stop else list(options.stop),
    )


def run_metadata(
    provider: Any, options: SuiteOptions, concurrency: int, pid: int | None, source: str
) -> Metadata:
    """What `run` adds to the report's metadata: model, options, executor, concurrency and the
    memory-measured pid with how it was chosen. Never raises."""
    model = getattr(provider, "model", None)
    streaming = getattr(provider, "supports_streaming", None)
    return Metadata(
        model=model if isinstance(model, str) else None,
        options=recorded_options(options, streaming if isinstance(streaming, bool) else None),
        executor="local",
        concurrency=concurrency,
        memory_pid=pid,
        memory_pid_source=source,
    )


def say_if_not_sent(spec: str, options: SuiteOptions) -> None:
    """One line on stderr when options were asked of a provider that does not take them."""
    scheme = spec.partition(":")[0]
    given = [name for name in _SENT if getattr(options, name) is not None]
    if scheme in _OWN_PROVIDERS and given:
        shown = ", ".join(given)
        print(
            f"orket-pipeline: note: {shown} recorded in the report, not sent: a {scheme}: "
            "provider is your own",
            file=sys.stderr,
        )


def output_cap(args: argparse.Namespace) -> int | None:
    """Bytes of each answer the report keeps (None: none)."""
    return None if args.no_save_output else int(args.output_cap)


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 100, not {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None


def _text(text: str) -> str:
    # Bytes that are not UTF-8 reach argv as lone surrogates, which no request can carry.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("expected UTF-8 text (the bytes given are not)") from None
    return text


def _stop(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("expected a non-empty stop sequence")
    return _text(text)
