"""Sync from async, the one way: every blocking flavour in stemkit runs its async implementation here.

I/O-bound paths (hosted transports and clients, routing, batches, the API functions) are written once, as
async code. Their sync flavour is derived mechanically:

* a function: :func:`run_sync` runs the coroutine to completion on a private event loop in a worker thread
  (an anyio blocking portal);
* an async generator: :func:`iterate_sync` drives it from a sync generator;
* a long-lived async object (an API client and its connection pool): :class:`SyncFacade` keeps it on one
  portal for the facade's whole life, and :func:`blocking` / :func:`blocking_iter` turn each of its methods
  into a typed sync method in one line.

Two copies of the same logic cannot drift if there is only one copy.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal

__all__ = [
    "AsyncClosable",
    "SyncFacade",
    "blocking",
    "blocking_iter",
    "iterate_sync",
    "run_sync",
    "sync_function",
    "sync_iterator",
    "sync_method",
]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")


class AsyncClosable(Protocol):
    async def aclose(self) -> None: ...


A = TypeVar("A", bound=AsyncClosable)


def run_sync(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``await fn(*args, **kwargs)`` from synchronous code, and return its result.

    Works whether or not the calling thread already runs an event loop (a notebook, a web handler): the
    coroutine always gets a loop of its own. Exceptions propagate unchanged; an interrupt (Ctrl-C) in the
    caller cancels the coroutine, so its cleanup runs before the interrupt continues.
    """
    with start_blocking_portal() as portal:
        return portal.call(functools.partial(fn, *args, **kwargs))


def iterate_sync(make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """The items of the async iterator ``make()`` returns, as a sync generator.

    The whole async iteration runs in one task on a private event loop (so an async generator may hold a
    task group or a cancel scope across its yields), handing items over one at a time; leaving early
    (``break``, an exception in the consumer) cancels it, so its cleanup runs.
    """
    handoff: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    wanted = threading.Semaphore(1)  # the consumer wants one more item

    async def pump() -> None:
        iterator = make()
        try:
            async for item in iterator:
                handoff.put((False, item))
                # Wait (in a worker thread, not on the loop) until the consumer comes back for more.
                await anyio.to_thread.run_sync(wanted.acquire, abandon_on_cancel=True)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    wanted.acquire()
    with start_blocking_portal() as portal:
        future = portal.start_task_soon(pump)
        future.add_done_callback(lambda _: handoff.put((True, None)))
        try:
            while True:
                done, item = handoff.get()
                if done:
                    future.result()  # the iteration's own exception, if it ended with one
                    return
                yield item
                wanted.release()
        finally:
            wanted.release()  # a pump still waiting for the consumer is let go


def _derived(wrapper: Callable[..., Any], fn: Callable[..., Any], doc: str) -> None:
    functools.update_wrapper(wrapper, fn)  # the signature (inspect follows __wrapped__) is the async one's
    wrapper.__name__ = wrapper.__qualname__ = fn.__name__.removeprefix("a")
    wrapper.__doc__ = doc


def sync_function(fn: Callable[P, Awaitable[T]], doc: str) -> Callable[P, T]:
    """The blocking flavour of the async function ``fn`` (same arguments), documented by ``doc``."""

    def function(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(fn, *args, **kwargs)

    _derived(function, fn, doc)
    return function


def sync_iterator(fn: Callable[P, AsyncIterator[T]], doc: str) -> Callable[P, Iterator[T]]:
    """The blocking flavour of the async generator function ``fn``: a function returning a sync iterator."""

    def function(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return iterate_sync(functools.partial(fn, *args, **kwargs))

    _derived(function, fn, doc)
    return function


def sync_method(fn: Callable[Concatenate[S, P], Awaitable[T]], doc: str) -> Callable[Concatenate[S, P], T]:
    """The blocking flavour of the async method ``fn``, for a class body: ``separate = sync_method(aseparate)``.

    It calls the instance's own method of that name, so a subclass that overrides the async method changes
    both flavours.
    """
    name = fn.__name__

    def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(getattr(self, name), *args, **kwargs)  # type: ignore[no-any-return]

    _derived(method, fn, doc)
    return method


class SyncFacade(Generic[A]):
    """A blocking face for an async object (``A``, e.g. an API client with a connection pool).

    The async object lives on a private event loop for the facade's whole life, so its connections are
    reused between calls; :meth:`close` (or ``with``) closes it and ends the loop. Methods are declared on
    the subclass with :func:`blocking` and :func:`blocking_iter`, one line each, and keep their signatures.
    A facade can also be a *view* (:meth:`view`) of an object that lives on another facade's loop.
    """

    _owner: SyncFacade[Any] | None = None

    def __init__(self, make: Callable[[], A]) -> None:
        self._lock = threading.Lock()
        self._portal_cm = start_blocking_portal()
        self._portal: BlockingPortal | None = self._portal_cm.__enter__()
        try:
            self._async: A = make()
        except BaseException as exc:
            self._portal = None
            self._portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise

    @classmethod
    def view(cls, owner: SyncFacade[Any], obj: A) -> Self:
        """A facade for ``obj``, which lives on ``owner``'s loop: it calls through ``owner`` and closes nothing."""
        facade = cls.__new__(cls)
        facade._owner = owner
        facade._async = obj
        return facade

    @property
    def aio(self) -> A:
        """The async object behind this facade (use it only on this facade's own loop)."""
        return self._async

    def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._owner is not None:
            return self._owner._call(fn)
        portal = self._portal
        if portal is None:
            from stemkit.errors import StemkitError

            raise StemkitError(f"{type(self).__name__} is closed; create a new one")
        return portal.call(fn)

    def close(self) -> None:
        """Close the async object and stop its event loop. Idempotent (a view closes nothing)."""
        if self._owner is not None:
            return
        with self._lock:
            portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            portal.call(self._async.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def blocking(fn: Callable[Concatenate[A, P], Awaitable[T]]) -> Callable[Concatenate[SyncFacade[A], P], T]:
    """Declare a sync method of a :class:`SyncFacade` subclass from the async class's method."""

    @functools.wraps(fn)
    def method(self: SyncFacade[A], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(functools.partial(fn, self._async, *args, **kwargs))

    return method


def blocking_iter(
    fn: Callable[Concatenate[A, P], AsyncIterator[T]],
) -> Callable[Concatenate[SyncFacade[A], P], Iterator[T]]:
    """Like :func:`blocking`, for a method that is an async generator: the sync method is a generator."""

    @functools.wraps(fn)
    def method(self: SyncFacade[A], /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        iterator = fn(self._async, *args, **kwargs)
        try:
            while True:
                try:
                    item = self._call(iterator.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose: Any = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    self._call(aclose)

    return method
