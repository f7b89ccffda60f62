"""On-the-fly augmentation of preprocessed inputs (float32 in [0, 1], (N, H, W, C)), in Keras layers
that run on any Keras 3 backend (TensorFlow, JAX, PyTorch): no TensorFlow op anywhere, so the same
training code runs on a GPU machine that has JAX or PyTorch and no TensorFlow.

The augmenter sits in front of the backbone inside the training model (`with_augmentation`), so it
runs on the accelerator inside the compiled training step and is the identity at inference; the
saved and exported model is the backbone alone. Its inputs are exactly what
`emotion.preprocess.preprocess_face` gives inference.

The geometric part (shift, scale, rotation) is one affine transform per image, resampled once:
chaining Keras' RandomTranslation/RandomZoom/RandomRotation resamples three times and blurs
48x48 faces visibly, which the model then never sees at test time.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

# Magnitudes of each recipe at strength 1: degrees, scale, shift (fraction of the size), erasing
# probability. "studio" is what every shipped model trained with. "vggnet2021" is the published
# VGGNet recipe on FER2013 (Khaireddin & Chen 2021, arXiv:2105.03588; their code, github.com/usef-kh/fer,
# data/fer2013.py: rescale 0.8-1.2, shift 20% and rotation 10 degrees each half the time, flip,
# random erasing with p 0.5); their 40x40 ten-crops are left out: our nets take the whole 48x48 face.
RECIPES: dict[str, dict[str, float]] = {
    "studio": {"degrees": 12.0, "scale": 0.12, "shift": 0.1, "erase": 0.4, "light": 1.0},
    "vggnet2021": {"degrees": 10.0, "scale": 0.2, "shift": 0.2, "erase": 0.5, "light": 0.0},
}


@keras.saving.register_keras_serializable(package="training")
class RandomAffine(layers.Layer):
    """Random rotation (+-max_degrees), isotropic scale (1 +- max_scale) and shift (+-max_shift of
    the size) in one bilinear resampling with edge replication. Inference: identity.

    images (N, H, W, C) float32 -> (N, H, W, C) float32."""

    def __init__(self, max_degrees=12.0, max_scale=0.12, max_shift=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.max_degrees, self.max_scale, self.max_shift, self.seed = max_degrees, max_scale, max_shift, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        shape = ops.shape(images)
        batch = shape[0]
        height, width = float(images.shape[1]), float(images.shape[2])

        def uniform(limit):
            return keras.random.uniform((batch,), -limit, limit, seed=self.seed_generator)

        angle = uniform(self.max_degrees * math.pi / 180.0)
        scale = 1.0 + uniform(self.max_scale)
        dx, dy = uniform(self.max_shift) * width, uniform(self.max_shift) * height
        cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
        cx, cy = (width - 1) / 2, (height - 1) / 2
        # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate and scale
        # about the centre, then shift.
        a0, a1, b0, b1 = cos, -sin, sin, cos
        a2 = cx - a0 * cx - a1 * cy - dx
        b2 = cy - b0 * cx - b1 * cy - dy
        zeros = ops.zeros_like(a0)
        transforms = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(
            images, transforms, interpolation="bilinear", fill_mode="nearest", data_format="channels_last"
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_degrees": self.max_degrees,
            "max_scale": self.max_scale,
            "max_shift": self.max_shift,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="training")
class Clip01(layers.Layer):
    """Clip to [0, 1], the range of preprocess_face's output, at training and at inference."""

    def call(self, images):
        return ops.clip(images, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape


def build_augmenter(strength: float = 1.0, seed: int = 1337, recipe: str = "studio") -> keras.Sequential:
    """Flip, shift/scale/rotate, brightness/contrast (studio recipe) and random erasing, then a clip
    to [0, 1]; float32 whatever the global precision policy.

    strength scales every magnitude (0 leaves only the flip); recipe names a RECIPES entry.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; known: {', '.join(RECIPES)}")
    r, s = RECIPES[recipe], strength
    steps: list[layers.Layer] = [layers.RandomFlip("horizontal", seed=seed, dtype="float32")]
    if s > 0:
        steps.append(RandomAffine(r["degrees"] * s, r["scale"] * s, r["shift"] * s, seed=seed + 1, dtype="float32"))
        if r["light"]:
            steps += [
                layers.RandomBrightness(0.15 * s, value_range=(0.0, 1.0), seed=seed + 4, dtype="float32"),
                layers.RandomContrast(0.25 * s, value_range=(0.0, 1.0), seed=seed + 5, dtype="float32"),
            ]
        steps.append(
            layers.RandomErasing(
                factor=r["erase"],
                scale=(0.02, 0.12),
                fill_value=0.5,
                value_range=(0.0, 1.0),
                seed=seed + 6,
                dtype="float32",
            )
        )
    steps.append(Clip01(dtype="float32"))
    return keras.Sequential(steps, name="augment")


def with_augmentation(net: keras.Model, augmenter: keras.Sequential) -> keras.Model:
    """The model that trains: augmenter then net (the augmenter is the identity at inference, so
    validation sees clean inputs). Its weights are net's; net alone is what gets saved and served."""
    inputs = keras.Input(net.input_shape[1:], name="inputs")
    return keras.Model(inputs, net(augmenter(inputs)), name="trainer")


def backbone_of(trainer: keras.Model) -> keras.Model:
    """The net inside a with_augmentation model (a plain net is returned as it is)."""
    nets = [layer for layer in trainer.layers if isinstance(layer, keras.Model) and layer.name != "augment"]
    return nets[0] if trainer.name == "trainer" and len(nets) == 1 else trainer


def mixup(
    images: np.ndarray, targets: np.ndarray, weights: np.ndarray, alpha: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mix each image of a batch with another one of it (Zhang et al., mixup, ICLR 2018), in NumPy
    before the batch reaches the model (the geometric augmentation then moves both faces alike).

    images (N, H, W, C) float32 in [0, 1], targets (N, K) one-hot or soft, weights (N,) per-sample
    class weights; all three are mixed with the same lambda ~ Beta(alpha, alpha), folded to
    lambda >= 0.5 so each output stays mostly its own image. Outputs keep shapes, dtypes and ranges.
    """
    lam = rng.beta(alpha, alpha, len(images)).astype(np.float32)
    lam = np.maximum(lam, 1.0 - lam)
    partner = rng.permutation(len(images))
    mixed = lam[:, None, None, None] * images + (1.0 - lam[:, None, None, None]) * images[partner]
    mixed_targets = lam[:, None] * targets + (1.0 - lam[:, None]) * targets[partner]
    mixed_weights = lam * weights + (1.0 - lam) * weights[partner]
    return mixed.astype(np.float32), mixed_targets.astype(np.float32), mixed_weights.astype(np.float32)
