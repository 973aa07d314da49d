"""Run a process's main coroutine on uvloop where it is installed (uvicorn runs on it too).

uvloop roughly halves the event loop's own cost per message, which is most of a Conat round
trip in a Python client (bench/persist.py); plain asyncio is the fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
