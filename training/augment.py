"""On-the-fly augmentation of preprocessed inputs (float32 in [0, 1], (N, H, W, C)).

Applied after `emotion.preprocess.preprocess_face` inside the tf.data pipeline, so augmented
training inputs live in exactly the value range and layout inference feeds the model.
"""

from __future__ import annotations

import keras
from keras import layers


def build_augmenter(strength: float = 1.0, seed: int = 1337) -> keras.Sequential:
    """Flip, shift/scale/rotate, brightness/contrast and random erasing; output clipped to [0, 1].

    strength scales every magnitude (0 turns augmentation off except the flip).
    """
    s = strength
    steps: list[layers.Layer] = [layers.RandomFlip("horizontal", seed=seed)]
    if s > 0:
        steps += [
            layers.RandomTranslation(0.1 * s, 0.1 * s, fill_mode="nearest", seed=seed + 1),
            layers.RandomRotation(0.04 * s, fill_mode="nearest", seed=seed + 2),  # +-14 degrees at s=1
            layers.RandomZoom((-0.15 * s, 0.15 * s), fill_mode="nearest", seed=seed + 3),
            layers.RandomBrightness(0.2 * s, value_range=(0.0, 1.0), seed=seed + 4),
            layers.RandomContrast(0.3 * s, value_range=(0.0, 1.0), seed=seed + 5),
            layers.RandomErasing(factor=0.5, scale=(0.02, 0.15), fill_value=0.5, value_range=(0.0, 1.0), seed=seed + 6),
        ]
    steps.append(layers.Rescaling(1.0))  # keeps the model's float32 dtype
    return keras.Sequential(steps, name="augment")


def clip01(x):
    return keras.ops.clip(x, 0.0, 1.0)
