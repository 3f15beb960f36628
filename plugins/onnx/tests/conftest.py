"""Fixtures for the onnx provider's tests: generated models, audio files, and a hub stopped at the network."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stemkit_onnx import clear_sessions

ModelFactory = Callable[[str, str], Path]


@pytest.fixture(autouse=True)
def _offline_by_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may reach the real hub: offline unless a test installs the fake hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    clear_sessions()


class FakeHub:
    """Stands in for ``huggingface_hub.hf_hub_download``: serves generated models, records requests."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], Path] = {}
        self.calls: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def serve(self, repo: str, filename: str, path: Path) -> None:
        self.files[(repo, filename)] = path

    def __call__(self, repo_id: str, filename: str, **kwargs: Any) -> str:
        self.calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        if self.error is not None:
            raise self.error
        try:
            return str(self.files[(repo_id, filename)])
        except KeyError:
            import httpx2
            from huggingface_hub.errors import RemoteEntryNotFoundError

            url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
            response = httpx2.Response(404, request=httpx2.Request("GET", url))
            raise RemoteEntryNotFoundError(
                f"404 Client Error: Entry Not Found for url: {url}", response=response
            ) from None


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """Online mode with the download patched where demucs-onnx calls it (it imports it lazily)."""
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads the variable once, at import; whichever test imported it first decided.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    return hub


def _noise(channels: int, frames: int, seed: int = 0, scale: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, frames)) * scale).astype(np.float32)


@pytest.fixture
def noise() -> Callable[..., np.ndarray]:
    """``noise(channels, frames, seed=0)``: float32 Gaussian noise, (channels, frames)."""
    return _noise


@pytest.fixture
def wav(tmp_path: Path) -> Callable[..., Path]:
    """``wav(audio, rate=44100, name=...)``: write (channels, frames) audio as a float WAV in tmp_path."""
    counter = iter(range(1_000_000))

    def write(audio: np.ndarray, rate: int = 44100, name: str | None = None, subtype: str = "FLOAT") -> Path:
        path = tmp_path / (name or f"input{next(counter)}.wav")
        sf.write(path, np.ascontiguousarray(audio.T), rate, subtype=subtype)
        return path

    return write


@pytest.fixture
def hub_cache(tmp_path: Path) -> Callable[..., Path]:
    """``hub_cache(repo, filename, model)``: lay a file out as huggingface_hub's cache does; returns the cache."""
    cache = tmp_path / "hf-cache"

    def put(repo: str, filename: str, model: Path, commit: str = "0" * 40) -> Path:
        folder = cache / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text(commit)
        snapshot = folder / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / filename).write_bytes(model.read_bytes())
        return cache

    return put


class ModelServer:
    """A real HTTP server on loopback standing in for UVR's model repository (``STEMKIT_UVR_MODELS_URL``).

    ``files`` maps a file name to its bytes; ``faults`` maps a file name to a list of faults served
    first, one per request: ``"503"``, ``"404"``, ``"truncate"`` (declares the full length, sends half and
    closes) or ``"redirect"`` (302 to ``/cdn/<name>``, which serves the file). ``requests`` records paths.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                server.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                pending = server.faults.get(name)
                fault = pending.pop(0) if pending and not self.path.startswith("/cdn/") else None
                if fault == "redirect":
                    self.send_response(302)
                    self.send_header("Location", f"/cdn/{name}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault in ("503", "404") or name not in server.files:
                    self.send_response(int(fault or 404))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if fault == "truncate" else body)
                if fault == "truncate":
                    self.close_connection = True

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-model-server", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/releases"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def model_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    """Online, with UVR's model repository served from loopback."""
    import huggingface_hub.constants as hf_constants

    from stemkit_onnx import uvr

    server = ModelServer()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("STEMKIT_OFFLINE", raising=False)
    monkeypatch.setenv(uvr.URL_ENV, server.url)
    try:
        yield server
    finally:
        server.close()
