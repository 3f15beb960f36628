"""The stored form of one result: float WAV files and a manifest, each file checked by hash when read.

Stems are stored as 32-bit float WAV (IEEE float, little-endian, interleaved). Float, not FLAC 24: a hit must
give back exactly the samples that were stored, and stems routinely go past full scale (a vocal stem of a
loud master, a residual) — 24-bit integers would round every sample and clip those. Float WAV keeps every
float32 bit, NaN and ±2.0 included, and writing it is a copy, not an encode, which keeps the cost of filling
the cache small next to a separation. It takes about twice FLAC's space; the cache's size cap is in bytes.

The manifest (``entry.json``) names the stems' files with their sizes and xxh3-128 digests, the shape, the
request and the provider identity the key was made from, and the StemSet's provenance. It carries its own
SHA-256, so a damaged manifest is detected like a damaged stem. Everything stored is scrubbed first: option
values under secret-looking names are dropped, URLs lose their query string (where presigned URLs keep their
signatures) and local paths are cut to the file name.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import xxhash

from stemkit.audio import FloatArray
from stemkit.config import REDACTED, is_secret_key

__all__ = ["CorruptEntry", "Manifest", "StoredStem", "file_digest", "scrub", "write_float_wav"]

ENTRY_FORMAT = 1
_WAVE_FORMAT_IEEE_FLOAT = 3
_HEADER_BYTES = 12 + 8 + 18 + 8 + 4 + 8
_MAX_RIFF = 0xFFFF_FFFF
_READ_CHUNK = 1 << 22


class CorruptEntry(Exception):
    """A stored entry that fails its checks (internal: the cache drops it and recomputes)."""


class TooLargeToStore(Exception):
    """A stem longer than a WAV file can hold (4 GiB of float samples, about 3.4 stereo hours)."""


@dataclass(frozen=True)
class StoredStem:
    """One stored stem file and what the StemSet needs to rebuild its Stem."""

    name: str
    file: str
    digest: str
    size: int
    provider_name: str
    derived: bool = False
    complement_of: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "digest": self.digest,
            "size": self.size,
            "provider_name": self.provider_name,
            "derived": self.derived,
            "complement_of": list(self.complement_of) if self.complement_of is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredStem:
        complement = data.get("complement_of")
        return cls(
            name=str(data["name"]),
            file=str(data["file"]),
            digest=str(data["digest"]),
            size=int(data["size"]),
            provider_name=str(data["provider_name"]),
            derived=bool(data.get("derived", False)),
            complement_of=tuple(str(s) for s in complement) if complement is not None else None,
        )


@dataclass(frozen=True)
class Manifest:
    """Everything about one entry but the audio."""

    key: str
    created: str
    spec: str
    data: str
    sample_rate: int
    channels: int
    frames: int
    stems: tuple[StoredStem, ...]
    provenance: dict[str, Any]
    mixture: StoredStem | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    request: tuple[str, ...] | None = None
    stemkit_version: str = ""

    @property
    def files(self) -> tuple[StoredStem, ...]:
        return (*self.stems, *((self.mixture,) if self.mixture is not None else ()))

    @property
    def size(self) -> int:
        return sum(s.size for s in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "created": self.created,
            "spec": self.spec,
            "data": self.data,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "stems": [s.to_dict() for s in self.stems],
            "mixture": self.mixture.to_dict() if self.mixture is not None else None,
            "provenance": self.provenance,
            "identity": self.identity,
            "request": list(self.request) if self.request is not None else None,
            "stemkit_version": self.stemkit_version,
        }

    def encode(self) -> bytes:
        body = self.to_dict()
        return json.dumps(
            {"format": ENTRY_FORMAT, "manifest": body, "sha256": _json_digest(body)}, indent=1, sort_keys=True
        ).encode()

    @classmethod
    def decode(cls, raw: bytes, *, key: str) -> Manifest:
        """Parse and check a stored manifest; CorruptEntry when it is damaged or from another format."""
        try:
            document = json.loads(raw)
            body = document["manifest"]
            if document.get("format") != ENTRY_FORMAT:
                raise CorruptEntry(f"entry format {document.get('format')!r}, expected {ENTRY_FORMAT}")
            if document.get("sha256") != _json_digest(body):
                raise CorruptEntry("the manifest does not match its checksum")
            mixture = body.get("mixture")
            request = body.get("request")
            manifest = cls(
                key=str(body["key"]),
                created=str(body["created"]),
                spec=str(body["spec"]),
                data=str(body["data"]),
                sample_rate=int(body["sample_rate"]),
                channels=int(body["channels"]),
                frames=int(body["frames"]),
                stems=tuple(StoredStem.from_dict(s) for s in body["stems"]),
                mixture=StoredStem.from_dict(mixture) if mixture else None,
                provenance=dict(body["provenance"]),
                identity=dict(body.get("identity") or {}),
                request=tuple(request) if request is not None else None,
                stemkit_version=str(body.get("stemkit_version") or ""),
            )
        except CorruptEntry:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptEntry(f"the manifest is not readable ({type(exc).__name__}: {exc})") from exc
        if manifest.key != key:
            raise CorruptEntry(f"the manifest belongs to entry {manifest.key[:12]}…")
        if not manifest.stems:
            raise CorruptEntry("the manifest lists no stems")
        for stored in manifest.files:
            if "/" in stored.file or "\\" in stored.file or stored.file.startswith("."):
                raise CorruptEntry(f"the manifest names an unsafe file {stored.file!r}")
        return manifest


def _json_digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _wav_header(sample_rate: int, channels: int, frames: int) -> bytes:
    block_align = 4 * channels
    data_bytes = frames * block_align
    riff_size = _HEADER_BYTES - 8 + data_bytes
    if riff_size > _MAX_RIFF:
        raise TooLargeToStore(f"{data_bytes / 2**30:.1f} GiB is more than a WAV file holds")
    fmt = struct.pack("<HHIIHHH", _WAVE_FORMAT_IEEE_FLOAT, channels, sample_rate, sample_rate * block_align,
                      block_align, 32, 0)  # fmt: skip
    return b"".join(
        [
            b"RIFF", struct.pack("<I", riff_size), b"WAVE",
            b"fmt ", struct.pack("<I", len(fmt)), fmt,
            b"fact", struct.pack("<I", 4), struct.pack("<I", frames),
            b"data", struct.pack("<I", data_bytes),
        ]
    )  # fmt: skip


def write_float_wav(
    path: Path, blocks: Iterable[FloatArray], *, sample_rate: int, channels: int, frames: int
) -> tuple[str, int]:
    """Write (channels, n) float32 blocks as a float WAV, hashing as it goes; returns (digest, bytes).

    One pass, one block in memory: the header is known up front because the length is.
    """
    digest = xxhash.xxh3_128()
    written = 0
    with path.open("wb") as fh:
        header = _wav_header(sample_rate, channels, frames)
        digest.update(header)
        fh.write(header)
        size = len(header)
        for block in blocks:
            data = np.asarray(block)
            if data.ndim != 2 or data.shape[0] != channels:
                raise ValueError(f"a block of shape {data.shape} in a {channels}-channel stem")
            interleaved = np.ascontiguousarray(data.T, dtype="<f4")
            view = memoryview(interleaved.data).cast("B")
            digest.update(view)
            fh.write(view)
            size += view.nbytes
            written += data.shape[1]
    if written != frames:
        raise ValueError(f"wrote {written} frames of a {frames}-frame stem")
    return digest.hexdigest(), size


def file_digest(path: Path) -> tuple[str, int]:
    """(xxh3-128 digest, size) of a file's bytes."""
    digest = xxhash.xxh3_128()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def scrub(value: Any, *, key: str = "") -> Any:
    """A copy safe to store: no secret-named values, no URL query strings, no local folder paths."""
    if key and is_secret_key(key) and value is not None:
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): scrub(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub_text(str(value))


def scrub_text(text: str) -> str:
    """A URL without its query and fragment (a presigned URL's signature lives there); other text as is."""
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme and (parts.query or parts.fragment or parts.username or parts.password):
            host = parts.hostname or ""
            netloc = host if parts.port is None else f"{host}:{parts.port}"
            return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return text


def input_label(name: str | None) -> str | None:
    """How the manifest names the input: a URL without its query, a file by its name (no local folders)."""
    if name is None:
        return None
    if "://" in name:
        return scrub_text(name)
    return Path(name).name or name
