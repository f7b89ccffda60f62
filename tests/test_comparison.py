"""studio.comparison on a temporary models folder with well-formed manifest/metrics/history files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emotion.labels import FER2013_LABELS
from emotion.registry import list_models, load
from studio import comparison

LABELS = list(FER2013_LABELS)


def _metrics(name: str, accuracy: float, latency: float, seed: int) -> dict:
    """A metrics.json in the docs/ARCHITECTURE.md format, built from a random confusion matrix."""
    rng = np.random.default_rng(seed)
    matrix = rng.integers(0, 20, (7, 7)) + np.diag(rng.integers(50, 150, 7))

    def block(m: np.ndarray) -> dict:
        recall = np.diag(m) / m.sum(axis=1)
        precision = np.diag(m) / m.sum(axis=0)
        f1 = 2 * precision * recall / (precision + recall)
        return {lab: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                for lab, p, r, f, s in zip(LABELS, precision, recall, f1, m.sum(axis=1), strict=True)}  # fmt: skip

    per_class = block(matrix)
    return {
        "model": name, "split": "PrivateTest", "dataset": "fer2013", "n": int(matrix.sum()), "labels": LABELS,
        "accuracy": accuracy, "macro_f1": accuracy - 0.05, "accuracy_tta": accuracy + 0.01,
        "macro_f1_tta": accuracy - 0.04, "per_class": per_class, "per_class_tta": per_class,
        "confusion_matrix": matrix.tolist(), "confusion_matrix_tta": matrix.tolist(),
        "public_test": {"accuracy": accuracy - 0.01, "macro_f1": accuracy - 0.06}, "parameters": 1000 * seed,
        "file_size_bytes": 500_000 * seed, "latency_ms_per_face": latency, "latency_ms_per_face_tta": 2 * latency,
        "keras_latency_ms_per_face": 30.0, "runtime": "LiteRT", "evaluated_at": "2026-11-21T06:00:00+00:00",
    }  # fmt: skip


def _history(epochs: int, top: float) -> dict:
    accuracy = np.linspace(0.2, top, epochs).tolist()
    return {"epoch": epochs, "best_val_accuracy": top - 0.02, "best_epoch": epochs - 1,
            "history": {"accuracy": accuracy, "loss": [2.0 - a for a in accuracy],
                        "val_accuracy": [a - 0.02 for a in accuracy], "val_loss": [2.1 - a for a in accuracy],
                        "lr": [0.001] * epochs}}  # fmt: skip


def write_models(root: Path) -> Path:
    """models/: alpha and beta (evaluated, with history), gamma (manifest only, not evaluated) and a
    committee of alpha and beta (evaluated, no history). No serving files: for tables and charts only."""
    specs = {"alpha": (0.66, 1.5, 1), "beta": (0.61, 0.4, 2), "gamma": None, "committee": (0.69, 2.1, 3)}
    for name, spec in specs.items():
        folder = root / name
        folder.mkdir(parents=True)
        manifest = {"name": name, "labels": LABELS, "kind": "single", "metrics_file": "metrics.json",
                    "history_file": "history.json", "parameters": 1234}  # fmt: skip
        if name == "committee":
            manifest |= {"kind": "committee", "members": ["alpha", "beta"], "history_file": None}
            manifest.pop("parameters")
        (folder / "manifest.json").write_text(json.dumps(manifest))
        if spec is not None:
            (folder / "metrics.json").write_text(json.dumps(_metrics(name, *spec)))
            if name != "committee":
                (folder / "history.json").write_text(json.dumps(_history(5 + spec[2], spec[0])))
    return root


@pytest.fixture
def models(tmp_path):
    return list_models(write_models(tmp_path / "models"))


def test_table_lists_every_model_and_marks_unevaluated(models):
    table = comparison.model_table(models)
    assert list(table.index) == ["alpha", "beta", "committee", "gamma"]
    assert table.loc["alpha", "Accuracy %"] == pytest.approx(66.0)
    assert table.loc["committee", "Kind"] == "committee"
    assert np.isnan(table.loc["gamma", "Accuracy %"]) and table.loc["gamma", "Evaluated"] == comparison.NOT_EVALUATED
    assert table.loc["gamma", "Parameters"] == 1234  # from the manifest
    assert table.loc["beta", "Size MB"] == pytest.approx(1.0)
    assert np.isnan(table.loc["alpha", "Unseen acc. %"])  # metrics written before that figure existed


def test_unseen_accuracy_column_reads_the_metrics_file(tmp_path):
    root = write_models(tmp_path / "models")
    metrics_path = root / "alpha" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["accuracy_unseen"] = 0.643
    metrics_path.write_text(json.dumps(metrics))
    table = comparison.model_table(list_models(root))
    assert table.loc["alpha", "Unseen acc. %"] == pytest.approx(64.3)


def test_best_values_highlighted(models):
    table = comparison.model_table(models)
    best = comparison.best_rows(table)
    assert best["Accuracy %"] == ["committee"] and best["Latency ms/face"] == ["beta"]
    assert best["Parameters"] == ["alpha"]  # 1000 < 1234 (gamma's manifest) < 2000 < 3000
    html = comparison.styled_table(table).to_html()
    assert comparison.NOT_EVALUATED in html and "font-weight: bold" in html


def test_empty_registry_gives_empty_frames():
    assert comparison.model_table([]).empty
    assert comparison.per_class_f1([]).empty and comparison.history_frame([]).empty
    frame = comparison.published_table([])
    assert set(frame.Source) == {"quoted"} and len(frame) == len(comparison.PUBLISHED)


def test_per_class_and_confusion(models):
    frame = comparison.per_class_f1(models)
    assert set(frame.model) == {"alpha", "beta", "committee"} and len(frame) == 21
    assert frame.f1.between(0, 100).all()
    counts, labels = comparison.confusion(models[0].metrics)
    assert labels == LABELS and counts.shape == (7, 7)
    percent, _ = comparison.confusion(models[0].metrics, normalise=True)
    np.testing.assert_allclose(percent.sum(axis=1), 100.0)
    assert comparison.confusion({}) is None
    empty_row = comparison.confusion({"labels": ["a", "b"], "confusion_matrix": [[0, 0], [1, 3]]}, normalise=True)[0]
    assert empty_row.tolist() == [[0.0, 0.0], [25.0, 75.0]]


def test_labels_of_nearby_points_do_not_overlap():
    # Two models 0.06 ms and 0.2 points apart (vgg and vgg_kd) and one far away.
    x, y, labels = [0.61, 0.67, 4.0], [68.0, 68.2, 70.4], ["vgg_kd", "vgg", "committee + TTA"]
    positions = comparison.label_positions(x, y, labels, (0.0, 5.0), (61.0, 71.0))
    assert positions[2] == "top center", "a free point keeps the default"
    assert positions[0] == "bottom center", "above vgg_kd lies vgg's marker"
    assert positions[1] == "top center", "vgg's own label goes above it, clear of vgg_kd's"
    far = comparison.label_positions([1.0, 4.0], [62.0, 70.0], ["a", "b"], (0.0, 5.0), (61.0, 71.0))
    assert far == ["top center", "top center"]


def test_pareto_front():
    latency = np.array([1.0, 2.0, 3.0, 2.5, np.nan, 1.0])
    accuracy = np.array([60.0, 65.0, 70.0, 64.0, 90.0, 59.0])
    assert comparison.pareto_front(latency, accuracy).tolist() == [True, True, True, False, False, False]
    assert comparison.pareto_front(np.array([1.0, 1.0]), np.array([5.0, 5.0])).tolist() == [True, True]


def test_history_and_published(models):
    frame = comparison.history_frame(models)
    assert set(frame.model) == {"alpha", "beta"} and frame.epoch.min() == 1
    assert frame[(frame.model == "beta") & (frame.metric == "accuracy")].epoch.max() == 7
    published = comparison.published_table(models)
    ours = published[published.Source == "measured here"]
    assert set(ours.Result) >= {"ours: committee", "ours: alpha + flip TTA"} and len(ours) == 6
    assert published["Accuracy %"].is_monotonic_decreasing
    quoted = published.set_index("Result")
    assert quoted.loc["mini-Xception (fer package)", "Accuracy %"] == 58.2
    assert not any("`" in text for text in published.Result), "labels are plain text, not Markdown"
    assert (ours["Accuracy %"] == ours["Accuracy %"].round(1)).all(), "72.1, never 72.0814"
    assert quoted.loc["Best published single CNNs, FER2013 only", "Range"] == "73–74"


def test_tta_is_named_as_each_model_serves_it(tmp_path):
    """A net whose TTA figures are ten crops is never labelled flip (the table, published rows)."""
    root = write_models(tmp_path / "models")
    metrics = json.loads((root / "beta" / "metrics.json").read_text())
    (root / "beta" / "metrics.json").write_text(json.dumps({**metrics, "tta_mode": "crops"}))
    models = list_models(root)
    table = comparison.model_table(models)
    assert table.loc["beta", "TTA"] == "ten crops" and table.loc["alpha", "TTA"] == "flip"
    assert table.loc["gamma", "TTA"] == ""  # not evaluated
    ours = set(comparison.published_table(models).Result)
    assert {"ours: beta + ten crops TTA", "ours: alpha + flip TTA"} <= ours and "ours: beta + flip TTA" not in ours


def test_confident_mistakes():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.7, 0.3]])
    y_true = np.array([0, 0, 0, 0, 1])
    mistakes = comparison.confident_mistakes(probs, y_true, per_class=2)
    assert mistakes[0].tolist() == [3, 1] and mistakes[1].tolist() == [4]
    assert comparison.label_index_map(["happy", "anger"], ["angry", "happy"]).tolist() == [1, 0]
    assert comparison.label_index_map(["happy"], ["angry", "happy"]) is None


def write_tiny_tflite(folder: Path) -> Path:
    """A real, tiny, untrained 7-class TFLite model (conv + dense) with its manifest in `folder`."""
    keras = pytest.importorskip("keras")
    from training.export import to_tflite

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(to_tflite(keras.Model(inputs, outputs), quantize=False))
    (folder / "manifest.json").write_text(json.dumps({"name": folder.name, "labels": LABELS}))
    return folder


@pytest.mark.slow
def test_predict_images_with_a_real_tflite_model(tmp_path):
    write_tiny_tflite(tmp_path / "tiny")
    model = load("tiny", models_dir=tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (300, 48, 48), dtype=np.uint8)
    seen = []
    probs = comparison.predict_images(model, images, batch_size=128, progress=seen.append)
    assert probs.shape == (300, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert seen[-1] == 1.0 and len(seen) == 3
    np.testing.assert_allclose(probs[:5], model.predict_faces(list(images[:5])), atol=1e-5)


def test_a_label_boxed_in_on_four_sides_goes_diagonal():
    """Near the left axis (above and below would be clipped, left is out) with a marker on its right,
    a label goes above and to the right, where nothing lies, rather than over that marker."""
    x, y, labels = [0.1, 0.3], [69.3, 69.24], ["vgg_lean_slim", "vgg_wide"]
    positions = comparison.label_positions(x, y, labels, (0.0, 2.0), (60.0, 72.0))
    assert positions[0] == "top right"
    assert positions[1] != "top center", "vgg_wide's label keeps clear of the one placed before it"


def test_label_positions_keep_labels_inside_the_plot():
    """A point in the top-left corner: a label above it or left of it would be clipped."""
    positions = comparison.label_positions([0.0], [72.0], ["vgg_wide_ft + TTA"], (0.0, 8.0), (62.0, 72.0))
    assert positions[0] == "bottom right", "the one place wholly inside: below and right of the point"
    # Away from the edges the first choice, above, stands.
    assert comparison.label_positions([4.0], [67.0], ["vgg"], (0.0, 8.0), (62.0, 72.0)) == ["top center"]


def _write_lineage_models(root: Path) -> list:
    """models/ shaped like the shipped ones but named so that no name pattern gives the lineage away:
    a family "wide" (root, another seed, a warm restart of that seed, a fine-tune of the restart,
    a fine-tune of the root), a family "small" (root and a distilled child) and a committee."""
    runs = {  # name: (backbone, init_from, teacher, seed, learning rate, accuracy)
        "wide": ("wide", "", "", 1, 0.002, 0.69),
        "p": ("wide", "", "", 7, 0.002, 0.66),
        "q": ("wide", "p", "", 7, 0.001, 0.68),
        "r": ("wide", "q", "", 7, 0.0002, 0.691),
        "s": ("wide", "wide", "", 1, 0.0002, 0.705),
        "small": ("small", "", "", 1, 0.002, 0.68),
        "t": ("small", "small", "board", 1, 0.0003, 0.67),
    }
    for name, (backbone, init, teacher, seed, lr, accuracy) in runs.items():
        folder = root / name
        folder.mkdir(parents=True)
        manifest = {"name": name, "labels": LABELS, "backbone": backbone, "config_file": "config.json",
                    "metrics_file": "metrics.json", "created": "2026-11-21T00:00:00+00:00"}  # fmt: skip
        (folder / "manifest.json").write_text(json.dumps(manifest))
        config = {"model": backbone, "name": name, "init_from": init, "teacher": teacher, "seed": seed,
                  "learning_rate": lr, "restart_lr_scale": 0.5}  # fmt: skip
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(json.dumps(_metrics(name, accuracy, 1.0, 1)))
    board = root / "board"
    board.mkdir()
    (board / "manifest.json").write_text(
        json.dumps({"name": "board", "labels": LABELS, "kind": "committee", "members": ["s", "small"]})
    )
    return list_models(root)


def test_lineage_comes_from_each_models_config(tmp_path):
    models = _write_lineage_models(tmp_path / "models")
    lineage = comparison.lineages(models)
    relations = {name: (lin.family, lin.relation, lin.parent) for name, lin in lineage.items()}
    assert relations == {
        "board": ("committee", "committee", ""),
        "wide": ("wide", "from scratch", ""),
        "p": ("wide", "seed", ""),
        "q": ("wide", "restart", "p"),  # half the parent's rate: a new warm cycle
        "r": ("wide", "fine-tune", "q"),
        "s": ("wide", "fine-tune", "wide"),
        "small": ("small", "from scratch", ""),
        "t": ("small", "distilled", "small"),
    }
    assert [n for n, lin in lineage.items() if lin.is_checkpoint] == ["p", "q", "r", "s", "t"]
    assert lineage["q"].describe() == "warm restart of p" and lineage["p"].describe() == "seed 7 of wide"
    assert lineage["t"].describe() == "small distilled from board"
    assert comparison.Lineage("small", "distilled", "t", "board", scene_views=True).describe() == (
        "t distilled from board on the app's crops too"
    )
    assert lineage["board"].describe() == "soft vote of 2: s, small"
    order = comparison.family_order(models, lineage)
    assert order == ["wide", "s", "r", "q", "p", "small", "t", "board"]  # roots first, then by accuracy
    table = comparison.model_table(models)
    assert table.loc["r", "Family"] == "wide" and table.loc["r", "Lineage"] == "fine-tune of q"
    summary = comparison.family_summary(table, lineage)
    assert summary == {"wide": "4 checkpoints folded; best s (70.5)", "small": "1 checkpoint folded; best small (68.0)"}
    shown = comparison.family_summary(table, lineage, shown=["s"])  # the app's default stays in view
    assert shown["wide"] == "3 checkpoints folded; best s (70.5)"


def test_models_without_config_are_their_own_family(models):
    lineage = comparison.lineages(models)
    assert {n: lin.relation for n, lin in lineage.items()} == {
        "alpha": "from scratch", "beta": "from scratch", "committee": "committee", "gamma": "from scratch"}  # fmt: skip
    assert not any(lin.is_checkpoint for lin in lineage.values())


def test_family_colors_keep_every_model_distinct(tmp_path):
    models = _write_lineage_models(tmp_path / "models")
    lineage = comparison.lineages(models)
    order = comparison.family_order(models, lineage)
    colors = comparison.family_colors(order, lineage)
    assert set(colors) == set(order) and len(set(colors.values())) == len(order)

    def hue(css: str) -> str:  # the dominant channel: blue, green or red
        r, g, b = (int(v) for v in css[4:-1].split(","))
        return "rgb"[int(np.argmax([r, g, b]))] if max(r, g, b) - min(r, g, b) > 20 else "grey"

    assert {hue(colors[n]) for n in ("wide", "p", "q", "r", "s")} == {"b"}  # one family, one hue
    assert {hue(colors[n]) for n in ("small", "t")} == {"g"} and hue(colors["board"]) == "r"


def test_log_ticks_read_as_plain_numbers():
    assert comparison.log_ticks(0.45, 14.0) == [0.5, 1.0, 2.0, 5.0, 10.0]
    assert [comparison.tick_text(t) for t in comparison.log_ticks(0.45, 14.0)] == ["0.5", "1", "2", "5", "10"]
    assert comparison.log_ticks(0.6, 0.9) == [0.5, 1.0]  # inside one step: its two neighbours
    assert comparison.log_ticks(0.0, 1.0) == []


def test_pareto_points_name_only_the_front_and_roots_when_crowded(tmp_path):
    models = _write_lineage_models(tmp_path / "models")
    lineage = comparison.lineages(models)
    table = comparison.model_table(models)
    frame, x_range, y_range = comparison.pareto_points(table, lineage, max_labelled=100)
    assert len(frame) == 2 * 7 and (frame["shown_label"] == frame["label"]).all()  # the committee has no metrics
    assert x_range[0] < frame["log_latency"].min() and y_range[1] > frame["accuracy"].max()
    crowded, _, _ = comparison.pareto_points(table, lineage, max_labelled=4)
    named = set(crowded.loc[crowded["shown_label"] != "", "label"])
    roots = {"wide", "small"}  # the first runs, without TTA
    assert roots <= named and named == roots | set(crowded.loc[crowded["front"], "label"])
    assert "p" not in named  # a checkpoint off the front is left to the hover text
    assert comparison.pareto_points(table.iloc[:0], lineage) is None


def _add_model(root: Path, name: str, config: dict, accuracy: float, **manifest) -> None:
    """One more model folder in root: its manifest (with `manifest`'s extra keys), config.json, metrics."""
    folder = root / name
    folder.mkdir()
    base = {"name": name, "labels": LABELS, "config_file": "config.json", "metrics_file": "metrics.json"}
    (folder / "manifest.json").write_text(json.dumps({**base, **manifest}))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps(_metrics(name, accuracy, 1.0, 1)))


def test_a_soup_is_its_own_lineage_shown_unfolded(tmp_path):
    root = tmp_path / "models"
    _write_lineage_models(root)
    config = {
        "model": "wide",
        "name": "u",
        "init_from": "wide",
        "seed": 1,
        "learning_rate": 0.0002,
        "soup_of": ["s", "wide"],
    }  # fmt: skip  (a soup's config.json is its first member's)
    _add_model(root, "u", config, 0.71, backbone="wide", soup={"members": ["s", "wide"]})
    lineage = comparison.lineages(list_models(root))["u"]
    assert (lineage.family, lineage.relation, lineage.members) == ("wide", "soup", ("s", "wide"))
    assert not lineage.is_checkpoint and lineage.describe() == "weight average of s, wide"


def test_a_slimmed_net_starts_its_own_family(tmp_path):
    """init_from a wider backbone (training.prune) is no fine-tune of the parent's family."""
    root = tmp_path / "models"
    _write_lineage_models(root)
    config = {"model": "narrow", "name": "lean", "init_from": "wide", "teacher": "wide", "learning_rate": 0.001}
    _add_model(root, "lean", config, 0.70, backbone="narrow")
    lineage = comparison.lineages(list_models(root))["lean"]
    assert (lineage.family, lineage.relation, lineage.parent) == ("narrow", "slimmed", "wide")
    assert not lineage.is_checkpoint and lineage.describe() == "slimmed from wide, distilled from wide"


def test_a_net_reading_smaller_faces_starts_its_own_family(tmp_path):
    """init_from a model of the same backbone at another input size is no fine-tune of its family either."""
    root = tmp_path / "models"
    _write_lineage_models(root)
    config = {"model": "wide", "name": "wide36", "init_from": "wide", "teacher": "wide", "input_size": 36}
    _add_model(root, "wide36", config, 0.68, backbone="wide", input_size=[36, 36])
    lineage = comparison.lineages(list_models(root))["wide36"]
    assert (lineage.family, lineage.relation, lineage.parent) == ("wide 36px", "resized", "wide")
    assert not lineage.is_checkpoint and lineage.describe() == "resized from wide, distilled from wide"


def test_latency_provenance_names_models_measured_alone(tmp_path):
    root = write_models(tmp_path / "models")
    assert "measured alone" in comparison.latency_provenance(list_models(root))
    for name in ("alpha", "beta", "committee"):  # as scripts/benchmark_models.py --record leaves them
        path = root / name / "metrics.json"
        metrics = json.loads(path.read_text()) | {"latency_run": {"measured_at": "2026-11-29T17:40:05+00:00"}}
        path.write_text(json.dumps(metrics))
    note = comparison.latency_provenance(list_models(root))
    assert "3 models measured together in one interleaved run (2026-11-29 17:40 UTC)" in note
    assert "alone" not in note  # gamma has no latency to explain
    assert comparison.latency_provenance([m for m in list_models(root) if m.name == "gamma"]) == ""
    path = root / "alpha" / "metrics.json"  # re-measured alone in a later run, on two threads
    metrics = json.loads(path.read_text()) | {"latency_run": {"measured_at": "2026-11-30T09:00:00", "threads": 2}}
    path.write_text(json.dumps(metrics))
    note = comparison.latency_provenance(list_models(root))
    assert "1 model measured together in one interleaved run (2026-11-30 09:00 UTC, 2 LiteRT threads a call)" in note
    assert "2 models measured together in one interleaved run (2026-11-29 17:40 UTC)" in note


@pytest.mark.slow
def test_benchmark_models_records_interleaved_latencies_in_metrics(tmp_path, monkeypatch):
    """scripts/benchmark_models.py --record: every mode's figures measured in interleaved rounds land in the
    fields the page reads; the other figures stay; a model without a metrics file is refused."""
    from emotion import config, registry
    from tests.script_support import load_script

    for name in ("one", "two", "bare"):
        write_tiny_tflite(tmp_path / "models" / name)
    for name in ("one", "two"):
        metrics = _metrics(name, 0.6, 9.0, 1) | {"tta_modes": {"flip": {"latency_ms_per_face": 9.0}}}
        (tmp_path / "models" / name / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    registry.clear_cache()
    script = load_script("benchmark_models")

    assert script.main(["--models", "one", "two", "--rounds", "2", "--calls", "5", "--tta-calls", "2", "--record"]) == 0

    for name in ("one", "two"):
        metrics = json.loads((tmp_path / "models" / name / "metrics.json").read_text())
        assert metrics["latency_run"]["models"] == ["one", "two"] and metrics["latency_run"]["rounds"] == 2
        assert metrics["latency_run"]["threads"] == config.serve_threads()
        assert 0 < metrics["latency_ms_per_face"] < 9.0 and metrics["latency_ms_per_face_cpu"] > 0
        assert metrics["latency_ms_per_face_p95"] >= metrics["latency_ms_per_face"]
        # served TTA (flip by default, no manifest choice) is the flip mode's figure, two passes
        assert metrics["latency_ms_per_face_tta"] == metrics["tta_modes"]["flip"]["latency_ms_per_face"] < 9.0
        assert metrics["accuracy"] == 0.6 and metrics["keras_latency_ms_per_face"] == 30.0
    for wrong in (["one", "bare"], ["one", "nope"]):  # no metrics file to record into; no such model
        with pytest.raises(SystemExit):
            script.main(["--models", *wrong, "--rounds", "1", "--calls", "1", "--record"])
    registry.clear_cache()
