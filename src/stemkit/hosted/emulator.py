"""Emulator kit: serve a provider emulator (an ASGI app) on loopback, inject faults, record requests.

A plugin's emulator is a Starlette (or any ASGI) app speaking the provider's wire format. This module runs
it — :func:`run_in_thread` for tests, :func:`serve` for ``stemkit emulate`` — and offers the ASGI pieces
every emulator needs: :class:`FaultMiddleware` (request-level faults from a :class:`FaultPlan`),
:class:`RequestRecorder` (what reached the server, for assertions) and :class:`StreamedFile` (a download
that can be cut off mid-body).

The entry-point group ``stemkit.emulators`` names an object following the :class:`Emulator` protocol.
An emulator removes whatever it stored (uploads, stems) in its app's lifespan shutdown; :func:`serve`
guarantees that shutdown runs on Ctrl-C, SIGTERM and SIGHUP, even when a second signal forces the exit.
Requires the ``emulators`` extra (starlette, uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import anyio
import uvicorn
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stemkit.errors import ConfigError
from stemkit.hosted.faults import FaultPlan

__all__ = [
    "Emulator",
    "EmulatorSettings",
    "FaultMiddleware",
    "RecordedRequest",
    "RequestRecorder",
    "RunningServer",
    "StreamedFile",
    "listen",
    "read_body_to",
    "run_in_thread",
    "serve",
]


@dataclass(frozen=True)
class EmulatorSettings:
    """What ``stemkit emulate`` passes to an emulator; ``None`` means the emulator's own default.

    ``options`` carries emulator-specific ``--option KEY=VALUE`` settings (documented by each emulator).
    """

    api_key: str | None = None
    processing_seconds: float | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    options: Mapping[str, str] = field(default_factory=dict)


class Emulator(Protocol):
    """What an entry point in the ``stemkit.emulators`` group names."""

    @property
    def api_path(self) -> str:
        """The path prefix of the API, e.g. ``/api/v1``; the printed base URL ends with it."""
        ...

    @property
    def fault_kinds(self) -> frozenset[str]:
        """The fault kinds (:data:`stemkit.hosted.faults.FAULT_KINDS`) this emulator fires; any other is
        refused by ``stemkit emulate`` (:func:`stemkit.hosted.faults.check_supported`)."""
        ...

    def create_app(self, settings: EmulatorSettings) -> ASGIApp:
        """The app to serve; it removes what it stored in its lifespan shutdown."""
        ...

    # Optional (read with getattr), for what ``stemkit emulate`` prints after the base URL:
    #   default_api_key: str  the key the emulator accepts when none is given (``--api-key``)
    #   base_url_env: str     the environment variable the provider reads its base URL from
    #   api_key_env: str      the environment variable the provider reads its key from


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int
    api_path: str = ""

    @property
    def url(self) -> str:
        """The server's origin, ``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The origin plus the API path: what a client's ``base_url`` should be."""
        return self.url + self.api_path


class _Server(uvicorn.Server):
    """uvicorn's server, told when it has started and woken at once when asked to stop (tests stop many)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._wake, self._loop = asyncio.Event(), asyncio.get_running_loop()
        await super().startup(sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header every 10th tick; we tick once a second
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    def stop(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(self._wake.set)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening now (not when uvicorn starts) queues connections made as soon as the URL is announced,
        # instead of refusing them.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _config(app: ASGIApp, **kw: Any) -> uvicorn.Config:
    # h11 (not httptools): faults that cut a body short must close the connection, which h11 guarantees.
    return uvicorn.Config(app, http="h11", lifespan="auto", access_log=False, timeout_graceful_shutdown=2, **kw)


@contextlib.contextmanager
def run_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, api_path: str = "", startup_timeout: float = 10.0
) -> Iterator[RunningServer]:
    """Serve ``app`` with uvicorn on ``host`` (port 0: a free port) in a background thread.

    Yields once the server accepts connections; on exit it stops the server and joins the thread.
    uvicorn logs go to the ``uvicorn.*`` loggers (no handler is installed: the test runner captures them).
    """
    sock = _bind(host, port)
    server = _Server(_config(app, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="stemkit-emulator", daemon=True)
    thread.start()
    try:
        while not server.ready.wait(0.05):
            if not thread.is_alive() or startup_timeout <= 0:
                raise RuntimeError(f"the emulator did not start on {host}:{sock.getsockname()[1]}")
            startup_timeout -= 0.05
        yield RunningServer(host, sock.getsockname()[1], api_path)
    finally:
        server.stop()
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Foreground(uvicorn.Server):
    """uvicorn's server for :func:`serve`: stops on SIGINT, SIGTERM or SIGHUP, and always runs the app's lifespan
    shutdown (where an emulator removes its storage) — uvicorn skips it when a second Ctrl-C forces the exit,
    and re-raises the signal afterwards, which for SIGTERM ends the process before any cleanup could run."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop_signal: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = sig
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for open connections
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        finished = getattr(self.lifespan, "shutdown_event", None)
        if finished is not None and not finished.is_set():
            await self.lifespan.shutdown()


def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket for :func:`serve`; ConfigError when the address cannot be used.

    Bind before building the app, so that an emulator never creates its storage for a server that cannot
    start.
    """
    try:
        return _bind(host, port)
    except OSError as exc:
        raise ConfigError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); "
            "choose another port (0 picks a free one)"
        ) from None


def serve(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_path: str = "",
    announce: Callable[[str], None] | None = None,
    sock: socket.socket | None = None,
) -> int | None:
    """Serve ``app`` in this thread until Ctrl-C, SIGTERM or SIGHUP; returns the signal that stopped it.

    The socket (``sock``, or one bound to ``host``:``port``) listens first, so ``announce`` (default: print and
    flush) receives the real base URL, port 0 resolved, before any request can arrive. However it is
    stopped, the app's lifespan shutdown has run when this returns.
    """
    if sock is None:
        sock = listen(host, port)
    host, bound_port = sock.getsockname()[:2]
    running = RunningServer(host, bound_port, api_path)
    server = _Foreground(_config(app, log_level="warning"))
    try:
        if announce is None:
            print(running.base_url, flush=True)
        else:
            announce(running.base_url)
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server.stop_signal


# -- ASGI pieces ---------------------------------------------------------------------------------------------

ErrorResponder = Callable[[int, str, "float | None"], Response]
"""(status, fault kind, retry_after) -> the provider's own error response for an injected fault."""


class FaultMiddleware:
    """Injects the request-level faults of a plan into the requests ``applies(scope)`` selects.

    Handles ``latency``, ``rate-limit``, ``forbidden``, ``server-error`` and ``truncate``; the emulator
    itself handles the job and storage faults (``fail-job``, ``expire-job``, ``expire-urls``,
    ``drop-download``), which only it can place.
    """

    def __init__(
        self, app: ASGIApp, plan: FaultPlan, *, applies: Callable[[Scope], bool], error: ErrorResponder
    ) -> None:
        self.app, self.plan, self.applies, self.error = app, plan, applies, error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.plan or not self.applies(scope):
            await self.app(scope, receive, send)
            return
        where = {"path": str(scope["path"]), "method": str(scope["method"])}
        if latency := self.plan.fire("latency", **where):
            await anyio.sleep(float(latency["seconds"]))
        for kind, status in (("rate-limit", 429), ("forbidden", 403), ("server-error", None)):
            if fault := self.plan.fire(kind, **where):
                retry_after = fault.params.get("retry_after")
                code = status or int(fault["status"])
                await self.error(code, kind, retry_after)(scope, receive, send)
                return
        if self.plan.fire("truncate", **where):
            await self.app(scope, receive, _truncating(send))
            return
        await self.app(scope, receive, send)


def _truncating(send: Send) -> Send:
    """Forwards the response start and half of the first body chunk, then nothing: the connection drops."""
    done = False

    async def wrapped(message: Message) -> None:
        nonlocal done
        if done:
            return
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            done = True
            return
        await send(message)

    return wrapped


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    """Lower-case names; the values of Authorization and other credentials are replaced by ``***``."""
    status: int | None
    """None until the answer starts (or when the connection broke before one)."""
    at: float


_CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "cookie"})


class RequestRecorder:
    """Outermost middleware: keeps every request that reached the server (faults included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            headers[name] = "***" if name in _CREDENTIAL_HEADERS else raw_value.decode("latin-1")
        record = RecordedRequest(
            scope["method"], scope["path"], scope["query_string"].decode(), headers, None, time.monotonic()
        )
        with self._lock:  # recorded on arrival, so a client that got its answer always finds its request here
            index = len(self.requests)
            self.requests.append(record)
            self._changed.notify_all()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                with self._lock:
                    self.requests[index] = dataclasses.replace(record, status=int(message["status"]))
                    self._changed.notify_all()
            await send(message)

        await self.app(scope, receive, capture)

    def matching(self, method: str | None = None, prefix: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method) and r.path.startswith(prefix)]

    def wait_for(self, condition: Callable[[list[RecordedRequest]], bool], *, timeout: float = 60.0) -> bool:
        """Block (another thread than the server's) until ``condition(requests)`` holds — e.g. "four jobs were
        created" — woken by each request and each answer; False if ``timeout`` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(list(self.requests)), timeout=timeout)


class StreamedFile(Response):
    """A file streamed from disk with its Content-Length; ``cut_after`` (0-1) drops the connection there."""

    chunk_size = 256 * 1024

    def __init__(
        self,
        path: Path,
        *,
        media_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
        cut_after: float | None = None,
    ) -> None:
        super().__init__(content=None, status_code=200, headers=dict(headers or {}), media_type=media_type)
        self.path = path
        self.size = path.stat().st_size
        self.headers["content-length"] = str(self.size)
        self.limit = self.size if cut_after is None else int(self.size * cut_after)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        sent = 0
        async with await anyio.open_file(self.path, "rb") as fh:
            while sent < self.limit:
                chunk = await fh.read(min(self.chunk_size, self.limit - sent))
                if not chunk:
                    break
                sent += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self.limit < self.size:
            return  # returning with the body incomplete makes uvicorn close the connection
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def read_body_to(receive: Receive, dest: Path, *, limit: int | None = None) -> int:
    """Stream a request body to ``dest`` (never whole in memory); returns its size, or -1 past ``limit``."""
    size = 0
    async with await anyio.open_file(dest, "wb") as out:
        while True:
            message: MutableMapping[str, Any] = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client disconnected during upload")
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                return -1
            if chunk:
                await out.write(chunk)
            if not message.get("more_body", False):
                return size
