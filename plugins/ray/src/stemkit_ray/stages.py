"""The pipeline's stages, each a plain function of one row (or, for separation, an actor's method):

    hash_input    read the input's bytes (a path or an fsspec URL), hash them             CPU task
    decode_input  probe, and for a local provider decode to float32                       CPU task
    SeparateSongs separate, with the provider loaded once per actor                       actor pool
    write_stems   encode and write the stems beside the others, atomically                 CPU task

A stage never raises for one song: what goes wrong is that song's error, carried to the driver in the row
(:mod:`stemkit_ray.rows`). The separation runs through the same ``Separator.aseparate`` as ``separate_many``
does locally (result cache, job ledger, error boundary and all), on an input that keeps the file's identity
(name and content hash), so a result cached by a local run is a hit here and the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from stemkit._boundary import error_boundary
from stemkit.audio import AudioSource
from stemkit.errors import InputError, StemkitError
from stemkit.excerpt import separate_excerpt
from stemkit.ledger import using_ledger
from stemkit.output import OutputSettings
from stemkit.provenance import Provenance
from stemkit.stemset import Stem, StemSet
from stemkit_ray.locations import is_http, put_files, read_input, remote_join, scratch_folder
from stemkit_ray.rows import audio_array, carry_error, stems_array

__all__ = [
    "OutputPlan",
    "SeparateSongs",
    "WorkerConfig",
    "decode_input",
    "hash_input",
    "result_stemset",
    "write_stems",
]


@dataclass(frozen=True)
class WorkerConfig:
    """What every separation actor needs; picklable (no key: keys come from the workers' environment)."""

    provider: Any
    cache: Any
    stems: tuple[str, ...] | None
    timeout: float | None
    #: the part of every input to separate (seconds; :mod:`stemkit.excerpt`)
    offset: float | None = None
    duration: float | None = None
    #: the ``ledger=`` setting (False, a file path, None: the environment's); set around each separation
    #: because the driver's context does not reach this process
    ledger: Any = None
    #: the driver's ``STEMKIT_*`` settings (cache folder, size caps), so a worker resolves the defaults the
    #: driver would (none of them is a secret)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputPlan:
    """Where and how stems are written: ``root`` is a local folder or an fsspec URL."""

    root: str
    remote: bool
    settings: OutputSettings
    template: str

    def save_options(self, name: str) -> dict[str, Any]:
        """``StemSet.save``'s keywords for input ``name``: the same files a local batch writes."""
        return {**self.settings.save_options(), "template": self.template, "input_name": name}


def hash_input(row: dict[str, Any]) -> dict[str, Any]:
    """Read the input's bytes and hash them (an http(s) URL is left to the provider, as locally)."""
    if row["error_class"] or is_http(row["input"]):
        return row
    try:
        data = read_input(row["input"])
    except StemkitError as exc:
        return carry_error(row, exc)
    except Exception as exc:  # the filesystem's own failure, named for the input
        return carry_error(row, InputError(f"{row['input']}: cannot be read ({type(exc).__name__}: {exc})"))
    return {**row, "data": data, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def decode_input(row: dict[str, Any], *, decode: bool) -> dict[str, Any]:
    """Probe the input (a file that is not audio fails here, before any actor or provider sees it) and, for
    a local provider (``decode``), decode it to float32 so the actor only separates."""
    if row["error_class"] or is_http(row["input"]):
        return row
    source = AudioSource("bytes", data=row["data"], name=row["input"], sha256=row["sha256"])
    try:
        with error_boundary():
            info = source.info
            shape = {"sample_rate": info.sample_rate, "channels": info.channels, "frames": info.frames}
            if not decode:
                return {**row, **shape}
            audio = np.ascontiguousarray(source.read(), dtype=np.float32)
    except StemkitError as exc:
        return carry_error(row, exc)
    finally:
        source.close()
    shape = {"sample_rate": info.sample_rate, "channels": audio.shape[0], "frames": audio.shape[1]}
    return {**row, **shape, "data": b"", "audio": audio.tobytes()}


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class SeparateSongs:
    """The actor: loads the provider once (an ONNX session, an HTTP client), then separates song after song,
    several at once when the pool allows it (a hosted provider's jobs overlap on the actor's event loop).

    ``limiter`` is the cluster's rate limiter actor: installed into this process's hosted transports.
    """

    def __init__(self, config: WorkerConfig, limiter: Any = None) -> None:
        os.environ.update(config.env)
        from stemkit.api import load

        if limiter is not None:
            from stemkit.hosted import install_rate_limiter
            from stemkit_ray.ratelimit import ClusterLimiterClient, Rate

            install_rate_limiter(ClusterLimiterClient(limiter))
        self.config = config
        self.separator = load(config.provider, cache=config.cache)
        self.worker = _worker_name()
        if limiter is not None:
            for provider, per_minute in documented_rates(self.separator).items():
                limiter.register.remote(provider, Rate(per_minute, 60.0))

    async def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        done = [await self.separate(row) for row in rows]
        return {column: [row[column] for row in done] for column in batch}

    async def separate(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["error_class"]:
            return row
        started = time.perf_counter()
        row = {**row, "worker": self.worker}
        result: StemSet | None = None
        with scratch_folder("input") as scratch:
            source: AudioSource | str | None = None
            try:
                with error_boundary():
                    source = await anyio.to_thread.run_sync(self._source, row, scratch)  # file I/O off the loop
                    extra: dict[str, Any] = {} if self.config.timeout is None else {"timeout": self.config.timeout}
                    with using_ledger(self.config.ledger):
                        result = await separate_excerpt(
                            self.separator, source, offset=self.config.offset, duration=self.config.duration,
                            stems=self.config.stems, **extra,
                        )  # fmt: skip
                    done = result
                    stems = await anyio.to_thread.run_sync(lambda: _materialize(done))
            except StemkitError as exc:
                return {**carry_error(row, exc), "seconds": time.perf_counter() - started}
            finally:
                if result is not None:
                    await anyio.to_thread.run_sync(result.close)
                if isinstance(source, AudioSource):
                    source.close()
        return {**row, **stems, "data": b"", "audio": b"", "seconds": time.perf_counter() - started}

    @staticmethod
    def _source(row: Mapping[str, Any], scratch: Path) -> AudioSource | str:
        """The input as the provider gets it: the decoded array or a file with the input's own name and
        suffix, both carrying the input's name and content hash; an http(s) URL as given."""
        item = str(row["input"])
        if is_http(item):
            return item
        if row["audio"]:
            rate = int(row["sample_rate"])
            return AudioSource("array", array=audio_array(row), sample_rate=rate, name=item, sha256=str(row["sha256"]))
        local = scratch / (Path(item.split("?", 1)[0]).name or "input")
        local.write_bytes(row["data"])
        return AudioSource("file", path=local, name=item, sha256=str(row["sha256"]))


def _materialize(result: StemSet) -> dict[str, Any]:
    """The result as row columns: every stem's samples (derived ones computed), its description, provenance."""
    arrays = [np.ascontiguousarray(stem.audio, dtype=np.float32) for stem in result.values()]
    info = [
        {"name": stem.name, "provider_name": stem.provider_name, "derived": stem.derived,
         "complement_of": list(stem.complement_of) if stem.complement_of else None}
        for stem in result.values()
    ]  # fmt: skip
    return {
        "stems": np.stack(arrays).tobytes(),
        "stem_info": json.dumps(info),
        "provenance": json.dumps(result.provenance.to_dict(), default=str),
        "sample_rate": result.sample_rate,
        "channels": result.channels,
        "frames": result.frames,
    }


def documented_rates(separator: Any) -> dict[str, int]:
    """Provider name → the requests per minute its capabilities document, for every provider in a composite."""
    found: dict[str, int] = {}
    pending = [separator]
    while pending:
        current = pending.pop()
        try:
            caps = current.capabilities
        except Exception:
            caps = None
        per_minute = caps.extra.get("rate_limit_per_minute") if caps is not None else None
        if isinstance(per_minute, int) and per_minute > 0 and not (caps is not None and caps.local):
            found.setdefault(str(current.name), per_minute)
        inner = current.__dict__.get("inner") if hasattr(current, "__dict__") else None
        if inner is not None:
            pending.append(inner)
        members = getattr(current, "members", None)
        if isinstance(members, list | tuple):
            pending.extend(members)
    return found


def result_stemset(row: Mapping[str, Any]) -> StemSet:
    """The StemSet a row's stems and provenance describe (arrays: no copy of the row's bytes)."""
    arrays = stems_array(row)
    rate = int(row["sample_rate"])
    stems = []
    for i, info in enumerate(json.loads(row["stem_info"])):
        complement = tuple(info["complement_of"]) if info["complement_of"] else None
        stems.append(Stem.from_array(info["name"], arrays[i], rate, provider_name=info["provider_name"],
                                     derived=bool(info["derived"]), complement_of=complement))  # fmt: skip
    return StemSet(stems, provenance=Provenance.from_dict(json.loads(row["provenance"])))


def write_stems(row: dict[str, Any], *, output: OutputPlan) -> dict[str, Any]:
    """Encode and write one song's stems (the same ``StemSet.save`` as a local batch: same files, same names),
    then drop the samples from the row."""
    if row["error_class"] or not row["stems"]:
        return row
    started = time.perf_counter()
    try:
        with error_boundary():
            stemset = result_stemset(row)
            if output.remote:
                with scratch_folder("write") as scratch:
                    written = stemset.save(scratch, **output.save_options(row["name"]))
                    targets = {
                        stem: remote_join(output.root, path.relative_to(scratch).as_posix())
                        for stem, path in written.items()
                    }
                    put_files(((written[stem], url) for stem, url in targets.items()), what="output")
                paths = targets
            else:
                saved = stemset.save(output.root, **output.save_options(row["name"]))
                paths = {stem: str(path) for stem, path in saved.items()}
    except StemkitError as exc:
        return {**carry_error(row, exc), "seconds": row["seconds"] + time.perf_counter() - started}
    return {**row, "stems": b"", "paths": json.dumps(paths), "seconds": row["seconds"] + time.perf_counter() - started}
