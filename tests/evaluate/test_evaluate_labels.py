"""Short provider labels: readable columns, unique, never a URL or a secret."""

from __future__ import annotations

from stemkit.evaluate.labels import MAX_LABEL, short_labels


def test_a_unique_provider_is_labelled_by_its_name_alone() -> None:
    specs = ["stemsplit?base_url=http://127.0.0.1:54321&quality=best", "ezstems?base_url=http://127.0.0.1:1&stems=4"]
    assert short_labels(specs) == ["stemsplit", "ezstems"]


def test_providers_with_the_same_name_show_the_options_that_differ() -> None:
    assert short_labels(["dsp", "dsp?kernel=31"]) == ["dsp", "dsp(kernel=31)"]
    assert short_labels(["ezstems?stems=2&format=wav", "ezstems?stems=4&format=wav"]) == [
        "ezstems(stems=2)",
        "ezstems(stems=4)",
    ]


def test_chains_targets_and_long_specs_stay_short_and_unique() -> None:
    labels = short_labels(["onnx:/models/very/long/path/custom.onnx", "stemsplit | onnx:htdemucs | dsp", "dsp", "dsp"])
    assert labels[0] == "onnx:custom.onnx"
    assert labels[1] == "stemsplit|onnx:htdemucs|dsp"
    assert labels[2] != labels[3]
    assert all(len(label) <= MAX_LABEL + 2 for label in labels)


def test_secrets_never_appear_in_a_label() -> None:
    (label,) = short_labels(["stemsplit?api_key=sk-very-secret&quality=best"])
    assert "secret" not in label
