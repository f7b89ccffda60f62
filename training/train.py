"""Train one backbone: `python -m training.train --config training/configs/vgg.toml` (or
`--model vgg [--epochs 60] [--resume] ...`).

Reads top to bottom: defaults, config files, config resolution, data, model, train (`fit`, which
needs only Keras and NumPy and runs on any Keras 3 backend: TensorFlow, JAX or PyTorch, so the GPU
bundle runs it where TensorFlow is missing), export. Checkpoints go to runs/<name>/ (ignored by
git) every epoch so a CPU run of hours survives a restart with --resume; the selected weights
(best PublicTest accuracy) are exported to models/<name>/ with the resolved config, label list and
history beside them. Figures on PrivateTest come from training.evaluate. docs/TRAINING.md tells
the whole story: the config files, the shipped models' lineage, the GPU bundle.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from emotion.config import MODELS_DIR, REPO_ROOT, find_fer2013_csv
from emotion.logs import setup_logging

log = logging.getLogger("training.train")
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


# ---- defaults: every knob in one visible block; a --config file and flags override them ----
@dataclass
class TrainConfig:
    model: str = "vgg"  # backbone name, see training.backbones.BACKBONES
    name: str = ""  # output name under models/; defaults to the backbone name
    data: str = ""  # FER2013 CSV, a folder dataset or a GPU bundle's data; default: the FER2013 emotion.config finds
    input_size: int = 48
    channels: int = 1
    equalize: bool = True  # histogram equalisation in preprocess_face (recorded in the manifest)
    epochs: int = 60
    batch_size: int = 64
    optimizer: str = "adamw"  # "adamw", or "sgd": SGD with Nesterov momentum (the published FER2013 recipes)
    momentum: float = 0.9  # sgd only
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine": warm-up, cosine, warm restarts; "plateau": cut when PublicTest stalls
    warmup_epochs: int = 2  # cosine only
    plateau_factor: float = 0.75  # plateau only: the learning rate is multiplied by this ...
    plateau_patience: int = 5  # ... after more than this many epochs without a PublicTest gain
    label_smoothing: float = 0.1
    class_weight_power: float = 0.5  # 0 = none, 0.5 = sqrt inverse frequency, 1 = inverse frequency
    augment_recipe: str = "studio"  # see training.augment.RECIPES
    augment_strength: float = 1.0
    mixup: float = 0.0  # >0: mix training images pairwise, lambda ~ Beta(mixup, mixup); 0 = off
    drop_dirty: bool = True  # leave exact duplicates and blank images out of Training only
    face_crops: bool = False  # folder datasets: train on detected face crops instead of whole photos
    scene_views: float = 0.0  # >0: this share of each batch seen as the app's detector cuts it from a scene
    init_from: str = ""  # a registered model of the same backbone whose weights start this run (fine-tuning)
    teacher: str = ""  # a registered model, e.g. "committee", to distil: see training.distill
    teacher_weight: float = 0.5  # targets = (1 - w) * one-hot + w * the teacher's probabilities
    patience: int = 12  # early stopping on PublicTest accuracy, counted afresh in each restart cycle
    restart_epochs: str = ""  # e.g. "24,64": a new warm-up + cosine cycle starts at each (SGDR)
    restart_lr_scale: float = 0.5  # cycle k (0 = the first) peaks at learning_rate * restart_lr_scale**k
    precision: str = "auto"  # "float32", "mixed_bfloat16", or auto: bf16 compute on a GPU or where the CPU has it
    seed: int = 1337
    max_train_samples: int = 0  # >0: a quick run on a subset (tests, smoke runs)
    time_budget_min: float = 0.0  # >0: stop after the first epoch that ends past this many minutes (lent GPU time)
    fit_to_budget: bool = False  # cosine + time_budget_min: from the warm-up on, size `epochs` to end in the budget


# ---- config files: one per run (training/configs/*.toml), see docs/TRAINING.md ----
# Beside TrainConfig's fields a file may hold: `about` (a sentence), `seeds = [1, 2, 3]` (one run
# per seed, named <name>_s<seed>), `[[stages]]` tables (the run continued with --resume under each
# stage's settings in turn: the warm-restart cycles), or `kind = "committee"` with `members` and
# `vote` (registers a committee of trained models), or `kind = "soup"` with `members` (training.soup: the
# mean of their weights).
PLAN_KEYS = {"about", "seeds", "stages", "kind", "members", "vote", "chosen_with_tta"}


def read_config_file(path: str | Path) -> dict:
    """A JSON or TOML config file as a dict, its keys checked (ValueError names the unknown ones)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no config file at {path}")
    text = path.read_text()
    try:
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: {err}") from err
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(spec) - known - PLAN_KEYS)
    for stage in spec.get("stages", []):
        unknown += sorted(set(stage) - known)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return spec


def expand_plan(spec: dict) -> list[tuple[dict, bool]]:
    """A config file's runs in order, as (TrainConfig overrides, resume) pairs: one per seed and
    stage; every stage after the first resumes the run the one before it left."""
    base = {k: v for k, v in spec.items() if k not in PLAN_KEYS}
    name = base.get("name") or base.get("model") or TrainConfig.model
    seeds = spec.get("seeds") or [None]
    stages = spec.get("stages") or [{}]
    plan = []
    for seed in seeds:
        named = base if seed is None else {**base, "seed": int(seed), "name": f"{name}_s{seed}"}
        plan += [({**named, **stage}, i > 0) for i, stage in enumerate(stages)]
    return plan


def config_path_for(name: str) -> Path | None:
    """training/configs/<name>.toml when it exists: how model `name` is made."""
    path = CONFIGS_DIR / f"{name}.toml"
    return path if path.is_file() else None


def resolve_config(argv: list[str] | None = None, preset: dict | None = None) -> tuple[TrainConfig, bool, bool]:
    """Defaults < the run's saved config (with --resume) < --config file (or `preset`, one run of
    a file's plan) < flags. Returns the config, whether to resume, whether to only export."""
    parser = build_parser()
    args = parser.parse_args(argv)
    known = {f.name for f in fields(TrainConfig)}
    if preset is not None:
        overrides = dict(preset)
    elif args.config:
        try:
            spec = read_config_file(args.config)
        except ValueError as err:
            parser.error(str(err))
        overrides = {k: v for k, v in spec.items() if k in known}
    else:
        overrides = {}
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
        check_config(config)
    except ValueError as err:
        parser.error(str(err))
    if config.precision == "auto":
        config.precision = "mixed_bfloat16" if accelerator_present() or cpu_has_bf16() else "float32"
    return config, args.resume, args.export_only


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a TOML (training/configs/) or JSON file of TrainConfig fields")
    parser.add_argument("--resume", action="store_true", help="continue from runs/<name>/last.keras")
    parser.add_argument(
        "--export-only", action="store_true", help="skip training: export runs/<name>/best.keras to models/<name>/"
    )
    parser.add_argument(
        "--skip-export",
        action="store_true",
        help="train only: export later with --export-only where TensorFlow is installed (the GPU bundle)",
    )
    parser.add_argument(
        "--lineage",
        action="store_true",
        help="first train, from their own config files, the models this one starts from or learns from "
        "that are not registered yet (with EMOTION_MODELS_DIR pointing elsewhere: a rebuild from scratch)",
    )
    for f in fields(TrainConfig):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", type=lambda v: v.lower() in ("1", "true", "yes"), metavar="BOOL"
            )
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind)
    return parser


def check_config(config: TrainConfig) -> None:
    """ValueError with a readable message for settings that cannot train."""
    restart_points(config)
    if config.optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be adamw or sgd, not {config.optimizer!r}")
    if config.schedule not in ("cosine", "plateau"):
        raise ValueError(f"schedule must be cosine or plateau, not {config.schedule!r}")
    if config.schedule == "plateau" and config.restart_epochs:
        raise ValueError("restart_epochs belongs to the cosine schedule")
    if config.fit_to_budget and not (config.schedule == "cosine" and config.time_budget_min > 0):
        raise ValueError("fit_to_budget needs the cosine schedule and a time_budget_min")
    if not 0.0 <= config.scene_views <= 1.0:
        raise ValueError(f"scene_views is a share of the batch, from 0 to 1, not {config.scene_views}")
    if config.scene_views and config.data.endswith(".npz.xz"):
        raise ValueError("scene_views runs the app's detector on the FER2013 CSV; a GPU bundle's data has no scenes")
    if config.fit_to_budget and (config.restart_epochs or config.warmup_epochs < 2):
        raise ValueError("fit_to_budget sizes one cycle after at least two warm-up epochs (no restart_epochs)")
    from training.augment import RECIPES

    if config.augment_recipe not in RECIPES:
        raise ValueError(f"augment_recipe must be one of {', '.join(RECIPES)}, not {config.augment_recipe!r}")


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


def epochs_that_fit(
    budget_min: float, elapsed_s: float, epoch_s: float, done: int, most: int, margin: float = 0.9
) -> int:
    """The cycle length (epochs) that ends inside a budget of `budget_min` minutes, for
    fit_to_budget: `done` epochs took `elapsed_s` seconds and one more takes about `epoch_s`;
    `margin` of what is left is spent, so a slower epoch later still ends the cosine before the
    budget's hard stop. Never more than `most`; otherwise at least `done` + 1."""
    left = 60 * budget_min - elapsed_s
    return min(most, max(done + 1, done + int(margin * left / max(epoch_s, 1e-3))))


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


def accelerator_present() -> bool:
    """Whether the Keras backend in use computes on a GPU (bf16 is native on every recent one)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def lr_at(epoch: int, config: TrainConfig, val_accuracy: list[float] | None = None) -> float:
    """The learning rate of epoch `epoch` (0-based): a pure function of the epoch (and, for the
    plateau schedule, of the PublicTest accuracies of the epochs before it) so that a resumed run
    follows the same schedule.

    cosine: linear warm-up then cosine decay to 1% of the peak, over one cycle [0, epochs), or, with
    restart_epochs "M1,M2,...", one cycle per span [0, M1), [M1, M2), ..., [Mk, epochs); cycle k
    peaks at learning_rate * restart_lr_scale**k. A restart is how a finished run is trained
    further: `--resume --epochs 64 --restart-epochs 24` continues a 24-epoch run for 40 more epochs,
    and `--epochs 94 --restart-epochs 24,64` adds a third cycle to that.

    plateau: learning_rate, multiplied by plateau_factor each time PublicTest accuracy has not beaten
    its best (by 1e-4 relative) for more than plateau_patience epochs in a row, as PyTorch's
    ReduceLROnPlateau(mode="max") does in the published recipe.
    """
    if config.schedule == "plateau":
        return config.learning_rate * config.plateau_factor ** plateau_reductions((val_accuracy or [])[:epoch], config)
    cycle, start, end = cycle_of(epoch, config)
    peak = config.learning_rate * config.restart_lr_scale**cycle
    epoch -= start
    if epoch < config.warmup_epochs:
        return peak * (epoch + 1) / config.warmup_epochs
    progress = (epoch - config.warmup_epochs) / max(1, end - start - config.warmup_epochs)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def plateau_reductions(val_accuracy: list[float], config: TrainConfig) -> int:
    """How many times ReduceLROnPlateau (mode max, relative threshold 1e-4, no cooldown) has cut
    the learning rate after these epochs' PublicTest accuracies."""
    best, bad, cuts = -math.inf, 0, 0
    for value in val_accuracy:
        if value > best * (1 + 1e-4):
            best, bad = value, 0
        else:
            bad += 1
        if bad > config.plateau_patience:
            cuts, bad = cuts + 1, 0
    return cuts


# ---- training: arrays in, run folder out; Keras and NumPy only, any backend ----
@dataclass
class Arrays:
    """What `fit` trains on: x_* float32 (N, H, W, C) in [0, 1] from preprocess_face, targets
    (N, K) float32 (one-hot or blended with a teacher), y_val (M,) int, per-class weights (K,)."""

    x_train: np.ndarray
    targets: np.ndarray
    sample_weights: np.ndarray  # (N,) the class weight of each Training image
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    x_scene: np.ndarray | None = None  # (N, H, W, C) each Training image as the app's detector cut it (scene_views)


def fit(config: TrainConfig, arrays: Arrays, run_dir: Path, resume: bool, start_weights: list | None = None) -> dict:
    """Train (or continue) run_dir's run: best.keras (the net alone, best PublicTest accuracy),
    last.keras (the training model with its optimizer) and state.json, every epoch. Returns the
    state: epoch, best_val_accuracy, best_epoch, history."""
    import keras

    from training.augment import backbone_of, build_augmenter, mixup, with_augmentation
    from training.backbones import build_backbone

    keras.utils.set_random_seed(config.seed)
    augmenter = build_augmenter(config.augment_strength, config.seed, config.augment_recipe)  # float32
    # Variables stay float32 under mixed_bfloat16 (only the compute is bf16), and the softmax
    # layer is float32 in every backbone, so checkpoints and exports hold float32 weights.
    keras.mixed_precision.set_global_policy(config.precision)
    input_shape = (config.input_size, config.input_size, config.channels)

    def compiled(net: keras.Model) -> keras.Model:
        trainer = with_augmentation(net, augmenter)
        if config.optimizer == "sgd":
            optimizer = keras.optimizers.SGD(
                config.learning_rate, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
            )
        else:
            optimizer = keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
        trainer.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
        return trainer

    def fresh(weights: list | None = None) -> keras.Model:
        net = build_backbone(config.model, input_shape, arrays.num_classes)
        if weights is not None:
            net.set_weights(weights)
        return compiled(net)

    last_path, best_path, state_path = run_dir / "last.keras", run_dir / "best.keras", run_dir / "state.json"
    state = {"epoch": 0, "best_val_accuracy": 0.0, "best_epoch": -1, "history": {}}
    if resume and last_path.exists() and state_path.exists():
        trainer = keras.models.load_model(last_path)
        state = json.loads(state_path.read_text())
        log.info(
            "resuming %s at epoch %d (best %.4f at %d)",
            config.name,
            state["epoch"],
            state["best_val_accuracy"],
            state["best_epoch"],
        )
        net = backbone_of(trainer)
        # The loaded layers keep the policy they were saved with, so look at the first with weights.
        saved_precision = next(layer.dtype_policy.name for layer in net.layers if layer.weights)
        if saved_precision != config.precision or net is trainer:  # e.g. a float32 run continued in bf16
            log.info("precision %s -> %s: same weights, fresh optimizer", saved_precision, config.precision)
            trainer = fresh(net.get_weights())
    else:
        trainer = fresh(start_weights)
    net = backbone_of(trainer)
    log.info("%s: %d parameters", config.model, net.count_params())

    class Batches(keras.utils.PyDataset):
        """Training batches (x, targets, sample weights). Each epoch's order is drawn from the seed
        and the epoch (set by Checkpoint.on_epoch_begin), so a resumed run draws the batches an
        uninterrupted one would have; the last partial batch is dropped (one batch shape: one
        compiled step)."""

        def __init__(self):
            super().__init__()  # one worker, no multiprocessing: batches are made in order
            self.start_epoch(state["epoch"])

        def start_epoch(self, epoch: int) -> None:
            self.epoch = epoch
            self.order = np.random.default_rng([config.seed, epoch]).permutation(len(arrays.x_train))

        def __len__(self) -> int:
            return len(arrays.x_train) // config.batch_size

        def __getitem__(self, i: int):
            idx = np.sort(self.order[i * config.batch_size : (i + 1) * config.batch_size])
            x = arrays.x_train[idx]
            if arrays.x_scene is not None:  # a fresh draw per batch of which images come from their scene
                use = np.random.default_rng([config.seed, self.epoch, i, 1]).random(len(idx)) < config.scene_views
                x = np.where(use[:, None, None, None], arrays.x_scene[idx], x)
            batch = x, arrays.targets[idx], arrays.sample_weights[idx]
            if config.mixup > 0:
                batch = mixup(*batch, config.mixup, np.random.default_rng([config.seed, self.epoch, i]))
            return batch

    batches = Batches()
    started = time.time()

    class Checkpoint(keras.callbacks.Callback):
        """Save last and best every epoch, with the state a resume needs (epoch, best, history)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.time()
            batches.start_epoch(epoch)
            lr = lr_at(epoch, config, state["history"].get("val_accuracy"))
            self.model.optimizer.learning_rate.assign(lr)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            state["history"].setdefault("lr", []).append(lr_at(epoch, config, state["history"].get("val_accuracy")))
            for key, value in logs.items():
                if key != "learning_rate":
                    state["history"].setdefault(key, []).append(float(value))
            state["epoch"] = epoch + 1
            # Wall time of each epoch, validation included (the first one compiles): the GPU plan's speed figure.
            state.setdefault("epoch_seconds", []).append(round(time.time() - self.epoch_started, 2))
            if config.fit_to_budget and epoch + 1 >= config.warmup_epochs:
                # Re-sized after every epoch from the warm-up's end, on the median of the last five
                # epochs (the first compiles): runs sharing a GPU speed up or slow down as the others
                # compile and finish, so one early measure (tried on the first GPU run) overshoots.
                # The cosine after the warm-up follows `epochs`; the rates used are in the history.
                state.setdefault("epochs_asked", config.epochs)
                epoch_s = float(np.median(state["epoch_seconds"][1:][-5:]))
                fitted = epochs_that_fit(
                    config.time_budget_min, time.time() - started, epoch_s, epoch + 1, state["epochs_asked"]
                )
                if fitted != config.epochs:
                    log.info("fit_to_budget: %d epochs (%.2f s an epoch)", fitted, epoch_s)
                    config.epochs = fitted
                    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
                state["fitted_epochs"] = fitted
            if logs.get("val_accuracy", 0.0) > state["best_val_accuracy"]:
                state["best_val_accuracy"], state["best_epoch"] = float(logs["val_accuracy"]), epoch
                net.save(best_path)
            trainer.save(last_path)
            state_path.write_text(json.dumps(state))
            log.info("epoch %d: %s", epoch + 1, {k: round(float(v), 4) for k, v in logs.items()})
            if epochs_without_gain(epoch + 1, state["best_epoch"], config) >= config.patience:
                log.info("early stop: no PublicTest gain in %d epochs of this cycle", config.patience)
                self.model.stop_training = True
            if epoch + 1 >= config.epochs:
                self.model.stop_training = True
            if config.time_budget_min and time.time() - started >= 60 * config.time_budget_min:
                log.info("time budget of %.1f min spent after epoch %d", config.time_budget_min, epoch + 1)
                state["stopped_by_time_budget"] = epoch + 1
                state_path.write_text(json.dumps(state))
                self.model.stop_training = True

    stopped = epochs_without_gain(state["epoch"], state["best_epoch"], config) >= config.patience
    if state["epoch"] < config.epochs and not stopped:
        val_targets = np.eye(arrays.num_classes, dtype=np.float32)[arrays.y_val]
        trainer.fit(
            batches,
            validation_data=(arrays.x_val, val_targets),
            validation_batch_size=256,
            epochs=config.epochs,
            initial_epoch=state["epoch"],
            callbacks=[Checkpoint()],
            verbose=1 if os.isatty(2) else 2,
        )
    log.info(
        "trained in %.1f min; best PublicTest accuracy %.4f at epoch %d",
        (time.time() - started) / 60,
        state["best_val_accuracy"],
        state["best_epoch"] + 1,
    )
    return state


# ---- one run: config, data, fit, export ----
def main(argv: list[str] | None = None) -> Path:
    """Run what the command line asks: one run, a config file's plan (its seeds and stages in
    order), or a committee file. Returns the models/ folder of the last model made."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    spec = read_config_file(args.config) if args.config else {}
    if args.lineage:
        build_lineage(spec or {k: v for k, v in vars(args).items() if v is not None})
    if spec.get("kind") == "committee":
        from training.committee import register_committee

        folder = register_committee(
            spec["name"], spec["members"], spec.get("vote", "soft"), chosen_with_tta=spec.get("chosen_with_tta", False)
        )
        print(f"registered {folder}; next: python -m training.evaluate --model {spec['name']}")
        return folder
    if spec.get("kind") == "soup":
        from training.soup import make_soup

        folder = make_soup(spec["name"], spec["members"], args.data)
        print(f"exported {folder}; next: python -m training.evaluate --model {spec['name']}")
        return folder
    plan = expand_plan(spec) if spec else [(None, False)]
    out_dir = MODELS_DIR
    for preset, resume in plan:
        extra = ["--resume"] if resume and "--resume" not in argv else []
        out_dir = train_once([*argv, *extra], preset)
    return out_dir


def build_lineage(spec: dict) -> None:
    """Train (from training/configs/<name>.toml) every model that spec starts from (init_from) or
    learns from (teacher) and that is not registered yet, ancestors first."""
    from emotion.registry import list_models

    registered = {m.name for m in list_models()}
    for key in ("init_from", "teacher"):
        name = spec.get(key)
        if not name or name in registered:
            continue
        path = config_path_for(name)
        if path is None:
            raise SystemExit(f"--lineage: {name} is not registered and training/configs/{name}.toml does not exist")
        log.info("--lineage: making %s first (%s)", name, path)
        main(["--config", str(path), "--lineage"])


def train_once(argv: list[str] | None = None, preset: dict | None = None) -> Path:
    config, resume, export_only = resolve_config(argv, preset)
    resume = resume or export_only
    run_dir = REPO_ROOT / "runs" / config.name
    out_dir = MODELS_DIR / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging("train", log_file=run_dir / "train.log")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log.info("config: %s", json.dumps(asdict(config)))
    dataset, train, arrays = load_arrays(config, run_dir)

    state_path = run_dir / "state.json"
    if export_only:
        state = json.loads(state_path.read_text()) if state_path.is_file() else {"history": {}}
    else:
        start = None
        fresh_run = not (resume and (run_dir / "last.keras").exists())
        if config.init_from and fresh_run:
            from training.distill import initial_weights

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
        (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
        state = fit(config, arrays, run_dir, resume, start)
        if build_parser().parse_args(argv).skip_export:
            return run_dir
    return export_run(config, run_dir, out_dir, state, dataset.labels, dataset.name, len(train))


def load_arrays(config: TrainConfig, run_dir: Path):
    """(dataset, the Training split trained on, Arrays) for config: dirty images left out, the
    optional subset drawn, inputs made by the shared preprocessing, class weights and (teacher)
    targets. A GPU bundle's data file (.npz.xz) is read as the bundle packed it."""
    from emotion.datasets import find_dirty
    from training import data as datasets

    if config.data.endswith(".npz.xz"):
        from training.gpu_bundle import load_packed

        dataset = load_packed(config.data, config)
    else:
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
    num_classes = len(dataset.labels)
    weights = datasets.class_weights(train.labels, num_classes, config.class_weight_power)
    log.info(
        "labels %s; train %d, val %d; class weights %s",
        dataset.labels,
        len(train),
        len(val),
        {dataset.labels[k]: round(v, 2) for k, v in weights.items()},
    )
    # (N, K) training targets: the one-hot labels, blended once with a teacher's answers if any.
    targets = np.eye(num_classes, dtype=np.float32)[train.labels]
    if config.teacher:
        from training.distill import blend_targets, teacher_probabilities

        asked = teacher_probabilities(config.teacher, train, dataset.labels, run_dir / "teacher_probs.npz")
        targets = blend_targets(targets, asked, config.teacher_weight)
    arrays = Arrays(
        x_train=datasets.to_inputs(train, size, config.channels, config.equalize),
        targets=targets.astype(np.float32),
        sample_weights=np.array([weights[int(k)] for k in train.labels], np.float32),
        x_val=datasets.to_inputs(val, size, config.channels, config.equalize),
        y_val=np.asarray(val.labels),
        num_classes=num_classes,
    )
    if config.scene_views:
        add_scene_views(arrays, config, train, val, run_dir / "scene_views.npz")
    return dataset, train, arrays


def add_scene_views(arrays: Arrays, config: TrainConfig, train, val, cache: Path) -> None:
    """Give `arrays` each image as the app's detector cuts it from a generated scene
    (training.scenes.scene_views, through the shared preprocessing): x_scene for Training (an image's
    own input where the detector missed it), and PublicTest's found views appended to x_val and y_val,
    so that the epoch kept is the best on both the dataset's crops and the app's. Cached in the run's
    folder (made afresh when the images or settings differ): the scenes and the detector cost minutes."""
    from emotion.preprocess import preprocess_batch
    from training.scenes import scene_views

    digest = hashlib.sha256(json.dumps([config.seed, config.input_size, config.channels, config.equalize]).encode())
    for image in [*train.images, *val.images]:
        digest.update(image.tobytes())
    saved = np.load(cache) if cache.is_file() else None
    if saved is not None and str(saved["key"]) == digest.hexdigest():
        x_scene, x_val_scene, y_val_scene = saved["x_scene"], saved["x_val_scene"], saved["y_val_scene"]
    else:
        started = time.time()

        def found_inputs(views: list) -> tuple[np.ndarray, np.ndarray]:
            """(which faces were found (N,) bool, the found views' model inputs)."""
            found = np.array([v is not None for v in views], bool)
            size = (config.input_size, config.input_size)
            return found, preprocess_batch([v for v in views if v is not None], size, config.channels, config.equalize)

        found, inputs = found_inputs(scene_views(train.images, seed=config.seed))
        x_scene = arrays.x_train.copy()
        x_scene[found] = inputs
        val_found, x_val_scene = found_inputs(scene_views(val.images, seed=config.seed + 1))
        y_val_scene = np.asarray(val.labels)[val_found]
        log.info(
            "scene views: %d of %d Training and %d of %d PublicTest faces found in %.0f s",
            found.sum(), len(found), val_found.sum(), len(val_found), time.time() - started,
        )  # fmt: skip
        np.savez(cache, key=digest.hexdigest(), x_scene=x_scene, x_val_scene=x_val_scene, y_val_scene=y_val_scene)
    arrays.x_scene = x_scene
    arrays.x_val = np.concatenate([arrays.x_val, x_val_scene])
    arrays.y_val = np.concatenate([arrays.y_val, y_val_scene])


def export_run(
    config: TrainConfig, run_dir: Path, out_dir: Path, state: dict, labels, dataset_name: str, train_count: int
) -> Path:
    """Export runs/<name>/best.keras to models/<name>/ (TFLite under TensorFlow, on the CPU machine)."""
    import keras

    from training.backbones import build_backbone
    from training.export import export_model

    # Served in float32: the TFLite converter quantizes float32 graphs, whatever trained them.
    keras.mixed_precision.set_global_policy("float32")
    best = build_backbone(config.model, (config.input_size, config.input_size, config.channels), len(labels))
    best.set_weights(keras.models.load_model(run_dir / "best.keras").get_weights())
    export_model(
        best,
        out_dir,
        config=asdict(config),
        labels=labels,
        history=state,
        dataset_name=dataset_name,
        train_count=train_count,
    )
    log.info("exported to %s; next: python -m training.evaluate --model %s", out_dir, config.name)
    return out_dir


if __name__ == "__main__":
    main()
