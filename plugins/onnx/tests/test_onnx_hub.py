"""The registry and download path, up to the network boundary; offline for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

import stemkit
from stemkit.errors import ProviderUnavailableError
from stemkit_onnx import OnnxSeparator, hub
from stemkit_onnx.testing import gain_model

SEGMENT = 343_980


@pytest.fixture(scope="module")
def model4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gains = np.stack([np.eye(2, dtype=np.float32) * g for g in (0.1, 0.2, 0.3, 0.4)])
    return gain_model(tmp_path_factory.mktemp("hub") / "gain4.onnx", gains, segment=SEGMENT)


def test_registry_lists_every_demucs_onnx_model_with_its_stems_and_files() -> None:
    models = hub.registry()
    assert set(models) == {
        "htdemucs_ft",
        "htdemucs",
        "htdemucs_6s",
        "htdemucs_ft_drums",
        "htdemucs_ft_bass",
        "htdemucs_ft_other",
        "htdemucs_ft_vocals",
    }
    assert models["htdemucs_6s"].sources == ("drums", "bass", "other", "vocals", "guitar", "piano")
    bag = models["htdemucs_ft"]
    assert [f.filename for f in bag.files()] == [f"htdemucs_ft_{s}.onnx" for s in ("drums", "bass", "other", "vocals")]
    assert bag.files("fp16weights")[3] == hub.ModelFile(
        "StemSplitio/htdemucs-ft-vocals-onnx", "htdemucs_ft_vocals_fp16weights.onnx", stem="vocals"
    )
    assert (
        models["htdemucs"].files()[0].url
        == "https://huggingface.co/StemSplitio/htdemucs-onnx/resolve/main/htdemucs.onnx"
    )


@pytest.mark.parametrize(
    ("alias", "name"),
    [("6s", "htdemucs_6s"), ("ft", "htdemucs_ft"), ("vocals", "htdemucs_ft_vocals"), ("htdemucs", "htdemucs")],
)
def test_demucs_onnx_aliases_resolve(alias: str, name: str) -> None:
    model = hub.resolve(alias)
    assert model is not None
    assert model.name == name


def test_fetch_downloads_through_demucs_onnx_with_the_cache_dir_and_precision(
    fake_hub, model4: Path, tmp_path: Path
) -> None:
    fake_hub.serve("StemSplitio/htdemucs-onnx", "htdemucs_fp16weights.onnx", model4)
    model = hub.registry()["htdemucs"]
    path = hub.fetch(model, model.files("fp16weights")[0], precision="fp16weights", cache_dir=tmp_path)
    assert path == model4
    assert fake_hub.calls[0]["repo_id"] == "StemSplitio/htdemucs-onnx"
    assert fake_hub.calls[0]["cache_dir"] == str(tmp_path)


def test_a_failed_download_is_provider_unavailable_naming_model_repo_and_how_to_pull(
    fake_hub, tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    fake_hub.error = LocalEntryNotFoundError(
        "Cannot find the requested files in the disk cache and outgoing traffic has been disabled."
    )
    path = wav(noise(2, 1000))
    with pytest.raises(ProviderUnavailableError) as info:
        stemkit.separate(path, provider=f"onnx:htdemucs_6s?cache_dir={tmp_path}&device=cpu")
    text = str(info.value)
    assert "'htdemucs_6s'" in text
    assert "StemSplitio/htdemucs-6s-onnx" in text
    assert "stemkit models pull htdemucs_6s" in text
    assert info.value.provider == "onnx"


def test_a_missing_repository_is_provider_unavailable(fake_hub, tmp_path: Path) -> None:
    model = hub.registry()["htdemucs"]
    with pytest.raises(ProviderUnavailableError, match=r"htdemucs\.onnx"):
        hub.fetch(model, model.files()[0], cache_dir=tmp_path)  # the fake hub answers 404


def test_offline_with_the_model_cached_runs_without_downloading(
    model4: Path, hub_cache: Callable[..., Path], wav: Callable[..., Path], noise, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def no_network(*args: object, **kwargs: object) -> str:
        raise AssertionError("offline mode must not call the hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    cache = hub_cache("StemSplitio/htdemucs-onnx", "htdemucs.onnx", model4)
    audio = noise(2, 5000)
    stems = stemkit.separate(wav(audio), provider=f"onnx:htdemucs?cache_dir={cache}&device=cpu")
    np.testing.assert_allclose(stems["vocals"].audio[:, 1:], audio[:, 1:] * 0.4, atol=1e-6)


def test_offline_and_not_cached_fails_for_real_in_a_fresh_process(
    tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    """HF_HUB_OFFLINE=1 set before anything is imported, an empty hub cache: the real lookup path."""
    path = wav(noise(2, 2000))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    env.pop("HF_HUB_CACHE", None)
    script = (
        "import sys, stemkit\n"
        "from stemkit.errors import ProviderUnavailableError\n"
        "try:\n"
        f"    stemkit.separate({str(path)!r}, provider='onnx:htdemucs_ft?device=cpu', stems='vocals')\n"
        "except ProviderUnavailableError as exc:\n"
        "    print(type(exc).__name__, exc.retryable, exc); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("ProviderUnavailableError True")
    assert "'htdemucs_ft'" in out
    assert "StemSplitio/htdemucs-ft-vocals-onnx" in out
    assert "HF_HUB_OFFLINE" in out
    assert "stemkit models pull htdemucs_ft" in out
    assert str(tmp_path / "hf-home") in out  # names the cache it looked in


def test_an_unavailable_model_lets_a_fallback_chain_move_on(tmp_path: Path, wav: Callable[..., Path], noise) -> None:
    pytest.importorskip("stemkit_dsp")
    path = wav(noise(2, 44100))
    stems = stemkit.separate(path, provider=f"onnx:htdemucs?cache_dir={tmp_path}&device=cpu | dsp", stems="vocals")
    assert stems.provider == "dsp"
    assert stems.attempts[0].provider.startswith("onnx")


# -- offline: STEMKIT_OFFLINE and HF_HUB_OFFLINE ------------------------------------------------------------


def test_needs_network_is_true_only_while_the_weights_are_not_cached(
    model4: Path, hub_cache: Callable[..., Path], tmp_path: Path
) -> None:
    assert OnnxSeparator("htdemucs", {"cache_dir": str(tmp_path / "empty")}).capabilities.needs_network
    cache = hub_cache("StemSplitio/htdemucs-onnx", "htdemucs.onnx", model4)
    assert not OnnxSeparator("htdemucs", {"cache_dir": str(cache)}).capabilities.needs_network
    # a bag needs every specialist of the chosen precision
    hub_cache("StemSplitio/htdemucs-ft-vocals-onnx", "htdemucs_ft_vocals.onnx", model4)
    assert OnnxSeparator("htdemucs_ft", {"cache_dir": str(cache)}).capabilities.needs_network
    assert not OnnxSeparator("htdemucs_ft_vocals", {"cache_dir": str(cache)}).capabilities.needs_network


def test_stemkit_offline_makes_a_chain_skip_an_uncached_model_without_touching_the_hub(
    tmp_path: Path, wav: Callable[..., Path], noise, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("stemkit_dsp")
    import huggingface_hub

    def no_network(*args: object, **kwargs: object) -> str:
        raise AssertionError("offline: the hub must not be asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("STEMKIT_OFFLINE", "1")
    stems = stemkit.separate(
        wav(noise(2, 44_100)), provider=f"onnx:htdemucs?cache_dir={tmp_path}&device=cpu | dsp", stems="vocals"
    )
    assert stems.provider == "dsp"
    skipped = stems.attempts[0]
    assert (skipped.outcome, skipped.reason) == ("skipped", "needs the network and STEMKIT_OFFLINE is set")


_FRESH_CHAIN = """
import json, socket, sys, time, warnings
connects = []
real_connect = socket.socket.connect
def connect(self, address):
    connects.append(repr(address))
    raise OSError("the network is off in this test")
socket.socket.connect = connect
import stemkit
separator = stemkit.load(sys.argv[2])  # imports every plugin of the chain: not what is timed
started = time.perf_counter()
stems = separator.separate(sys.argv[1], stems="vocals")
total = time.perf_counter() - started
attempts = stems.provenance.attempts
print(json.dumps({
    "provider": stems.provider, "connects": connects, "total": total,
    "attempts": [[a.outcome, a.seconds, a.reason or str(a.error or "")] for a in attempts],
}))
"""


@pytest.mark.parametrize("variable", ["STEMKIT_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_a_chain_falls_back_to_dsp_in_under_a_second_quietly_in_a_fresh_process(
    tmp_path: Path, wav: Callable[..., Path], noise, variable: str
) -> None:
    """The issue's case: ``onnx:htdemucs | dsp`` offline with no cached weights; no network, no retry noise."""
    pytest.importorskip("stemkit_dsp")
    import json

    path = wav(noise(2, 44_100))
    env = {**os.environ, variable: "1", "HF_HOME": str(tmp_path / "hf-home")}
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "STEMKIT_OFFLINE"):
        if name != variable:
            env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_CHAIN, str(path), "onnx:htdemucs?device=cpu | dsp"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["provider"] == "dsp"
    assert result["connects"] == []  # nothing even tried the network
    (outcome, seconds, why), ok = result["attempts"][0], result["attempts"][-1]
    assert outcome == ("skipped" if variable == "STEMKIT_OFFLINE" else "failed")
    assert variable in why
    # The time until the fallback started: the whole call minus dsp's own run.
    assert seconds < 1.0
    assert result["total"] - ok[1] < 1.0
    assert done.stderr.strip() == ""  # no retry chatter, no warnings
