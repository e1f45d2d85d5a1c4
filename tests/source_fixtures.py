"""Real Python sources for the source tests: this interpreter's standard library."""

import inspect
from pathlib import Path


def real_bytes(module) -> bytes:
    return Path(inspect.getsourcefile(module)).read_bytes()


def real_source(module) -> str:
    return real_bytes(module).decode("utf-8")
