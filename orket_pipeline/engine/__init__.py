"""The reference engine: suites (native and Orket task banks), the run loop, gates, sandbox.

```
_suite.py     the suite model: tasks, gates, the checks that convert a native task
_taskbank.py  Orket task-bank files converted into tasks
_load.py      load_suite: reads a file, picks the format, checks everything
_runner.py    the run loop: generate, gate, record the outcome; with or without telemetry
_gates.py     each gate type's verdict from its sandboxed run
sandbox/      the child process that runs generated code, and its harness
```
"""

from ._load import load_suite as load_suite
from ._load import parse_suite as parse_suite
from ._runner import RunResult as RunResult
from ._runner import execute as execute
from ._runner import run_suite as run_suite
from ._suite import CliExample as CliExample
from ._suite import CliExamplesGate as CliExamplesGate
from ._suite import FunctionExample as FunctionExample
from ._suite import FunctionExamplesGate as FunctionExamplesGate
from ._suite import Gate as Gate
from ._suite import PythonTestsGate as PythonTestsGate
from ._suite import Suite as Suite
from ._suite import Task as Task

__all__ = [
    "CliExample",
    "CliExamplesGate",
    "FunctionExample",
    "FunctionExamplesGate",
    "Gate",
    "PythonTestsGate",
    "RunResult",
    "Suite",
    "Task",
    "execute",
    "load_suite",
    "parse_suite",
    "run_suite",
]
