"""Grad-CAM explanations: which pixels of a face crop pushed the model towards its label.

The serving runtime (LiteRT) has no gradients, so Grad-CAM runs on the model's Keras file
(ModelInfo.keras_path; a committee is explained through its first, strongest member). The input
goes through the same preprocessing as serving (EmotionModel.preprocess), the gradient of the
class probability is taken with respect to the last convolutional feature map with a spatial
extent (H', W' > 1), and the channel-weighted map is ReLU'd, normalised to [0, 1] and resized
to the crop. Pages call `gradcam_overlay`, which computes in a separate explainer process (`explainer`):
Keras and TensorFlow load there, which takes seconds of CPU that would otherwise hold the server's GIL.
A page calls `warm_up(model)` as soon as an explanation may be asked for: the Keras model loads in the
explainer (once, shared by every session) while the user looks at the result, and a click only waits
for the gradient of one face.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from emotion.detectors import Box, crop, expand_box
from emotion.registry import EmotionModel, ModelInfo, ModelNotFoundError, list_models, load

_CONV_CLASSES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
_keras_cache: dict[str, tuple[Any, Any]] = {}  # keras path -> (model, grad model)
_keras_lock = threading.Lock()
_explainer: ProcessPoolExecutor | None = None  # see explainer()
_explainer_lock = threading.Lock()
_warming: dict[str, Future] = {}  # model name -> its warm-up in the explainer (submitted once)
_warming_lock = threading.Lock()
log = logging.getLogger(__name__)
T = TypeVar("T")


class ExplainError(RuntimeError):
    """Grad-CAM is not available for this model; str(error) is a message for the user."""


def explained_model(model_name: str) -> tuple[ModelInfo, EmotionModel]:
    """The single model whose Keras file explains `model_name` (a committee's first member)."""
    infos = {m.name: m for m in list_models()}
    if model_name not in infos:
        raise ExplainError(f"model {model_name!r} is not registered")
    info = infos[model_name]
    if info.kind == "committee":
        if not info.members or info.members[0] not in infos:
            raise ExplainError(f"committee {model_name!r} has no registered first member to explain")
        info = infos[info.members[0]]
    if info.keras_path is None:
        raise ExplainError(f"model {info.name!r} has no Keras file, so Grad-CAM is not available")
    try:
        return info, load(info.name)
    except ModelNotFoundError as error:
        raise ExplainError(str(error)) from None


def last_conv_layer(model: Any) -> Any:
    """The last Conv2D-like layer whose output still has a spatial grid (not an SE 1x1 squeeze)."""
    candidates = [
        layer
        for layer in model.layers  # the backbones are flat functional models
        if type(layer).__name__ in _CONV_CLASSES and len(layer.output.shape) == 4 and min(layer.output.shape[1:3]) > 1
    ]
    if not candidates:
        raise ExplainError(f"model {model.name!r} has no convolutional layer with a spatial output")
    return candidates[-1]


def _load_keras(path: Path) -> tuple[Any, Any]:
    """(model, grad_model) for a Keras file, loaded once per process; grad_model maps
    (N, H, W, C) -> [(N, H', W', F) conv features, (N, K) probabilities]."""
    key = str(path)
    with _keras_lock:
        if key not in _keras_cache:
            import keras  # heavy: only imported when an explanation is asked for

            model = keras.models.load_model(path, compile=False)
            conv = last_conv_layer(model)
            grad_model = keras.Model(model.inputs, [conv.output, model.output])
            _keras_cache[key] = (model, grad_model)
        return _keras_cache[key]


def gradcam(face_crop: np.ndarray, model_name: str, class_index: int | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM of one face crop (uint8 (h, w) or (h, w, 3)) -> ((h, w) float32 in [0, 1], class index).

    class_index None explains the class the Keras model predicts for this crop.
    """
    import tensorflow as tf

    info, emotion_model = explained_model(model_name)
    _, grad_model = _load_keras(info.keras_path)
    inputs = tf.convert_to_tensor(emotion_model.preprocess([face_crop]))  # (1, H, W, C) float32
    with tf.GradientTape() as tape:
        features, probs = grad_model(inputs, training=False)  # (1, H', W', F), (1, K)
        index = int(tf.argmax(probs[0])) if class_index is None else int(class_index)
        target = probs[:, index]
    grads = tape.gradient(target, features)  # (1, H', W', F)
    weights = tf.reduce_mean(grads, axis=(1, 2))  # (1, F)
    cam = tf.nn.relu(tf.reduce_sum(features * weights[:, None, None, :], axis=-1))[0].numpy()  # (H', W')
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else np.zeros_like(cam)
    height, width = face_crop.shape[:2]
    return cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR), index


def overlay(face_crop: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a (h, w) [0, 1] heatmap (JET colours) over a crop -> RGB uint8 (h, w, 3)."""
    rgb = cv2.cvtColor(face_crop, cv2.COLOR_GRAY2RGB) if face_crop.ndim == 2 else face_crop[:, :, :3]
    colored = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, colored, alpha, 0.0)


def face_crop(image: np.ndarray, box: Box | list[int], margin: float = 0.1) -> np.ndarray:
    """The crop analyze() classified for a box (x, y, w, h): the box grown by `margin`, clipped."""
    box = box if isinstance(box, Box) else Box(*box)
    height, width = image.shape[:2]
    return crop(image, expand_box(box, margin, width, height)).copy()


def gradcam_overlay(
    image: np.ndarray, box: Box | list[int], model_name: str, label: str | None = None, *, margin: float = 0.1
) -> np.ndarray:
    """RGB uint8 (h, w, 3) overlay of Grad-CAM on the face crop of `box` in an RGB (H, W, 3) image.

    label: the class to explain (the face's predicted label); None explains the Keras argmax.
    The gradient is computed in the explainer process (`explainer`), where the Keras model stays warm.
    Raises ExplainError when the model cannot be explained (no Keras file, unknown label).
    """
    info, _ = explained_model(model_name)
    class_index = None
    if label is not None:
        if label not in info.labels:
            raise ExplainError(f"label {label!r} is not one of {info.name}'s labels")
        class_index = info.labels.index(label)
    face = face_crop(image, box, margin)
    heatmap, _ = _in_explainer(gradcam, face, model_name, class_index)
    return overlay(face, heatmap)


def explainer() -> ProcessPoolExecutor:
    """The process that runs Grad-CAM, started on first use (one per server process, shared by every
    session). TensorFlow's import and a Keras load take seconds of CPU and would hold the server's GIL
    (every user's page would stall); in their own process they do not, and the models stay warm there."""
    global _explainer
    with _explainer_lock:
        if _explainer is None:
            pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_explainer,
                initargs=(os.getpid(),),
            )
            # A spawned child re-runs the parent's __main__ file, which under Streamlit is the page script:
            # hide it while the worker starts (it starts on the first submit), so the child imports only this.
            placeholder, main = types.ModuleType("__main__"), sys.modules.get("__main__")
            sys.modules["__main__"] = placeholder
            try:
                pool.submit(int).result()
            finally:
                if sys.modules.get("__main__") is placeholder:
                    sys.modules["__main__"] = main
            _explainer = pool
        return _explainer


def exit_with_parent(parent: int, poll_s: float = 2.0) -> None:
    """In a helper process the server started (the explainer, the FER2013 warm-up): exit as soon as
    `parent`, the server's pid, is no longer this process's parent (the server stopped, even killed), so
    that no helper lingers and takes CPU from whatever runs next. The pid is passed in rather than read
    here because the server may already be gone when the helper starts."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_explainer(parent: int) -> None:
    """In the explainer: a lower CPU priority (its warm-up, a TensorFlow import and a Keras load, runs
    while pages answer their users, and must not slow them), and exit with the server, never linger with
    TensorFlow."""
    if hasattr(os, "nice"):
        os.nice(5)
    exit_with_parent(parent)


def _in_explainer(function: Callable[..., T], *args: Any) -> T:
    """function(*args) in the explainer process; a crashed explainer is started again once."""
    global _explainer
    for attempt in range(2):
        try:
            return explainer().submit(function, *args).result()
        except BrokenProcessPool:
            with _explainer_lock:
                _explainer = None
            with _warming_lock:
                _warming.clear()
            if attempt:
                raise ExplainError("the explanation process stopped; try again") from None
    raise AssertionError("unreachable")


def _warm(model_name: str) -> str:
    """In the explainer process: load the Keras model and run the eager kernels once; a message."""
    started = time.perf_counter()
    try:
        gradcam(np.full((48, 48), 128, np.uint8), model_name)
    except ExplainError as error:  # nothing to warm: the page says so when asked
        return f"no Grad-CAM warm-up for {model_name}: {error}"
    return f"Grad-CAM for {model_name} warm in {time.perf_counter() - started:.1f} s"


def warm_up(model_name: str) -> Future:
    """Load the Keras model that explains `model_name` in the explainer process, once per server process;
    returns the Future of its message (do not wait on it in a page). Later calls return the same Future."""
    with _warming_lock:
        future = _warming.get(model_name)
        if future is None:
            future = explainer().submit(_warm, model_name)
            future.add_done_callback(_log_warm_up)
            _warming[model_name] = future
        return future


def _log_warm_up(future: Future) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is None:
        log.info("%s", future.result())
    else:  # the click that follows gets the error itself
        log.warning("Grad-CAM warm-up failed: %s", error)
