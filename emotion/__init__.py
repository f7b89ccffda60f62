"""emotion: the shared inference core of the Facial Emotion Recognition Studio.

The façade every page, the CLI and the training code use:

    from emotion import load_image, analyze, annotate, list_models
    image = load_image("photo.jpg")              # RGB uint8 (H, W, 3), EXIF-upright
    faces = analyze(image, model=None, detector="blazeface", tta=False)
    picture = annotate(image, faces)             # boxes and labels drawn, one colour per emotion
"""

import contextlib

# Import order matters: TensorFlow bundles crypto symbols that clash with pylibsrtp (aiortc's SRTP,
# behind the live page), and importing pylibsrtp after TensorFlow segfaults the process. Every entry
# point (app, CLI, training, tests) imports this package before TensorFlow, so load pylibsrtp here.
with contextlib.suppress(ImportError):  # the live page's dependencies are optional elsewhere
    import pylibsrtp  # noqa: F401

from emotion.detectors import DEFAULT_DETECTOR, DETECTORS, Box, get_detector
from emotion.imageio import ImageLoadError, load_image
from emotion.labels import DEFAULT_LABELS, FER2013_LABELS, color_for, valence_arousal
from emotion.pipeline import FaceResult, analyze, annotate, classify_crops
from emotion.preprocess import preprocess_batch, preprocess_face
from emotion.registry import EmotionModel, ModelInfo, ModelNotFoundError, default_model_name, list_models, load

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_LABELS",
    "DETECTORS",
    "FER2013_LABELS",
    "Box",
    "EmotionModel",
    "FaceResult",
    "ImageLoadError",
    "ModelInfo",
    "ModelNotFoundError",
    "analyze",
    "annotate",
    "classify_crops",
    "color_for",
    "default_model_name",
    "get_detector",
    "list_models",
    "load",
    "load_image",
    "preprocess_batch",
    "preprocess_face",
    "valence_arousal",
]
