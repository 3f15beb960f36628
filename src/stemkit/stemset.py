"""The normalized result every provider returns: a read-only mapping of canonical stem name to Stem.

A Stem's audio may be in memory, in a file (a hosted job's download, a streamed local run) decoded on first
use, or computed from other stems (a derived stem). Either way ``stem.audio`` has the input's sample rate,
exact length and channel count, as float32 (channels, frames).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stemkit._atomic import NonFiniteAudioError, write_blocks_atomic
from stemkit._levels import Levels, NonFiniteBlock, plan_levels, rendered
from stemkit.audio import FloatArray, normalize_audio
from stemkit.errors import ConfigError, ProtocolError, ProviderError
from stemkit.output import Normalization, OutputSettings, output_settings, output_targets
from stemkit.provenance import Provenance

__all__ = ["DEFAULT_BLOCKSIZE", "BlockSource", "SavedStems", "Stem", "StemSet"]

#: Frames per block when stems are streamed (saved, mixed, derived): 64 Ki frames, 512 KiB of stereo float32.
DEFAULT_BLOCKSIZE = 1 << 16

BlockSource = Callable[[int], Iterator[FloatArray]]
"""``blocks(blocksize)``: a stem's audio as (channels, n) float32 blocks of exactly ``blocksize`` frames
(the last one shorter), read or computed as they are asked for."""


def _read_only(array: FloatArray) -> FloatArray:
    """A read-only view of ``array``: the stem cannot be changed through it, and the array itself (which may
    be the caller's or the provider's) keeps its own flags."""
    view = array.view()
    view.setflags(write=False)
    return view


class Stem:
    """One stem: its canonical name, the provider's own name for it, and its audio.

    Build one with :meth:`from_array`, :meth:`from_file` (decoded lazily, normalized on first access) or
    :meth:`derived_from` (computed from other stems, block by block, when it is read or saved).
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
        blocks: BlockSource | None = None,
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
        self._blocks = blocks
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
        """A stem whose audio is ``audio`` (channels, frames), kept as a read-only view: the array passed in
        is not copied, and not frozen either."""
        array = _read_only(np.ascontiguousarray(audio, dtype=np.float32))
        stem = cls(
            name,
            sample_rate=sample_rate,
            channels=array.shape[0],
            frames=array.shape[1],
            loader=lambda: array,
            provider_name=provider_name,
            derived=derived,
            complement_of=complement_of,
        )
        stem._audio = array
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
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
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
        compute: Callable[[], FloatArray] | None = None,
        *,
        sample_rate: int,
        channels: int,
        frames: int,
        blocks: BlockSource | None = None,
        provider_name: str | None = None,
        complement_of: tuple[str, ...] | None = None,
    ) -> Stem:
        """A stem stemkit computes: from ``blocks`` (preferred: saving and reading it then never needs its
        sources whole) or, failing that, from ``compute`` (the whole array at once)."""
        if blocks is None and compute is None:
            raise TypeError("Stem.derived_from needs blocks= or compute")
        loader = compute if compute is not None else (lambda: _gather(blocks, channels, frames, name))
        return cls(
            name,
            sample_rate=sample_rate,
            channels=channels,
            frames=frames,
            loader=loader,
            provider_name=provider_name,
            derived=True,
            complement_of=complement_of,
            blocks=blocks,
        )

    @classmethod
    def sum_of(
        cls,
        name: str,
        sources: Sequence[Stem],
        *,
        residual: tuple[Stem, Sequence[Stem]] | None = None,
        sample_rate: int,
        channels: int,
        frames: int,
        provider_name: str | None = None,
        complement_of: tuple[str, ...] | None = None,
    ) -> Stem:
        """A derived stem: the sum of ``sources``, plus, with ``residual=(mixture, produced)``, what the
        produced stems leave of the mixture. Computed block by block from its sources' blocks, so a stem
        derived from file-backed stems is saved (or read) without loading any of them whole."""
        return cls.derived_from(
            name,
            blocks=_summed(sources, residual),
            sample_rate=sample_rate,
            channels=channels,
            frames=frames,
            provider_name=provider_name,
            complement_of=complement_of,
        )

    @property
    def audio(self) -> FloatArray:
        """float32 (channels, frames) at the input's rate and exact length; read-only."""
        if self._audio is None:
            with self._lock:
                if self._audio is None:
                    assert self._loader is not None
                    self._audio = _read_only(np.ascontiguousarray(self._loader(), dtype=np.float32))
                    self._loader = None
        return self._audio

    @property
    def is_loaded(self) -> bool:
        return self._audio is not None

    def iter_blocks(self, blocksize: int = DEFAULT_BLOCKSIZE) -> Iterator[FloatArray]:
        """The audio as (channels, n) float32 blocks of ``blocksize`` frames (the last one shorter).

        Nothing is kept: a file-backed stem that is not loaded and whose file already has the stem's rate,
        channel count and length (a streamed local run writes it so) is read block by block, and a derived
        stem is summed block by block from its sources, so saving an hour-long stem takes a few blocks of
        memory. Anything else (a file that needs resampling) is sliced from :attr:`audio`.
        """
        if self._audio is None and self._blocks is not None:
            yield from self._blocks(blocksize)
            return
        if self._audio is None and self.path is not None and self._streamable():
            try:
                with sf.SoundFile(self.path) as fh:
                    while True:
                        block = fh.read(blocksize, dtype="float32", always_2d=True)
                        if not len(block):
                            break
                        yield np.ascontiguousarray(block.T)
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                raise ProtocolError(f"stem {self.name!r} file {self.path.name} could not be read: {exc}") from exc
            return
        audio = self.audio
        for start in range(0, self.frames, blocksize):
            yield audio[:, start : start + blocksize]

    def _streamable(self) -> bool:
        assert self.path is not None
        try:
            info = sf.info(self.path)
        except (sf.LibsndfileError, RuntimeError, OSError):
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


def exact_blocks(blocks: Iterable[FloatArray], blocksize: int) -> Iterator[FloatArray]:
    """Re-cut (channels, n) blocks of any sizes into blocks of exactly ``blocksize`` frames (the last one
    shorter), passing through, uncopied, blocks that already have that size."""
    pending: list[FloatArray] = []
    held = 0
    for block in blocks:
        if not held and block.shape[1] == blocksize:
            yield block
            continue
        pending.append(block)
        held += block.shape[1]
        if held >= blocksize:
            joined = np.concatenate(pending, axis=1)
            cut = held - held % blocksize
            for start in range(0, cut, blocksize):
                yield joined[:, start : start + blocksize]
            pending = [joined[:, cut:]] if held > cut else []
            held -= cut
    if held:
        yield np.concatenate(pending, axis=1)


def _gather(blocks: BlockSource | None, channels: int, frames: int, name: str) -> FloatArray:
    """A derived stem's whole audio, filled block by block (its sources are never loaded whole)."""
    assert blocks is not None
    out = np.empty((channels, frames), dtype=np.float32)
    filled = 0
    for block in blocks(DEFAULT_BLOCKSIZE):
        n = block.shape[1]
        if filled + n > frames:
            raise ProtocolError(f"stem {name!r}: its sources are longer than {frames} frames")
        out[:, filled : filled + n] = block
        filled += n
    if filled != frames:
        raise ProtocolError(f"stem {name!r}: its sources have {filled} frames, not {frames}")
    return out


def _summed(sources: Sequence[Stem], residual: tuple[Stem, Sequence[Stem]] | None) -> BlockSource:
    """Blocks of Σ sources (+ mixture − Σ produced, for a residual), each source read once per block.

    The arithmetic is the same, in the same order, as summing the whole arrays, so the result does not
    depend on the block size.
    """
    mixture, produced = residual if residual is not None else (None, ())
    needed: dict[int, Stem] = {id(s): s for s in [*sources, *([mixture] if mixture else []), *produced]}

    def blocks(blocksize: int) -> Iterator[FloatArray]:
        readers = {key: stem.iter_blocks(blocksize) for key, stem in needed.items()}
        while True:
            current = {key: block for key, reader in readers.items() if (block := next(reader, None)) is not None}
            if not current:
                return
            if len(current) != len(readers) or len({block.shape for block in current.values()}) != 1:
                names = ", ".join(stem.name for stem in needed.values())
                raise ProtocolError(f"stems {names} disagree in length or channels; they cannot be summed")
            total = np.zeros(next(iter(current.values())).shape, dtype=np.float32)
            # An overflow gives inf, which every consumer that matters refuses (saving checks each block).
            with np.errstate(over="ignore", invalid="ignore"):
                for stem in sources:
                    total += current[id(stem)]
                if mixture is not None:
                    rest = np.array(current[id(mixture)], dtype=np.float32, copy=True)
                    for stem in produced:
                        rest -= current[id(stem)]
                    total += rest
            yield total

    return blocks


class SavedStems(dict[str, Path]):
    """What :meth:`StemSet.save` wrote: stem name → path, plus how (``settings``), at what rate
    (``sample_rate``), and with what gain (``levels``: ``levels.gain``, ``levels.gain_db``, ``levels.reasons``,
    and the set's measured ``levels.peak`` / ``levels.loudness``)."""

    def __init__(
        self, paths: Mapping[str, Path], *, settings: OutputSettings, levels: Levels, sample_rate: int
    ) -> None:
        super().__init__(paths)
        self.settings = settings
        self.levels = levels
        self.sample_rate = sample_rate

    def describe(self) -> str:
        """``flac 16-bit, 48000 Hz, rescaled to avoid clipping (-1.3 dB)`` — for a log line."""
        parts = [self.settings.describe(self.sample_rate), f"{self.sample_rate} Hz"]
        if self.levels.gain != 1.0:
            parts.append(f"{', '.join(self.levels.reasons)} ({self.levels.gain_db:+.1f} dB)")
        if self.levels.clamp:
            parts.append("clamped to ±0.99")
        return ", ".join(parts)


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
        """The sum of the named stems, e.g. ``stems.mix(["drums", "bass"])`` for a rhythm section.

        Summed block by block: a file-backed or derived stem is not loaded whole to be mixed.
        """
        selected = [self[name] for name in names]
        if not selected:
            raise ConfigError("mix: name at least one stem")
        total = np.zeros((self.channels, self.frames), dtype=np.float32)
        for stem in selected:
            start = 0
            for block in stem.iter_blocks():
                total[:, start : start + block.shape[1]] += block
                start += block.shape[1]
        return total

    def save(
        self,
        directory: str | Path,
        format: str = "wav",
        template: str = "{stem}.{ext}",
        *,
        input_name: str | None = None,
        bit_depth: int | None = None,
        bitrate: int | None = None,
        vbr_quality: float | None = None,
        clip: str = "auto",
        normalize: str | Normalization | None = None,
        sample_rate: int | None = None,
    ) -> SavedStems:
        """Write each stem to ``directory`` atomically (temporary name, then rename); returns name → path.

        ``template`` may use ``{stem}``, ``{ext}``, ``{provider}``, ``{model}`` and ``{input}`` (the input's file
        stem). Encoding: ``bit_depth`` 16, 24 or 32 (float) for wav (default 32) and flac (16 or 24, default
        24); ``bitrate`` (kbps, constant; default 320) or ``vbr_quality`` (LAME's 0 best – 9 smallest) for mp3;
        ``sample_rate`` writes at another rate (resampled, soxr HQ). Levels, one gain for the whole set so the
        stems still sum to the (scaled) mixture: ``normalize`` ``"peak"`` / ``"peak:-0.5"`` (dBFS) or
        ``"loudness"`` / ``"loudness:-23"`` (LUFS, the mixture's); ``clip`` ``"rescale"`` (by
        ``max(1.01 × peak, 1)``), ``"clamp"`` (to ±0.99), ``"none"``, or ``"auto"`` (the default: rescale
        for formats that would clip — flac, 16/24-bit wav, mp3 — and keep float wav exact).

        Everything that can be checked before writing is (format and settings, the encoder's rates, the
        template, the folder): an :class:`~stemkit.errors.OutputError` says what to fix, and nothing is
        written. A failure while writing (disk full) is an OutputError too, and leaves no partial file; stems
        are streamed block by block (a normalization or a rescale reads them once more first), so file-backed
        and derived stems are never loaded whole. A stem with NaN or infinite samples is never written
        (:class:`~stemkit.errors.ProviderError`). The result also says what gain was applied and why.
        """
        settings = output_settings(
            format, bit_depth=bit_depth, bitrate=bitrate, vbr_quality=vbr_quality, clip=clip, normalize=normalize,
            sample_rate=sample_rate,
        )  # fmt: skip
        if settings.normalize is not None and settings.normalize.kind == "loudness":
            from stemkit.loudness import require_scipy

            require_scipy()
        targets = output_targets(
            directory,
            settings.format,
            template,
            stems=list(self._stems),
            provider=self.provider.split(":")[0],
            model=self.provenance.model or self.provider,
            input_name=input_name or Path(self.provenance.input_name or "input").stem,
            sample_rate=self.sample_rate,
            channels=self.channels,
            settings=settings,
        )
        out_rate = settings.sample_rate or self.sample_rate
        try:
            levels = plan_levels(
                settings,
                {name: self._stems[name].iter_blocks for name in targets},
                self._mixture_blocks,
                sample_rate=self.sample_rate,
                channels=self.channels,
                label=self.provenance.input_name or "the stems",
            )
        except NonFiniteBlock as exc:
            raise ProviderError(
                f"stem {exc.stem!r} has {exc.count} NaN or infinite sample(s), so nothing was written to "
                f"{directory}; use another provider, or report it to the provider",
                provider=self.provider,
            ) from exc
        for name, path in targets.items():
            blocks = rendered(
                self._stems[name].iter_blocks(), levels, sample_rate=self.sample_rate, out_rate=out_rate,
                channels=self.channels,
            )  # fmt: skip
            try:
                write_blocks_atomic(path, blocks, out_rate, self.channels, settings.format, settings=settings)
            except NonFiniteAudioError as exc:
                raise ProviderError(
                    f"stem {name!r} has {exc.count} NaN or infinite sample(s) in the block being written, so "
                    f"{path} was not written; use another provider, or report it to the provider",
                    provider=self.provider,
                ) from exc
        return SavedStems(targets, settings=settings, levels=levels, sample_rate=out_rate)

    def _mixture_blocks(self) -> Iterator[FloatArray]:
        """The mixture (the input, or the provider's) block by block; the sum of the stems when there is none."""
        if self.mixture is not None:
            return self.mixture.iter_blocks()
        return Stem.sum_of(
            "mixture", list(self._stems.values()), sample_rate=self.sample_rate, channels=self.channels,
            frames=self.frames,
        ).iter_blocks()  # fmt: skip

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
