"""``import stemkit`` stays light: no plugin, HTTP client or heavy numeric back end is imported."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_stemkit_imports_no_plugin_or_heavy_dependency() -> None:
    code = (
        "import sys, json, stemkit\n"
        "heavy = ['stemkit_dsp', 'stemkit_stemsplit', 'stemkit_ezstems', 'stemkit_onnx', 'onnxruntime', 'httpx',"
        " 'scipy', 'pydantic', 'soundfile', 'numpy', 'matplotlib', 'stevedore']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == []


def test_public_names_resolve_lazily() -> None:
    import stemkit

    assert callable(stemkit.separate)
    assert stemkit.StemSet.__name__ == "StemSet"
    assert issubclass(stemkit.RateLimitError, stemkit.ProviderError)
    assert "separate" in dir(stemkit)
