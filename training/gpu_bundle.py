"""Train on a lent GPU machine in one command, and bring the results home:

    python -m training.gpu_bundle pack --config training/configs/gpu_vgg_wide.toml [--config ...]
    (run the one shell command it prints, on the GPU machine)
    python -m training.gpu_bundle unpack DIR      # DIR: the files that came back
    python -m training.train --name NAME --export-only && python -m training.evaluate --model NAME

The GPU machine (see docs/TRAINING.md) has Python 3.12 with PyTorch and JAX, no TensorFlow, and
reaches no network; at most 64 MiB travel to it and at most 8 files of 16 MiB each come back. So
`pack` writes one self-contained folder: FER2013's Training and PublicTest as uint8 arrays, xz
compressed (dirty Training images already left out), the training code (emotion/ and training/,
code only), the Keras wheel and the other wheels that machine lacks, the runs to make (one per
config file and seed, all sharing one data view), and run.sh. `run` (what run.sh starts there)
trains every run at once in its own process on the JAX backend with a time budget, then writes
one zip per run (best.keras, the net alone; config.json; state.json; train.log) and summary.json.
`unpack` turns those files into ordinary runs/<name>/ folders that `training.train --export-only`,
`training.evaluate` and `training.committee` accept on the CPU machine, where TensorFlow exports
the weights to TFLite.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import logging
import lzma
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

log = logging.getLogger("training.gpu_bundle")

MIB = 1024 * 1024
BUNDLE_LIMIT = 62.5 * MIB  # what may travel: 64 MiB in all, the rest of the checkout (about 1.3 MiB) included
RETURN_FILE_LIMIT = 16 * MIB  # each file that comes back ...
RETURN_FILES = 8  # ... and how many
DATA_FILE = "data.npz.xz"
# Packages the GPU machine lacks, as wheels for its CPython 3.12 on x86-64 Linux: Keras (at the
# version installed here, so the saved .keras files match) and what Keras needs that is not there.
WHEELS = ("keras", "namex", "optree")
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# The settings a bundle's runs must share: the packed arrays are one view of the data.
DATA_VIEW = ("data", "input_size", "channels", "drop_dirty", "face_crops")
RUN_SH = """#!/bin/sh
# The one command to run on the GPU machine: sh {bundle}/run.sh [--epochs N] [--time-budget-min M] [--only NAME]
# Installs the carried wheels, then trains every run of this bundle (python -m training.gpu_bundle run).
set -e
B="$(cd "$(dirname "$0")" && pwd)"
PY="${{PYTHON:-python3}}"
SITE="${{BUNDLE_SITE:-/tmp/bundle_site}}"
if ls "$B"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$B"/wheels/*.whl
  export PYTHONPATH="$SITE${{PYTHONPATH:+:$PYTHONPATH}}"
fi
export PYTHONPATH="$B/code${{PYTHONPATH:+:$PYTHONPATH}}"
export KERAS_BACKEND="${{KERAS_BACKEND:-{backend}}}" XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
exec "$PY" -m training.gpu_bundle run --bundle "$B" --out "${{OUT:-$B/out}}" "$@"
"""


# ---- pack (CPU machine) ----
def plan_runs(config_files: list[str], overrides: dict) -> list[dict]:
    """Every run of the config files (one per seed), as complete TrainConfig dicts with
    `overrides` applied (and, for a fine-tune, the settings it inherits from its init_from);
    ValueError for what a bundle cannot train (stages, committees) or runs that disagree on the
    data view. init_from and teacher are registered models here: `pack` carries their weights and
    answers, since models/ stays home."""
    from training.distill import inherited_settings
    from training.train import TrainConfig, check_config, expand_plan, read_config_file

    runs = []
    for path in config_files:
        spec = read_config_file(path)
        if spec.get("kind") == "committee" or spec.get("stages"):
            raise ValueError(f"{path}: a bundle trains single runs from scratch (no committees, no stages)")
        for preset, _ in expand_plan(spec):
            inherited = inherited_settings(preset["init_from"]) if preset.get("init_from") else {}
            config = TrainConfig(**{**asdict(TrainConfig()), **inherited, **preset, **overrides})
            config.name = config.name or config.model
            check_config(config)
            runs.append(asdict(config))
    if not runs:
        raise ValueError("no run to pack: pass --config FILE")
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a name: {names}")
    views = {tuple(r[k] for k in DATA_VIEW) for r in runs}
    if len(views) > 1:
        raise ValueError(f"the runs disagree on {', '.join(DATA_VIEW)}: pack them in separate bundles")
    return runs


def estimated_return_bytes(run: dict) -> int:
    """best.keras holds the float32 weights (4 bytes each) plus about 100 KB of layout."""
    import keras

    from training.backbones import build_backbone

    keras.mixed_precision.set_global_policy("float32")
    net = build_backbone(run["model"], (run["input_size"], run["input_size"], run["channels"]), 7)
    return 4 * net.count_params() + 200_000


def pack_data(runs: list[dict], limit: int = 0):
    """Training (dirty images left out when the runs drop them) and PublicTest of the runs' data as
    uint8 arrays in one xz-compressed .npz; limit > 0 keeps the first `limit` Training and
    limit // 4 PublicTest images (tests, smoke runs). Returns the bytes, what they hold, and the
    packed Training split (a teacher is asked about those very images)."""
    from emotion.datasets import find_dirty
    from training import data as datasets

    first = runs[0]
    dataset = datasets.load_as_trained(first["data"], first["seed"], first["face_crops"])
    train, val = dataset.splits["Training"], dataset.splits["PublicTest"]
    dropped = 0
    if first["drop_dirty"]:
        duplicate, blank = find_dirty(train.images)
        dropped = int((duplicate | blank).sum())
        train = train.subset(~(duplicate | blank))
    if limit:
        train, val = train.subset(np.arange(min(limit, len(train)))), val.subset(np.arange(min(limit // 4, len(val))))
    shapes = {image.shape for image in [*train.images, *val.images]}
    if len(shapes) != 1:  # folder datasets of photos: the bundle takes images of one size only
        raise ValueError(f"the images differ in size ({len(shapes)} sizes): a bundle packs one size")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x_train=np.stack(train.images).astype(np.uint8),
        y_train=train.labels.astype(np.int64),
        x_val=np.stack(val.images).astype(np.uint8),
        y_val=val.labels.astype(np.int64),
    )
    packed = lzma.compress(buffer.getvalue(), preset=6)
    meta = {
        "dataset": dataset.name,
        "labels": list(dataset.labels),
        "source": str(first["data"]),
        "training": len(train),
        "public_test": len(val),
        "dirty_left_out": dropped,
        "limit": limit,
    }
    return packed, meta, train


def pack_models(runs: list[dict], train, labels: tuple[str, ...], out: Path, cache: Path | None = None) -> None:
    """For runs that start from a registered model (init_from) or learn from one (teacher): its
    weights, as float16 (half the bytes; training computes in bf16 anyway), or its flip-TTA answers
    on the packed Training images, as float16, into `out`, once per model; each run's `packed`
    names its files, which `run` puts in place of the model names. A teacher's answers are kept in
    `cache` (default runs/), so a second pack does not ask it again."""
    from emotion.config import REPO_ROOT
    from training.distill import initial_weights, teacher_probabilities

    for run in runs:
        packed = {}
        if run["init_from"]:
            packed["init_from"] = f"init_{run['init_from']}_{run['model']}.npz"
            if not (out / packed["init_from"]).is_file():
                size = [run["input_size"], run["input_size"]]
                expected = {"backbone": run["model"], "labels": list(labels), "input_size": size}
                expected.update(channels=run["channels"], equalize=run["equalize"])
                weights = initial_weights(run["init_from"], expected)
                np.savez(out / packed["init_from"], *[w.astype(np.float16) for w in weights])
        if run["teacher"]:
            packed["teacher"] = f"teacher_{run['teacher']}.npz"
            if not (out / packed["teacher"]).is_file():
                kept = (cache or REPO_ROOT / "runs") / f"teacher_probs_{run['teacher']}.npz"
                kept.parent.mkdir(parents=True, exist_ok=True)
                probs = teacher_probabilities(run["teacher"], train, labels, kept)
                np.savez(out / packed["teacher"], probs=probs.astype(np.float16))
        if packed:
            run["packed"] = packed


def load_packed(path: str | Path, config=None):
    """A bundle's data file as a training.data.Dataset (Training and PublicTest), for load_arrays."""
    from training.data import Dataset, Split

    path = Path(path)
    meta = json.loads((path.parent / "data.json").read_text())
    with lzma.open(path) as handle:
        arrays = np.load(io.BytesIO(handle.read()))
        splits = {}
        for name, key in (("Training", "train"), ("PublicTest", "val")):
            labels = arrays[f"y_{key}"]
            splits[name] = Split(list(arrays[f"x_{key}"]), labels, [f"{name} {i}" for i in range(len(labels))])
    return Dataset(meta["dataset"], tuple(meta["labels"]), splits)


def download_wheels(folder: Path) -> list[Path]:
    """pip download the WHEELS at the versions installed here, for CPython 3.12 on x86-64 Linux."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version"]
    command += ["3.12", "--implementation", "cp", *platforms, "-d", str(folder), *wanted]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pip download failed (network?):\n{result.stderr[-2000:]}")
    return sorted(folder.glob("*.whl"))


def copy_code(repo_root: Path, target: Path) -> None:
    """emotion/ and training/ (Python files and the config files), nothing else of the checkout."""
    for package in ("emotion", "training"):
        for source in sorted((repo_root / package).rglob("*")):
            if source.suffix in (".py", ".toml") and "__pycache__" not in source.parts:
                destination = target / source.relative_to(repo_root)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)


def pack(
    config_files: list[str],
    out: Path,
    overrides: dict,
    limit: int = 0,
    wheels: Path | None = None,
    skip_wheels: bool = False,
    backend: str = "jax",
) -> Path:
    """Write the bundle folder `out` and return it; see the module docstring."""
    from emotion.config import REPO_ROOT, find_fer2013_csv

    if "data" not in overrides:
        found = find_fer2013_csv()
        if found is None:
            raise ValueError("no dataset: pass --data PATH")
        overrides = {**overrides, "data": str(found)}
    runs = plan_runs(config_files, overrides)
    if len(runs) > RETURN_FILES - 1:
        raise ValueError(f"{len(runs)} runs: at most {RETURN_FILES - 1} come back (one file each, plus the summary)")
    sizes = {r["name"]: estimated_return_bytes(r) for r in runs}
    total = sum(sizes.values())
    if total > RETURN_FILES * RETURN_FILE_LIMIT - MIB:
        raise ValueError(f"the runs' weights come to {total / MIB:.0f} MiB; at most 64 MiB come back")
    if out.exists():
        shutil.rmtree(out)
    (out / "code").mkdir(parents=True)
    copy_code(REPO_ROOT, out / "code")
    packed, meta, train = pack_data(runs, limit)
    (out / DATA_FILE).write_bytes(packed)
    (out / "data.json").write_text(json.dumps(meta, indent=2))
    pack_models(runs, train, tuple(meta["labels"]), out)
    for run in runs:
        run["data"] = DATA_FILE  # relative to the bundle; `run` makes it absolute there
    (out / "runs.json").write_text(json.dumps(runs, indent=2))
    if not skip_wheels:
        found_wheels = sorted(wheels.glob("*.whl")) if wheels else download_wheels(out / "wheels")
        if wheels:
            (out / "wheels").mkdir()
            for wheel in found_wheels:
                shutil.copy2(wheel, out / "wheels" / wheel.name)
    (out / "run.sh").write_text(RUN_SH.format(bundle=out.name, backend=backend))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    if size > BUNDLE_LIMIT:
        raise ValueError(f"the bundle is {size / MIB:.1f} MiB, over the {BUNDLE_LIMIT / MIB:.0f} MiB that may travel")
    log.info("bundle %s: %.1f MiB (data %.1f MiB), %d runs: %s", out, size / MIB, len(packed) / MIB, len(runs), sizes)
    return out


# ---- run (GPU machine) ----
def run_bundle(bundle: Path, out: Path, overrides: dict | None = None, only: list[str] | None = None) -> dict:
    """Train every run of the bundle (or those named in `only`), each in its own process and all at
    once (one small net leaves most of an H200 idle), with `overrides` (e.g. epochs for a probe
    of the speed), then write one zip per run and summary.json to `out`."""
    runs = json.loads((bundle / "runs.json").read_text())
    if only:
        unknown = set(only) - {r["name"] for r in runs}
        if unknown:
            raise ValueError(f"no run named {', '.join(sorted(unknown))} in this bundle")
        runs = [r for r in runs if r["name"] in only]
    out.mkdir(parents=True, exist_ok=True)
    code = bundle / "code"
    configs = code / "runs_to_make"
    configs.mkdir(exist_ok=True)
    started = time.time()
    processes = {}
    for run in runs:
        run = {**run, **(overrides or {}), "data": str((bundle / run["data"]).resolve())}
        for key, file in run.pop("packed", {}).items():  # the carried weights or answers
            run[key] = str((bundle / file).resolve())
        path = configs / f"{run['name']}.json"
        path.write_text(json.dumps(run))
        command = [sys.executable, "-m", "training.train", "--config", str(path), "--skip-export"]
        console = open(configs / f"{run['name']}.console.log", "w")  # noqa: SIM115 (closed below)
        process = subprocess.Popen(command, cwd=code, stdout=console, stderr=subprocess.STDOUT)
        processes[run["name"]] = (process, console)
    # config.json comes home naming the registered models, not this machine's packed files.
    originals = {r["name"]: {k: r[k] for k in r.get("packed", {})} for r in runs}
    while any(p.poll() is None for p, _ in processes.values()):
        time.sleep(2.0)
    summary = {
        "backend": os.environ.get("KERAS_BACKEND", ""),
        "keras": importlib.metadata.version("keras"),
        "device": device_name(),
        "minutes": round((time.time() - started) / 60, 2),
        "runs": {},
    }
    for name, (process, console) in processes.items():
        console.close()
        run_dir = code / "runs" / name
        state = json.loads((run_dir / "state.json").read_text()) if (run_dir / "state.json").is_file() else {}
        summary["runs"][name] = {
            "exit_code": process.returncode,
            "epochs": state.get("epoch", 0),
            "best_val_accuracy": state.get("best_val_accuracy"),
            "best_epoch": state.get("best_epoch", -1) + 1,
            "stopped_by_time_budget": state.get("stopped_by_time_budget"),
            "median_epoch_seconds": float(np.median(state["epoch_seconds"][1:] or state["epoch_seconds"]))
            if state.get("epoch_seconds")
            else None,
            "files": write_result(name, run_dir, configs / f"{name}.console.log", out, originals[name]),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


def device_name() -> str:
    try:
        import jax

        return ", ".join(str(d.device_kind) for d in jax.devices())
    except ImportError:
        return "unknown"


def write_result(name: str, run_dir: Path, console: Path, out: Path, originals: dict | None = None) -> list[str]:
    """runs/<name>'s best.keras, config.json (with `originals`, e.g. the init_from and teacher
    model names, restored), state.json and logs, zipped into out/<name>.zip, cut into parts of at
    most RETURN_FILE_LIMIT bytes when larger (<name>.zip.001, .002, ...)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in ("best.keras", "config.json", "state.json", "train.log"):
            if member == "config.json" and originals and (run_dir / member).is_file():
                config = {**json.loads((run_dir / member).read_text()), **originals}
                archive.writestr(member, json.dumps(config, indent=2))
            elif (run_dir / member).is_file():
                archive.write(run_dir / member, member)
        if console.is_file():
            archive.write(console, "console.log")
    payload = buffer.getvalue()
    if len(payload) <= RETURN_FILE_LIMIT:
        (out / f"{name}.zip").write_bytes(payload)
        return [f"{name}.zip"]
    parts = []
    for i, start in enumerate(range(0, len(payload), RETURN_FILE_LIMIT), start=1):
        parts.append(f"{name}.zip.{i:03d}")
        (out / parts[-1]).write_bytes(payload[start : start + RETURN_FILE_LIMIT])
    return parts


# ---- unpack (CPU machine) ----
def unpack(folder: Path, data: str | None = None, force: bool = False) -> list[str]:
    """Turn what came back into runs/<name>/ folders (best.keras, config.json with `data` pointing
    at this machine's dataset, state.json, logs); returns the run names."""
    from emotion.config import REPO_ROOT, find_fer2013_csv

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    archives: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".zip"):
            archives.setdefault(path.name[: -len(".zip")], []).append(path)
        elif ".zip." in path.name and path.name.rsplit(".", 1)[-1].isdigit():
            archives.setdefault(path.name.split(".zip.")[0], []).append(path)
    if not archives:
        raise ValueError(f"{folder}: no run archive (<name>.zip or <name>.zip.001 ...) in it")
    local_data = data or (str(find_fer2013_csv()) if find_fer2013_csv() else "")
    names = []
    for name, parts in sorted(archives.items()):
        run_dir = REPO_ROOT / "runs" / name
        if run_dir.exists() and not force:
            raise ValueError(f"{run_dir} exists: move it away or pass --force")
        payload = b"".join(p.read_bytes() for p in sorted(parts))
        try:
            archive = zipfile.ZipFile(io.BytesIO(payload))
        except zipfile.BadZipFile as err:
            raise ValueError(f"{name}: a damaged or incomplete archive ({len(parts)} part(s))") from err
        if "best.keras" not in archive.namelist():
            raise ValueError(f"{name}: no best.keras (the run trained no epoch? see its console.log)")
        run_dir.mkdir(parents=True, exist_ok=True)
        archive.extractall(run_dir)
        config = json.loads((run_dir / "config.json").read_text())
        config["data"] = local_data or config["data"]
        (run_dir / "config.json").write_text(json.dumps(config, indent=2))
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="write a bundle folder and print the command to run on the GPU machine")
    p.add_argument("--config", action="append", required=True, help="a run's config file (repeatable)")
    p.add_argument("--out", type=Path, help="bundle folder (default runs/gpu_bundle)")
    p.add_argument("--data", help="FER2013 CSV (default: the one emotion.config finds)")
    p.add_argument("--epochs", type=int, help="override every run's epochs (smoke runs)")
    p.add_argument("--time-budget-min", type=float, default=7.5, help="training minutes per run (default 7.5)")
    p.add_argument("--limit", type=int, default=0, help="pack only this many Training images (smoke runs)")
    p.add_argument("--wheels", type=Path, help="take the wheels from this folder instead of pip download")
    p.add_argument("--skip-wheels", action="store_true", help="carry no wheels (the target has Keras)")
    p.add_argument("--backend", default="jax", choices=("jax", "torch", "tensorflow"))
    r = commands.add_parser("run", help="(on the GPU machine, through run.sh) train the bundle's runs")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--epochs", type=int, help="override every run's epochs (a speed probe: --epochs 2)")
    r.add_argument("--time-budget-min", type=float, help="override every run's training minutes")
    r.add_argument("--only", nargs="+", help="train only these runs")
    u = commands.add_parser("unpack", help="turn the files that came back into runs/<name>/ folders")
    u.add_argument("folder", type=Path)
    u.add_argument("--data", help="this machine's FER2013 CSV (default: the one emotion.config finds)")
    u.add_argument("--force", action="store_true", help="replace existing runs/<name>/ folders")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "pack":
            from emotion.config import REPO_ROOT

            overrides = {"time_budget_min": args.time_budget_min}
            overrides.update({k: v for k, v in (("data", args.data), ("epochs", args.epochs)) if v is not None})
            out = pack(
                args.config,
                args.out or REPO_ROOT / "runs" / "gpu_bundle",
                overrides,
                args.limit,
                args.wheels,
                args.skip_wheels,
                args.backend,
            )
            where = out.resolve().relative_to(REPO_ROOT) if out.resolve().is_relative_to(REPO_ROOT) else out
            print(f"bundle ready: {out}\nthe one command to run on the GPU machine, from the repository's root")
            print(f"(carry {where}; results go to $OUT, else {where}/out):\n  sh {where}/run.sh")
        elif args.command == "run":
            overrides = {k: v for k, v in (("epochs", args.epochs), ("time_budget_min", args.time_budget_min)) if v}
            summary = run_bundle(args.bundle.resolve(), args.out.resolve(), overrides, args.only)
            if any(r["exit_code"] != 0 for r in summary["runs"].values()):
                sys.exit(1)
        else:
            names = unpack(args.folder, args.data, args.force)
            print("unpacked: " + ", ".join(names) + "\nnext, for each NAME:")
            print("  python -m training.train --name NAME --export-only && python -m training.evaluate --model NAME")
            print("then: python -m training.committee --search --tta")
    except (ValueError, RuntimeError, OSError) as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    main()
