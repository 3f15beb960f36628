"""The Ray engine's driver: plan the run, start the Ray Data pipeline, and turn its rows into ``BatchItem``s,
manifest rows and progress, as songs finish.

The driver holds the listing (each input's name: a few dozen bytes a song), one byte per song to know which
have come back, and one manifest row group at most; never audio, never results. Songs stream through the
pipeline; Ray Data's backpressure keeps only a bounded number of them between stages, however long the
catalogue.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stemkit.audio import normalize_audio
from stemkit.batch import BatchItem
from stemkit.engines import BatchRequest
from stemkit.errors import ConfigError, OutputError, StemkitError
from stemkit.inputs import output_names
from stemkit.output import check_output
from stemkit.protocol import ProgressEvent
from stemkit.provenance import Provenance
from stemkit.stemset import Stem, StemSet
from stemkit_ray.errors import RayEngineError, WorkerLostError
from stemkit_ray.locations import is_url, list_inputs, scratch_folder, url_fs
from stemkit_ray.manifest import ManifestWriter
from stemkit_ray.progress import ProgressBar, Tally
from stemkit_ray.ratelimit import Rate, parse_rate
from stemkit_ray.rows import error_of, new_row
from stemkit_ray.stages import OutputPlan, WorkerConfig, result_stemset

__all__ = ["RayEngine", "RayOptions"]

#: input blocks at most: beyond this many songs, a block (one listing task's share) holds several
_MAX_INPUT_BLOCKS = 1000


class RayOptions(BaseModel):
    """``engine_options`` of ``engine="ray"`` (all optional).

    Where: ``address`` of the cluster (``"auto"``, ``"ray://head:10001"``; default: the Ray this process is
    already connected to, else ``$RAY_ADDRESS``, else a new local Ray on this machine), ``init``: more
    ``ray.init`` arguments (``num_cpus``, ``object_store_memory``, ``runtime_env``) when stemkit connects.

    Resources: ``actors`` separating at once (default: ``concurrency`` for a local provider, 1 for hosted
    ones) and ``calls_per_actor`` songs each actor separates at once (default 1 for a local provider; for
    hosted ones ``concurrency`` shared among the actors: their jobs overlap on the actor's event loop);
    ``num_cpus`` / ``num_gpus`` per actor (default 1 CPU for a local provider, 0.25 for hosted; 0 GPUs: give
    1, or 0.5 for two actors per GPU, to a GPU execution provider); ``task_cpus`` per decode or write task.

    Safety: ``max_task_retries``: how often a song whose worker died is tried again (then it is a failed
    row); ``rate_limits``: provider → rate (``{"stemsplit": "60/min"}``; default: each provider's documented
    limit), ``rate_margin`` seconds added to each window for network jitter.

    Output: ``manifest``: its file name in the output folder (``.jsonl`` or ``.parquet``), a path or URL of
    its own, or None; ``progress_bar``: True, False, or None (on a terminal).
    """

    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    init: dict[str, Any] = Field(default_factory=dict)
    actors: int | None = Field(None, ge=1)
    calls_per_actor: int | None = Field(None, ge=1)
    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    task_cpus: float = Field(0.5, gt=0)
    max_task_retries: int = Field(3, ge=0)
    rate_limits: dict[str, str | int] = Field(default_factory=dict)
    rate_margin: float = Field(1.0, ge=0)
    manifest: str | None = "manifest.jsonl"
    progress_bar: bool | None = None


@dataclass(frozen=True)
class _Plan:
    items: list[str | Path]
    names: list[str]
    worker: WorkerConfig
    #: a hosted provider is in the spec: its actors get the file's bytes (not decoded audio), and the cluster
    #: gets a rate limiter
    hosted: bool
    output: OutputPlan | None
    manifest: str | None
    actors: int
    calls_per_actor: int
    actor_cpus: float
    rates: dict[str, Rate]


class RayEngine:
    """``engine="ray"``: the batch on a Ray cluster (a local one by default). See :class:`RayOptions`."""

    name = "ray"

    def __init__(self, **options: Any) -> None:
        try:
            self.options = RayOptions.model_validate(options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'options'}: {err['msg']}" for err in exc.errors()
            )
            known = ", ".join(RayOptions.model_fields)
            raise ConfigError(f"engine 'ray': {problems} (its options: {known})") from None
        self.rates = {name: parse_rate(rate, name=f"rate_limits.{name}") for name, rate in
                      self.options.rate_limits.items()}  # fmt: skip

    def __repr__(self) -> str:
        return f"RayEngine(address={self.options.address!r})"

    # -- the run ------------------------------------------------------------------------------------------
    async def aseparate_many(self, request: BatchRequest) -> AsyncIterator[BatchItem]:
        """The batch's BatchItems in completion order (the engine entry point; see :mod:`stemkit.engines`)."""
        plan = await anyio.to_thread.run_sync(self._plan, request)
        manifest = ManifestWriter(plan.manifest) if plan.manifest is not None else None
        tally = Tally(len(plan.items))
        run = _Run(plan, self.options)
        finished = False
        try:
            with ProgressBar(tally, show=self.options.progress_bar):
                rows = await anyio.to_thread.run_sync(run.start)
                seen = bytearray(len(plan.items))
                while True:
                    row = await anyio.to_thread.run_sync(run.next, rows)
                    if row is None:
                        break
                    index = int(row["index"])
                    if seen[index]:
                        continue  # a retried block's song that already came back: once is enough
                    seen[index] = 1
                    item, record = _outcome(plan, row)
                    yield self._report(item, record, manifest, tally, request)
                for index in (i for i, flag in enumerate(seen) if not flag):
                    item, record = _lost(plan, index, self.options.max_task_retries)
                    yield self._report(item, record, manifest, tally, request)
            finished = True
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled or abandoned run still stops its pipeline
                await anyio.to_thread.run_sync(run.close)
                if manifest is not None:
                    if finished:
                        await anyio.to_thread.run_sync(manifest.commit)
                    else:
                        manifest.abort()

    @staticmethod
    def _report(
        item: BatchItem, record: dict[str, Any], manifest: ManifestWriter | None, tally: Tally, request: BatchRequest
    ) -> BatchItem:
        if manifest is not None:
            manifest.add(record)
        tally.add(record["status"])
        if request.progress is not None:
            stage = "done" if item.ok else "failed"
            request.progress(ProgressEvent(record["provider"] or "ray", stage, 1.0, record["status"],
                                           input_name=item.name))  # fmt: skip
        return item

    # -- planning: everything that can be wrong with the request, before Ray is touched -----------------
    def _plan(self, request: BatchRequest) -> _Plan:
        items = list_inputs(request.inputs)
        names = output_names(items)
        hosted = _check_provider(request.provider)
        output = _output_plan(request, names)
        opts = self.options
        if hosted:
            actors = opts.actors or 1
            calls = opts.calls_per_actor or max(1, math.ceil(request.concurrency / actors))
        else:
            actors = opts.actors or request.concurrency
            calls = opts.calls_per_actor or 1
        worker = WorkerConfig(
            provider=request.provider,
            cache=_cache_argument(request.cache),
            stems=request.stems,
            timeout=request.timeout,
            offset=request.offset,
            duration=request.duration,
            ledger=request.ledger,
            env={k: v for k, v in os.environ.items() if k.startswith("STEMKIT_")},
        )
        return _Plan(
            items=items,
            names=names,
            worker=worker,
            hosted=hosted,
            output=output,
            manifest=_manifest_target(opts.manifest, request.output_dir, output),
            actors=actors,
            calls_per_actor=calls,
            actor_cpus=opts.num_cpus if opts.num_cpus is not None else (0.25 if hosted else 1.0),
            rates=self.rates,
        )


def _check_provider(provider: Any) -> bool:
    """Whether the providers include a hosted one, after checking the spec as far as can be done without
    loading a model (syntax, installed plugins, their options): a typo fails here, not in every actor."""
    from stemkit.config import (
        ChainSpec,
        EnsembleSpec,
        PipelineSpec,
        ProviderSpec,
        default_chain,
        parse_tree,
        validate_options,
    )
    from stemkit.hosted import HostedSeparator
    from stemkit.registry import provider_class

    if provider is not None and not isinstance(provider, str | ProviderSpec | Sequence):
        try:
            from ray import cloudpickle

            cloudpickle.dumps(provider)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ConfigError(
                f"engine 'ray': the Separator {provider!r} cannot be sent to Ray's workers ({exc}); pass a provider "
                "spec string instead (each worker loads its own provider; API keys come from the workers' environment)"
            ) from None
        caps = provider.capabilities
        return not caps.local
    tree = parse_tree(default_chain() if provider is None else provider)
    hosted = False
    pending: list[Any] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ProviderSpec):
            cls = provider_class(node.name)
            model = getattr(cls, "Options", None)
            if isinstance(model, type) and issubclass(model, BaseModel):
                validate_options(model, dict(node.options), provider=node.name)
            hosted = hosted or (isinstance(cls, type) and issubclass(cls, HostedSeparator))
        elif isinstance(node, ChainSpec):
            pending.extend(node.links)
        elif isinstance(node, EnsembleSpec):
            pending.extend(node.members)
        elif isinstance(node, PipelineSpec):
            pending.extend(stage.node for stage in node.stages)
    return hosted


def _cache_argument(cache: Any) -> Any:
    """``cache=`` as each worker can use it: a ResultCache by its location (a temporary one is refused: its
    folder is this process's)."""
    from stemkit.cache import CachePolicy, ResultCache

    if isinstance(cache, ResultCache):
        if not cache.persistent:
            raise ConfigError(
                "cache: a temporary ResultCache lives in this process; give the Ray engine a folder every node "
                "can reach or an fsspec URL (cache='s3://bucket/stemkit-cache')"
            )
        return cache.location
    if isinstance(cache, CachePolicy):
        raise ConfigError("cache: give the Ray engine True, False, a folder or an fsspec URL, not a CachePolicy")
    if isinstance(cache, os.PathLike):
        return os.fspath(cache)
    if isinstance(cache, str) and cache.startswith("memory://"):
        url_fs(cache, what="cache")  # refuses it with the reason
    return cache


def _output_plan(request: BatchRequest, names: list[str]) -> OutputPlan | None:
    """Check the output folder and template as a local batch does (an fsspec URL: the names against a scratch
    folder, and the location opened), before anything is separated."""
    out = request.output_dir
    if out is None:
        return None
    text = str(out)
    if isinstance(out, str) and is_url(text):
        with scratch_folder("check") as scratch:
            check_output(scratch, request.format, request.template, stems=request.stems, inputs=names,
                         settings=request.settings)  # fmt: skip
        fs, path = url_fs(text, what="output")
        try:
            fs.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{text}: the output folder cannot be created ({exc})", path=text) from exc
        return OutputPlan(text.rstrip("/"), True, request.settings, request.template)
    check_output(out, request.format, request.template, stems=request.stems, inputs=names, settings=request.settings)
    return OutputPlan(text, False, request.settings, request.template)


def _manifest_target(option: str | None, output_dir: str | Path | None, output: OutputPlan | None) -> str | None:
    if option is None:
        return None
    bare = "/" not in option and os.sep not in option and not is_url(option)
    if not bare:
        return option
    if output is None:
        return None  # no output folder to put it beside: only an explicit path writes one
    return f"{output.root}/{option}" if output.remote else str(Path(str(output_dir)) / option)


# -- from rows to outcomes ------------------------------------------------------------------------------------
def _outcome(plan: _Plan, row: Mapping[str, Any]) -> tuple[BatchItem, dict[str, Any]]:
    index = int(row["index"])
    item, name = plan.items[index], plan.names[index]
    seconds = float(row["seconds"])
    record: dict[str, Any] = {"input": str(item), "name": name, "worker": row["worker"] or None,
                              "seconds": round(seconds, 3), "sha256": row["sha256"] or None}  # fmt: skip
    error = error_of(row)
    if error is not None:
        provider = getattr(error, "provider", None)
        record.update(status="failed", provider=provider, stems={}, cost=None, cost_unit=None,
                      error_class=type(error).__name__, error_message=str(error))  # fmt: skip
        return BatchItem(item, name, error=error, seconds=seconds), record
    provenance = Provenance.from_dict(json.loads(row["provenance"]))
    locations: dict[str, str] = json.loads(row["paths"])
    if plan.output is None:
        result = result_stemset(row)
        paths: dict[str, Path] = {}
    else:
        result = _written(row, provenance, locations, remote=plan.output.remote)
        paths = {} if plan.output.remote else {stem: Path(where) for stem, where in locations.items()}
    record.update(
        status="cached" if provenance.cache is not None else "ok",
        provider=provenance.provider,
        stems=locations,
        cost=provenance.cost.amount if provenance.cost else None,
        cost_unit=provenance.cost.unit if provenance.cost else None,
        error_class=None,
        error_message=None,
    )
    return BatchItem(item, name, result=result, paths=paths, seconds=seconds), record


def _written(row: Mapping[str, Any], provenance: Provenance, locations: Mapping[str, str], *, remote: bool) -> StemSet:
    """The result as the stems now on disk (or at their URLs), decoded when first read: the driver never holds
    a song's audio unless the caller reads it."""
    rate, channels, frames = int(row["sample_rate"]), int(row["channels"]), int(row["frames"])
    stems = []
    for info in json.loads(row["stem_info"]):
        where = locations[info["name"]]
        complement = tuple(info["complement_of"]) if info["complement_of"] else None
        if remote:
            stem = Stem(info["name"], sample_rate=rate, channels=channels, frames=frames,
                        loader=_remote_loader(where, rate, channels, frames), provider_name=info["provider_name"],
                        derived=bool(info["derived"]), complement_of=complement)  # fmt: skip
        else:
            stem = Stem.from_file(info["name"], Path(where), sample_rate=rate, channels=channels, frames=frames,
                                  provider_name=info["provider_name"], complement_of=complement)  # fmt: skip
            stem.derived = bool(info["derived"])
        stems.append(stem)
    return StemSet(stems, provenance=provenance)


def _remote_loader(url: str, rate: int, channels: int, frames: int) -> Any:
    def load() -> np.ndarray[Any, np.dtype[np.float32]]:
        import io

        import soundfile as sf

        fs, path = url_fs(url, what="stem")
        data, file_rate = sf.read(io.BytesIO(fs.cat_file(path)), dtype="float32", always_2d=True)
        return normalize_audio(data.T, int(file_rate), to_rate=rate, to_frames=frames, to_channels=channels)

    return load


def _lost(plan: _Plan, index: int, retries: int) -> tuple[BatchItem, dict[str, Any]]:
    item, name = plan.items[index], plan.names[index]
    error = WorkerLostError(
        f"{item}: the worker separating it died {retries + 1} time(s) (a crash or an out-of-memory kill); the rest "
        "of the batch went on. Try it alone with engine='local', or give the actors more memory"
    )
    record: dict[str, Any] = {
        "input": str(item), "name": name, "status": "failed", "provider": None, "stems": {}, "cost": None,
        "cost_unit": None, "seconds": 0.0, "error_class": type(error).__name__, "error_message": str(error),
        "worker": None, "sha256": None,
    }  # fmt: skip
    return BatchItem(item, name, error=error), record


# -- the Ray side -----------------------------------------------------------------------------------------------
class _Run:
    """The pipeline for one plan: started, read row by row, closed (every blocking call runs in a thread)."""

    def __init__(self, plan: _Plan, options: RayOptions) -> None:
        self.plan = plan
        self.options = options
        self.limiter: Any = None
        self._rows: Iterator[dict[str, Any]] | None = None

    def start(self) -> Iterator[dict[str, Any]]:
        import ray
        import ray.data

        from stemkit_ray.ratelimit import ClusterRateLimiter
        from stemkit_ray.stages import SeparateSongs, decode_input, hash_input, write_stems

        _connect(self.options)
        plan, opts = self.plan, self.options
        if plan.hosted:  # one rate limiter for the whole cluster
            limiter_cls = ray.remote(ClusterRateLimiter)
            self.limiter = limiter_cls.options(num_cpus=0, max_concurrency=10_000).remote(
                plan.rates, margin=opts.rate_margin
            )
        rows = [new_row(i, str(item), name) for i, (item, name) in enumerate(zip(plan.items, plan.names, strict=True))]
        blocks = min(len(rows), _MAX_INPUT_BLOCKS)
        ds: Any = ray.data.from_items(rows, override_num_blocks=blocks)
        del rows
        ds = ds.map(hash_input, num_cpus=opts.task_cpus)
        ds = ds.map(decode_input, fn_kwargs={"decode": not plan.hosted}, num_cpus=opts.task_cpus)
        with warnings.catch_warnings():
            # Ray Data names no parameter for actor task retries yet and warns about the generic ones; the
            # filter lives for this call only (stemkit installs no warning filter of its own).
            warnings.simplefilter("ignore", category=DeprecationWarning)
            ds = self._separate(ds, SeparateSongs)
        if plan.output is not None:
            ds = ds.map(write_stems, fn_kwargs={"output": plan.output}, num_cpus=opts.task_cpus)
        context = ds.context  # this dataset's own copy: the caller's Ray Data settings are not touched
        context.enable_progress_bars = False  # the driver's one bar replaces Ray Data's per-operator bars
        context.enable_auto_log_stats = False
        context.max_errored_blocks = -1  # a song whose worker keeps dying is dropped here and reported as lost
        self._rows = iter(ds.iter_rows())
        return self._rows

    def _separate(self, ds: Any, actor: type) -> Any:
        import ray.data

        plan, opts = self.plan, self.options
        return ds.map_batches(
            actor,
            fn_constructor_args=(plan.worker, self.limiter),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=plan.actors, max_concurrent_calls_per_actor=plan.calls_per_actor),
            num_cpus=plan.actor_cpus,
            num_gpus=opts.num_gpus or None,
            max_task_retries=opts.max_task_retries,
        )

    @staticmethod
    def next(rows: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return next(rows, None)
        except StemkitError:
            raise
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, StemkitError):
                raise cause from None
            raise RayEngineError(f"the Ray pipeline failed ({type(exc).__name__}: {_first_line(exc)})") from exc

    def close(self) -> None:
        rows, self._rows = self._rows, None
        close = getattr(rows, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # the pipeline is being torn down anyway
                close()
        if self.limiter is not None:
            import ray

            with contextlib.suppress(Exception):
                ray.kill(self.limiter)
            self.limiter = None


def _first_line(exc: BaseException) -> str:
    """What a Ray error says in a line: its first line, and the last (the worker's own error) when it quotes
    a traceback."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0][:300] if len(lines) == 1 else f"{lines[0][:200]} … {lines[-1][:200]}"


def _connect(options: RayOptions) -> None:
    """Connect to (or start) Ray once per process; a Ray the caller already started is used as it is."""
    import ray

    if ray.is_initialized():
        return
    kwargs = {"address": options.address, **options.init}
    kwargs.setdefault("log_to_driver", True)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError, TypeError) as exc:
        where = options.address or os.environ.get("RAY_ADDRESS") or "a new local Ray"
        raise RayEngineError(
            f"engine 'ray': could not connect to {where} ({_first_line(exc)}); check --ray-address / "
            "engine_options['address'] (e.g. 'auto' on a cluster node, 'ray://head:10001' from outside)"
        ) from exc
