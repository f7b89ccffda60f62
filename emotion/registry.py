"""The model registry over models/: one folder per model, each with a manifest.json.

A manifest names the labels, input size, channels and preprocessing the model was trained
with, its serving file (LiteRT/TFLite) and its metrics file, so a model trained on any label set
works everywhere unchanged. A committee's manifest lists its members instead of a serving file.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion import config
from emotion.preprocess import preprocess_batch, ten_crops
from emotion.runtime import TFLiteRunner

log = logging.getLogger(__name__)


class ModelNotFoundError(LookupError):
    """No such model in models/, or its files are missing; the message says what to do."""


def _read_json(path: Path) -> dict:
    """A registry JSON file (manifest, metrics, history, config), parsed once per version of the file: every
    analyze() without a model name resolves the default through all manifests and metrics files.
    The dict is shared between callers: read-only."""
    stat = path.stat()
    return _parse_json(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _parse_json(path: str, mtime_ns: int, size: int) -> dict:  # the version is part of the cache key
    return json.loads(Path(path).read_text())


@dataclass(frozen=True)
class ModelInfo:
    """What manifest.json says, plus the folder it came from."""

    name: str
    folder: Path
    labels: tuple[str, ...]
    input_size: tuple[int, int] = (48, 48)
    channels: int = 1
    equalize: bool = True  # preprocess_face's histogram equalisation, as the model was trained
    kind: str = "single"  # "single" or "committee"
    description: str = ""
    serving_file: str = "model.tflite"
    keras_file: str | None = "model.keras"
    metrics_file: str = "metrics.json"
    history_file: str | None = "history.json"
    members: tuple[str, ...] = ()  # committee members, strongest first
    vote: str = "soft"  # committee: "soft" (mean probability) or "majority"
    # What the serving file outputs: "probabilities" (a softmax) or "logits" (full-integer files
    # end before the softmax, which the registry applies in float; see training.export.logits_model).
    serving_output: str = "probabilities"
    # Calibration: served probabilities are softmax(log-probabilities * class_scale / temperature +
    # class_bias), all fitted on PublicTest by training.evaluate (1.0, no scale and no bias:
    # uncalibrated). The (K,) bias takes back the share of answers that training's class weights gave
    # the rare classes; the (K,) scale (geometric mean 1) lets each class be sharpened or softened on
    # its own ("vector scaling", Guo et al. 2017), which one temperature cannot.
    temperature: float = 1.0
    class_bias: tuple[float, ...] = ()
    class_scale: tuple[float, ...] = ()
    # Averaging views makes answers less confident: TTA answers get a second calibration on the mean.
    tta_temperature: float = 1.0
    tta_class_bias: tuple[float, ...] = ()
    tta_class_scale: tuple[float, ...] = ()
    tta_mode: str = "flip"  # what tta=True means: "flip" or "crops", chosen on PublicTest
    manifest: dict = field(default_factory=dict, compare=False, repr=False)

    def calibration(self, tta: bool = False) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
        """(temperature, (K,) class bias, (K,) class scale) served on one view (tta=False) or on the
        mean of the TTA views (tta=True), as softmax and _rescaled take them."""
        if tta:
            return self.tta_temperature, self.tta_class_bias, self.tta_class_scale
        return self.temperature, self.class_bias, self.class_scale

    @property
    def metrics(self) -> dict:
        """The metrics file's content, or {} when the model has not been evaluated yet."""
        path = self.folder / self.metrics_file
        return _read_json(path) if path.is_file() else {}

    @property
    def history(self) -> dict:
        path = self.folder / (self.history_file or "")
        return _read_json(path) if self.history_file and path.is_file() else {}

    @property
    def training_config(self) -> dict:
        """The resolved training config saved beside the weights, or {} (committees have none)."""
        name = self.manifest.get("config_file")
        path = self.folder / (name or "")
        return _read_json(path) if name and path.is_file() else {}

    @property
    def keras_path(self) -> Path | None:
        return self.folder / self.keras_file if self.keras_file and (self.folder / self.keras_file).is_file() else None


def _read_manifest(folder: Path) -> ModelInfo:
    data = _read_json(folder / "manifest.json")
    return ModelInfo(
        name=data.get("name", folder.name),
        folder=folder,
        labels=tuple(data["labels"]),
        input_size=tuple(data.get("input_size", (48, 48))),
        channels=int(data.get("channels", 1)),
        equalize=bool(data.get("equalize", True)),
        kind=data.get("kind", "single"),
        description=data.get("description", ""),
        serving_file=data.get("serving_file", "model.tflite"),
        keras_file=data.get("keras_file"),
        metrics_file=data.get("metrics_file", "metrics.json"),
        history_file=data.get("history_file"),
        members=tuple(data.get("members", ())),
        vote=data.get("vote", "soft"),
        serving_output=data.get("serving_output", "probabilities"),
        temperature=float(data.get("temperature") or 1.0),
        class_bias=tuple(float(b) for b in data.get("class_bias") or ()),
        class_scale=tuple(float(s) for s in data.get("class_scale") or ()),
        tta_temperature=float(data.get("tta_temperature") or 1.0),
        tta_class_bias=tuple(float(b) for b in data.get("tta_class_bias") or ()),
        tta_class_scale=tuple(float(s) for s in data.get("tta_class_scale") or ()),
        tta_mode=data.get("tta_mode", "flip"),
        manifest=data,
    )


def list_models(models_dir: Path | None = None) -> list[ModelInfo]:
    """Every model folder with a readable manifest, sorted by name; broken ones are logged and skipped."""
    root = models_dir or config.MODELS_DIR
    found = []
    for folder in sorted(p for p in root.glob("*") if (p / "manifest.json").is_file()):
        try:
            found.append(_read_manifest(folder))
        except (KeyError, ValueError, OSError) as error:
            log.warning("skipping %s: unreadable manifest (%s)", folder.name, error)
    return found


def default_model_name(models_dir: Path | None = None) -> str:
    """The single (non-committee) model with the best PublicTest accuracy (the selection split:
    PrivateTest is only reported, never used to choose) among those whose measured latency (see
    _latency_ms) is within `config.DEFAULT_MODEL_BUDGET_MS` a face (equal accuracies: the better
    PublicTest macro-F1); models/DEFAULT names one explicitly when present. The budget is CPU time,
    not the wait: a net that costs more than the budget does not come within it by taking two cores.
    The default serves every webcam frame, so committees (the sum of their members) and slower
    single nets are left to the model menus.
    A model with no measured latency is not ruled out; when every model is over budget, the budget
    is ignored."""
    root = models_dir or config.MODELS_DIR
    models = list_models(root)
    if not models:
        raise ModelNotFoundError(f"no model in {root}: train one with `python -m training.train --model vgg`")
    pinned_file = root / "DEFAULT"
    pinned = pinned_file.read_text().strip() if pinned_file.is_file() else ""
    if pinned in {m.name for m in models}:
        return pinned
    candidates = [m for m in models if m.kind == "single"] or models
    fast = [m for m in candidates if _latency_ms(m) <= config.DEFAULT_MODEL_BUDGET_MS]
    return max(fast or candidates, key=_selection_key).name


def _latency_ms(info: ModelInfo) -> float:
    """Measured per-face cost: the CPU time a face took, all the runtime's threads together, where
    training.evaluate recorded it (a busy machine inflates wall time, not this; a second thread shortens
    the wait, not this), else the median wall time; 0 if none."""
    metrics = info.metrics
    return float(metrics.get("latency_ms_per_face_cpu", metrics.get("latency_ms_per_face", 0.0)))


def _selection_key(info: ModelInfo) -> tuple[float, float]:
    """PublicTest accuracy, then PublicTest macro-F1: accuracies tie (vgg_kd and vgg_ft both get
    2,389 of 3,589 right there), and the file order of the names must not decide then."""
    public = info.metrics.get("public_test", {})
    return public.get("accuracy", 0.0), public.get("macro_f1", 0.0)


class EmotionModel:
    """A loaded model: `predict_faces(crops) -> (N, K)` probabilities over `info.labels`."""

    def __init__(self, info: ModelInfo, members: list[EmotionModel] | None = None, num_threads: int | None = None):
        """num_threads: LiteRT threads per call. The app serves with config.serve_threads() (None);
        jobs that score a whole split use every core (training.evaluate.SCORING_THREADS). The answers
        are the same either way."""
        self.info = info
        self.labels = info.labels
        self._members = members or []
        self._runner = None if members else TFLiteRunner(info.folder / info.serving_file, num_threads)

    def with_info(self, info: ModelInfo) -> EmotionModel:
        """This model served with other settings (temperatures, TTA mode): the same runtime and members,
        no file read again."""
        other = copy.copy(self)
        other.info, other.labels = info, info.labels
        return other

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def threads(self) -> int:
        """LiteRT threads per call (a committee's: its first member's; all are loaded alike)."""
        return self._runner.num_threads if self._runner is not None else self._members[0].threads

    @property
    def members(self) -> list[EmotionModel]:
        """A committee's member models, strongest first; [] for a single model."""
        return list(self._members)

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """Face crops (any size, uint8) -> (N, H, W, C) float32 through the shared preprocessing,
        with this model's settings. A committee has no inputs of its own: use predict_faces."""
        if self._members:
            raise TypeError(f"{self.name} is a committee: each member preprocesses its own way (use predict_faces)")
        return preprocess_batch(crops, self.info.input_size, self.info.channels, self.info.equalize)

    @property
    def tta_mode(self) -> str:
        """The test-time augmentation `tta=True` means for this model: "flip" (the face and its mirror)
        or "crops" (ten crops, see emotion.preprocess.ten_crops), as training.evaluate chose it on
        PublicTest and wrote it to the manifest; "flip" when none was chosen."""
        return self.info.tta_mode

    def predict_inputs(self, inputs: np.ndarray, tta: bool | str = False, calibrated: bool = True) -> np.ndarray:
        """(N, H, W, C) float32 from `preprocess` -> (N, K) probabilities. tta: False, True (the
        model's chosen mode, `tta_mode`), "flip" or "crops"; the views' probabilities are averaged.
        calibrated (the default, what every page, the CLI and reports get) applies the model's
        calibration (ModelInfo.calibration) to each view, and the TTA one to their mean; False gives the
        raw softmax (to fit and measure it)."""
        info = self.info
        calibration = info.calibration() if calibrated else UNCALIBRATED
        mode = _tta_mode(tta, self.tta_mode)
        if mode == "none":
            return self._probabilities(inputs, calibration)
        if mode == "flip":
            mirrored = inputs[:, :, ::-1, :]
            probs = 0.5 * (self._probabilities(inputs, calibration) + self._probabilities(mirrored, calibration))
        else:
            views = ten_crops(inputs)  # (10, N, H, W, C): one interpreter call for all of them
            probs = self._probabilities(views.reshape(-1, *inputs.shape[1:]), calibration)
            probs = probs.reshape(len(views), len(inputs), -1).mean(axis=0)
        return _rescaled(probs, *(info.calibration(tta=True) if calibrated else UNCALIBRATED))

    def _probabilities(self, inputs: np.ndarray, calibration: tuple) -> np.ndarray:
        output = self._runner.predict(inputs)
        if self.info.serving_output == "logits":
            # The softmax the file leaves out comes first: the calibration was fitted on log-probabilities,
            # and with a per-class scale, scaled logits are not scaled log-probabilities plus a constant.
            output = softmax(output)
        return _rescaled(output, *calibration)

    def predict_faces(self, crops: list[np.ndarray], tta: bool | str = False, calibrated: bool = True) -> np.ndarray:
        """Face crops (any size, uint8) -> (N, K) probabilities; a committee votes over its
        members, each preprocessing the crops as it was trained and calibrated with its own
        calibration, all augmented in the committee's TTA mode (tta=True: its own tta_mode);
        calibrated applies this model's own calibration (a committee's on its vote; with TTA its
        TTA calibration)."""
        if self._members:
            mode = _tta_mode(tta, self.tta_mode)
            stacked = np.stack([m.predict_faces(crops, mode) for m in self._members])  # (M, N, K)
            voted = committee_vote(stacked, self.info.vote)
            if not calibrated:
                return voted
            return _rescaled(voted, *self.info.calibration(tta=mode != "none"))
        return self.predict_inputs(self.preprocess(crops), tta, calibrated)


TTA_MODES = ("flip", "crops")
UNCALIBRATED = (1.0, (), ())  # (temperature, class bias, class scale) that leave answers as they are


def _tta_mode(tta: bool | str, chosen: str) -> str:
    """ "none", "flip" or "crops" from a tta argument (True: the model's chosen mode)."""
    if tta is True:
        return chosen
    if not tta or tta == "none":
        return "none"
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}: use one of {', '.join(TTA_MODES)}")
    return tta


def softmax(
    logits: np.ndarray,
    temperature: float = 1.0,
    bias: tuple[float, ...] | np.ndarray = (),
    scale: tuple[float, ...] | np.ndarray = (),
) -> np.ndarray:
    """(N, K) logits (or log-probabilities) -> (N, K) float32 softmax(logits * scale / temperature +
    bias); bias and scale: (K,) per class, or none."""
    scaled = np.asarray(logits, np.float64) / temperature
    if len(scale):
        scaled = scaled * np.asarray(scale, np.float64)
    if len(bias):
        scaled = scaled + np.asarray(bias, np.float64)
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _rescaled(
    probs: np.ndarray, temperature: float, bias: tuple[float, ...] = (), scale: tuple[float, ...] = ()
) -> np.ndarray:
    """(N, K) probabilities with a calibration applied: softmax(log(probs) * scale / temperature + bias)."""
    if (temperature, tuple(bias), tuple(scale)) == UNCALIBRATED:
        return probs
    return softmax(log_probabilities(probs), temperature, bias, scale)


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """log of (N, K) probabilities, floored so that a probability of 0 stays finite."""
    return np.log(np.maximum(np.asarray(probs, np.float64), 1e-12))


def committee_vote(stacked: np.ndarray, vote: str) -> np.ndarray:
    """Combine members' probabilities (M, N, K), members strongest first, into (N, K).

    soft: the mean probability. majority: each member votes its top class; the class with most
    votes wins, ties going to the strongest member's choice among the tied classes; the returned
    probabilities are the mean over the members that voted for the winner (so argmax is the winner).
    """
    if vote == "soft":
        return stacked.mean(axis=0)
    if vote != "majority":
        raise ValueError(f"unknown vote {vote!r}")
    votes = stacked.argmax(axis=2)  # (M, N)
    num_classes = stacked.shape[2]
    out = np.zeros(stacked.shape[1:], np.float32)
    for i in range(votes.shape[1]):
        counts = np.bincount(votes[:, i], minlength=num_classes)
        tied = np.flatnonzero(counts == counts.max())
        winner = next(v for v in votes[:, i] if v in tied)  # members are strongest first
        out[i] = stacked[votes[:, i] == winner, i].mean(axis=0)
    return out


_loaded: dict[tuple[str, str, int], EmotionModel] = {}
_load_lock = threading.Lock()


def load(name: str | None = None, models_dir: Path | None = None, num_threads: int | None = None) -> EmotionModel:
    """Load (once, then cached) the named model or the default; thread-safe. num_threads: see
    EmotionModel (None: config.serve_threads(), as the app serves, unless a batch job asks for more)."""
    root = models_dir or config.MODELS_DIR
    name = name or default_model_name(root)
    num_threads = num_threads or config.serve_threads()
    key = (str(root), name, num_threads)
    with _load_lock:
        if key not in _loaded:
            _loaded[key] = _load_uncached(name, root, num_threads)
        return _loaded[key]


def clear_cache() -> None:
    """Forget every loaded model, so the next load() reads manifests again (after a re-export or a
    new temperature)."""
    with _load_lock:
        _loaded.clear()


def model_info(name: str, models_dir: Path | None = None) -> ModelInfo:
    """The registered model `name`'s manifest and side files, without loading its serving runtime."""
    root = models_dir or config.MODELS_DIR
    if not (root / name / "manifest.json").is_file():
        known = ", ".join(m.name for m in list_models(root)) or "none"
        raise ModelNotFoundError(f"model {name!r} is not in {root} (registered: {known})")
    return _read_manifest(root / name)


def _load_uncached(name: str, root: Path, num_threads: int) -> EmotionModel:
    folder = root / name
    info = model_info(name, root)
    if info.kind == "committee":
        members = [
            _loaded.get((str(root), m, num_threads)) or _load_uncached(m, root, num_threads) for m in info.members
        ]
        if any(m.labels != info.labels for m in members):
            raise ModelNotFoundError(f"committee {name!r}: members disagree on the label list")
        return EmotionModel(info, members)
    if not (folder / info.serving_file).is_file():
        raise ModelNotFoundError(f"model {name!r} has no serving file {info.serving_file}")
    return EmotionModel(info, num_threads=num_threads)
