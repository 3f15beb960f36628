"""An execution engine in a few lines: it receives the checked BatchRequest and yields BatchItems."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from stemkit.batch import BatchItem, aseparate_many
from stemkit.engines import BatchRequest


class InlineEngine:
    requests: ClassVar[list[tuple[BatchRequest, dict[str, Any]]]] = []

    def __init__(self, *, workers: int = 1) -> None:
        self.options = {"workers": workers}

    async def aseparate_many(self, request: BatchRequest) -> AsyncIterator[BatchItem]:
        InlineEngine.requests.append((request, self.options))
        settings = request.settings
        async for item in aseparate_many(
            list(request.inputs), request.provider, stems=request.stems, concurrency=request.concurrency,
            output_dir=request.output_dir, format=settings.format, bit_depth=settings.bit_depth,
            bitrate=settings.bitrate, vbr_quality=settings.vbr_quality, clip=settings.clip,
            normalize=settings.normalize, output_sample_rate=settings.sample_rate, template=request.template,
            offset=request.offset, duration=request.duration, progress=request.progress, timeout=request.timeout,
            cache=request.cache, ledger=request.ledger,
        ):  # fmt: skip
            yield item
