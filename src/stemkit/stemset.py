"""The normalized result every provider returns: a read-only mapping of canonical stem name to Stem.

A Stem's audio may be in memory, in a file (a hosted job's download, a streamed local run) decoded on first
use, or computed from other stems (a derived stem). Either way ``stem.audio`` has the input's sample rate,
exact length and channel count, as float32 (channels, frames).
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stemkit.audio import FloatArray, normalize_audio, write_audio_atomic, write_blocks_atomic, write_format
from stemkit.errors import ConfigError, ProtocolError
from stemkit.provenance import Provenance

__all__ = ["Stem", "StemSet"]

_TEMPLATE_FIELDS = frozenset({"stem", "ext", "provider", "input"})


class Stem:
    """One stem: its canonical name, the provider's own name for it, and its audio.

    Build one with :meth:`from_array`, :meth:`from_file` (decoded lazily, normalized on first access) or
    :meth:`derived` (computed from other stems on first access).
    """

    def __init__(
        self,
        name: str,
        *,
        sample_rate: int,
        channels: int,
        frames: int,
        loader: Callable[[], FloatArray],
        provider_name: str | None = None,
        path: Path | None = None,
        derived: bool = False,
        complement_of: tuple[str, ...] | None = None,
    ) -> None:
        self.name = name
        self.provider_name = provider_name if provider_name is not None else name
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames = frames
        self.path = path
        self.derived = derived
        self.complement_of = complement_of
        self._loader: Callable[[], FloatArray] | None = loader
        self._audio: FloatArray | None = None
        self._lock = threading.Lock()
        #: whatever must outlive this stem (the temporary folder its file lives in)
        self.keepalive: object | None = None

    @classmethod
    def from_array(
        cls,
        name: str,
        audio: FloatArray,
        sample_rate: int,
        *,
        provider_name: str | None = None,
        derived: bool = False,
        complement_of: tuple[str, ...] | None = None,
    ) -> Stem:
        stem = cls(
            name,
            sample_rate=sample_rate,
            channels=audio.shape[0],
            frames=audio.shape[1],
            loader=lambda: audio,
            provider_name=provider_name,
            derived=derived,
            complement_of=complement_of,
        )
        stem._audio = audio
        stem._audio.setflags(write=False)
        stem._loader = None
        return stem

    @classmethod
    def from_file(
        cls,
        name: str,
        path: Path,
        *,
        sample_rate: int,
        channels: int,
        frames: int,
        provider_name: str | None = None,
        complement_of: tuple[str, ...] | None = None,
    ) -> Stem:
        """A stem whose audio is a file (any rate/length/channels); decoded and normalized on first access."""

        def load() -> FloatArray:
            try:
                data, rate = sf.read(path, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise ProtocolError(f"stem {name!r} file {path.name} could not be decoded: {exc}") from exc
            return normalize_audio(
                data.T, int(rate), to_rate=sample_rate, to_frames=frames, to_channels=channels
            )

        return cls(
            name,
            sample_rate=sample_rate,
            channels=channels,
            frames=frames,
            loader=load,
            provider_name=provider_name,
            path=path,
            complement_of=complement_of,
        )

    @classmethod
    def derived_from(
        cls,
        name: str,
        compute: Callable[[], FloatArray],
        *,
        sample_rate: int,
        channels: int,
        frames: int,
        provider_name: str | None = None,
        complement_of: tuple[str, ...] | None = None,
    ) -> Stem:
        return cls(
            name,
            sample_rate=sample_rate,
            channels=channels,
            frames=frames,
            loader=compute,
            provider_name=provider_name,
            derived=True,
            complement_of=complement_of,
        )

    @property
    def audio(self) -> FloatArray:
        """float32 (channels, frames) at the input's rate and exact length; read-only."""
        if self._audio is None:
            with self._lock:
                if self._audio is None:
                    assert self._loader is not None
                    audio = np.ascontiguousarray(self._loader(), dtype=np.float32)
                    audio.setflags(write=False)
                    self._audio = audio
                    self._loader = None
        return self._audio

    @property
    def is_loaded(self) -> bool:
        return self._audio is not None

    def iter_blocks(self, blocksize: int = 1 << 16) -> Iterator[FloatArray]:
        """The audio as (channels, n) float32 blocks.

        A file-backed stem that is not loaded and whose file already has the stem's rate, channel count and
        length (a streamed local run writes it so) is read block by block and not kept: saving an hour-long
        stem takes one block of memory. Anything else is sliced from :attr:`audio`.
        """
        if self._audio is None and self.path is not None and self._streamable():
            with sf.SoundFile(self.path) as fh:
                while True:
                    block = fh.read(blocksize, dtype="float32", always_2d=True)
                    if not len(block):
                        break
                    yield np.ascontiguousarray(block.T)
            return
        audio = self.audio
        for start in range(0, self.frames, blocksize):
            yield audio[:, start : start + blocksize]

    def _streamable(self) -> bool:
        assert self.path is not None
        try:
            info = sf.info(self.path)
        except (sf.LibsndfileError, RuntimeError):
            return False
        return (int(info.samplerate), int(info.channels), int(info.frames)) == (
            self.sample_rate,
            self.channels,
            self.frames,
        )

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        flag = ", derived=True" if self.derived else ""
        return (
            f"Stem({self.name!r}, provider_name={self.provider_name!r}, sample_rate={self.sample_rate}, "
            f"channels={self.channels}, frames={self.frames}{flag}{where})"
        )


class StemSet(Mapping[str, Stem]):
    """Canonical stem name → Stem, all at one sample rate, length and channel count, plus provenance."""

    def __init__(
        self,
        stems: Iterable[Stem],
        *,
        provenance: Provenance,
        mixture: Stem | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self._stems: dict[str, Stem] = {}
        for stem in stems:
            if stem.name in self._stems:
                raise ProtocolError(f"{provenance.provider}: stem {stem.name!r} was produced twice")
            self._stems[stem.name] = stem
        if not self._stems:
            raise ProtocolError(f"{provenance.provider}: produced no stems")
        first = next(iter(self._stems.values()))
        shapes = {(s.sample_rate, s.channels, s.frames) for s in self._stems.values()}
        if len(shapes) != 1:
            raise ProtocolError(f"{provenance.provider}: stems disagree in rate, channels or length: {shapes}")
        self.sample_rate: int = first.sample_rate
        self.channels: int = first.channels
        self.frames: int = first.frames
        self.provenance = provenance
        self.mixture = mixture
        self._cleanup = cleanup

    # -- mapping ----------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Stem:
        try:
            return self._stems[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in this StemSet; it has {', '.join(self._stems)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._stems)

    def __len__(self) -> int:
        return len(self._stems)

    # -- shape and provenance ---------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def provider(self) -> str:
        return self.provenance.provider

    @property
    def attempts(self) -> tuple[Any, ...]:
        return self.provenance.attempts

    def with_provenance(self, provenance: Provenance) -> StemSet:
        """The same stems with other provenance (a fallback chain adds its trail)."""
        out = StemSet(self._stems.values(), provenance=provenance, mixture=self.mixture, cleanup=self._cleanup)
        self._cleanup = None
        return out

    def __repr__(self) -> str:
        derived = [n for n, s in self._stems.items() if s.derived]
        extra = f", derived={derived}" if derived else ""
        return (
            f"StemSet(provider={self.provider!r}, stems={list(self._stems)}{extra}, "
            f"sample_rate={self.sample_rate}, channels={self.channels}, frames={self.frames})"
        )

    # -- operations -------------------------------------------------------------------------------------
    def mix(self, names: Iterable[str]) -> FloatArray:
        """The sum of the named stems, e.g. ``stems.mix(["drums", "bass"])`` for a rhythm section."""
        selected = list(names)
        if not selected:
            raise ConfigError("mix: name at least one stem")
        total = np.zeros((self.channels, self.frames), dtype=np.float32)
        for name in selected:
            total += self[name].audio
        return total

    def save(
        self,
        directory: str | Path,
        format: str = "wav",
        template: str = "{stem}.{ext}",
        *,
        input_name: str | None = None,
    ) -> dict[str, Path]:
        """Write each stem to ``directory`` atomically (temporary name, then rename).

        ``template`` may use ``{stem}``, ``{ext}``, ``{provider}`` and ``{input}`` (the input's file stem).
        Returns canonical name → written path.
        """
        ext = format.lower().lstrip(".")
        write_format(ext)
        root = Path(directory)
        targets = {name: root / self._render(template, name, ext, input_name) for name in self._stems}
        if len(set(targets.values())) != len(targets):
            raise ConfigError(f"template: {template!r} gives several stems the same file name; include {{stem}}")
        resolved_root = root.resolve()
        for path in targets.values():
            if not path.resolve().is_relative_to(resolved_root):
                raise ConfigError(f"template: {template!r} writes outside {root}; keep paths inside it")
        for name, path in targets.items():
            stem = self._stems[name]
            if stem.path is not None and not stem.is_loaded:  # stream a file-backed stem, keep memory flat
                write_blocks_atomic(path, stem.iter_blocks(), self.sample_rate, self.channels, ext)
            else:
                write_audio_atomic(path, stem.audio, self.sample_rate, ext)
        return targets

    def _render(self, template: str, name: str, ext: str, input_name: str | None) -> str:
        fields = {fname for _, fname, _, _ in string.Formatter().parse(template) if fname is not None}
        unknown = fields - _TEMPLATE_FIELDS
        if unknown:
            raise ConfigError(
                f"template: unknown field(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(_TEMPLATE_FIELDS))}"
            )
        stem_input = input_name or Path(self.provenance.input_name or "input").stem
        return template.format(stem=name, ext=ext, provider=self.provider.split(":")[0], input=stem_input)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: shape, stems (with derived flags and file paths), provenance."""
        return {
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "duration": self.duration,
            "stems": {
                name: {
                    "provider_name": stem.provider_name,
                    "derived": stem.derived,
                    "path": str(stem.path) if stem.path else None,
                    "complement_of": list(stem.complement_of) if stem.complement_of else None,
                }
                for name, stem in self._stems.items()
            },
            "provenance": self.provenance.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Also run ``cleanup`` when this StemSet is closed (e.g. a chain's temporary copy of its input)."""
        before = self._cleanup

        def both() -> None:
            try:
                if before is not None:
                    before()
            finally:
                cleanup()

        self._cleanup = both

    def close(self) -> None:
        """Remove temporary files that back file-backed stems (load what you need first)."""
        if self._cleanup is not None:
            cleanup, self._cleanup = self._cleanup, None
            cleanup()

    def __enter__(self) -> StemSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
