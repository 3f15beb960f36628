"""The well-known MDX-Net models of Ultimate Vocal Remover: their numbers, where they come from, their cache.

Each entry is one ``.onnx`` file of UVR's public model repository (the GitHub release that UVR's
download centre and python-audio-separator fetch from) with the numbers it needs to run:

* ``n_fft``, ``dim_f``, ``dim_t``, ``compensate`` and the primary stem come from UVR's own table,
  ``mdx_model_data/model_data_new.json`` in https://github.com/TRvlvr/application_data (commit
  3826b05), which is keyed by ``uvr_hash``, the MD5 of the file's last 10,000 KiB — the key UVR and
  python-audio-separator compute to look a file up. stemkit checks the same hash after every
  download and before first use, so a file that is not the one described is never run with these
  numbers;
* published quality: :mod:`stemkit_onnx.quality`.

Files are cached flat by their UVR file name under ``cache_dir`` (default ``$XDG_CACHE_HOME/stemkit/
uvr-models``, i.e. ``~/.cache/stemkit/uvr-models``), so a folder of UVR models that UVR or
audio-separator already downloaded can be used as is (``cache_dir=/tmp/audio-separator-models``).
``STEMKIT_UVR_MODELS_URL`` points downloads at a mirror of the release (an internal one, or a test
server).
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stemkit.errors import ConfigError, ProviderError, ProviderUnavailableError
from stemkit_onnx._mdx import MdxParams
from stemkit_onnx._offline import offline_reason

__all__ = [
    "MODELS_URL",
    "URL_ENV",
    "MdxModel",
    "cache_folder",
    "cached_path",
    "fetch",
    "registry",
    "resolve",
    "uvr_hash",
]

MODELS_URL = "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models"
URL_ENV = "STEMKIT_UVR_MODELS_URL"
_HASH_TAIL = 10_000 * 1024


@dataclass(frozen=True)
class MdxModel:
    """One UVR MDX-Net file. ``primary`` is the canonical stem the network estimates; the other is derived."""

    name: str
    title: str
    primary: str
    params: MdxParams
    uvr_hash: str
    size_bytes: int | None = None
    note: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"

    @property
    def complement(self) -> str:
        return "instrumental" if self.primary == "vocals" else "vocals"

    @property
    def sources(self) -> tuple[str, ...]:
        """Its two stems, vocals first; only ``primary`` comes from the network."""
        return ("vocals", "instrumental")

    def url(self) -> str:
        return f"{base_url()}/{self.filename}"


def _mdx(n_fft: int, dim_f: int, dim_t_log2: int, compensate: float) -> MdxParams:
    return MdxParams(n_fft=n_fft, dim_f=dim_f, dim_t=2**dim_t_log2, compensate=compensate)


_KARAOKE = "karaoke: 'vocals' is the lead vocal only; backing vocals stay in 'instrumental'"

_MODELS: tuple[MdxModel, ...] = (
    MdxModel("UVR-MDX-NET-Inst_HQ_3", "UVR-MDX-NET Inst HQ 3", "instrumental", _mdx(6144, 3072, 8, 1.022),
             "55657dd70583b0fedfba5f67df11d711", 66_759_214),
    MdxModel("UVR-MDX-NET-Inst_HQ_4", "UVR-MDX-NET Inst HQ 4", "instrumental", _mdx(5120, 2560, 8, 1.019),
             "0f2a6bc5b49d87d64728ee40e23bceb1", 59_074_342),
    MdxModel("UVR-MDX-NET-Inst_HQ_5", "UVR-MDX-NET Inst HQ 5", "instrumental", _mdx(5120, 2560, 8, 1.010),
             "cb790d0c913647ced70fc6b38f5bea1a"),
    MdxModel("UVR-MDX-NET-Voc_FT", "UVR-MDX-NET Voc FT", "vocals", _mdx(7680, 3072, 8, 1.021),
             "77d07b2667ddf05b9e3175941b4454a0", 66_762_490),
    MdxModel("Kim_Vocal_2", "Kim Vocal 2", "vocals", _mdx(7680, 3072, 8, 1.009),
             "970b3f9492014d18fefeedfe4773cb42", 66_759_214),
    MdxModel("Kim_Inst", "Kim Inst", "instrumental", _mdx(7680, 3072, 8, 1.020),
             "b6bccda408a436db8500083ef3491e8b"),
    MdxModel("UVR_MDXNET_KARA", "UVR-MDX-NET Karaoke", "vocals", _mdx(6144, 2048, 8, 1.035),
             "2f5501189a2f6db6349916fabe8c90de", note=_KARAOKE),
    MdxModel("UVR_MDXNET_KARA_2", "UVR-MDX-NET Karaoke 2", "instrumental", _mdx(5120, 2048, 8, 1.065),
             "1d64a6d2c30f709b8c9b4ce1366d96ee", note=_KARAOKE),
)


def registry() -> dict[str, MdxModel]:
    """Every MDX-Net model stemkit knows, by name (UVR's file name without ``.onnx``)."""
    return {m.name: m for m in _MODELS}


def resolve(name: str) -> MdxModel | None:
    """The model for ``name``, ignoring case and a trailing ``.onnx`` (audio-separator's ``Kim_Vocal_2.onnx``)."""
    key = name.strip().lower().removesuffix(".onnx")
    return next((m for m in _MODELS if m.name.lower() == key), None)


def base_url() -> str:
    return os.environ.get(URL_ENV, "").strip().rstrip("/") or MODELS_URL


def cache_folder(cache_dir: str | Path | None = None) -> Path:
    """Where UVR models are (or would be) cached."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    root = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(root) / "stemkit" / "uvr-models"


def cached_path(model: MdxModel, cache_dir: str | Path | None = None) -> Path | None:
    """The model's file in the cache, or None; never touches the network."""
    path = cache_folder(cache_dir) / model.filename
    return path if path.is_file() else None


def uvr_hash(path: Path) -> str:
    """UVR's key for a model file: the MD5 of its last 10,000 KiB (of all of it, when smaller)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - _HASH_TAIL))
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def _check(model: MdxModel, path: Path, *, cache_dir: str | Path | None) -> Path:
    """``path`` if it is the file the registry describes (checked once per process per file version)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        found = _verified.get(key)
    if found is None:
        found = uvr_hash(path)
        with _verified_lock:
            _verified[key] = found
    if found != model.uvr_hash:
        raise ProviderUnavailableError(
            f"model {model.name!r}: {path} is not the file the registry describes (its UVR hash is {found}, "
            f"expected {model.uvr_hash}), so its parameters would not fit it. Delete it and download the model "
            f"again (`stemkit models pull {model.name}`), or run your own file as onnx:{path}?n_fft=...&primary=...",
            provider="onnx",
            code="MODEL_MISMATCH",
            retryable=False,
        )
    return path


def _unavailable(model: MdxModel, cache_dir: str | Path | None, reason: str, *, offline: bool) -> Exception:
    where = cache_folder(cache_dir)
    if offline:
        from stemkit_onnx.catalog import cached_names

        cached = cached_names(cache_dir=cache_dir)
        here = f"models cached here: {', '.join(cached)}" if cached else "no model is cached here"
        advice = (
            f"Use a cached model ({here}), allow downloads (unset it), or copy {model.filename} from a machine "
            f"with network access (where `stemkit models pull {model.name}` fetches it) into {where} or a "
            "folder given as cache_dir="
        )
    else:
        advice = (
            f"Check the network, or download {model.url()} yourself into {where} (or a folder given as "
            "cache_dir=)"
        )
    return ProviderUnavailableError(
        f"model {model.name!r} ({model.filename}) is not in the model cache ({where}) and cannot be downloaded: "
        f"{reason}. {advice}",
        provider="onnx",
        code="MODEL_NOT_AVAILABLE",
    )


def fetch(
    model: MdxModel,
    *,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    refresh: bool = False,
) -> Path:
    """A checked local path for ``model``: from the cache, or downloaded (unless offline) and checked."""
    found = None if refresh else cached_path(model, cache_dir)
    if found is not None:
        return _check(model, found, cache_dir=cache_dir)
    offline = offline_reason()
    if offline is not None:
        raise _unavailable(model, cache_dir, offline, offline=True)
    return _download(model, cache_dir=cache_dir, progress=progress)


def _download(
    model: MdxModel, *, cache_dir: str | Path | None, progress: Callable[[int, int | None], None] | None
) -> Path:
    import httpx

    from stemkit.hosted import HostedTransport, RetryPolicy

    folder = cache_folder(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache_dir: cannot create {folder} ({exc.strerror}); give a writable folder") from exc
    dest = folder / model.filename
    # Downloaded under a name of its own, checked, then renamed: a wrong or half file is never seen as the model.
    staged = folder / f".{model.filename}.{uuid.uuid4().hex}.unverified"
    try:
        with HostedTransport(
            provider="onnx",
            base_url=base_url(),
            api_key=None,
            retry=RetryPolicy(max_attempts=3),
            timeout=httpx.Timeout(60.0, connect=10.0),
        ) as transport:
            transport.download(model.filename, staged, progress=progress)
        found = uvr_hash(staged)
        if found != model.uvr_hash:
            raise ProviderUnavailableError(
                f"model {model.name!r}: the file downloaded from {model.url()} is not the model the registry "
                f"describes (UVR hash {found}, expected {model.uvr_hash}); it was discarded. The server sent "
                "something else (an error page, a changed file): try again later, or check "
                f"{URL_ENV} if it is set",
                provider="onnx",
                code="MODEL_MISMATCH",
            )
        os.replace(staged, dest)
    except ProviderUnavailableError:
        raise
    except ProviderError as exc:
        raise _unavailable(model, cache_dir, f"{type(exc).__name__}: {exc}", offline=False) from exc
    except OSError as exc:
        raise ProviderUnavailableError(
            f"model {model.name!r}: could not write {dest} ({exc.strerror}); free some space or give another "
            "cache_dir=",
            provider="onnx",
            code="MODEL_NOT_AVAILABLE",
        ) from exc
    finally:
        staged.unlink(missing_ok=True)
    stat = dest.stat()
    with _verified_lock:
        _verified[(str(dest.resolve()), stat.st_size, stat.st_mtime_ns)] = model.uvr_hash
    return dest


def describe(model: MdxModel) -> Mapping[str, object]:
    p = model.params
    return {
        "n_fft": p.n_fft,
        "dim_f": p.dim_f,
        "dim_t": p.dim_t,
        "hop": p.hop,
        "compensate": p.compensate,
        "primary": model.primary,
        "uvr_hash": model.uvr_hash,
    }
