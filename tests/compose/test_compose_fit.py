"""Fitting ensemble weights on references: the exact simplex least squares, the weights it must find when the
answer is known, and ``stemkit compare --fit-ensemble`` end to end (reusing compare's separations)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemkit.compose.fit_weights import fit_ensemble, fit_simplex
from stemkit.config import EnsembleSpec, parse_tree
from stemkit.errors import ConfigError
from stemkit.hosted.faults import FaultPlan
from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator


def objective(gram: np.ndarray, cross: np.ndarray, w: np.ndarray) -> float:
    return float(w @ gram @ w - 2 * cross @ w)


@given(st.integers(2, 4), st.integers(0, 10_000))
@settings(max_examples=60, deadline=None)
def test_the_simplex_fit_is_no_worse_than_any_other_mix(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    estimates = rng.standard_normal((k, 64))
    reference = rng.standard_normal(64) + estimates[0]
    gram, cross = estimates @ estimates.T, estimates @ reference
    w = fit_simplex(gram, cross)
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0)
    best = objective(gram, cross, w)
    for other in rng.dirichlet(np.ones(k), size=500):
        assert best <= objective(gram, cross, other) + 1e-9 * max(1.0, abs(best))
    for corner in np.eye(k):
        assert best <= objective(gram, cross, corner) + 1e-9 * max(1.0, abs(best))


def test_the_fit_finds_inverse_variance_weights_for_independent_errors() -> None:
    """x_i = s + n_i with independent noise of powers σ_i²: the error of Σ w_i x_i is Σ w_i² σ_i², least for
    w_i ∝ 1/σ_i² — (0.8, 0.2) for σ = (0.1, 0.2)."""
    rng = np.random.default_rng(0)
    s = rng.standard_normal(400_000) * 0.3
    x = np.stack([s + rng.standard_normal(s.shape) * 0.1, s + rng.standard_normal(s.shape) * 0.2])
    w = fit_simplex(x @ x.T, x @ s)
    np.testing.assert_allclose(w, [0.8, 0.2], atol=0.01)


def test_identical_members_do_not_break_the_fit() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1000))
    x = np.concatenate([x, x])
    w = fit_simplex(x @ x.T, x @ x[0])
    assert w.sum() == pytest.approx(1.0)


def test_fit_ensemble_on_references_weights_the_cleaner_member_more(
    song: Path, demo_dir: Path, noisy: Callable[..., Any]
) -> None:
    members = [noisy(seed=1, noise=0.01), noisy(seed=2, noise=0.02), noisy(seed=3, noise=0.04)]
    fit = fit_ensemble(song, members, references=demo_dir)
    expected = np.array([16.0, 4.0, 1.0]) / 21.0  # ∝ 1/σ²
    for stem in ("vocals", "drums", "bass", "other"):
        np.testing.assert_allclose(fit.weights[stem], expected, atol=0.02)
    assert fit.winner == "mean, fitted weights"
    # Equal weights let the noisiest member in: (1 + 4 + 16)/9 of the cleanest one's error power; fitted
    # weights cut it to 16/21 of it (+1.2 dB).
    scores = {name: fit.scores[name]["song"] for name in ("mean, fitted weights", members[0].spec, "mean")}
    assert scores["mean, fitted weights"] - scores[members[0].spec] == pytest.approx(10 * np.log10(21 / 16), abs=0.2)
    assert scores[members[0].spec] > scores["mean"]
    tree = parse_tree(fit.spec)
    assert isinstance(tree, EnsembleSpec)
    assert len(tree.members) == 3
    assert "best: " + fit.spec in fit.table()
    assert "in-sample" in fit.table()


def test_fit_ensemble_needs_two_members(song: Path, demo_dir: Path) -> None:
    with pytest.raises(ConfigError, match="at least two providers"):
        fit_ensemble(song, ["dsp"], references=demo_dir)


def test_compare_fit_ensemble_prints_the_spec_that_wins_without_billing_twice(demo_dir: Path, tmp_path: Path) -> None:
    emulator = StemSplitEmulator(EmulatorConfig(faults=FaultPlan.parse(()), processing_seconds=0.02,
                                                queue_seconds=0.0))
    with emulator.serve() as server:
        run = subprocess.run(
            [sys.executable, "-m", "stemkit", "compare", str(demo_dir / "mixture.wav"), "--references", str(demo_dir),
             "-p", f"stemsplit?base_url={server.base_url}&format=wav", "-p", "dsp?kernel=31", "--no-baselines",
             "--fit-ensemble"],
            capture_output=True, text=True, check=False, cwd=tmp_path,
            env={**os.environ, "STEMSPLIT_API_KEY": DEFAULT_API_KEY, "COLUMNS": "160"},
        )
        posts = [r.path for r in emulator.recorder.requests if r.method == "POST"]
        submitted = sum(1 for path in posts if path.rstrip("/").endswith("/jobs"))
    assert run.returncode == 0, run.stderr
    assert "ensemble fit on 1 track(s)" in run.stdout
    best = next(line for line in run.stdout.splitlines() if line.startswith("best: "))
    parse_tree(best.removeprefix("best: "))
    assert submitted == 1  # compare's separation; the fit took it from the cache
    assert DEFAULT_API_KEY not in run.stdout + run.stderr


def test_compare_fit_ensemble_needs_references_and_two_providers(demo_dir: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "stemkit", "compare", str(demo_dir / "mixture.wav"), "-p", "dsp", "--fit-ensemble"],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 2
    assert "--fit-ensemble needs --references" in run.stderr
    assert "Traceback" not in run.stderr
