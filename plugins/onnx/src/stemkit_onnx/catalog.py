"""Every model the onnx provider knows by name, both families, in one shape: what ``stemkit models`` shows and pulls.

HT-Demucs models come from demucs-onnx's registry on the Hugging Face hub (:mod:`.hub`); MDX-Net
models from UVR's model repository (:mod:`.uvr`). Published quality: :mod:`.quality`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stemkit.errors import ConfigError, ProviderUnavailableError
from stemkit_onnx import hub, quality, uvr
from stemkit_onnx._offline import offline_reason

__all__ = ["ModelInfo", "cached_names", "find", "models", "pull"]

Family = Literal["htdemucs", "mdx-net"]


@dataclass(frozen=True)
class FileInfo:
    url: str
    filename: str
    path: Path | None  # in the cache, or None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "filename": self.filename, "cached": self.path is not None,
                "path": None if self.path is None else str(self.path)}


@dataclass(frozen=True)
class ModelInfo:
    """One model as ``stemkit models list`` shows it."""

    name: str
    family: Family
    stems: tuple[str, ...]
    primary: str | None  # the stem an MDX-Net network estimates (the other is mixture minus it)
    files: tuple[FileInfo, ...]
    approx_bytes: int | None
    score: quality.Score | None
    source: str  # where the weights come from
    note: str = ""
    parameters: dict[str, Any] | None = None

    @property
    def cached_files(self) -> int:
        return sum(f.path is not None for f in self.files)

    @property
    def cached(self) -> bool:
        return self.cached_files == len(self.files)

    @property
    def size_bytes(self) -> int | None:
        """On disk when cached, else the approximate download size (None when not known)."""
        if self.cached:
            return sum(f.path.stat().st_size for f in self.files if f.path is not None)
        return self.approx_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "stems": list(self.stems),
            "primary": self.primary,
            "cached": self.cached,
            "cached_files": self.cached_files,
            "file_count": len(self.files),
            "size_bytes": self.size_bytes,
            "size_is_estimate": not self.cached,
            "sdr": dict(self.score.sdr) if self.score else {},
            "sdr_source": self.score.to_dict() if self.score else None,
            "weights_from": self.source,
            "files": [f.to_dict() for f in self.files],
            "parameters": self.parameters,
            "note": self.note,
        }


def _htdemucs(precision: hub.Precision, cache_dir: str | Path | None) -> list[ModelInfo]:
    out = []
    for model in hub.registry().values():
        files = tuple(FileInfo(f.url, f.filename, hub.cached_path(f, cache_dir)) for f in model.files(precision))
        out.append(
            ModelInfo(
                name=model.name,
                family="htdemucs",
                stems=model.sources,
                primary=None,
                files=files,
                approx_bytes=model.approx_mb(precision) * 1_000_000,
                score=quality.score(model.name),
                source="Hugging Face: " + ", ".join(model.repos),
            )
        )
    return out


def _mdx(cache_dir: str | Path | None) -> list[ModelInfo]:
    out = []
    for model in uvr.registry().values():
        out.append(
            ModelInfo(
                name=model.name,
                family="mdx-net",
                stems=model.sources,
                primary=model.primary,
                files=(FileInfo(model.url(), model.filename, uvr.cached_path(model, cache_dir)),),
                approx_bytes=model.size_bytes,
                score=quality.score(model.name),
                source=f"UVR model repository: {uvr.base_url()}",
                note=model.note,
                parameters=dict(uvr.describe(model)),
            )
        )
    return out


def models(*, precision: hub.Precision = "fp32", cache_dir: str | Path | None = None) -> list[ModelInfo]:
    """Every model, HT-Demucs first; cache state read from disk only (no network)."""
    return [*_htdemucs(precision, cache_dir), *_mdx(cache_dir)]


def cached_names(*, cache_dir: str | Path | None = None) -> list[str]:
    """The models that can run here without a download."""
    return [m.name for m in models(cache_dir=cache_dir) if m.cached]


def find(name: str) -> hub.RegistryModel | uvr.MdxModel | None:
    return hub.resolve(name) or uvr.resolve(name)


def pull(
    name: str,
    *,
    precision: hub.Precision = "fp32",
    cache_dir: str | Path | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list[tuple[str, Path]]:
    """Download a model (every file of a bag) into the cache, refreshing what is there; (url, path) per file.

    Offline it fails at once, before anything else, saying what can work instead.
    """
    model = find(name)
    if model is None:
        known = ", ".join([*hub.registry(), *uvr.registry()])
        raise ConfigError(f"models pull: unknown model {name!r}; known models: {known}")
    offline = offline_reason()
    if offline is not None:
        cached = cached_names(cache_dir=cache_dir)
        here = f"models cached here: {', '.join(cached)}" if cached else "no model is cached here"
        origin = uvr.base_url() if isinstance(model, uvr.MdxModel) else "Hugging Face " + ", ".join(model.repos)
        raise ProviderUnavailableError(
            f"models pull {model.name}: {offline}, so nothing can be downloaded from {origin} ({here}). "
            "Pull it on a machine with network access and neither STEMKIT_OFFLINE nor HF_HUB_OFFLINE set, then "
            "copy its cache folder here (`stemkit models list` prints where the caches are)",
            provider="onnx",
            code="OFFLINE",
            retryable=False,
        )
    done = []
    if isinstance(model, uvr.MdxModel):
        report = None if progress is None else (lambda got, total: progress(model.filename, got, total))
        done.append((model.url(), uvr.fetch(model, cache_dir=cache_dir, progress=report, refresh=True)))
        return done
    for file in model.files(precision):
        done.append((file.url, hub.fetch(model, file, precision=precision, cache_dir=cache_dir, refresh=True)))
    return done
