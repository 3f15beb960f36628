"""Fixtures for the StemSplit tests: a short demo song and emulators served on loopback (real sockets)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from stemkit.demo import make_demo
from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.hosted.emulator import RunningServer
from stemkit.hosted.faults import FaultPlan
from stemkit_stemsplit import StemSplitClient, StemSplitSeparator
from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

KEY = DEFAULT_API_KEY
FAST_POLL = PollPolicy(initial=0.03, multiplier=1.2, max_interval=0.2, progress_interval=0.1)
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05, jitter=0.0)
OPENAPI = json.loads((Path(__file__).parent / "data" / "stemsplit-openapi.json").read_text())


@pytest.fixture(scope="session")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.5-second synthesized song (billed as 2 s) (WAV, 44.1 kHz stereo)."""
    return make_demo(tmp_path_factory.mktemp("song"), seconds=1.5)


class Served:
    def __init__(self, emulator: StemSplitEmulator, server: RunningServer) -> None:
        self.emulator, self.server = emulator, server

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def requests(self) -> list[Any]:
        return self.emulator.recorder.requests

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for r in self.requests if r.method == method and path_part in r.path)

    def separator(self, **kwargs: Any) -> StemSplitSeparator:
        options = {"base_url": self.base_url, **kwargs.pop("options", {})}
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("poll", FAST_POLL)
        kwargs.setdefault("retry", FAST_RETRY)
        return StemSplitSeparator(options=options, **kwargs)

    def client(self, key: str | None = KEY, **kwargs: Any) -> StemSplitClient:
        kwargs.setdefault("retry", FAST_RETRY)
        return StemSplitClient(key, base_url=self.base_url, **kwargs)

    def http(self, key: str | None = KEY) -> httpx.Client:
        """A raw HTTP client for wire-level checks of the emulator itself."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)


Serve = Callable[..., Served]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(processing_seconds=0.1, faults=["429:count=1"], ...)`` starts an emulator; stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(*, faults: list[str] | tuple[str, ...] = (), **config: Any) -> Served:
            config.setdefault("processing_seconds", 0.05)
            config.setdefault("queue_seconds", 0.01)
            emulator = StemSplitEmulator(EmulatorConfig(faults=FaultPlan.parse(faults), **config))
            server = stack.enter_context(emulator.serve())
            return Served(emulator, server)

        yield start


@pytest.fixture
def served(serve: Serve) -> Served:
    return serve()


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` (which the 3.1 document still uses) as JSON Schema's type union."""
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") is True and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


_COMPONENTS = _nullable(OPENAPI["components"])


def _assert_matches_openapi(response: httpx.Response, path: str, method: str) -> None:
    """Validate a response body against the document's schema for (path, method, status)."""
    op = OPENAPI["paths"][path][method.lower()]
    spec = op["responses"][str(response.status_code)]
    if "$ref" in spec:
        spec = OPENAPI["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    schema = _nullable(spec["content"]["application/json"]["schema"])
    jsonschema.Draft202012Validator({**schema, "components": _COMPONENTS}).validate(response.json())


@pytest.fixture
def assert_matches_openapi() -> Callable[[httpx.Response, str, str], None]:
    """``assert_matches_openapi(response, "/jobs/{id}", "get")`` validates against the OpenAPI document."""
    return _assert_matches_openapi
