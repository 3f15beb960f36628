"""Sync from async, the one way: every blocking flavour in stemkit runs its async implementation here.

I/O-bound paths (hosted transports and clients, routing, batches, the API functions) are written once, as
async code; their sync flavour calls :func:`run_sync`, which runs the coroutine to completion on a private
event loop in a worker thread (an anyio blocking portal). Two copies of the same logic cannot drift if there
is only one copy.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from anyio.from_thread import start_blocking_portal

__all__ = ["run_sync"]

P = ParamSpec("P")
T = TypeVar("T")


def run_sync(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``await fn(*args, **kwargs)`` from synchronous code, and return its result.

    Works whether or not the calling thread already runs an event loop (a notebook, a web handler): the
    coroutine always gets a loop of its own. Exceptions propagate unchanged; an interrupt (Ctrl-C) in the
    caller cancels the coroutine, so its cleanup runs before the interrupt continues.
    """
    with start_blocking_portal() as portal:
        return portal.call(functools.partial(fn, *args, **kwargs))
