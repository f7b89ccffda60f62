"""Train one backbone: `python -m training.train --model vgg [--epochs 60] [--resume] ...`.

Reads top to bottom: defaults, config resolution, data, model, train, export. Checkpoints go to
runs/<name>/ (ignored by git) every epoch so a CPU run of hours survives a restart with --resume;
the selected weights (best PublicTest accuracy) are exported to models/<name>/ with the resolved
config, label list and history beside them. Figures on PrivateTest come from training.evaluate.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from emotion.config import MODELS_DIR, REPO_ROOT, find_fer2013_csv
from emotion.logs import setup_logging

log = logging.getLogger("training.train")


# ---- defaults: every knob in one visible block; a --config JSON file and flags override them ----
@dataclass
class TrainConfig:
    model: str = "vgg"  # backbone name, see training.backbones.BACKBONES
    name: str = ""  # output name under models/; defaults to the backbone name
    data: str = ""  # FER2013 CSV or a folder-per-class dataset; default: FER2013 found by emotion.config
    input_size: int = 48
    channels: int = 1
    equalize: bool = True  # histogram equalisation in preprocess_face (recorded in the manifest)
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    class_weight_power: float = 0.5  # 0 = none, 0.5 = sqrt inverse frequency, 1 = inverse frequency
    augment_strength: float = 1.0
    mixup: float = 0.0  # >0: mix training images pairwise, lambda ~ Beta(mixup, mixup); 0 = off
    drop_dirty: bool = True  # leave exact duplicates and blank images out of Training only
    face_crops: bool = False  # folder datasets: train on detected face crops instead of whole photos
    init_from: str = ""  # a registered model of the same backbone whose weights start this run (fine-tuning)
    teacher: str = ""  # a registered model, e.g. "committee", to distil: see training.distill
    teacher_weight: float = 0.5  # targets = (1 - w) * one-hot + w * the teacher's probabilities
    patience: int = 12  # early stopping on PublicTest accuracy, counted afresh in each restart cycle
    restart_epochs: str = ""  # e.g. "24,64": a new warm-up + cosine cycle starts at each (SGDR)
    restart_lr_scale: float = 0.5  # cycle k (0 = the first) peaks at learning_rate * restart_lr_scale**k
    precision: str = "auto"  # "float32", "mixed_bfloat16", or auto: bf16 compute where the CPU has it
    seed: int = 1337
    max_train_samples: int = 0  # >0: a quick run on a subset (tests, smoke runs)


def resolve_config(argv: list[str] | None = None) -> tuple[TrainConfig, bool, bool]:
    """Defaults < the run's saved config (with --resume) < --config file < flags.
    Returns the config, whether to resume, whether to only export."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON file with any TrainConfig fields")
    parser.add_argument("--resume", action="store_true", help="continue from runs/<name>/last.keras")
    parser.add_argument(
        "--export-only", action="store_true", help="skip training: export runs/<name>/best.keras to models/<name>/"
    )
    for f in fields(TrainConfig):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", type=lambda v: v.lower() in ("1", "true", "yes"), metavar="BOOL"
            )
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind)
    args = parser.parse_args(argv)
    known = {f.name for f in fields(TrainConfig)}
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    overrides.update({k: v for k, v in vars(args).items() if k in known and v is not None})
    if overrides.get("init_from"):  # a fine-tune keeps its start's backbone, preprocessing and data
        from training.distill import inherited_settings

        overrides = {**inherited_settings(overrides["init_from"]), **overrides}
    name = overrides.get("name") or overrides.get("model") or TrainConfig.model
    saved_run = REPO_ROOT / "runs" / name / "config.json"
    # --resume and --export-only start from the run's own resolved config, not today's defaults.
    reads_run = (args.resume or args.export_only) and saved_run.is_file()
    saved = upgrade_saved_config(json.loads(saved_run.read_text())) if reads_run else {}
    if args.export_only:
        if not saved:
            parser.error(f"--export-only: no run to export at {saved_run.parent}")
        config = TrainConfig(**saved)
    else:
        changed = [k for k in ("model", "input_size", "channels", "equalize") if k in saved and k in overrides]
        changed = [k for k in changed if saved[k] != overrides[k]]
        if changed:  # the weights depend on these
            parser.error(f"--resume cannot change {', '.join(changed)} of run {name!r}")
        config = TrainConfig(**{**asdict(TrainConfig()), **saved, **overrides, "name": name})
        if not config.data:
            found = find_fer2013_csv()
            if found is None:
                parser.error("no dataset: pass --data PATH (FER2013 CSV or a folder-per-class dataset)")
            config.data = str(found)
    try:
        restart_points(config)
    except ValueError as err:
        parser.error(str(err))
    if config.precision == "auto":
        config.precision = "mixed_bfloat16" if cpu_has_bf16() else "float32"
    return config, args.resume, args.export_only


def upgrade_saved_config(saved: dict) -> dict:
    """Read configs saved before `restart_epochs` replaced the single `restart_epoch`."""
    saved = dict(saved)
    legacy = saved.pop("restart_epoch", 0)
    if legacy and not saved.get("restart_epochs"):
        saved["restart_epochs"] = str(legacy)
    return saved


def restart_points(config: TrainConfig) -> list[int]:
    """The epochs at which a warm restart begins, ascending, e.g. [24, 64]."""
    points = sorted(int(p) for p in str(config.restart_epochs).replace(" ", "").split(",") if p)
    if any(p <= 0 or p >= config.epochs for p in points):
        raise ValueError(f"restart_epochs {config.restart_epochs!r} must lie inside (0, epochs={config.epochs})")
    return points


def cycle_of(epoch: int, config: TrainConfig) -> tuple[int, int, int]:
    """(k, start, end): epoch (0-based) lies in warm-restart cycle k, which spans [start, end)."""
    bounds = [0, *restart_points(config), config.epochs]
    k = max(i for i in range(len(bounds) - 1) if bounds[i] <= epoch)
    return k, bounds[k], bounds[k + 1]


def epochs_without_gain(next_epoch: int, best_epoch: int, config: TrainConfig) -> int:
    """Epochs run without a PublicTest gain when epoch `next_epoch` (0-based) is about to start,
    counted from no earlier than the start of next_epoch's cycle: a restart's warm-up lowers
    accuracy on purpose, so every cycle gets the full patience, and one about to begin is never
    cut short by the cycle before it. Early stopping stops when this reaches config.patience."""
    _, cycle_start, _ = cycle_of(next_epoch, config)
    return next_epoch - 1 - max(best_epoch, cycle_start - 1)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there Keras'
    mixed_bfloat16 policy trains the vgg backbone faster (measured on this machine's Xeon: 249
    against 125 images/s in a synthetic benchmark, 118 against 180 s an epoch in real runs); on
    other CPUs bf16 is emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def lr_at(epoch: int, config: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 1% of the peak; a pure function of the epoch so that a
    resumed run follows the same schedule.

    One cycle over [0, epochs), or, with restart_epochs "M1,M2,...", one cycle per span
    [0, M1), [M1, M2), ..., [Mk, epochs); cycle k peaks at learning_rate * restart_lr_scale**k.
    A restart is how a finished run is trained further: `--resume --epochs 64 --restart-epochs 24`
    continues a 24-epoch run for 40 more epochs, and `--epochs 94 --restart-epochs 24,64` adds a third
    cycle to that.
    """
    cycle, start, end = cycle_of(epoch, config)
    peak = config.learning_rate * config.restart_lr_scale**cycle
    epoch -= start
    if epoch < config.warmup_epochs:
        return peak * (epoch + 1) / config.warmup_epochs
    progress = (epoch - config.warmup_epochs) / max(1, end - start - config.warmup_epochs)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def main(argv: list[str] | None = None) -> Path:
    config, resume, export_only = resolve_config(argv)
    resume = resume or export_only
    run_dir = REPO_ROOT / "runs" / config.name
    out_dir = MODELS_DIR / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging("train", log_file=run_dir / "train.log")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # heavy imports after logging is set up
    import tensorflow as tf

    from emotion.datasets import find_dirty
    from training import data as datasets
    from training.augment import build_augmenter, clip01, mixup
    from training.backbones import build_backbone
    from training.distill import blend_targets, initial_weights, teacher_probabilities
    from training.export import export_model

    keras.utils.set_random_seed(config.seed)
    log.info("config: %s", json.dumps(asdict(config)))

    # ---- data ----
    dataset = datasets.load_as_trained(config.data, config.seed, config.face_crops)
    if dataset.problems:
        log.warning("%d images left out: %s", len(dataset.problems), "; ".join(dataset.problems[:5]))
    train, val = dataset.splits["Training"], dataset.splits["PublicTest"]
    if config.drop_dirty:
        duplicate, blank = find_dirty(train.images)
        log.info("Training: %d exact duplicates, %d blank images left out", duplicate.sum(), blank.sum())
        train = train.subset(~(duplicate | blank))
    if config.max_train_samples:
        train = train.subset(np.random.default_rng(config.seed).permutation(len(train))[: config.max_train_samples])
    size = (config.input_size, config.input_size)
    x_train = datasets.to_inputs(train, size, config.channels, config.equalize)
    x_val = datasets.to_inputs(val, size, config.channels, config.equalize)
    num_classes = len(dataset.labels)
    weights = datasets.class_weights(train.labels, num_classes, config.class_weight_power)
    log.info(
        "labels %s; train %d, val %d; class weights %s",
        dataset.labels,
        len(train),
        len(val),
        {dataset.labels[k]: round(v, 2) for k, v in weights.items()},
    )
    augmenter = build_augmenter(config.augment_strength, config.seed)  # float32, built before the policy
    weight_table = tf.constant([weights[i] for i in range(num_classes)], tf.float32)
    # (N, K) training targets: the one-hot labels, blended once with a teacher's answers if any.
    targets = np.eye(num_classes, dtype=np.float32)[train.labels]
    if config.teacher:
        asked = teacher_probabilities(config.teacher, train, dataset.labels, run_dir / "teacher_probs.npz")
        targets = blend_targets(targets, asked, config.teacher_weight)

    def train_batches(x, y, target):
        x, w = clip01(augmenter(x, training=True)), tf.gather(weight_table, y)
        return mixup(x, target, w, config.mixup) if config.mixup > 0 else (x, target, w)

    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, train.labels, targets))
        .shuffle(len(train), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size, drop_remainder=True)
        .map(train_batches, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, tf.one_hot(val.labels, num_classes))).batch(256)

    # ---- model ----
    # Variables stay float32 under mixed_bfloat16 (only the compute is bf16), and the softmax
    # layer is float32 in every backbone, so checkpoints and exports hold float32 weights.
    keras.mixed_precision.set_global_policy(config.precision)
    input_shape = (config.input_size, config.input_size, config.channels)

    def fresh_model(weights: list | None = None) -> keras.Model:
        model = build_backbone(config.model, input_shape, num_classes)
        if weights is not None:
            model.set_weights(weights)
        model.compile(
            optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
        return model

    last_path, best_path, state_path = run_dir / "last.keras", run_dir / "best.keras", run_dir / "state.json"
    state = {"epoch": 0, "best_val_accuracy": 0.0, "best_epoch": -1, "history": {}}
    if resume and last_path.exists() and state_path.exists():
        model = keras.models.load_model(last_path, custom_objects={})
        state = json.loads(state_path.read_text())
        log.info(
            "resuming %s at epoch %d (best %.4f at %d)",
            config.name,
            state["epoch"],
            state["best_val_accuracy"],
            state["best_epoch"],
        )
        # The loaded layers keep the policy they were saved with (the Model object itself takes
        # today's global one), so look at the first layer with weights.
        saved_precision = next(layer.dtype_policy.name for layer in model.layers if layer.weights)
        if saved_precision != config.precision:  # e.g. a float32 run continued in bf16
            log.info("precision %s -> %s: same weights, fresh optimizer", saved_precision, config.precision)
            model = fresh_model(model.get_weights())
    else:
        start = None
        if config.init_from:
            start = initial_weights(
                config.init_from,
                {
                    "backbone": config.model,
                    "labels": list(dataset.labels),
                    "input_size": [config.input_size, config.input_size],
                    "channels": config.channels,
                    "equalize": config.equalize,
                },
            )
        model = fresh_model(start)
    log.info("%s: %d parameters", config.model, model.count_params())
    if not export_only:
        (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))

    # ---- train ----
    class Checkpoint(keras.callbacks.Callback):
        """Save last and best every epoch, with the state a resume needs (epoch, best, history)."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            for key, value in logs.items():
                state["history"].setdefault(key, []).append(float(value))
            state["history"].setdefault("lr", []).append(lr_at(epoch, config))
            state["epoch"] = epoch + 1
            if logs.get("val_accuracy", 0.0) > state["best_val_accuracy"]:
                state["best_val_accuracy"], state["best_epoch"] = float(logs["val_accuracy"]), epoch
                model.save(best_path)
            model.save(last_path)
            state_path.write_text(json.dumps(state))
            log.info("epoch %d: %s", epoch + 1, {k: round(float(v), 4) for k, v in logs.items()})
            if epochs_without_gain(epoch + 1, state["best_epoch"], config) >= config.patience:
                log.info("early stop: no PublicTest gain in %d epochs of this cycle", config.patience)
                self.model.stop_training = True

    started = time.time()
    stopped = epochs_without_gain(state["epoch"], state["best_epoch"], config) >= config.patience
    if not export_only and state["epoch"] < config.epochs and not stopped:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=state["epoch"],
            callbacks=[keras.callbacks.LearningRateScheduler(lambda e: lr_at(e, config)), Checkpoint()],
            verbose=1 if os.isatty(2) else 2,
        )
    log.info(
        "trained in %.1f min; best PublicTest accuracy %.4f at epoch %d",
        (time.time() - started) / 60,
        state["best_val_accuracy"],
        state["best_epoch"] + 1,
    )

    # ---- export the selected weights to models/<name>/ ----
    # Served in float32: the TFLite converter quantizes float32 graphs, whatever trained them.
    keras.mixed_precision.set_global_policy("float32")
    best = build_backbone(config.model, input_shape, num_classes)
    best.set_weights(keras.models.load_model(best_path).get_weights())
    export_model(
        best,
        out_dir,
        config=asdict(config),
        labels=dataset.labels,
        history=state,
        dataset_name=dataset.name,
        train_count=len(train),
    )
    log.info("exported to %s; next: python -m training.evaluate --model %s", out_dir, config.name)
    return out_dir


if __name__ == "__main__":
    main()
