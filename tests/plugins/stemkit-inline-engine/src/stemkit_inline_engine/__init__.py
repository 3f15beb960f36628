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
        async for item in aseparate_many(
            list(request.inputs), request.provider, stems=request.stems, concurrency=request.concurrency,
            output_dir=request.output_dir, format=request.format, template=request.template,
            progress=request.progress, timeout=request.timeout, cache=request.cache,
        ):  # fmt: skip
            yield item
