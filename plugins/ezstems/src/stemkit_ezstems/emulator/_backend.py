"""The emulator's separation back end: real stems from the ``dsp`` provider, written as Spleeter names them.

Spleeter's 5-stem model adds a piano stem that the dsp baseline cannot estimate. The emulator's piano stem is
**silence** (digital zeros, full length) and ``other`` keeps everything the dsp baseline leaves outside
vocals, drums and bass — piano included. So the five stems still sum to the mixture, as Spleeter's do, and a
client exercising the 5-stem path gets a well-formed, honest result rather than a fabricated piano estimate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stemkit_ezstems._service import SPLEETER_STEMS

__all__ = ["OUTPUT_FORMATS", "separate_to_files"]

#: ``output`` values the emulator accepts: file suffix -> (soundfile format, subtype).
OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
_DSP_REQUEST = {
    2: ["vocals", "instrumental"],
    4: ["vocals", "drums", "bass", "other"],
    5: ["vocals", "drums", "bass", "other"],
}


def separate_to_files(source: Path, stems: int, output: str, out_dir: Path) -> list[Path]:
    """Separate ``source`` into Spleeter's ``stems`` configuration; returns the files, in Spleeter's order."""
    import soundfile as sf

    import stemkit

    result = stemkit.separate(source, provider="dsp", stems=_DSP_REQUEST[stems])
    fmt, subtype = OUTPUT_FORMATS[output]
    files: list[Path] = []
    for name in SPLEETER_STEMS[stems]:
        if name == "piano":
            audio = np.zeros_like(result["vocals"].audio)
        else:
            audio = result["instrumental" if name == "accompaniment" else name].audio
        path = out_dir / f"{name}.{output}"
        sf.write(path, np.ascontiguousarray(audio.T), result.sample_rate, format=fmt, subtype=subtype)
        files.append(path)
    return files
