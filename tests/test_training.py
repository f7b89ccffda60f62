"""The training pipeline on tiny synthetic data: loaders, augmentation, a 2-epoch run whose
model the registry loads and the CLI uses, --resume, evaluation."""

from __future__ import annotations

import gzip
import itertools
import json

import numpy as np
import pytest
from PIL import Image

from emotion.datasets import copies_in, find_dirty
from tests.support import csv_bytes_for_tests
from training import data as datasets
from training.evaluate import classification_metrics, confusion_matrix


def _synthetic_face(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A learnable image: a bright square whose position encodes the class, plus noise."""
    image = rng.integers(0, 60, (size, size)).astype(np.uint8)
    row, col = divmod(label, 3)
    image[4 + row * 14 : 16 + row * 14, 4 + col * 14 : 16 + col * 14] = 230
    return image


def _write_csv(path, per_split=(140, 35, 35), classes=7, seed=0, extra_rows=""):
    rng = np.random.default_rng(seed)
    rows = []
    for usage, count in zip(datasets.FER_SPLITS, per_split, strict=True):
        for i in range(count):
            label = i % classes
            rows.append((label, _synthetic_face(label, rng), usage))
    body = csv_bytes_for_tests(rows).decode() + extra_rows
    path.write_bytes(gzip.compress(body.encode()))
    return path


def test_csv_loader_splits_and_skips_malformed_rows(tmp_path):
    bad = "9,1 2 3,Training\n3,not numbers,Training\n2," + " ".join(["7"] * 2304) + ",Elsewhere\n"
    dataset = datasets.load_fer2013_csv(_write_csv(tmp_path / "fer.csv.gz", extra_rows=bad))
    assert {k: len(v) for k, v in dataset.splits.items()} == {"Training": 140, "PublicTest": 35, "PrivateTest": 35}
    assert len(dataset.problems) == 3
    assert dataset.splits["Training"].images[0].shape == (48, 48)


def test_csv_loader_rejects_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("label,pixels\n1,2 3\n")
    with pytest.raises(ValueError, match="missing column"):
        datasets.load_fer2013_csv(path)


def _write_folder(root, classes, per_class=12, size=(64, 80)):
    rng = np.random.default_rng(1)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            grey = _synthetic_face(k % 7, rng, 48)
            Image.fromarray(np.dstack([grey] * 3)).resize(size).save(root / name / f"{i}.jpg")


def test_folder_loader_nine_classes_with_stratified_split(tmp_path):
    classes = ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise", "uncertain"]
    _write_folder(tmp_path / "ds", classes, per_class=10)
    (tmp_path / "ds" / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    dataset = datasets.load_folder_dataset(tmp_path / "ds", val_fraction=0.2, test_fraction=0.2)
    assert dataset.labels == (
        "angry",
        "contempt",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "sad",
        "surprise",
        "uncertain",
    )
    sizes = {k: len(v) for k, v in dataset.splits.items()}
    assert sizes == {"Training": 54, "PublicTest": 18, "PrivateTest": 18}
    for split in dataset.splits.values():  # every class in every split: stratified
        assert len(np.unique(split.labels)) == 9
    assert any("broken.jpg" in p for p in dataset.problems)
    assert dataset.splits["Training"].images[0].shape == (80, 64, 3)


def test_folder_loader_with_split_folders_and_a_missing_class(tmp_path):
    _write_folder(tmp_path / "ds" / "train", ["happy", "sad", "neutral"], per_class=6)
    _write_folder(tmp_path / "ds" / "test", ["happy", "sad"], per_class=3)  # no "neutral" in test
    dataset = datasets.load_folder_dataset(tmp_path / "ds")
    assert dataset.labels == ("happy", "neutral", "sad")
    assert set(dataset.splits) == {"Training", "PublicTest", "PrivateTest"}
    assert len(dataset.splits["PrivateTest"]) == 6


def test_folder_loader_can_train_on_detected_face_crops(tmp_path, photos_dir):
    """--face-crops: each real photo becomes its largest face's crop; a photo with no face is
    dropped and reported, not silently kept whole."""
    import shutil

    from emotion.detectors import crop_largest_face

    root = tmp_path / "photos_ds"
    for label, names in {"happy": ["obama.jpg", "biden.jpg"], "neutral": ["obama2.jpg", "32bit.png"]}.items():
        (root / label).mkdir(parents=True)
        for name in names:
            shutil.copy(photos_dir / name, root / label / name)
    Image.new("RGB", (320, 240), (128, 128, 128)).save(root / "neutral" / "wall.png")

    whole = datasets.load_folder_dataset(root, val_fraction=0.0, test_fraction=0.0)
    cropped = datasets.load_folder_dataset(root, val_fraction=0.0, test_fraction=0.0, crop_faces=crop_largest_face)
    assert len(whole.splits["Training"]) == 5 and len(cropped.splits["Training"]) == 4
    assert cropped.problems == ["wall.png: no face found"]
    by_source = dict(zip(whole.splits["Training"].sources, whole.splits["Training"].images, strict=True))
    for source, face in zip(cropped.splits["Training"].sources, cropped.splits["Training"].images, strict=True):
        photo = by_source[source]
        assert face.shape[0] * face.shape[1] < 0.6 * photo.shape[0] * photo.shape[1], source
        assert 0.6 < face.shape[0] / face.shape[1] < 1.6, f"{source}: a face crop is roughly square"
        assert crop_largest_face(face) is not None, f"{source}: the crop still shows the face"


def test_find_dirty_marks_later_duplicates_and_blanks():
    a = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    split = datasets.Split(
        [a, a.copy(), np.full((48, 48), 9, np.uint8), a[::-1].copy()], np.zeros(4, np.int64), list("abcd")
    )
    duplicate, blank = find_dirty(split.images)
    assert duplicate.tolist() == [False, True, False, False]
    assert blank.tolist() == [False, False, True, False]


def test_copies_in_finds_test_images_seen_in_training():
    rng = np.random.default_rng(3)
    train_images = [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(5)]
    fresh = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    train = datasets.Split(train_images, np.arange(5))
    test = datasets.Split([train_images[2].copy(), fresh, train_images[4].copy()], np.array([2, 0, 4]))
    assert copies_in(test.images, train.images).tolist() == [True, False, True]
    assert not copies_in([fresh[:, :40].copy()], train.images).any()


def test_class_weights_favour_rare_classes():
    weights = datasets.class_weights(np.array([0] * 90 + [1] * 10), 2, power=1.0)
    assert weights[1] == pytest.approx(9 * weights[0])
    assert datasets.class_weights(np.array([0, 1, 1]), 2, power=0.0) == {0: 1.0, 1: 1.0}


@pytest.mark.parametrize("recipe", ["studio", "vggnet2021"])
def test_augmentation_keeps_shape_and_range_and_is_the_identity_at_inference(recipe):
    from training.augment import build_augmenter

    x = np.random.default_rng(0).random((16, 48, 48, 1), dtype=np.float32)
    augmenter = build_augmenter(recipe=recipe)
    out = np.asarray(augmenter(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, x)
    np.testing.assert_array_equal(np.asarray(augmenter(x, training=False)), x)
    with pytest.raises(ValueError, match="studio"):
        build_augmenter(recipe="imagenet")


def test_augmentation_uses_no_tensorflow():
    """The training graph must run under JAX and PyTorch, where TensorFlow is missing (the GPU
    bundle's end-to-end test trains under JAX)."""
    import inspect

    from training import augment

    assert "tensorflow" not in inspect.getsource(augment) and "tf." not in inspect.getsource(augment)


def test_the_training_model_saves_and_serves_the_net_alone(tmp_path):
    import keras

    from training.augment import backbone_of, build_augmenter, with_augmentation
    from training.backbones import build_backbone

    net = build_backbone("vgg", (48, 48, 1), 7)
    trainer = with_augmentation(net, build_augmenter())
    trainer.compile(optimizer="sgd", loss="categorical_crossentropy")
    trainer.save(tmp_path / "last.keras")
    loaded = keras.models.load_model(tmp_path / "last.keras")
    assert backbone_of(loaded).count_params() == net.count_params() == loaded.count_params()
    assert backbone_of(net) is net, "a plain net is its own backbone"
    x = np.random.default_rng(1).random((2, 48, 48, 1), dtype=np.float32)
    expected = np.asarray(net(x, training=False))
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, atol=1e-6)


def test_mixup_blends_images_targets_and_weights_alike():
    from training.augment import mixup

    rng = np.random.default_rng(0)
    images = rng.random((16, 48, 48, 1)).astype(np.float32)
    targets = np.eye(16, dtype=np.float32)  # one class per image: a target names its partner
    weights = np.linspace(0.5, 2.0, 16).astype(np.float32)
    mixed, mixed_targets, mixed_weights = mixup(images, targets, weights, 0.4, np.random.default_rng(0))
    assert mixed.shape == images.shape and mixed.min() >= 0.0 and mixed.max() <= 1.0
    assert mixed.dtype == mixed_targets.dtype == mixed_weights.dtype == np.float32
    assert np.allclose(mixed_targets.sum(axis=1), 1.0)
    assert not np.allclose(mixed, images), "images were mixed"
    # Output i is lam * own + (1 - lam) * partner, one lambda (>= 0.5) for image, target and weight.
    lam = np.diag(mixed_targets)
    assert (lam >= 0.5 - 1e-6).all(), "each output stays mostly its own image"
    partner = np.where(np.isclose(lam, 1.0), np.arange(16), np.argsort(mixed_targets, axis=1)[:, -2])
    blend = lam[:, None, None, None] * images + (1 - lam[:, None, None, None]) * images[partner]
    assert np.allclose(mixed, blend, atol=1e-5)
    assert np.allclose(mixed_weights, lam * weights + (1 - lam) * weights[partner], atol=1e-5)


def test_plateau_schedule_cuts_like_reduce_lr_on_plateau():
    from training.train import TrainConfig, lr_at

    config = TrainConfig(schedule="plateau", learning_rate=0.01, plateau_factor=0.5, plateau_patience=2)
    accuracies = [0.5, 0.6, 0.6, 0.59, 0.6, 0.61, 0.61, 0.61, 0.61]
    lrs = [lr_at(e, config, accuracies) for e in range(len(accuracies) + 1)]
    # No gain at epochs 2, 3, 4 (0-based): more than 2 in a row, so epoch 5 starts at half the rate;
    # 0.61 is a gain, then 6, 7, 8 bring none: epoch 9 starts at a quarter.
    assert lrs == pytest.approx([0.01] * 5 + [0.005] * 4 + [0.0025])
    assert lr_at(0, config) == 0.01, "no history yet: the initial rate"


def test_metrics_on_known_predictions():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    m = classification_metrics(y_true, y_pred, ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["recall"] == pytest.approx(0.5)
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))


def test_learning_rate_schedule_with_and_without_a_warm_restart():
    from training.train import TrainConfig, lr_at

    one = TrainConfig(epochs=10, warmup_epochs=2, learning_rate=1.0)
    lrs = [lr_at(e, one) for e in range(10)]
    assert lrs[:2] == [0.5, 1.0] and lrs[-1] < 0.05 and lr_at(10, one) == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:])), "cosine decays monotonically"

    two = TrainConfig(epochs=20, warmup_epochs=2, learning_rate=1.0, restart_epochs="10", restart_lr_scale=0.5)
    assert [lr_at(e, two) for e in range(10)] == pytest.approx(lrs), "the first cycle is unchanged"
    second = [lr_at(e, two) for e in range(10, 20)]
    assert second == pytest.approx([0.5 * v for v in lrs]), "the restart repeats the cycle at half the peak"

    three = TrainConfig(epochs=30, warmup_epochs=2, learning_rate=1.0, restart_epochs="20,10", restart_lr_scale=0.5)
    assert [lr_at(e, three) for e in range(20)] == pytest.approx([lr_at(e, two) for e in range(20)])
    assert [lr_at(e, three) for e in range(20, 30)] == pytest.approx([0.25 * v for v in lrs]), "each restart halves"


def test_fit_to_budget_sizes_one_cosine_cycle_to_the_minutes_left():
    from training.train import TrainConfig, check_config, epochs_that_fit, lr_at

    config = TrainConfig(epochs=300, time_budget_min=10.0, schedule="cosine", fit_to_budget=True)
    check_config(config)
    # Two epochs took 60 s of 600; 540 s left at 5 s an epoch, 90% of it spent: 97 more epochs.
    assert epochs_that_fit(10.0, elapsed_s=60, epoch_s=5.0, done=2, most=300) == 2 + 97
    assert epochs_that_fit(10.0, elapsed_s=60, epoch_s=0.1, done=2, most=300) == 300, "never past the epochs asked"
    assert epochs_that_fit(10.0, elapsed_s=700, epoch_s=5.0, done=2, most=300) == 3, "over budget: one more epoch"
    # Re-sized every epoch, the cycle's end closes in on the budget and never passes it.
    elapsed, done, end = 60.0, 2, 0
    while done < end or not end:
        end = epochs_that_fit(10.0, elapsed, 5.0, done, 300)
        elapsed, done = elapsed + 5.0, done + 1
    assert 590 <= elapsed <= 600
    # The warm-up epochs' rates do not depend on the length fitted after them.
    short, long = TrainConfig(epochs=20, learning_rate=1.0), TrainConfig(epochs=300, learning_rate=1.0)
    assert [lr_at(e, short) for e in range(2)] == [lr_at(e, long) for e in range(2)]
    for bad in (
        TrainConfig(fit_to_budget=True),  # no budget
        TrainConfig(fit_to_budget=True, time_budget_min=5.0, schedule="plateau"),
        TrainConfig(fit_to_budget=True, time_budget_min=5.0, epochs=30, restart_epochs="10"),
        TrainConfig(fit_to_budget=True, time_budget_min=5.0, warmup_epochs=1),
    ):
        with pytest.raises(ValueError):
            check_config(bad)


def test_early_stopping_patience_restarts_with_each_cycle():
    from training.train import TrainConfig, epochs_without_gain

    plain = TrainConfig(epochs=30, patience=3)
    # Without restarts: epochs since the best one (best at epoch 2; epochs 3, 4, 5 bring no gain).
    assert [epochs_without_gain(n, 2, plain) for n in (3, 5, 6)] == [0, 2, 3]
    assert epochs_without_gain(0, -1, plain) == 0, "a fresh run has waited for nothing"

    cycled = TrainConfig(epochs=30, patience=3, restart_epochs="10,20")
    assert epochs_without_gain(6, 2, cycled) == 3, "the first cycle counts as before"
    # A run stopped early in cycle 1 may be resumed into cycle 2: the restart starts the count afresh.
    assert epochs_without_gain(10, 2, cycled) == 0
    assert [epochs_without_gain(n, 2, cycled) for n in (11, 12, 13)] == [1, 2, 3]
    assert epochs_without_gain(13, 11, cycled) == 1, "a gain inside the cycle counts from that gain"
    assert epochs_without_gain(20, 11, cycled) == 0, "the end of a cycle never stops the one after it"
    assert epochs_without_gain(23, 11, cycled) == 3


def test_restart_epochs_are_checked_and_old_single_restart_configs_still_resume(tmp_path, monkeypatch):
    from training import train

    with pytest.raises(SystemExit):
        train.resolve_config(["--data", "x.csv", "--epochs", "20", "--restart-epochs", "24"])
    monkeypatch.setattr(train, "REPO_ROOT", tmp_path)
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "vgg", "name": "old", "epochs": 64, "restart_epoch": 24}))
    config, _, _ = train.resolve_config(
        ["--name", "old", "--data", "x.csv", "--resume", "--epochs", "94", "--restart-epochs", "24,64"]
    )
    assert train.restart_points(config) == [24, 64]
    config, _, _ = train.resolve_config(["--name", "old", "--data", "x.csv", "--resume"])
    assert config.restart_epochs == "24", "a config saved with the old restart_epoch field keeps its schedule"


def test_resume_starts_from_the_runs_saved_config_and_keeps_its_preprocessing(tmp_path, monkeypatch):
    from training import train

    monkeypatch.setattr(train, "REPO_ROOT", tmp_path)
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "vgg", "name": "old", "equalize": False, "epochs": 24}))
    config, resume, _ = train.resolve_config(["--name", "old", "--data", "x.csv", "--resume", "--epochs", "64"])
    assert resume and config.equalize is False and config.epochs == 64, "saved config < flags"
    with pytest.raises(SystemExit):  # argparse's error: changing the inputs would invalidate the weights
        train.resolve_config(["--name", "old", "--data", "x.csv", "--resume", "--equalize", "true"])
    config, _, _ = train.resolve_config(["--name", "old", "--data", "x.csv"])
    assert config.equalize is True, "without --resume the saved run is not read"


def test_scene_views_is_a_share_and_needs_the_csv():
    from training import train

    with pytest.raises(SystemExit):
        train.resolve_config(["--data", "x.csv", "--scene-views", "1.5"])
    with pytest.raises(SystemExit):  # a GPU bundle's packed arrays have no scenes to make
        train.resolve_config(["--data", "runs/gpu_bundle/data.npz.xz", "--scene-views", "0.5"])
    config, _, _ = train.resolve_config(["--data", "x.csv", "--scene-views", "0.5"])
    assert config.scene_views == 0.5


@pytest.mark.shared
@pytest.mark.slow
def test_scene_views_give_training_the_apps_crops_and_selection_both_views(fer2013_csv, tmp_path, monkeypatch):
    """x_scene holds each Training face as the app's detector cuts it (its own input where it was not
    found); PublicTest's found views join the selection set; a second load reads the run's cache."""
    from training import scenes, train

    dataset = datasets.load_fer2013_csv(fer2013_csv, splits=("Training", "PublicTest"))
    train_split = dataset.splits["Training"].subset(np.arange(40))
    val_split = dataset.splits["PublicTest"].subset(np.arange(30))
    config = train.TrainConfig(model="vgg_lean", equalize=False, scene_views=0.5, seed=3)

    def fresh_arrays():
        return train.Arrays(
            x_train=datasets.to_inputs(train_split, (48, 48), 1, False),
            targets=np.eye(7, dtype=np.float32)[train_split.labels],
            sample_weights=np.ones(40, np.float32),
            x_val=datasets.to_inputs(val_split, (48, 48), 1, False),
            y_val=val_split.labels.copy(),
            num_classes=7,
        )

    arrays = fresh_arrays()
    train.add_scene_views(arrays, config, train_split, val_split, tmp_path / "scene_views.npz")
    assert arrays.x_scene.shape == arrays.x_train.shape
    changed = np.abs(arrays.x_scene - arrays.x_train).reshape(40, -1).mean(axis=1) > 1e-3
    assert changed.sum() >= 20, "most faces are found, and a detector's crop is not the dataset's"
    assert 30 + 15 <= len(arrays.x_val) == len(arrays.y_val) < 60
    np.testing.assert_array_equal(arrays.y_val[:30], val_split.labels)

    monkeypatch.setattr(scenes, "scene_views", lambda *a, **k: pytest.fail("the cache was not read"))
    again = fresh_arrays()
    train.add_scene_views(again, config, train_split, val_split, tmp_path / "scene_views.npz")
    np.testing.assert_array_equal(again.x_scene, arrays.x_scene)
    np.testing.assert_array_equal(again.y_val, arrays.y_val)


def test_bf16_detection_reads_cpu_flags(monkeypatch, tmp_path):
    from training import train

    cpuinfo = tmp_path / "cpuinfo"
    original = train.Path

    def fake_path(value, *rest):
        return cpuinfo if value == "/proc/cpuinfo" else original(value, *rest)

    monkeypatch.setattr(train, "Path", fake_path)
    cpuinfo.write_text("flags\t: fpu avx2 avx512f avx512_bf16\n")
    assert train.cpu_has_bf16()
    cpuinfo.write_text("flags\t: fpu avx2 avx512f\n")
    assert not train.cpu_has_bf16()
    cpuinfo.unlink()
    assert not train.cpu_has_bf16(), "no /proc/cpuinfo (macOS, Windows): float32"


@pytest.mark.slow
def test_two_epoch_run_registers_a_model_the_cli_uses_and_resume_continues(tmp_path, monkeypatch, capsys):
    import emotion.config as config
    import emotion.registry as registry
    from training import train

    models_dir = tmp_path / "models"
    monkeypatch.setattr(config, "MODELS_DIR", models_dir)
    monkeypatch.setattr(train, "MODELS_DIR", models_dir)
    monkeypatch.setattr(train, "REPO_ROOT", tmp_path)
    csv_path = _write_csv(tmp_path / "fer.csv.gz", per_split=(280, 70, 70))
    common = ["--data", str(csv_path), "--model", "vgg", "--name", "tiny", "--batch-size", "32", "--patience", "50"]

    out_dir = train.main([*common, "--epochs", "1", "--precision", "float32"])
    state = json.loads((tmp_path / "runs" / "tiny" / "state.json").read_text())
    assert state["epoch"] == 1
    # Extend the finished run with a warm restart, switching to bf16 compute and mixup on the way.
    restart = ["--resume", "--restart-epochs", "1", "--precision", "mixed_bfloat16", "--mixup", "0.2"]
    out_dir = train.main([*common, "--epochs", "2", *restart])
    state = json.loads((tmp_path / "runs" / "tiny" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]["val_accuracy"]) == 2, "resume continued at epoch 2"
    assert state["history"]["lr"] == pytest.approx([1e-3, 5e-4]), "epoch 2 began a new cycle at half the peak"
    for name in ("model.tflite", "model.keras", "manifest.json", "config.json", "history.json"):
        assert (out_dir / name).is_file()
        (out_dir / name).unlink()
    out_dir = train.main(["--name", "tiny", "--export-only"])  # re-export the best checkpoint, no training
    assert json.loads((tmp_path / "runs" / "tiny" / "state.json").read_text())["epoch"] == 2
    for name in ("model.tflite", "model.keras", "manifest.json", "config.json", "history.json"):
        assert (out_dir / name).is_file()
    config_saved = json.loads((out_dir / "config.json").read_text())
    assert config_saved["epochs"] == 2 and config_saved["model"] == "vgg"
    assert config_saved["precision"] == "mixed_bfloat16" and config_saved["restart_epochs"] == "1"
    assert config_saved["mixup"] == 0.2
    import keras

    served = keras.models.load_model(out_dir / "model.keras")
    assert {layer.dtype_policy.name for layer in served.layers} == {"float32"}, "exports serve float32"

    model = registry.load("tiny", models_dir)
    assert model.labels == datasets.FER2013_LABELS
    probs = model.predict_faces([np.zeros((48, 48), np.uint8)])
    assert probs.shape == (1, 7) and probs.sum() == pytest.approx(1.0, abs=1e-4)

    from training.evaluate import evaluate

    report = evaluate("tiny", data=str(csv_path))
    assert report["n"] == 70 and 0.0 <= report["accuracy"] <= 1.0
    assert (out_dir / "metrics.json").is_file()

    image_path = tmp_path / "face.png"
    Image.fromarray(_synthetic_face(3, np.random.default_rng(5))).save(image_path)
    from studio.cli import main as cli

    capsys.readouterr()  # drop Keras' progress output
    assert cli(["predict", str(image_path), "--no-detect", "--model", "tiny"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[0]["faces"][0]["label"] in datasets.FER2013_LABELS

    # Fine-tune and distil: a 1-epoch run that starts from tiny's weights and learns towards
    # tiny's own flip-TTA answers on the Training images.
    from training import distill

    fits = {"backbone": "vgg", "labels": list(datasets.FER2013_LABELS), "equalize": True}
    start = distill.initial_weights("tiny", fits)
    assert all(np.array_equal(a, b) for a, b in zip(start, served.get_weights(), strict=True))
    smaller = distill.initial_weights("tiny", {**fits, "input_size": [36, 36], "channels": 1})  # same weights
    assert all(np.array_equal(a, b) for a, b in zip(smaller, served.get_weights(), strict=True))
    with pytest.raises(ValueError, match="equalize: True there, False here"):
        distill.initial_weights("tiny", {**fits, "backbone": "vgg_lean", "equalize": False})
    with pytest.raises(ValueError, match="its vgg cannot start a resnet"):  # another layout: no slimming
        distill.initial_weights("tiny", {**fits, "backbone": "resnet", "input_size": [48, 48], "channels": 1})
    assert distill.inherited_settings("tiny")["model"] == "vgg"
    # No --model nor --equalize: both come from tiny.
    student = ["--data", str(csv_path), "--name", "tiny_student", "--epochs", "1", "--precision", "float32"]
    out_dir = train.main([*student, "--init-from", "tiny", "--teacher", "tiny", "--teacher-weight", "0.5"])
    asked = np.load(tmp_path / "runs" / "tiny_student" / "teacher_probs.npz")["probs"]
    training_images = datasets.load_fer2013_csv(csv_path).splits["Training"].images
    assert asked.shape == (280, 7)
    np.testing.assert_allclose(asked, model.predict_faces(training_images, tta=True), atol=1e-6)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert "fine-tuned from tiny" in manifest["description"] and "distilled from tiny" in manifest["description"]
    assert registry.load("tiny_student", models_dir).predict_faces(training_images[:2]).shape == (2, 7)


def test_a_teachers_cached_answers_are_asked_again_once_it_is_recalibrated(tmp_path, monkeypatch):
    """The cache beside a run holds the teacher's served answers: a new temperature or class bias
    (training.evaluate re-fits them) makes them stale, so the teacher is asked again."""
    from emotion import config, registry
    from tests.test_comparison import write_tiny_tflite
    from training.data import Split
    from training.distill import teacher_probabilities

    folder = write_tiny_tflite(tmp_path / "models" / "tiny")
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    registry.clear_cache()
    labels = registry.model_info("tiny").labels
    images = [np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8) for i in range(6)]
    split = Split(images, np.arange(6) % 7, [f"Training {i}" for i in range(6)])
    cache = tmp_path / "teacher_probs.npz"
    first = teacher_probabilities("tiny", split, labels, cache)
    np.testing.assert_array_equal(teacher_probabilities("tiny", split, labels, cache), first)

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(temperature=2.0, class_bias=[0.0, -1.0, 0.0, 0.5, 0.5, 0.0, 0.0])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    registry.clear_cache()
    again = teacher_probabilities("tiny", split, labels, cache)
    assert not np.allclose(again, first), "a recalibrated teacher's answers are not read from the old cache"
    registry.clear_cache()


def test_teacher_targets_blend_with_the_labels():
    from training.distill import blend_targets

    one_hot = np.eye(3, dtype=np.float32)[[0, 2]]
    teacher = np.array([[0.2, 0.8, 0.0], [0.1, 0.1, 0.8]], np.float32)
    np.testing.assert_allclose(blend_targets(one_hot, teacher, 0.25), [[0.8, 0.2, 0.0], [0.025, 0.025, 0.95]])
    np.testing.assert_allclose(blend_targets(one_hot, teacher, 0.0), one_hot)


@pytest.mark.slow
def test_one_epoch_run_on_a_nine_class_folder_dataset(tmp_path, monkeypatch):
    """Any label set: the 9-class photo layout trains, registers with its own labels, and is
    evaluated on its own held-out split."""
    import emotion.config as config
    import emotion.registry as registry
    from training import train
    from training.evaluate import evaluate

    models_dir = tmp_path / "models"
    monkeypatch.setattr(config, "MODELS_DIR", models_dir)
    monkeypatch.setattr(train, "MODELS_DIR", models_dir)
    monkeypatch.setattr(train, "REPO_ROOT", tmp_path)
    classes = ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise", "uncertain"]
    _write_folder(tmp_path / "photos", classes, per_class=10)
    train.main(["--data", str(tmp_path / "photos"), "--name", "nine", "--epochs", "1", "--batch-size", "16"])

    model = registry.load("nine", models_dir)
    assert model.labels == ("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise", "uncertain")
    assert model.predict_faces([np.zeros((80, 64, 3), np.uint8)]).shape == (1, 9)
    with pytest.raises(ValueError, match="pass --data"):
        evaluate("nine", write=False)
    report = evaluate("nine", data=str(tmp_path / "photos"))
    assert report["n"] == 9 and len(report["confusion_matrix"]) == 9  # 10% of each class held out


def test_describe_says_how_a_model_was_made():
    from training.export import describe

    assert describe({"model": "vgg"}, "fer2013", 10) == "vgg backbone trained from scratch on fer2013 (10 images)"
    assert describe({"model": "vgg_wide", "init_from": "vgg_wide"}, "fer2013", 10).startswith(
        "vgg_wide backbone fine-tuned from vgg_wide on"
    )
    config = {"model": "vgg_lean", "init_from": "vgg_wide_soup", "teacher": "vgg_wide_soup", "teacher_weight": 0.5}
    slimmed = describe(config, "fer2013", 10)  # vgg_wide_soup: a registered vgg_wide
    assert slimmed.startswith("vgg_lean backbone slimmed from vgg_wide_soup (training.prune), then fine-tuned on")
    assert slimmed.endswith("distilled from vgg_wide_soup (teacher weight 0.5)")
    scenes = describe({"model": "vgg", "init_from": "vgg", "scene_views": 0.5}, "fer2013", 10)
    assert scenes.endswith("; 50% of each batch cut by the app's detector from generated scenes")
    smaller = describe({"model": "vgg", "input_size": 36, "init_from": "vgg"}, "fer2013", 10)
    assert smaller.startswith("vgg backbone reading 36x36 faces, fine-tuned from vgg on")
