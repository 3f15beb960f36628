"""Input handling: whatever the caller hands us becomes an AudioSource that can be probed, hashed, read,
resampled, and handed to a hosted API as a file — plus the primitives every provider needs on the way out:
normalizing an array to the input's shape, refusing non-finite audio, and writing a file atomically (the
writer lives in :mod:`stemkit._atomic`, the output checks in :mod:`stemkit.output`; both are re-exported).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import soundfile as sf

from stemkit._atomic import write_audio_atomic, write_blocks_atomic
from stemkit.errors import ConfigError, InputError, ProviderError
from stemkit.output import output_format as write_format

__all__ = [
    "AV_EXTRA_HINT",
    "DEFAULT_MAX_INPUT_BYTES",
    "MAX_INPUT_BYTES_ENV",
    "AudioSource",
    "FloatArray",
    "check_finite_stem",
    "max_input_bytes",
    "normalize_audio",
    "open_source",
    "resample",
    "write_audio_atomic",
    "write_blocks_atomic",
    "write_format",
]

FloatArray = npt.NDArray[np.float32]
SourceKind = Literal["file", "url", "youtube", "bytes", "array"]

#: Containers libsndfile cannot read; they decode through the optional PyAV extra.
AV_SUFFIXES = frozenset({".m4a", ".mp4", ".aac", ".opus", ".webm", ".mka", ".wma", ".alac", ".3gp"})
AV_EXTRA_HINT = 'install the optional decoder with: pip install "stemkit[av]"'
MAX_CHANNELS = 2
MIN_FRAMES = 2
_YOUTUBE_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"})
#: Environment variable that sets how many bytes a file-object input may hold (it is copied to a temporary file).
MAX_INPUT_BYTES_ENV = "STEMKIT_MAX_INPUT_BYTES"
#: 4 GiB: a WAV file's own limit, about 6 hours of 16-bit stereo at 44.1 kHz.
DEFAULT_MAX_INPUT_BYTES = 4 * 1024**3
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class _Info:
    sample_rate: int
    channels: int
    frames: int
    format_name: str


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _is_youtube(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in _YOUTUBE_HOSTS


class AudioSource:
    """One input, probed lazily. Temporary files it creates are removed by ``close()``.

    ``path`` is always a local file (bytes, file-like objects and arrays are written to a temporary file the
    first time a provider asks for one, e.g. to upload it); ``read()`` decodes to float32 (channels, frames).
    ``sha256`` is for audio hashed elsewhere (an array another worker decoded from a file: the file's hash).
    """

    def __init__(
        self,
        kind: SourceKind,
        *,
        path: Path | None = None,
        url: str | None = None,
        data: bytes | None = None,
        array: FloatArray | None = None,
        sample_rate: int | None = None,
        name: str | None = None,
        sha256: str | None = None,
    ) -> None:
        self.kind: SourceKind = kind
        self.url = url
        self._path = path
        self._data = data
        self._array = array
        self._array_rate = sample_rate
        self._info: _Info | None = None
        self._decoded: tuple[FloatArray, int] | None = None
        # Given when the audio was hashed elsewhere: an array decoded by another process from a file keeps the
        # file's identity (the result cache and the job ledger key on it), not that of its samples.
        self._sha256: str | None = sha256
        self._tempdir: Path | None = None
        self.name = name or (str(path) if path else url or f"<{kind}>")

    # -- what it is -------------------------------------------------------------------------------------
    @property
    def is_remote(self) -> bool:
        return self.kind in ("url", "youtube")

    @property
    def info(self) -> _Info:
        if self.is_remote:
            raise InputError(f"{self.name}: a URL input has no local audio to probe")
        if self._info is None:
            self._info = self._probe()
        return self._info

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def channels(self) -> int:
        return self.info.channels

    @property
    def frames(self) -> int:
        return self.info.frames

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def format_name(self) -> str:
        return self.info.format_name

    @property
    def suffix(self) -> str:
        if self._path is not None and self._path.suffix:
            return self._path.suffix.lower()
        return {"MP3": ".mp3", "FLAC": ".flac", "OGG": ".ogg", "AIFF": ".aiff"}.get(self.format_name, ".wav")

    @property
    def size_bytes(self) -> int:
        if self.kind == "array":
            return self.path.stat().st_size
        if self._data is not None:
            return len(self._data)
        return self.path.stat().st_size

    @property
    def sha256(self) -> str:
        """Hash of the input's bytes (of the float32 samples and rate, for an array)."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            if self._array is not None:
                digest.update(f"{self._array_rate}:{self._array.shape}".encode())
                digest.update(np.ascontiguousarray(self._array).tobytes())
            elif self._data is not None:
                digest.update(self._data)
            elif self.url is not None and self._path is None:
                digest.update(self.url.encode())
            else:
                with self.path.open("rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    # -- getting at the audio ---------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """A local file with the input's audio, written to a temporary file on first use if needed."""
        if self._path is None:
            if self.is_remote:
                raise InputError(f"{self.name}: a URL input has no local file; this provider needs a local file")
            tmp = self._temp_dir()
            if self._data is not None:
                target = tmp / f"input{self.suffix}"
                target.write_bytes(self._data)
            else:
                assert self._array is not None
                assert self._array_rate is not None
                target = tmp / "input.wav"
                sf.write(target, self._array.T, self._array_rate, format="WAV", subtype="FLOAT")
            self._path = target
        return self._path

    def read(self) -> FloatArray:
        """Decode the whole input to float32 (channels, frames), checking that every sample is finite."""
        if self._array is not None:
            return self._array
        if self._decoded is not None:
            return self._decoded[0]
        array = self._decode()
        _check_finite(array, self.name)
        return array

    def iter_blocks(self, blocksize: int) -> Iterator[FloatArray]:
        """Decode the input in blocks of ``blocksize`` frames (float32, (channels, n)), for bounded memory."""
        if self._array is not None or self._decoded is not None or self._needs_av():
            whole = self.read()
            for start in range(0, whole.shape[1], blocksize):
                yield whole[:, start : start + blocksize]
            return
        try:
            with sf.SoundFile(self._sf_target()) as fh:
                while True:
                    block = fh.read(blocksize, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    out = np.ascontiguousarray(block.T)
                    _check_finite(out, self.name)
                    yield out
        except sf.LibsndfileError as exc:  # pragma: no cover - probed before, so a mid-file failure
            raise InputError(f"{self.name}: the audio could not be decoded ({exc}); is the file complete?") from exc

    def excerpt(self, start: int, frames: int) -> AudioSource:
        """The frames ``[start, start + frames)`` of this input as a source of their own, sample-exact.

        An array input is sliced; a file is read from ``start`` (libsndfile seeks sample-accurately, MP3
        included) and written block by block to a temporary 32-bit float WAV, so no sample changes and memory
        stays bounded. The excerpt keeps the input's name (messages and ``{input}`` name the user's file) and
        is identified by the input's hash and the range (the result cache tells excerpts apart). Closing it
        removes its temporary file; this source stays open.
        """
        info = self.info
        if not (start >= 0 and frames > 0 and start + frames <= info.frames):
            raise ValueError(f"excerpt [{start}, {start + frames}) is not within 0..{info.frames}")
        identity = hashlib.sha256(f"{self.sha256}:{start}:{frames}".encode()).hexdigest()
        if self._array is not None or self._decoded is not None or self._needs_av():
            part = np.ascontiguousarray(self.read()[:, start : start + frames])
            part.setflags(write=False)
            cut = AudioSource("array", array=part, sample_rate=info.sample_rate, name=self.name)
        else:
            tmpdir = Path(tempfile.mkdtemp(prefix="stemkit-excerpt-"))
            target = tmpdir / "excerpt.wav"
            try:
                with sf.SoundFile(self._sf_target()) as fh, sf.SoundFile(
                    target, "w", samplerate=info.sample_rate, channels=info.channels, format="WAV", subtype="FLOAT"
                ) as out:
                    fh.seek(start)
                    left = frames
                    while left > 0:
                        block = fh.read(min(left, 1 << 16), dtype="float32", always_2d=True)
                        if not len(block):
                            break
                        _check_finite(block, self.name)
                        out.write(block)
                        left -= len(block)
            except OSError as exc:
                shutil.rmtree(tmpdir, ignore_errors=True)
                raise ConfigError(
                    f"{self.name}: the excerpt could not be written to a temporary file in {tmpdir.parent} "
                    f"({exc.strerror or exc}); free some space there, or point TMPDIR at a folder with room"
                ) from exc
            except BaseException:
                shutil.rmtree(tmpdir, ignore_errors=True)
                raise
            cut = AudioSource("file", path=target, name=self.name)
            cut._adopt_tempdir(tmpdir)
            cut._info = _Info(info.sample_rate, info.channels, frames - left, "WAV")
        cut._sha256 = identity
        return cut

    def close(self) -> None:
        """Remove temporary files (also done when the source is garbage collected)."""
        if self._tempdir is not None:
            self._cleanup()
            self._tempdir = None
            if self._data is not None or self._array is not None:
                self._path = None  # can be written again from memory if needed

    def __repr__(self) -> str:
        return f"AudioSource(kind={self.kind!r}, name={self.name!r})"

    # -- internals --------------------------------------------------------------------------------------
    def _temp_dir(self) -> Path:
        if self._tempdir is None:
            self._adopt_tempdir(Path(tempfile.mkdtemp(prefix="stemkit-input-")))
        assert self._tempdir is not None
        return self._tempdir

    def _adopt_tempdir(self, path: Path) -> None:
        self._tempdir = path
        self._cleanup = weakref.finalize(self, shutil.rmtree, path, True)

    def _sf_target(self) -> Any:
        return io.BytesIO(self._data) if self._data is not None and self._path is None else self.path

    def _needs_av(self) -> bool:
        return self._path is not None and self._path.suffix.lower() in AV_SUFFIXES

    def _probe(self) -> _Info:
        if self._array is not None:
            assert self._array_rate is not None
            return _Info(self._array_rate, self._array.shape[0], self._array.shape[1], "ARRAY")
        if self._needs_av():
            info = self._probe_with_av()
        else:
            try:
                raw = sf.info(self._sf_target())
                info = _Info(int(raw.samplerate), int(raw.channels), int(raw.frames), str(raw.format))
            except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
                info = self._probe_fallback(exc)
        _check_shape(info.channels, info.frames, self.name)
        return info

    def _probe_fallback(self, exc: BaseException) -> _Info:
        """libsndfile refused it: maybe a container only PyAV reads, maybe not audio at all."""
        if _av_available():
            try:
                return self._probe_with_av()
            except InputError:
                pass
        hint = f"; if it is an M4A/AAC/Opus/WebM file, {AV_EXTRA_HINT}" if not _av_available() else ""
        raise InputError(
            f"{self.name}: not a readable audio file ({_short(exc)}); "
            f"use WAV, FLAC, MP3, OGG or AIFF{hint}"
        ) from exc

    def _probe_with_av(self) -> _Info:
        array, rate = self._decode_with_av()
        return _Info(rate, array.shape[0], array.shape[1], "AV")

    def _decode(self) -> FloatArray:
        if self._needs_av() or (self._info is not None and self._info.format_name == "AV"):
            return self._decode_with_av()[0]
        try:
            data, _ = sf.read(self._sf_target(), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise InputError(f"{self.name}: the audio could not be decoded ({_short(exc)}); is it complete?") from exc
        array: FloatArray = np.ascontiguousarray(data.T)
        _check_shape(array.shape[0], array.shape[1], self.name)
        return array

    def _decode_with_av(self) -> tuple[FloatArray, int]:
        if self._decoded is None:
            array, rate = _decode_av(self._sf_target() if self._data is not None else self.path, self.name)
            _check_shape(array.shape[0], array.shape[1], self.name)
            _check_finite(array, self.name)
            self._decoded = (array, rate)
        return self._decoded


def _short(exc: BaseException) -> str:
    """The useful part of a decoder's complaint (libsndfile's own words, without object reprs)."""
    text = str(getattr(exc, "error_string", "") or exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text[:160]


def _check_shape(channels: int, frames: int, name: str) -> None:
    if channels > MAX_CHANNELS:
        raise InputError(
            f"{name}: has {channels} channels; stemkit separates mono or stereo audio — "
            "mix it down to stereo first (e.g. average the channels)"
        )
    if channels < 1:
        raise InputError(f"{name}: has no audio channels")
    if frames < MIN_FRAMES:
        what = "no samples" if frames == 0 else f"only {frames} sample"
        raise InputError(f"{name}: has {what}; give at least {MIN_FRAMES} samples of audio")


def _check_finite(array: FloatArray, name: str) -> None:
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InputError(f"{name}: contains {bad} NaN or infinite sample(s); clean the audio before separating it")


#: Sample encodings that cannot represent NaN or infinity: a file in one of them needs no finiteness scan.
_INTEGER_SUBTYPES = re.compile(r"^(PCM_|ALAC_|DPCM_|DWVW_|ULAW$|ALAW$)")


def check_finite_stem(
    audio: npt.NDArray[Any] | Path,
    *,
    stem: str,
    provider: str,
    error: Callable[..., ProviderError] = ProviderError,
    blocksize: int = 1 << 16,
) -> None:
    """Refuse a provider's stem that holds NaN or infinite samples: such audio is never handed on or saved.

    ``error`` is the class to raise (:class:`~stemkit.errors.ProtocolError` for a hosted provider's answer,
    :class:`~stemkit.errors.ProviderError` for a local one), so a fallback chain moves on. A file is read
    block by block (memory stays bounded whatever its length) and not at all when its sample encoding is an
    integer one (PCM WAV, FLAC…), which cannot hold a non-finite value; an array is scanned in blocks too, so
    the check never allocates a mask the size of the stem.
    """
    if isinstance(audio, Path):
        bad, where = _count_non_finite_file(audio, stem, provider, error, blocksize), f" ({audio.name})"
    else:
        data = np.asarray(audio)
        data = data.reshape(1, -1) if data.ndim < 2 else data.reshape(-1, data.shape[-1])
        bad, where = _count_non_finite(data[:, s : s + blocksize] for s in range(0, data.shape[-1], blocksize)), ""
    if bad:
        raise error(
            f"stem {stem!r}{where} has {bad} NaN or infinite sample(s), which is not usable audio; "
            "nothing is kept — use another provider, or report it to the provider",
            provider=provider,
        )


def _count_non_finite(blocks: Iterator[npt.NDArray[Any]]) -> int:
    bad = 0
    for block in blocks:
        if np.issubdtype(block.dtype, np.inexact):
            finite = np.isfinite(block)
            bad += int(finite.size - np.count_nonzero(finite))
    return bad


def _count_non_finite_file(
    path: Path, stem: str, provider: str, error: Callable[..., ProviderError], blocksize: int
) -> int:
    try:
        with sf.SoundFile(path) as fh:
            if _INTEGER_SUBTYPES.match(str(fh.subtype)):
                return 0
            return _count_non_finite(_read_blocks(fh, blocksize))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise error(f"stem {stem!r} ({path.name}) could not be decoded: {_short(exc)}", provider=provider) from exc


def _read_blocks(fh: sf.SoundFile, blocksize: int) -> Iterator[FloatArray]:
    """An open sound file's frames as (frames, channels) float32 blocks, until the end."""
    while True:
        block = fh.read(blocksize, dtype="float32", always_2d=True)
        if not len(block):
            return
        yield block


def _av_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _decode_av(target: Any, name: str) -> tuple[FloatArray, int]:
    """Decode any container FFmpeg knows through PyAV (the optional ``av`` extra)."""
    try:
        import av
    except ImportError as exc:
        raise InputError(f"{name}: this container needs the PyAV decoder; {AV_EXTRA_HINT}") from exc
    try:
        with av.open(target if not isinstance(target, Path) else str(target)) as container:
            if not container.streams.audio:
                raise InputError(f"{name}: the file holds no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.rate or stream.codec_context.sample_rate)
            channels = int(stream.codec_context.channels)
            chunks: list[npt.NDArray[Any]] = []
            for frame in container.decode(stream):
                data = frame.to_ndarray()
                if frame.format.is_planar:
                    chunks.append(data.reshape(channels, -1))
                else:
                    chunks.append(data.reshape(-1, channels).T)
    except InputError:
        raise
    except Exception as exc:  # PyAV raises its own error tree (av.error.*); all mean "cannot decode"
        raise InputError(f"{name}: not a readable audio file ({_short(exc)})") from exc
    if not chunks:
        raise InputError(f"{name}: has no samples; give at least {MIN_FRAMES} samples of audio")
    raw = np.concatenate(chunks, axis=1)
    if np.issubdtype(raw.dtype, np.integer):
        scale = float(np.iinfo(raw.dtype).max) + 1.0
        array = (raw.astype(np.float64) / scale).astype(np.float32)
    else:
        array = raw.astype(np.float32)
    return np.ascontiguousarray(array), rate


def open_source(audio: Any, *, sample_rate: int | None = None) -> AudioSource:
    """Accept a path (str or Path), an http(s) URL, bytes, a binary file-like object, or an ndarray with
    ``sample_rate=``; check what can be checked without decoding everything."""
    if isinstance(audio, AudioSource):
        return audio
    if isinstance(audio, np.ndarray):
        return _from_array(audio, sample_rate)
    if sample_rate is not None:
        raise ConfigError("sample_rate= is only for numpy array input; files carry their own rate")
    if isinstance(audio, str) and _is_url(audio):
        return AudioSource("youtube" if _is_youtube(audio) else "url", url=audio, name=audio)
    if isinstance(audio, str | os.PathLike):
        return _from_path(Path(audio))
    if isinstance(audio, bytes | bytearray | memoryview):
        data = bytes(audio)
        if not data:
            raise InputError("<bytes>: the audio is empty (0 bytes)")
        source = AudioSource("bytes", data=data, name="<bytes>")
        _ = source.info
        return source
    if hasattr(audio, "read"):
        return _from_filelike(audio)
    raise InputError(
        f"audio: cannot use a {type(audio).__name__}; give a path, a URL, bytes, a binary file object, "
        "or a numpy array with sample_rate="
    )


def _from_path(path: Path) -> AudioSource:
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give an audio file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from exc
    if size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied; check the file's permissions")
    source = AudioSource("file", path=path, name=str(path))
    _ = source.info
    return source


def max_input_bytes() -> int:
    """How many bytes a file-object input may hold: ``$STEMKIT_MAX_INPUT_BYTES`` (a number of bytes, or with a
    unit: ``500M``, ``8G``), else :data:`DEFAULT_MAX_INPUT_BYTES`."""
    raw = os.environ.get(MAX_INPUT_BYTES_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_INPUT_BYTES
    match = _SIZE.match(raw)
    if match is None or int(match[1]) <= 0:
        raise ConfigError(
            f"{MAX_INPUT_BYTES_ENV}={raw!r} is not a positive size; give bytes, or a number with K, M, G or T"
        )
    return int(match[1]) * _SIZE_UNITS[(match[2] or "")[:1].lower()]


def _describe_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def _from_filelike(handle: BinaryIO) -> AudioSource:
    """Copy a file object to a temporary file (decoders and uploads need a real file), reading at most
    :func:`max_input_bytes`: an endless stream must not fill the disk."""
    name = str(getattr(handle, "name", "<file object>"))
    suffix = Path(name).suffix.lower() if not name.startswith("<") else ""
    limit = max_input_bytes()
    tmpdir = Path(tempfile.mkdtemp(prefix="stemkit-input-"))
    target = tmpdir / f"input{suffix or '.bin'}"
    try:
        first: object = handle.read(0)
        if isinstance(first, str):
            raise InputError(f"{name}: is opened in text mode; open it with 'rb'")
        size = 0
        with target.open("wb") as out:
            while True:
                try:
                    chunk = handle.read(min(1 << 20, limit + 1 - size))
                except OSError as exc:
                    raise InputError(f"{name}: could not be read ({exc.strerror or exc})") from exc
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise InputError(
                        f"{name}: the file object holds more than {_describe_size(limit)}, stemkit's limit for "
                        f"file-object input; pass the file's path instead, or raise the limit with "
                        f"{MAX_INPUT_BYTES_ENV} (e.g. {MAX_INPUT_BYTES_ENV}=8G)"
                    )
                out.write(chunk)
        if size == 0:
            raise InputError(f"{name}: the audio is empty (0 bytes)")
        source = AudioSource("bytes", path=target, name=name)
        source._adopt_tempdir(tmpdir)
        _ = source.info
    except OSError as exc:  # writing the temporary copy: the temporary folder is full or unusable
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise ConfigError(
            f"{name}: could not be copied to a temporary file in {tmpdir.parent} ({exc.strerror or exc}); "
            "free some space there, or point TMPDIR at a folder with room"
        ) from exc
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return source


def _from_array(array: npt.NDArray[Any], sample_rate: int | None) -> AudioSource:
    if sample_rate is None:
        raise ConfigError("sample_rate: a numpy array input needs sample_rate= (e.g. sample_rate=44100)")
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise ConfigError(f"sample_rate: {sample_rate!r} is not a positive whole number of Hz")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"<array>: dtype {array.dtype} is not real-valued audio")
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise InputError(f"<array>: shape {array.shape} is not (channels, samples) or (samples,)")
    if array.shape[0] > MAX_CHANNELS and array.shape[1] <= MAX_CHANNELS:
        raise InputError(
            f"<array>: shape {array.shape} looks like (samples, channels); stemkit takes (channels, samples) — "
            "pass array.T"
        )
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        floats = array.astype(np.float64) / (float(info.max) + 1.0)
    else:
        floats = array
    out: FloatArray = np.ascontiguousarray(floats, dtype=np.float32)
    _check_shape(out.shape[0], out.shape[1], "<array>")
    _check_finite(out, "<array>")
    # The caller's array stays the caller's: never frozen, never written, and later changes to it do not
    # reach the result (stems are computed lazily, so a view would see them). A conversion (another dtype,
    # a non-contiguous layout) is a copy already; only a float32 C-contiguous array is copied here.
    if np.may_share_memory(out, array):
        out = out.copy()
    out.setflags(write=False)  # our copy: read-only, so no provider can change what the next one sees
    return AudioSource("array", array=out, sample_rate=int(sample_rate), name="<array>")


def resample(array: FloatArray, from_rate: int, to_rate: int) -> FloatArray:
    """High-quality resampling (soxr HQ) of a (channels, frames) array."""
    if from_rate == to_rate:
        return array
    import soxr

    out = soxr.resample(np.ascontiguousarray(array.T), from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, array.shape[0]).T)


def normalize_audio(
    array: npt.NDArray[Any], sample_rate: int, *, to_rate: int, to_frames: int, to_channels: int
) -> FloatArray:
    """Bring a provider's stem to the input's rate, exact length and channel count, as float32."""
    data = np.asarray(array)
    if data.ndim == 1:
        data = data[np.newaxis, :]
    out = np.asarray(data, dtype=np.float32)
    if out.shape[0] != to_channels:
        if to_channels == 1:
            out = out.mean(axis=0, keepdims=True, dtype=np.float32)
        elif out.shape[0] == 1:
            out = np.repeat(out, to_channels, axis=0)
        else:
            out = np.repeat(out.mean(axis=0, keepdims=True, dtype=np.float32), to_channels, axis=0)
    out = resample(np.ascontiguousarray(out), sample_rate, to_rate)
    frames = out.shape[1]
    if frames > to_frames:
        out = out[:, :to_frames]
    elif frames < to_frames:
        out = np.pad(out, ((0, 0), (0, to_frames - frames)))
    return np.ascontiguousarray(out, dtype=np.float32)
