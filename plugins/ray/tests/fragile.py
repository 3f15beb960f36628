"""A provider whose process dies on one input (as a decoder crash or the OOM killer would end it).

Written to the Separator protocol alone (no base class), so that Ray can send it to the workers by value:
they cannot import the tests."""

from __future__ import annotations

import os
from typing import Any

from stemkit.audio import open_source
from stemkit.protocol import Capabilities
from stemkit.provenance import Provenance
from stemkit.stemset import Stem, StemSet


class Fragile:
    name = "fragile"
    spec = "fragile"
    capabilities = Capabilities(combinations=(("vocals", "other"),))

    async def aseparate(self, audio: Any, /, **options: Any) -> StemSet:
        return self.separate(audio, **options)

    def separate(self, audio: Any, /, **options: Any) -> StemSet:
        source = open_source(audio)
        if "poison" in source.name:
            os._exit(1)  # the worker process dies mid-song, every time
        half = source.read() * 0.5
        stems = [Stem.from_array(name, half, source.sample_rate) for name in ("vocals", "other")]
        return StemSet(stems, provenance=Provenance("fragile", input_name=source.name, input_sha256=source.sha256))

    def close(self) -> None:
        pass
