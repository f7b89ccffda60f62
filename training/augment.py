"""On-the-fly augmentation of preprocessed inputs (float32 in [0, 1], (N, H, W, C)).

Applied after `emotion.preprocess.preprocess_face` inside the tf.data pipeline, so augmented
training inputs live in exactly the value range and layout inference feeds the model.

The geometric part (shift, scale, rotation) is one affine transform per image, resampled once:
chaining Keras' RandomTranslation/RandomZoom/RandomRotation resamples three times and blurs
48x48 faces visibly, which the model then never sees at test time.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers


class RandomAffine(layers.Layer):
    """Random rotation (+-max_degrees), isotropic scale (1 +- max_scale) and shift (+-max_shift of
    the size) in one bilinear resampling with edge replication. Inference: identity."""

    def __init__(self, max_degrees=12.0, max_scale=0.12, max_shift=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.max_degrees, self.max_scale, self.max_shift = max_degrees, max_scale, max_shift
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        batch = tf.shape(images)[0]
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)

        def uniform(limit):
            return keras.random.uniform((batch,), -limit, limit, seed=self.seed_generator)

        angle = uniform(self.max_degrees * math.pi / 180.0)
        scale = 1.0 + uniform(self.max_scale)
        dx, dy = uniform(self.max_shift) * width, uniform(self.max_shift) * height
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        cx, cy = (width - 1) / 2, (height - 1) / 2
        # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate and scale
        # about the centre, then shift.
        a0, a1, b0, b1 = cos, -sin, sin, cos
        a2 = cx - a0 * cx - a1 * cy - dx
        b2 = cy - b0 * cx - b1 * cy - dy
        zeros = tf.zeros_like(a0)
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=transforms,
            output_shape=tf.shape(images)[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="NEAREST",
        )


def build_augmenter(strength: float = 1.0, seed: int = 1337) -> keras.Sequential:
    """Flip, shift/scale/rotate, brightness/contrast and random erasing; clip the output with clip01.

    strength scales every magnitude (0 leaves only the flip).
    """
    s = strength
    steps: list[layers.Layer] = [layers.RandomFlip("horizontal", seed=seed)]
    if s > 0:
        steps += [
            RandomAffine(12.0 * s, 0.12 * s, 0.1 * s, seed=seed + 1),
            layers.RandomBrightness(0.15 * s, value_range=(0.0, 1.0), seed=seed + 4),
            layers.RandomContrast(0.25 * s, value_range=(0.0, 1.0), seed=seed + 5),
            layers.RandomErasing(factor=0.4, scale=(0.02, 0.12), fill_value=0.5, value_range=(0.0, 1.0), seed=seed + 6),
        ]
    return keras.Sequential(steps, name="augment")


def mixup(images, targets, weights, alpha: float):
    """Mix each image of a batch with another one of it (Zhang et al., mixup, ICLR 2018).

    images (N, H, W, C) float32 in [0, 1], targets (N, K) one-hot or soft, weights (N,) per-sample
    class weights; all three are mixed with the same lambda ~ Beta(alpha, alpha), folded to
    lambda >= 0.5 so each output stays mostly its own image. Outputs keep shapes and ranges.
    """
    batch = tf.shape(images)[0]
    a = tf.random.gamma([batch], alpha)
    b = tf.random.gamma([batch], alpha)
    lam = a / (a + b)
    lam = tf.maximum(lam, 1.0 - lam)
    partner = tf.random.shuffle(tf.range(batch))
    lam_images = tf.reshape(lam, [-1, 1, 1, 1])
    mixed = lam_images * images + (1.0 - lam_images) * tf.gather(images, partner)
    lam_targets = lam[:, None]
    mixed_targets = lam_targets * targets + (1.0 - lam_targets) * tf.gather(targets, partner)
    mixed_weights = lam * weights + (1.0 - lam) * tf.gather(weights, partner)
    return mixed, mixed_targets, mixed_weights


def clip01(x):
    return keras.ops.clip(x, 0.0, 1.0)
