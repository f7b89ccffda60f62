"""Config files (one per shipped model, lineage included) and the GPU bundle: pack, the printed
command run in a fresh process under the JAX backend, unpack, export under TensorFlow, evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from emotion.config import MODELS_DIR
from training import gpu_bundle
from training.train import CONFIGS_DIR, TrainConfig, expand_plan, read_config_file

# What a config file says differently from the config.json saved beside the shipped weights, and why:
# the name the ancestor had when the run was made has since moved on (see the files' `about`).
RENAMED = {
    ("vgg_wide_ft", "init_from"): ("vgg_wide_r1", "vgg_wide"),
    ("vgg_kd", "teacher"): ("committee_then", "committee"),
}


def _final_config(spec: dict) -> dict:
    """The resolved config of a file's last run (its last stage), as train would save it."""
    preset, _ = expand_plan(spec)[-1]
    config = asdict(TrainConfig(**{**asdict(TrainConfig()), **preset}))
    config["name"] = config["name"] or config["model"]
    return config


def test_every_config_file_reads():
    files = sorted(CONFIGS_DIR.glob("*.toml"))
    assert len(files) >= 18
    for path in files:
        spec = read_config_file(path)
        assert spec.get("about"), f"{path.name}: say what the run is"
        if spec.get("kind") not in ("committee", "soup"):
            TrainConfig(**expand_plan(spec)[0][0])


@pytest.mark.parametrize("model", sorted(p.name for p in MODELS_DIR.iterdir() if (p / "manifest.json").is_file()))
def test_each_shipped_model_has_the_config_file_that_made_it(model):
    """training/configs/<model>.toml resolves to the config saved beside the shipped weights
    (committees: the same members and vote)."""
    spec = read_config_file(CONFIGS_DIR / f"{model}.toml")
    manifest = json.loads((MODELS_DIR / model / "manifest.json").read_text())
    if manifest["kind"] == "committee":
        assert spec["kind"] == "committee" and spec["vote"] == manifest["vote"]
        assert sorted(spec["members"]) == sorted(manifest["members"])
        assert spec.get("chosen_with_tta", False) == manifest.get("chosen_with_tta", False)
        return
    if "soup" in manifest:  # training.soup: the chosen subset of the file's members
        assert spec["kind"] == "soup" and manifest["soup"]["candidates"] == spec["members"]
        assert set(manifest["soup"]["members"]) <= set(spec["members"]) and len(manifest["soup"]["members"]) >= 2
        for member in spec["members"]:
            assert (CONFIGS_DIR / f"{member}.toml").is_file(), f"{model}: no config for {member}"
        return
    saved = json.loads((MODELS_DIR / model / "config.json").read_text())
    ours = _final_config(spec)
    for key, value in saved.items():
        if key == "data":
            continue
        if ours["fit_to_budget"] and key in ("epochs", "time_budget_min"):  # fitted to the lent minutes
            assert value > 0 and (key != "epochs" or value <= ours["epochs"]), f"{model}: {key} {value!r}"
            continue
        expected = RENAMED.get((model, key), (value, value))
        assert ours[key] == expected[0] and value == expected[1], f"{model}: {key} {ours[key]!r} vs saved {value!r}"
    for key in ("init_from", "teacher"):  # the lineage: every ancestor has its own file
        if ours[key]:
            assert (CONFIGS_DIR / f"{ours[key]}.toml").is_file(), f"{model}: no config for {ours[key]}"


def test_config_files_reject_unknown_settings(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('model = "vgg"\nepoch = 3\n[[stages]]\nlr = 1\n')
    with pytest.raises(ValueError, match="epoch, lr"):
        read_config_file(path)
    path.write_text("model = \n")
    with pytest.raises(ValueError, match=r"x\.toml"):
        read_config_file(path)


def test_seeds_and_stages_expand_into_named_runs_that_resume():
    plan = expand_plan({"model": "vgg", "name": "v", "seeds": [1, 2], "stages": [{"epochs": 4}, {"epochs": 8}]})
    assert [(p["name"], p["seed"], p["epochs"], resume) for p, resume in plan] == [
        ("v_s1", 1, 4, False),
        ("v_s1", 1, 8, True),
        ("v_s2", 2, 4, False),
        ("v_s2", 2, 8, True),
    ]


def test_a_bundle_trains_single_runs_that_share_one_view_of_the_data(tmp_path):
    def write(name, text):
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    plain = write("a.toml", 'model = "vgg"\nname = "a"\nequalize = false\n')
    # A fine-tune takes its start's preprocessing, as training.train does at home.
    (tuned,) = gpu_bundle.plan_runs([write("b.toml", 'init_from = "vgg_ft"\nname = "b"\n')], {"data": "x.csv"})
    assert tuned["model"] == "vgg" and tuned["init_from"] == "vgg_ft" and tuned["equalize"] is False
    with pytest.raises(ValueError, match="stages"):
        gpu_bundle.plan_runs([write("c.toml", 'model = "vgg"\n[[stages]]\nepochs = 2\n')], {"data": "x.csv"})
    with pytest.raises(ValueError, match="input_size"):
        gpu_bundle.plan_runs([plain, write("d.toml", 'model = "vgg"\nname = "d"\ninput_size = 64\n')], {"data": "x"})
    with pytest.raises(ValueError, match="share a name"):
        gpu_bundle.plan_runs([plain, plain], {"data": "x.csv"})
    configs = [str(CONFIGS_DIR / f"gpu_{name}.toml") for name in ("vgg_lean320", "vgg_lean", "vgg", "vgg_wide")]
    runs = gpu_bundle.plan_runs(configs, {"time_budget_min": 7.5})
    assert [r["name"] for r in runs] == [f"gpu_vgg_lean320_s{s}" for s in (1, 2, 3)] + [
        "gpu_vgg_lean_s1",
        "gpu_vgg_lean_s2",
        "gpu_vgg_s1",
        "gpu_vgg_wide_s1",
    ]
    assert all(r["optimizer"] == "sgd" and r["fit_to_budget"] and r["epochs"] == 300 for r in runs)
    weights = sum(gpu_bundle.estimated_return_bytes(r) for r in runs)
    assert weights < gpu_bundle.RETURN_FILES * gpu_bundle.RETURN_FILE_LIMIT, "the seven runs come back"


def test_a_fine_tune_carries_its_start_and_its_teachers_answers(tmp_path):
    """pack_models writes the init_from weights and the teacher's answers as float16 files, once per
    model; on the GPU machine those files stand in for the registered models, and config.json comes
    home naming the models again."""
    from training.data import Split
    from training.distill import inherited_settings, initial_weights, is_packed, teacher_probabilities

    images = [np.full((48, 48), 40 * i, np.uint8) for i in range(5)]
    train = Split(images, np.arange(5) % 7, [f"Training {i}" for i in range(5)])
    labels = tuple(json.loads((MODELS_DIR / "vgg_ft" / "manifest.json").read_text())["labels"])
    (run,) = gpu_bundle.plan_runs(
        [str(_write(tmp_path / "kd.toml", 'init_from = "vgg_ft"\nteacher = "vgg_ft"\nname = "kd"\n'))],
        {"data": "x.csv"},
    )
    twin = {**run, "name": "kd2"}
    gpu_bundle.pack_models([run, twin], train, labels, tmp_path, cache=tmp_path / "cache")
    assert run["packed"] == {"init_from": "init_vgg_ft_vgg.npz", "teacher": "teacher_vgg_ft.npz"} == twin["packed"]
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["init_vgg_ft_vgg.npz", "teacher_vgg_ft.npz"]
    assert (tmp_path / "cache" / "teacher_probs_vgg_ft.npz").is_file(), "asked once, kept for the next pack"

    init, teacher = str(tmp_path / "init_vgg_ft_vgg.npz"), str(tmp_path / "teacher_vgg_ft.npz")
    assert is_packed(init) and not is_packed("vgg_ft") and inherited_settings(init) == {}
    expected = {"backbone": "vgg", "labels": list(labels), "input_size": [48, 48], "channels": 1, "equalize": False}
    home = initial_weights("vgg_ft", expected)
    carried = initial_weights(init, expected)
    assert [w.shape for w in carried] == [w.shape for w in home] and all(w.dtype == np.float32 for w in carried)
    assert max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-6)) for a, b in zip(carried, home, strict=True)) < 1e-3
    asked = teacher_probabilities("vgg_ft", train, labels)
    np.testing.assert_allclose(teacher_probabilities(teacher, train, labels), asked, atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        teacher_probabilities(teacher, train.subset(np.arange(3)), labels)

    run_dir = tmp_path / "runs" / "kd"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({**run, "init_from": init, "teacher": teacher}))
    home_names = {"init_from": "vgg_ft", "teacher": "vgg_ft"}
    gpu_bundle.write_result("kd", run_dir, tmp_path / "none.log", tmp_path, home_names)
    with zipfile.ZipFile(tmp_path / "kd.zip") as archive:
        saved = json.loads(archive.read("config.json"))
    assert saved["init_from"] == "vgg_ft" and saved["teacher"] == "vgg_ft"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_large_result_comes_back_in_parts_and_unpacks_whole(tmp_path, monkeypatch):
    import emotion.config

    run_dir = tmp_path / "gpu" / "runs" / "big"
    run_dir.mkdir(parents=True)
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()  # incompressible
    (run_dir / "best.keras").write_bytes(payload)
    (run_dir / "config.json").write_text(json.dumps({"name": "big", "data": "/gpu/bundle/data.npz.xz"}))
    (run_dir / "state.json").write_text("{}")
    monkeypatch.setattr(gpu_bundle, "RETURN_FILE_LIMIT", 100_000)
    out = tmp_path / "out"
    out.mkdir()
    parts = gpu_bundle.write_result("big", run_dir, tmp_path / "no_console.log", out)
    assert parts == ["big.zip.001", "big.zip.002", "big.zip.003", "big.zip.004"]
    assert all((out / p).stat().st_size <= 100_000 for p in parts)

    monkeypatch.setattr(emotion.config, "REPO_ROOT", tmp_path / "home")
    assert gpu_bundle.unpack(out, data="/home/fer2013.csv.gz") == ["big"]
    home = tmp_path / "home" / "runs" / "big"
    assert (home / "best.keras").read_bytes() == payload
    assert json.loads((home / "config.json").read_text())["data"] == "/home/fer2013.csv.gz"
    with pytest.raises(ValueError, match="exists"):
        gpu_bundle.unpack(out, data="x")
    (out / "big.zip.004").unlink()
    with pytest.raises(ValueError, match="damaged or incomplete"):
        gpu_bundle.unpack(out, data="x", force=True)
    with pytest.raises(ValueError, match="no run archive"):
        gpu_bundle.unpack(tmp_path / "home", data="x")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two trainings and XLA compilation: minutes on 2 shared cores
def test_pack_run_under_jax_unpack_export_and_evaluate(tmp_path, monkeypatch):
    """The whole trip on this CPU: pack a small FER2013-layout CSV, run the printed command in a
    fresh process with KERAS_BACKEND=jax (1 epoch), unpack, export to TFLite under TensorFlow,
    evaluate, and register a committee of the result."""
    import emotion.config
    import emotion.registry as registry
    from tests.test_training import _write_csv
    from training import train
    from training.committee import register_committee
    from training.evaluate import evaluate

    csv_path = _write_csv(tmp_path / "fer.csv.gz", per_split=(280, 70, 70))
    config = tmp_path / "tiny.toml"
    config.write_text(
        'about = "a smoke run"\nmodel = "vgg"\nname = "tiny"\nequalize = false\nepochs = 3\nbatch_size = 32\n'
        'optimizer = "sgd"\nlearning_rate = 0.01\nfit_to_budget = true\naugment_recipe = "vggnet2021"\n'
    )
    overrides = {"data": str(csv_path), "time_budget_min": 20.0}  # the GPU configs' cycle, fitted to the budget
    bundle = gpu_bundle.pack([str(config)], tmp_path / "bundle", overrides, skip_wheels=True)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    assert size < 2 * 1024 * 1024 and (bundle / "code" / "training" / "train.py").is_file()
    assert json.loads((bundle / "data.json").read_text())["training"] == 280

    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(Path(os.sys.executable)), "OUT": str(out), "KERAS_BACKEND": "jax"}
    result = subprocess.run(["sh", "bundle/run.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "jax" and summary["runs"]["tiny"]["epochs"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "tiny.zip"]
    with zipfile.ZipFile(out / "tiny.zip") as archive:
        assert {"best.keras", "config.json", "state.json", "train.log"} <= set(archive.namelist())

    monkeypatch.setattr(emotion.config, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(emotion.config, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setattr(train, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(train, "MODELS_DIR", tmp_path / "models")
    assert gpu_bundle.unpack(out, data=str(csv_path)) == ["tiny"]
    out_dir = train.main(["--name", "tiny", "--export-only"])
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["backbone"] == "vgg" and (out_dir / "model.tflite").is_file()
    assert json.loads((out_dir / "config.json").read_text())["optimizer"] == "sgd"
    report = evaluate("tiny", data=str(csv_path))
    assert report["n"] == 70 and 0.0 <= report["accuracy"] <= 1.0
    history = json.loads((out_dir / "history.json").read_text())
    assert history["best_val_accuracy"] == summary["runs"]["tiny"]["best_val_accuracy"]
    assert len(history["history"]["val_accuracy"]) == 3 and len(history["epoch_seconds"]) == 3
    assert history["fitted_epochs"] == 3, "the cycle was sized after the warm-up (capped at the config's epochs)"
    # The unpacked run is a committee candidate like any other model.
    train.main(
        ["--data", str(csv_path), "--name", "tiny2", "--epochs", "1", "--batch-size", "32", "--equalize", "false"]
    )
    evaluate("tiny2", data=str(csv_path))
    register_committee("pair", ["tiny", "tiny2"], models_dir=tmp_path / "models")
    assert registry.load("pair", tmp_path / "models").predict_faces([np.zeros((48, 48), np.uint8)]).shape == (1, 7)


def test_lineage_trains_missing_ancestors_first_from_their_files(tmp_path, monkeypatch):
    """--lineage walks init_from and teacher to their own config files; a registered ancestor is
    used as it is, a missing one without a file is named."""
    import emotion.config
    from training import train

    monkeypatch.setattr(emotion.config, "MODELS_DIR", tmp_path / "empty")
    made = []
    monkeypatch.setattr(train, "main", lambda argv: made.append(Path(argv[1]).name))
    train.build_lineage(read_config_file(CONFIGS_DIR / "vgg_kd.toml"))
    assert made == ["vgg.toml", "committee_then.toml"], "the start, then the teacher"
    with pytest.raises(SystemExit, match="nothing_like_it"):
        train.build_lineage({"init_from": "nothing_like_it"})
    monkeypatch.setattr(emotion.config, "MODELS_DIR", MODELS_DIR)
    made.clear()
    train.build_lineage(read_config_file(CONFIGS_DIR / "vgg_kd.toml"))
    assert made == ["committee_then.toml"], "vgg ships; committee_then does not"
