"""The ``onnx`` provider: HT-Demucs (demucs-onnx's registry), UVR's MDX-Net models, or a ``.onnx`` file of either.

Specs::

    onnx:htdemucs            single file, drums/bass/other/vocals
    onnx:htdemucs_ft         the four-specialist bag; stems=vocals runs only the vocals specialist
    onnx:htdemucs_6s         adds guitar and piano
    onnx:htdemucs_ft_vocals  one specialist (also drums, bass; demucs-onnx's aliases work too)
    onnx:UVR-MDX-NET-Inst_HQ_3   a UVR MDX-Net model (see :mod:`stemkit_onnx.uvr`): one stem estimated,
                                 the other derived as mixture minus it
    onnx:/path/model.onnx?sources=drums,bass,other,vocals              an HT-Demucs-shaped file
    onnx:/path/model.onnx?n_fft=6144&compensate=1.022&primary=instrumental   an MDX-Net-shaped file

The separation runs as a stream (see :mod:`stemkit_onnx._engine`): input decoded and resampled in
blocks, each finished block written to one float WAV per stem in the job's folder, so memory does
not grow with the song's length; the StemSet is file-backed and decodes a stem when it is used.
``shifts`` (demucs' random-shift averaging) and MDX-Net's padding are extra passes of the same sweep.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import secrets
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from stemkit.errors import ConfigError, ProviderUnavailableError, SeparationTimeout
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit.stems import canonical_name
from stemkit_onnx import hub, uvr
from stemkit_onnx._devices import DeviceChoice, parse_device, select_device, session_fallback
from stemkit_onnx._engine import Float32Array, SegmentPlan, run_passes
from stemkit_onnx._mdx import HOP, MdxParams, mdx_runner
from stemkit_onnx._sessions import DEFAULT_SEGMENT, MdxSignature, Signature, load_session
from stemkit_onnx._stream import MODEL_RATE, MixtureTap, ModelRateInput, StemArrays, StemFiles

__all__ = ["MAX_SHIFT", "OnnxOptions", "OnnxSeparator"]

DEFAULT_MODEL = "htdemucs_ft"
#: ``stream=auto`` streams the stems to files above this many bytes of float32 stems.
STREAM_ABOVE_BYTES = 256 * 1024 * 1024
#: demucs' largest random shift: half a second at the model's rate.
MAX_SHIFT = MODEL_RATE // 2
_READ_BLOCK = 1 << 16
_MDX_OPTIONS = ("n_fft", "dim_f", "dim_t", "hop", "compensate", "primary", "denoise")
#: Options that pick or describe the model: fixed when the provider is loaded.
_MODEL_OPTIONS = ("sources", "n_fft", "dim_f", "dim_t", "hop", "compensate", "primary")


def _warm_hash(source: Any) -> None:
    with contextlib.suppress(Exception):  # the core computes it again and reports any problem
        _ = source.sha256


class OnnxOptions(BaseModel):
    """Options of the ``onnx`` provider (``onnx:MODEL?device=cpu&threads=2``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: auto | cpu | cuda | cuda:N | coreml | directml | directml:N (dml)
    device: str = "auto"
    #: a device this onnxruntime cannot offer is an error instead of a warning and the CPU
    require_device: bool = False
    precision: Literal["fp32", "fp16weights"] = "fp32"
    cache_dir: Path | None = None
    threads: int | None = Field(default=None, ge=1, le=256)
    #: stem names, in the order of the output's stem axis; for a custom HT-Demucs-shaped file only
    sources: tuple[str, ...] | None = None
    #: write stems to files as segments finish (file-backed StemSet, flat memory) — "auto": when the
    #: stems would take more than 256 MiB in memory (about 3 minutes of 4 stereo stems at 44.1 kHz)
    stream: Literal["auto", "on", "off"] = "auto"
    #: demucs' shifts: passes with the input shifted by a random 0-0.5 s, averaged (1 and 0: one pass, unshifted)
    shifts: int = Field(default=1, ge=0, le=32)
    #: fraction of a segment consecutive segments share (HT-Demucs default 0.25; MDX-Net default: n_fft samples)
    overlap: float | None = Field(default=None, ge=0.0, lt=1.0)
    #: seed of the shifts' random offsets (default: a fresh one, recorded in the provenance)
    seed: int | None = Field(default=None, ge=0)
    # An MDX-Net .onnx file of your own (registry models know theirs):
    n_fft: int | None = Field(default=None, ge=16)
    dim_f: int | None = Field(default=None, ge=1)
    #: frames per chunk (UVR's model_data stores log2 of it: 8 means 256); default: what the file declares
    dim_t: int | None = Field(default=None, ge=2)
    hop: int | None = Field(default=None, ge=1)
    compensate: float | None = Field(default=None, gt=0.0, lt=10.0)
    #: the stem the network estimates (UVR's "primary stem"); the other is mixture minus it
    primary: str | None = None
    #: MDX-Net: also run the model on the negated spectrogram and average (UVR's denoise; twice the work)
    denoise: bool = False

    @field_validator("sources", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        kind, index = parse_device(value)
        return kind if index is None else f"{kind}:{index}"


@dataclass(frozen=True)
class _Part:
    """One model file to run and which output row gives which stem."""

    file: hub.ModelFile | None  # None for a custom model
    rows: tuple[tuple[str, int], ...]  # (provider stem name, output row)


@dataclass(frozen=True)
class _Resolved:
    label: str
    arch: Literal["demucs", "mdx"]
    registry_model: hub.RegistryModel | None
    mdx_model: uvr.MdxModel | None
    custom_path: Path | None
    sources: tuple[str, ...]  # provider stem names in output order (custom) or produced stems (registry)
    canonical: Mapping[str, str]  # provider stem name -> canonical
    mdx: MdxParams | None = None

    @property
    def primary(self) -> str | None:
        return self.sources[0] if self.arch == "mdx" else None

    @property
    def complement(self) -> str | None:
        """The MDX-Net stem written as the mixture minus the estimate (vocals <-> instrumental), if any."""
        return {"vocals": "instrumental", "instrumental": "vocals"}.get(self.primary or "")


def _is_path(target: str) -> bool:
    if "/" not in target and "\\" not in target and uvr.resolve(target) is not None:
        return False  # a UVR file name, as audio-separator takes it (Kim_Vocal_2.onnx)
    return target.endswith(".onnx") or "/" in target or "\\" in target


def _set(options: OnnxOptions, names: Iterable[str]) -> list[str]:
    return [n for n in names if n in options.model_fields_set and getattr(options, n) not in (None, False)]


class OnnxSeparator(SeparatorBase):
    """Local separation with onnxruntime; see the module docstring for the specs it takes."""

    name = "onnx"
    Options = OnnxOptions

    def __init__(self, target: str | None = None, options: Mapping[str, Any] | BaseModel | None = None) -> None:
        super().__init__(target, options)
        assert isinstance(self.options, OnnxOptions)
        self._options: OnnxOptions = self.options
        label = f"onnx:{self.target or DEFAULT_MODEL}"
        # Resolved now, so that a GPU this onnxruntime lacks is reported when the provider is loaded.
        self._device = select_device(self._options.device, require=self._options.require_device, label=label)
        self._custom_signature: Signature | MdxSignature | None = None
        target = self.target or DEFAULT_MODEL
        if _is_path(target):
            self._model = self._resolve_custom(target, self._options)
        else:
            self._model = self._resolve_registry(target, self._options)

    # -- what it is -------------------------------------------------------------------------------------
    def _resolve_registry(self, target: str, options: OnnxOptions) -> _Resolved:
        label = f"onnx:{target}"
        mdx_model = uvr.resolve(target)
        if mdx_model is not None:
            label = f"onnx:{mdx_model.name}"
            fixed = _set(options, (*_MDX_OPTIONS[:-1], "sources"))
            if fixed:
                p = mdx_model.params
                raise ConfigError(
                    f"{label}: {', '.join(f'{n}=' for n in fixed)} cannot be set for a registry model; it runs with "
                    f"UVR's parameters (n_fft={p.n_fft}, dim_f={p.dim_f}, dim_t={p.dim_t}, "
                    f"compensate={p.compensate}, primary {mdx_model.primary}). To run the file with other numbers, "
                    f"give its path: onnx:/path/{mdx_model.filename}?n_fft=...&primary=..."
                )
            if "precision" in options.model_fields_set:
                raise ConfigError(f"{label}: precision= picks an HT-Demucs download; UVR's models have one precision")
            primary = mdx_model.primary
            return _Resolved(label, "mdx", None, mdx_model, None, (primary,), {primary: primary}, mdx_model.params)
        model = hub.resolve(target)
        if model is None:
            known = ", ".join([*hub.registry(), *uvr.registry()])
            raise ConfigError(
                f"{label}: unknown model {target!r}; known models: {known}, or a path to a .onnx file "
                "(`stemkit models list` shows them)"
            )
        if options.sources is not None:
            raise ConfigError(
                f"{label}: sources= is for a custom .onnx file; {model.name} produces {', '.join(model.sources)}"
            )
        self._reject_mdx_options(f"onnx:{model.name}", options)
        canonical = self._canonical(label, model.sources)
        return _Resolved(f"onnx:{model.name}", "demucs", model, None, None, model.sources, canonical)

    def _resolve_custom(self, target: str, options: OnnxOptions) -> _Resolved:
        label = f"onnx:{target}"
        path = Path(target).expanduser()
        if not path.is_file():
            raise ConfigError(f"{label}: model file {path} does not exist; check the path")
        if "precision" in options.model_fields_set:
            raise ConfigError(f"{label}: precision= picks a registry download; it does not apply to a .onnx file")
        # Check a user's file now, so a wrong model fails at load time, not after decoding a song.
        _, signature = load_session(path, self._device.providers, threads=options.threads, label=label)
        self._custom_signature = signature
        if isinstance(signature, MdxSignature):
            return self._resolve_custom_mdx(label, path, signature, options)
        if options.sources is None:
            raise ConfigError(
                f"{label}: name the model's stems in output order, e.g. "
                f"onnx:{target}?sources=drums,bass,other,vocals (demucs's 4-stem order)"
            )
        self._reject_mdx_options(label, options)
        canonical = self._canonical(label, options.sources)
        n = len(options.sources)
        if signature.n_sources is not None and signature.n_sources != n:
            raise ConfigError(
                f"{label}: sources names {n} stem(s) ({', '.join(options.sources)}) but the model's "
                f"output 'stems' has {signature.n_sources} on its stem axis; list exactly {signature.n_sources}"
            )
        return _Resolved(label, "demucs", None, None, path, options.sources, canonical)

    @staticmethod
    def _resolve_custom_mdx(label: str, path: Path, signature: MdxSignature, options: OnnxOptions) -> _Resolved:
        example = f"{label}?n_fft=6144&compensate=1.022&primary=instrumental"
        if options.sources is not None:
            raise ConfigError(
                f"{label}: this is an MDX-Net model (spectrogram in and out), which estimates one stem: name it "
                f"with primary= instead of sources=, e.g. {example}"
            )
        if options.primary is None or options.n_fft is None:
            missing = [n for n in ("n_fft", "primary") if getattr(options, n) is None]
            raise ConfigError(
                f"{label}: an MDX-Net model needs {' and '.join(f'{n}=' for n in missing)} (UVR's model_data.json "
                f"has them per model: mdx_n_fft_scale_set is n_fft, primary_stem the stem), e.g. {example}"
            )
        primary = canonical_name(options.primary)
        if primary is None:
            raise ConfigError(
                f"{label}: primary: {options.primary!r} is not a stem name stemkit knows; use vocals, "
                "instrumental, drums, bass or other"
            )
        dims = {}
        for name in ("dim_f", "dim_t"):
            given, declared = getattr(options, name), getattr(signature, name)
            if given is not None and declared is not None and given != declared:
                hint = (
                    f" (UVR's model_data stores dim_t as a power of two: {given} means {2**given})"
                    if name == "dim_t" and 2**given == declared
                    else ""
                )
                raise ConfigError(
                    f"{label}: {name}={given} but the model's input declares {declared}{hint}; leave it out to "
                    "use the model's"
                )
            value = given if given is not None else declared
            if value is None:
                raise ConfigError(f"{label}: the model does not declare {name}; give it, e.g. {name}=256")
            dims[name] = value
        params = MdxParams(
            n_fft=options.n_fft,
            dim_f=dims["dim_f"],
            dim_t=dims["dim_t"],
            compensate=1.0 if options.compensate is None else options.compensate,
            hop=HOP if options.hop is None else options.hop,
        )
        params.check(label)
        return _Resolved(label, "mdx", None, None, path, (primary,), {primary: primary}, params)

    @staticmethod
    def _reject_mdx_options(label: str, options: OnnxOptions) -> None:
        given = _set(options, _MDX_OPTIONS)
        if given:
            raise ConfigError(
                f"{label}: {', '.join(f'{n}=' for n in given)} {'is' if len(given) == 1 else 'are'} for MDX-Net "
                "models; this is an HT-Demucs model"
            )

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
    def device_choice(self) -> DeviceChoice:
        """What ``device=`` resolved to here (``stemkit doctor`` shows it)."""
        return self._device

    def local_files(self) -> list[Path] | None:
        """The model file(s) a default run would load, when all are on disk already (no download), else None."""
        resolved, options = self._model, self._options
        if resolved.custom_path is not None:
            return [resolved.custom_path]
        if resolved.mdx_model is not None:
            found = uvr.cached_path(resolved.mdx_model, options.cache_dir)
            return None if found is None else [found]
        model = resolved.registry_model
        assert model is not None
        paths = [hub.cached_path(f, options.cache_dir) for f in model.files(options.precision)]
        return None if any(p is None for p in paths) else [p for p in paths if p is not None]

    def _needs_download(self) -> bool:
        """Whether a run would have to fetch weights (they are not all in the cache)."""
        options = self._options
        if self._model.mdx_model is not None:
            return uvr.cached_path(self._model.mdx_model, options.cache_dir) is None
        model = self._model.registry_model
        if model is None:
            return False
        return not hub.is_cached(model, model.files(options.precision), options.cache_dir)

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
        elif self._model.complement is not None:
            combos = (("vocals", "instrumental"),)  # the estimate, and the mixture minus it
        else:
            combos = (canonical,)
            if self._model.arch == "mdx" and canonical == ("other",):
                partial = frozenset(combos)  # a lone "other" estimate is MUSDB's "other"
        return Capabilities(
            combinations=combos,
            partial=partial,
            complete=True,
            default_combination=default,
            accepts_urls=False,
            accepts_youtube=False,
            # Only when the weights are not cached yet: a chain skips the model at once when STEMKIT_OFFLINE is set.
            needs_network=self._needs_download(),
            needs_api_key=False,
            local=True,
            cost_unit=None,
            extra={
                "model": self._model.label,
                "architecture": "mdx-net" if self._model.arch == "mdx" else "htdemucs",
                "segment_seconds": self._segment() / MODEL_RATE,
            },
        )

    def _segment(self) -> int:
        if self._model.mdx is not None:
            return self._model.mdx.chunk
        if isinstance(self._custom_signature, Signature):
            return self._custom_signature.segment
        return DEFAULT_SEGMENT

    # -- loading models ---------------------------------------------------------------------------------
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

    def _load(self, path: Path, device: DeviceChoice, options: OnnxOptions, *, registry: bool) -> tuple[Any, Any]:
        session, signature = load_session(
            path,
            device.providers,
            threads=options.threads,
            label=self._model.label,
            broken=ProviderUnavailableError if registry else ConfigError,
        )
        fallback = session_fallback(device, session.get_providers())
        if fallback is not None:
            if options.require_device:
                raise ProviderUnavailableError(fallback, provider=self.name, code="DEVICE_UNAVAILABLE", retryable=False)
            warnings.warn(f"{self._model.label}: {fallback}", RuntimeWarning, stacklevel=2)
        return session, signature

    def _sessions(self, parts: Sequence[_Part], options: OnnxOptions, device: DeviceChoice) -> list[tuple[Any, Any]]:
        model = self._model.registry_model
        out = []
        for part in parts:
            if part.file is None:
                assert self._model.custom_path is not None
                out.append(self._load(self._model.custom_path, device, options, registry=False))
                continue
            assert model is not None
            path = hub.fetch(model, part.file, precision=options.precision, cache_dir=options.cache_dir)
            out.append(self._load(path, device, options, registry=True))
        return out

    def _mdx_session(self, job: SeparationJob, device: DeviceChoice) -> tuple[Any, MdxSignature]:
        resolved, options = self._model, job.options
        if resolved.mdx_model is not None:
            filename = resolved.mdx_model.filename

            def downloading(done: int, total: int | None) -> None:
                size = f" of {total / 1e6:.0f} MB" if total else ""
                job.progress("download", done / total if total else None, f"{filename}: {done / 1e6:.0f} MB{size}")

            path = uvr.fetch(resolved.mdx_model, cache_dir=options.cache_dir, progress=downloading)
            session, signature = self._load(path, device, options, registry=True)
            if not isinstance(signature, MdxSignature):
                raise ProviderUnavailableError(
                    f"model {resolved.label}: {path} is not an MDX-Net model (spectrogram in and out); delete it "
                    "and download the model again",
                    provider=self.name,
                    code="MODEL_MISMATCH",
                    retryable=False,
                )
            params = resolved.mdx
            assert params is not None
            for name in ("dim_f", "dim_t"):
                declared = getattr(signature, name)
                if declared is not None and declared != getattr(params, name):
                    raise ProviderUnavailableError(
                        f"model {resolved.label}: {path} declares {name}={declared}, not the registry's "
                        f"{getattr(params, name)}; delete it and download the model again",
                        provider=self.name,
                        code="MODEL_MISMATCH",
                        retryable=False,
                    )
            return session, signature
        assert resolved.custom_path is not None
        session, signature = self._load(resolved.custom_path, device, options, registry=False)
        assert isinstance(signature, MdxSignature)
        return session, signature

    # -- the work ---------------------------------------------------------------------------------------
    def _device_for(self, options: OnnxOptions) -> DeviceChoice:
        if (options.device, options.require_device) == (self._options.device, self._options.require_device):
            return self._device
        return select_device(options.device, require=options.require_device, label=self._model.label)

    def _delays(self, options: OnnxOptions, base: int) -> tuple[tuple[int, ...], int | None]:
        """Each pass's delay: ``base`` (MDX-Net's padding), plus demucs' random shift per pass when shifts > 1."""
        if options.shifts <= 1:
            return (base,), None
        seed = options.seed if options.seed is not None else secrets.randbits(32)
        rng = random.Random(seed)
        return tuple(base + rng.randint(0, MAX_SHIFT) for _ in range(options.shifts)), seed

    def _separate(self, job: SeparationJob) -> RawResult:
        options: OnnxOptions = job.options
        changed = [n for n in _MODEL_OPTIONS if getattr(options, n) != getattr(self._options, n)]
        if changed:
            raise ConfigError(
                f"{self._model.label}: {', '.join(f'{n}=' for n in changed)} can only be set when the provider "
                "is loaded (they describe the model)"
            )
        source = job.source
        device = self._device_for(options)
        device.check()
        timings: dict[str, float] = {}
        started = time.perf_counter()
        window: Float32Array | None
        if self._model.arch == "mdx":
            params = self._model.mdx
            assert params is not None
            session, signature = self._mdx_session(job, device)
            sessions = [session]
            runner = mdx_runner(session, signature.input_name, signature.output_name, params, denoise=options.denoise)
            plan = params.plan(options.overlap)
            window = params.window(options.overlap)
            names = [self._model.sources[0]]
            base_delay = params.trim
            complement = self._model.complement
        else:
            parts = self._parts(job.combination)
            loaded = self._sessions(parts, options, device)
            sessions = [s for s, _ in loaded]
            segments = {sig.segment for _, sig in loaded}
            if len(segments) != 1:
                raise ConfigError(
                    f"{self._model.label}: the model files disagree on the segment length: {sorted(segments)}"
                )
            segment = segments.pop()
            overlap = options.overlap
            plan = SegmentPlan(segment) if overlap is None else SegmentPlan.for_overlap(segment, overlap)
            window = None
            names = [name for part in parts for name, _ in part.rows]
            runner = self._runner(parts, loaded, segment)
            base_delay = 0
            complement = None
        timings["load"] = time.perf_counter() - started
        delays, seed = self._delays(options, base_delay)

        expected_model_frames = -(-source.frames * MODEL_RATE // source.sample_rate)
        n_segments = sum(plan.count(expected_model_frames + d) for d in delays)
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
            options.stream == "auto"
            and (len(names) + (complement is not None)) * source.channels * source.frames * 4 > STREAM_ABOVE_BYTES
        )
        outputs = [*names, complement] if complement is not None else names
        paths = [job.workdir / f"{name}.wav" for name in outputs]
        shape = {"sample_rate": source.sample_rate, "channels": source.channels, "frames": source.frames}
        passes = f", {len(delays)} passes" if len(delays) > 1 else ""
        job.progress(
            "separate", 0.0, f"{label}: {n_segments} segment(s) of {plan.segment / MODEL_RATE:.2f} s{passes}"
        )
        run_started = time.perf_counter()
        # The provenance hash of the input is read on the core's side after this returns; compute it
        # now on the spare core instead, while the model runs.
        hasher = threading.Thread(target=_warm_hash, args=(source,), name="stemkit-onnx-hash", daemon=True)
        hasher.start()
        stems: dict[str, Float32Array | Path]
        try:
            blocks = source.iter_blocks(_READ_BLOCK)
            # The complement of an MDX-Net estimate: the input minus it, written as the estimate is.
            tap = MixtureTap(blocks) if complement is not None else None
            reader = ModelRateInput(iter(tap) if tap is not None else blocks, source.sample_rate)
            run = functools.partial(
                run_passes,
                reader,
                runner,
                plan=plan,
                n_stems=len(names),
                delays=delays,
                window=window,
                on_segment=on_segment,
                background=True,
            )
            if stream:
                with StemFiles(paths, **shape, residual=tap) as files:
                    run(emit=files.write)
                    files.finish()
                stems = dict(zip(outputs, paths, strict=True))
            else:
                arrays = StemArrays(len(names), **shape, residual=tap)
                run(emit=arrays.write)
                arrays.finish()
                stems = dict(zip(outputs, arrays.arrays, strict=True))
        finally:
            hasher.join()
        timings["process"] = time.perf_counter() - run_started
        ran = list(sessions[0].get_providers()) if sessions else list(device.names)
        extra: dict[str, Any] = {
            "architecture": "mdx-net" if self._model.arch == "mdx" else "htdemucs",
            "segment": plan.segment,
            "stride": plan.stride,
            "segments": n_segments,
            "device": device.requested,
            "execution_provider": ran[0],
            "execution_providers": ran,
            "device_fallback": device.fallback or session_fallback(device, ran),
            "shifts": len(delays) if len(delays) > 1 else 1,
        }
        if seed is not None:
            extra["shift_seed"] = seed
            extra["shift_samples"] = [d - base_delay for d in delays]
        if self._model.mdx is not None:
            p = self._model.mdx
            extra["mdx"] = {"n_fft": p.n_fft, "dim_f": p.dim_f, "dim_t": p.dim_t, "hop": p.hop,
                            "compensate": p.compensate, "primary": self._model.sources[0], "denoise": options.denoise,
                            "mixture_minus_primary": complement}
        return RawResult(
            stems=stems,
            sample_rate=source.sample_rate,
            model=label,
            timings=timings,
            extra=extra,
        )

    def _runner(self, parts: Sequence[_Part], loaded: Sequence[tuple[Any, Any]], segment: int) -> Any:
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
