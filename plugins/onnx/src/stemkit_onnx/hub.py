"""demucs-onnx's model registry and its Hugging Face download path, with stemkit's errors.

demucs-onnx owns which models exist, which repository and file each one lives in and how it is
downloaded and cached (``huggingface_hub``'s cache); this module only gives that a shape the
provider and ``stemkit models`` can use, and turns "not cached and not downloadable" into a
:class:`~stemkit.errors.ProviderUnavailableError` that says what can work instead.
Everything it needs from demucs-onnx's private ``_hub`` module is read here and nowhere else.

A cached file is used as it is, without asking the hub whether it changed (that costs a network
round trip per file, and minutes of retries without a network); ``stemkit models pull`` refreshes.
Offline (``STEMKIT_OFFLINE`` or ``HF_HUB_OFFLINE``) nothing is downloaded and nothing waits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from demucs_onnx import _hub as dhub

from stemkit.errors import ConfigError, ProviderUnavailableError
from stemkit_onnx._offline import offline_reason

__all__ = [
    "PRECISIONS",
    "ModelFile",
    "RegistryModel",
    "cache_root",
    "cached_path",
    "fetch",
    "is_cached",
    "is_offline",
    "registry",
    "resolve",
]

Precision = Literal["fp32", "fp16weights"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16weights")
Kind = Literal["bag", "single", "specialist"]

#: Stem order of every demucs-onnx 4-source export (the htdemucs_ft specialists included).
BAG_SOURCES: tuple[str, ...] = tuple(dhub.BAG_STEMS)

#: Approximate download sizes in MB, as demucs-onnx 0.3.4 documents them (fp16weights ~1.9x smaller).
_APPROX_MB: Mapping[str, int] = {"specialist": 316, "htdemucs": 150, "htdemucs_6s": 150}


@dataclass(frozen=True)
class ModelFile:
    """One ``.onnx`` file on the hub. ``stem`` is set for a specialist: the only output row it is good for."""

    repo: str
    filename: str
    stem: str | None = None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/main/{self.filename}"


@dataclass(frozen=True)
class RegistryModel:
    """A model demucs-onnx can download: what it produces and the file(s) it needs."""

    name: str
    kind: Kind
    sources: tuple[str, ...]

    def files(self, precision: Precision = "fp32") -> tuple[ModelFile, ...]:
        if self.kind == "bag":
            return tuple(_specialist_file(stem, precision) for stem in self.sources)
        if self.kind == "specialist":
            return (_specialist_file(self.sources[0], precision),)
        info = dhub.MODEL_REGISTRY[self.name]
        return (ModelFile(info.repo, dhub.model_filename(self.name, precision)),)

    @property
    def repos(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.repo for f in self.files()))

    def approx_mb(self, precision: Precision = "fp32") -> int:
        if self.kind in ("bag", "specialist"):
            size = _APPROX_MB["specialist"] * len(self.files())
        else:
            size = _APPROX_MB.get(self.name, 150)
        return size if precision == "fp32" else round(size / 1.9)


def _specialist_file(stem: str, precision: Precision) -> ModelFile:
    return ModelFile(dhub.SPECIALIST_REPOS[stem], dhub.stem_model_filename(stem, precision), stem=stem)


def registry() -> dict[str, RegistryModel]:
    """Every model demucs-onnx knows, by canonical name: the bag, the single files, the specialists."""
    out: dict[str, RegistryModel] = {}
    for name, info in dhub.MODEL_REGISTRY.items():
        if info.kind == "specialist_bag":
            out[name] = RegistryModel(name, "bag", tuple(info.sources))
            for stem in info.sources:
                out[f"{name}_{stem}"] = RegistryModel(f"{name}_{stem}", "specialist", (stem,))
        elif info.kind == "single":
            out[name] = RegistryModel(name, "single", tuple(info.sources))
    return out


def resolve(name: str) -> RegistryModel | None:
    """The registry model for a canonical name or one of demucs-onnx's aliases (``6s``, ``ft_vocals``)."""
    return registry().get(dhub.resolve_model_name(name))


def is_offline() -> bool:
    """Whether downloads are forbidden (``STEMKIT_OFFLINE`` or ``HF_HUB_OFFLINE``)."""
    return offline_reason() is not None


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where huggingface_hub keeps (or would keep) the models."""
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_path(file: ModelFile, cache_dir: str | Path | None = None) -> Path | None:
    """The file's path in the hub cache, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(file.repo, file.filename, cache_dir=str(cache_dir) if cache_dir else None)
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    return None


def is_cached(model: RegistryModel, files: tuple[ModelFile, ...], cache_dir: str | Path | None = None) -> bool:
    """Whether every one of ``files`` is in the cache (no network)."""
    return all(cached_path(f, cache_dir) is not None for f in files)


def _unavailable(
    model: RegistryModel, file: ModelFile, cache_dir: str | Path | None, reason: str, *, offline: bool
) -> ProviderUnavailableError:
    where = cache_root(cache_dir)
    if offline:
        from stemkit_onnx.catalog import cached_names

        cached = cached_names(cache_dir=cache_dir)
        here = f"models cached here: {', '.join(cached)}" if cached else "no model is cached here"
        advice = (
            f"Use a cached model ({here}), allow downloads (unset it), or copy a model cache from a machine with "
            f"network access (where `stemkit models pull {model.name}` fetches it) and point cache_dir= at it"
        )
    else:
        advice = (
            f"Check the network, or fetch it where there is one (`stemkit models pull {model.name}`, or "
            f"`hf download {file.repo} {file.filename}`) and copy the cache here or point cache_dir= at it"
        )
    return ProviderUnavailableError(
        f"model {model.name!r} needs {file.filename} from the Hugging Face repository {file.repo}, which is not "
        f"in the model cache ({where}) and cannot be downloaded: {reason}. {advice}",
        provider="onnx",
        code="MODEL_NOT_AVAILABLE",
    )


def fetch(
    model: RegistryModel,
    file: ModelFile,
    *,
    precision: Precision = "fp32",
    cache_dir: str | Path | None = None,
    refresh: bool = False,
) -> Path:
    """A local path for ``file``: from the cache, or downloaded through demucs-onnx unless offline.

    ``refresh`` asks the hub even when the file is cached (``stemkit models pull``).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    found = None if refresh else cached_path(file, cache_dir)
    if found is not None:
        return found
    offline = offline_reason()
    if offline is not None:
        found = cached_path(file, cache_dir)
        if found is None:
            raise _unavailable(model, file, cache_dir, f"{offline}, so stemkit may not download it", offline=True)
        return found
    try:
        if file.stem is not None:
            path = dhub.download_stem_model(file.stem, cache_dir=cache_dir, precision=precision)
        else:
            path = dhub.download_single_model(model.name, cache_dir=cache_dir, precision=precision)
    except (RuntimeError, OSError, ValueError) as exc:
        # demucs-onnx wraps the hub's errors (repository not found, no connection and no cache,
        # HTTP errors) in RuntimeError; the original is its __cause__.
        cause = exc.__cause__ or exc
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise _unavailable(model, file, cache_dir, f"{type(cause).__name__}: {text[:200]}", offline=False) from exc
    return Path(path)
