"""A hostile StemSplit: a real HTTP server on loopback that speaks StemSplit's wire format until told to
misbehave at one step of a job — wrong statuses, redirect loops and redirects to other hosts, lying or
garbage bodies, compression bombs, wrong JSON shapes, hostile output names and URLs, trickling and dropped
connections — and records every request it (and a second, "other" host) receives.

It is a raw ASGI app on purpose: misbehaviour means breaking HTTP in ways a framework would not let it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

STEPS = ("upload", "put", "create", "status", "download")


@dataclass(frozen=True)
class Misbehaviour:
    """At ``step``, answer ``kind`` (with ``value``) instead of the right answer; ``times`` requests long
    (None: every time, so retries see it too)."""

    step: str
    kind: str
    value: Any = None
    times: int | None = None


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HostileStemSplit:
    """The app. Set :attr:`script` before each run; read :attr:`requests` after."""

    outputs: dict[str, bytes]
    origin: str = ""
    other_origin: str = ""
    script: Misbehaviour | None = None
    requests: list[Recorded] = field(default_factory=list)
    _fired: int = 0

    def reset(self, script: Misbehaviour | None) -> None:
        self.script, self._fired = script, 0
        self.requests.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append(Recorded(method, path, headers))
        await _drain(receive)
        step = _step(method, path)
        script = self.script
        if step is not None and script is not None and script.step == step and (
            script.times is None or self._fired < script.times
        ):
            self._fired += 1
            await self._misbehave(script, scope, headers, send)
            return
        await self._answer(step, path, send)

    # -- the right answers ----------------------------------------------------------------------------------
    def normal_body(self, step: str | None, path: str) -> tuple[int, bytes, str]:
        if step == "upload":
            body = {"uploadUrl": f"{self.origin}/storage/up/k1", "uploadKey": "k1", "contentType": "audio/wav"}
        elif step == "put":
            return 200, b"", "text/plain"
        elif step == "create":
            body = {"id": "job1", "status": "PENDING", "progress": 0, "estimatedSeconds": 0}
        elif step == "status":
            body = {
                "id": "job1",
                "status": "COMPLETED",
                "progress": 100,
                "creditsCharged": 1,
                "outputs": {name: {"url": f"{self.origin}/storage/out/{name}.wav"} for name in self.outputs},
            }
        elif step == "download":
            name = path.rsplit("/", 1)[-1].removesuffix(".wav")
            if name not in self.outputs:
                return 404, b"no such output", "text/plain"
            return 200, self.outputs[name], "audio/wav"
        else:
            return 404, json.dumps({"error": {"code": "NOT_FOUND", "message": "no route"}}).encode(), "application/json"
        return 200, json.dumps(body).encode(), "application/json"

    async def _answer(self, step: str | None, path: str, send: Send) -> None:
        status, body, ctype = self.normal_body(step, path)
        await _respond(send, status, body, [("content-type", ctype)])

    # -- the wrong ones ------------------------------------------------------------------------------------
    async def _misbehave(self, script: Misbehaviour, scope: Scope, headers: dict[str, str], send: Send) -> None:
        kind, value = script.kind, script.value
        _, normal, ctype = self.normal_body(script.step, scope["path"])
        here = f"{self.origin}{scope['path']}"
        if kind == "status":  # an error answer that echoes the caller's credentials back
            echo = headers.get("authorization", "none")
            body = json.dumps({"error": {"code": "HOSTILE", "message": f"denied for {echo}"}}).encode()
            extra = [("retry-after", "0")] if value == 429 else []
            await _respond(send, value, body, [("content-type", "application/json"), *extra])
        elif kind == "retry_after":
            await _respond(send, 429, b'{"error": "slow down"}', [("content-type", "application/json"),
                                                               ("retry-after", str(value))])  # fmt: skip
        elif kind == "redirect_loop":
            await _respond(send, 302, b"", [("location", here)])
        elif kind == "redirect_other":
            await _respond(send, 307, b"", [("location", f"{self.other_origin}{scope['path']}")])
        elif kind == "redirect_bad":
            await _respond(send, 302, b"", [("location", value)])
        elif kind == "truncate":
            await send({"type": "http.response.start", "status": 200,
                        "headers": _h([("content-type", ctype), ("content-length", str(len(normal) + 100))])})
            await send({"type": "http.response.body", "body": normal[: len(normal) // 2], "more_body": True})
            raise ConnectionAbortedError("hostile: connection cut")
        elif kind == "garbage":
            await _respond(send, 200, value, [("content-type", ctype)])
        elif kind == "oversized":
            await _respond(send, 200, b" " * value + normal, [("content-type", ctype)])
        elif kind == "gzip_corrupt":
            await _respond(send, 200, b"\x1f\x8b\x08\x00not really gzip" + normal[:50],
                           [("content-type", ctype), ("content-encoding", "gzip")])  # fmt: skip
        elif kind == "gzip_bomb":
            await _respond(send, 200, gzip.compress(b" " * value, 9),
                           [("content-type", ctype), ("content-encoding", "gzip")])  # fmt: skip
        elif kind == "json":
            await _respond(send, 200, json.dumps(value).encode(), [("content-type", "application/json")])
        elif kind == "outputs":
            body = {"id": "job1", "status": "COMPLETED", "progress": 100, "outputs": value}
            await _respond(send, 200, json.dumps(body).encode(), [("content-type", "application/json")])
        elif kind == "slow":
            await send({"type": "http.response.start", "status": 200,
                        "headers": _h([("content-type", ctype), ("content-length", str(len(normal)))])})
            for i in range(len(normal)):
                await send({"type": "http.response.body", "body": normal[i : i + 1], "more_body": True})
                await asyncio.sleep(value)
            await send({"type": "http.response.body", "body": b""})
        elif kind == "endless":  # no Content-Length, and no end
            await send({"type": "http.response.start", "status": 200, "headers": _h([("content-type", ctype)])})
            chunk = b"\0" * 65536
            for _ in range(1024):  # 64 MiB, far past any limit; a disconnected client makes send() a no-op
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": b""})
        elif kind == "never":
            await asyncio.sleep(3600)
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(f"unknown misbehaviour {kind}")


@dataclass
class OtherHost:
    """Another origin: anything sent here left the API's origin. Records and refuses everything."""

    requests: list[Recorded] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append(Recorded(scope["method"], scope["path"], headers))
        await _drain(receive)
        await _respond(send, 404, b"not here", [("content-type", "text/plain")])


def _step(method: str, path: str) -> str | None:
    if method == "POST" and path == "/api/v1/upload":
        return "upload"
    if method == "PUT" and path.startswith("/storage/up/"):
        return "put"
    if method == "POST" and path == "/api/v1/jobs":
        return "create"
    if method == "GET" and path.startswith("/api/v1/jobs/"):
        return "status"
    if method == "GET" and path.startswith("/storage/out/"):
        return "download"
    return None


def _h(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode("latin-1")) for k, v in pairs]


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    pairs = [*headers, ("content-length", str(len(body)))]
    await send({"type": "http.response.start", "status": status, "headers": _h(pairs)})
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return
