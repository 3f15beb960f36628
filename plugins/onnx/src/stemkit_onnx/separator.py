"""The ``onnx`` provider: HT-Demucs (via demucs-onnx's registry) or any ``.onnx`` file with its signature.

Specs::

    onnx:htdemucs            single file, drums/bass/other/vocals
    onnx:htdemucs_ft         the four-specialist bag; stems=vocals runs only the vocals specialist
    onnx:htdemucs_6s         adds guitar and piano
    onnx:htdemucs_ft_vocals  one specialist (also drums, bass; demucs-onnx's aliases work too)
    onnx:/path/model.onnx?sources=drums,bass,other,vocals

The separation runs as a stream (see :mod:`stemkit_onnx._engine`): input decoded and resampled in
blocks, each finished block written to one float WAV per stem in the job's folder, so memory does
not grow with the song's length; the StemSet is file-backed and decodes a stem when it is used.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from stemkit.errors import ConfigError, ProviderUnavailableError, SeparationTimeout
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit.stems import canonical_name
from stemkit_onnx import hub
from stemkit_onnx._engine import Float32Array, SegmentPlan, run_overlap_add
from stemkit_onnx._sessions import Device, Signature, execution_providers, load_session
from stemkit_onnx._stream import MODEL_RATE, ModelRateInput, StemArrays, StemFiles

__all__ = ["OnnxOptions", "OnnxSeparator"]

DEFAULT_MODEL = "htdemucs_ft"
#: ``stream=auto`` streams the stems to files above this many bytes of float32 stems.
STREAM_ABOVE_BYTES = 256 * 1024 * 1024
_READ_BLOCK = 1 << 16


def _warm_hash(source: Any) -> None:
    with contextlib.suppress(Exception):  # the core computes it again and reports any problem
        _ = source.sha256


class OnnxOptions(BaseModel):
    """Options of the ``onnx`` provider (``onnx:MODEL?device=cpu&threads=2``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Device = "auto"
    precision: Literal["fp32", "fp16weights"] = "fp32"
    cache_dir: Path | None = None
    threads: int | None = Field(default=None, ge=1, le=256)
    #: stem names, in the order of the output's stem axis; for a custom .onnx file only
    sources: tuple[str, ...] | None = None
    #: write stems to files as segments finish (file-backed StemSet, flat memory) — "auto": when the
    #: stems would take more than 256 MiB in memory (about 3 minutes of 4 stereo stems at 44.1 kHz)
    stream: Literal["auto", "on", "off"] = "auto"

    @field_validator("sources", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


@dataclass(frozen=True)
class _Part:
    """One model file to run and which output row gives which stem."""

    file: hub.ModelFile | None  # None for a custom model
    rows: tuple[tuple[str, int], ...]  # (provider stem name, output row)


@dataclass(frozen=True)
class _Resolved:
    label: str
    registry_model: hub.RegistryModel | None
    custom_path: Path | None
    sources: tuple[str, ...]  # provider stem names in output order (custom) or produced stems (registry)
    canonical: Mapping[str, str]  # provider stem name -> canonical


def _is_path(target: str) -> bool:
    return target.endswith(".onnx") or "/" in target or "\\" in target


class OnnxSeparator(SeparatorBase):
    """Local separation with onnxruntime; see the module docstring for the specs it takes."""

    name = "onnx"
    Options = OnnxOptions

    def __init__(self, target: str | None = None, options: Mapping[str, Any] | BaseModel | None = None) -> None:
        super().__init__(target, options)
        assert isinstance(self.options, OnnxOptions)
        self._options: OnnxOptions = self.options
        self._model = self._resolve(self.target or DEFAULT_MODEL, self._options)
        self._custom_signature: Signature | None = None
        if self._model.custom_path is not None:
            # Check a user's file now, so a wrong model fails at load time, not after decoding a song.
            self._custom_signature = self._check_custom(self._options)

    # -- what it is -------------------------------------------------------------------------------------
    def _resolve(self, target: str, options: OnnxOptions) -> _Resolved:
        label = f"onnx:{target}"
        if _is_path(target):
            path = Path(target).expanduser()
            if not path.is_file():
                raise ConfigError(f"{label}: model file {path} does not exist; check the path")
            if options.sources is None:
                raise ConfigError(
                    f"{label}: name the model's stems in output order, e.g. "
                    f"onnx:{target}?sources=drums,bass,other,vocals (demucs's 4-stem order)"
                )
            if "precision" in options.model_fields_set:
                raise ConfigError(f"{label}: precision= picks a registry download; it does not apply to a .onnx file")
            return _Resolved(label, None, path, options.sources, self._canonical(label, options.sources))
        model = hub.resolve(target)
        if model is None:
            known = ", ".join(hub.registry())
            raise ConfigError(
                f"{label}: unknown model {target!r}; known models: {known}, or a path to a .onnx file with ?sources=..."
            )
        if options.sources is not None:
            raise ConfigError(
                f"{label}: sources= is for a custom .onnx file; {model.name} produces {', '.join(model.sources)}"
            )
        return _Resolved(f"onnx:{model.name}", model, None, model.sources, self._canonical(label, model.sources))

    @staticmethod
    def _canonical(label: str, sources: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in sources:
            canon = canonical_name(name)
            if canon is None:
                raise ConfigError(
                    f"{label}: sources: {name!r} is not a stem name stemkit knows; use vocals, drums, bass, other, "
                    "piano, guitar or instrumental"
                )
            if canon in out.values():
                raise ConfigError(f"{label}: sources: {canon!r} is listed twice; each output row is one stem")
            out[name] = canon
        if not out:
            raise ConfigError(f"{label}: sources: name at least one stem")
        return out

    @property
    def model_label(self) -> str:
        return self._model.label

    @property
    def capabilities(self) -> Capabilities:
        model = self._model.registry_model
        canonical = tuple(self._model.canonical[s] for s in self._model.sources)
        combos: tuple[tuple[str, ...], ...]
        partial: frozenset[tuple[str, ...]] = frozenset()
        default = 0
        if model is not None and model.kind == "bag":
            # Any subset of the specialists can run on its own; only all of them together partition the
            # mixture, so the others are partial (a lone "other" specialist gives MUSDB's "other").
            subsets = [c for r in range(1, len(canonical)) for c in itertools.combinations(canonical, r)]
            combos = (*subsets, canonical)
            partial = frozenset(subsets)
            default = len(combos) - 1
        else:
            combos = (canonical,)
        return Capabilities(
            combinations=combos,
            partial=partial,
            complete=True,
            default_combination=default,
            accepts_urls=False,
            accepts_youtube=False,
            needs_network=False,
            needs_api_key=False,
            local=True,
            cost_unit=None,
            extra={"model": self._model.label, "segment_seconds": self._segment() / MODEL_RATE},
        )

    def _segment(self) -> int:
        if self._custom_signature is not None:
            return self._custom_signature.segment
        from stemkit_onnx._sessions import DEFAULT_SEGMENT

        return DEFAULT_SEGMENT

    # -- loading models ---------------------------------------------------------------------------------
    def _check_custom(self, options: OnnxOptions) -> Signature:
        path = self._model.custom_path
        assert path is not None
        providers = execution_providers(options.device)
        _, signature = load_session(path, providers, threads=options.threads, label=self._model.label)
        n = len(self._model.sources)
        if signature.n_sources is not None and signature.n_sources != n:
            raise ConfigError(
                f"{self._model.label}: sources names {n} stem(s) ({', '.join(self._model.sources)}) but the model's "
                f"output 'stems' has {signature.n_sources} on its stem axis; list exactly {signature.n_sources}"
            )
        return signature

    def _parts(self, wanted: Sequence[str]) -> list[_Part]:
        """Which files to run for the wanted canonical stems, and which rows to keep."""
        model = self._model.registry_model
        by_canonical = {c: p for p, c in self._model.canonical.items()}
        if model is None:
            rows = tuple((by_canonical[c], self._model.sources.index(by_canonical[c])) for c in wanted)
            return [_Part(None, rows)]
        if model.kind in ("bag", "specialist"):
            files = {f.stem: f for f in model.files()}
            return [
                _Part(files[by_canonical[c]], ((by_canonical[c], hub.BAG_SOURCES.index(by_canonical[c])),))
                for c in wanted
            ]
        return [_Part(model.files()[0], tuple((by_canonical[c], model.sources.index(by_canonical[c])) for c in wanted))]

    def _sessions(self, parts: Sequence[_Part], options: OnnxOptions) -> list[tuple[Any, Signature]]:
        providers = execution_providers(options.device)
        model = self._model.registry_model
        out = []
        for part in parts:
            if part.file is None:
                assert self._model.custom_path is not None
                out.append(
                    load_session(self._model.custom_path, providers, threads=options.threads, label=self._model.label)
                )
                continue
            assert model is not None
            path = hub.fetch(model, part.file, precision=options.precision, cache_dir=options.cache_dir)
            out.append(
                load_session(
                    path, providers, threads=options.threads, label=self._model.label, broken=ProviderUnavailableError
                )
            )
        return out

    # -- the work ---------------------------------------------------------------------------------------
    def _separate(self, job: SeparationJob) -> RawResult:
        options: OnnxOptions = job.options
        if options.sources != self._options.sources:
            raise ConfigError(f"{self._model.label}: sources= can only be set when the provider is loaded")
        source = job.source
        timings: dict[str, float] = {}
        started = time.perf_counter()
        parts = self._parts(job.combination)
        loaded = self._sessions(parts, options)
        timings["load"] = time.perf_counter() - started
        segments = {sig.segment for _, sig in loaded}
        if len(segments) != 1:
            raise ConfigError(
                f"{self._model.label}: the model files disagree on the segment length: {sorted(segments)}"
            )
        segment = segments.pop()
        names = [name for part in parts for name, _ in part.rows]
        runner = self._runner(parts, loaded, segment)

        expected_model_frames = -(-source.frames * MODEL_RATE // source.sample_rate)
        n_segments = SegmentPlan(segment).count(expected_model_frames)
        label = self._model.label

        def on_segment(index: int) -> None:
            done = index + 1
            job.progress("separate", done / max(n_segments, done), f"{label}: segment {done}/{max(n_segments, done)}")
            remaining = job.remaining()
            if remaining is not None and remaining <= 0:
                raise SeparationTimeout(
                    f"{label}: {source.name} was not separated before the timeout (segment {done} of {n_segments}); "
                    "give a longer timeout= or a shorter input",
                    provider=self.name,
                    retryable=False,
                )

        stream = options.stream == "on" or (
            options.stream == "auto" and len(names) * source.channels * source.frames * 4 > STREAM_ABOVE_BYTES
        )
        paths = [job.workdir / f"{name}.wav" for name in names]
        shape = {"sample_rate": source.sample_rate, "channels": source.channels, "frames": source.frames}
        job.progress("separate", 0.0, f"{label}: {n_segments} segment(s) of {segment / MODEL_RATE:.2f} s")
        run_started = time.perf_counter()
        # The provenance hash of the input is read on the core's side after this returns; compute it
        # now on the spare core instead, while the model runs.
        hasher = threading.Thread(target=_warm_hash, args=(source,), name="stemkit-onnx-hash", daemon=True)
        hasher.start()
        stems: dict[str, Float32Array | Path]
        try:
            reader = ModelRateInput(source.iter_blocks(_READ_BLOCK), source.sample_rate)
            run = functools.partial(
                run_overlap_add,
                reader,
                runner,
                segment=segment,
                n_stems=len(names),
                on_segment=on_segment,
                background=True,
            )
            if stream:
                with StemFiles(paths, **shape) as files:
                    run(emit=files.write)
                    files.finish()
                stems = dict(zip(names, paths, strict=True))
            else:
                arrays = StemArrays(len(names), **shape)
                run(emit=arrays.write)
                arrays.finish()
                stems = dict(zip(names, arrays.arrays, strict=True))
        finally:
            hasher.join()
        timings["process"] = time.perf_counter() - run_started
        return RawResult(
            stems=stems,
            sample_rate=source.sample_rate,
            model=label,
            timings=timings,
            extra={
                "segment": segment,
                "segments": n_segments,
                "execution_providers": execution_providers(options.device),
            },
        )

    def _runner(self, parts: Sequence[_Part], loaded: Sequence[tuple[Any, Signature]], segment: int) -> Any:
        label = self._model.label
        plan: list[tuple[Any, tuple[int, ...]]] = [
            (session, tuple(row for _, row in part.rows)) for part, (session, _) in zip(parts, loaded, strict=True)
        ]
        n_declared = len(self._model.sources) if self._model.registry_model is None else None

        def run(x: Float32Array) -> list[Float32Array]:
            out: list[Float32Array] = []
            for session, rows in plan:
                y = session.run(["stems"], {"mix": x})[0]
                if y.ndim != 4 or y.shape[0] != 1 or y.shape[2] != 2 or y.shape[3] != segment:
                    raise ConfigError(
                        f"{label}: the model returned 'stems' of shape {tuple(y.shape)} for a (1, 2, {segment}) "
                        f"input; expected (1, S, 2, {segment})"
                    )
                if n_declared is not None and y.shape[1] != n_declared:
                    raise ConfigError(
                        f"{label}: sources names {n_declared} stem(s) but the model returned {y.shape[1]}; "
                        f"list exactly {y.shape[1]}"
                    )
                out.extend(np.asarray(y[0, row], dtype=np.float32) for row in rows)
            return out

        return run
