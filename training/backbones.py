"""CNN backbones sized for 48x48 faces, trained from scratch, behind a name-to-builder registry.

Four families: VGG-style nets (vgg, vgg_wide), ResNets (resnet, and resnet18 with ResNet-18's
layout), a depthwise-separable net in the mini-Xception line, and an EfficientNet-style net (MBConv
blocks with squeeze-excitation).
Every builder takes the input shape and the class count and returns an uncompiled keras.Model
whose output is a softmax over the classes. Inputs are float32 in [0, 1] as produced by
emotion.preprocess.preprocess_face; there is no further rescaling inside the nets.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

BackboneBuilder = Callable[[tuple[int, int, int], int], keras.Model]
BACKBONES: dict[str, BackboneBuilder] = {}


def register(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    def wrap(builder: BackboneBuilder) -> BackboneBuilder:
        BACKBONES[name] = builder
        return builder

    return wrap


def build_backbone(name: str, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Build the named backbone; raises KeyError listing the known names."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](input_shape, num_classes)


def _conv_bn_relu(x, filters: int, kernel: int = 3, strides: int = 1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def _head(x, num_classes: int, dropout: float, hidden: int = 0):
    x = layers.GlobalAveragePooling2D()(x)
    if hidden:
        x = layers.Dropout(dropout)(x)
        x = layers.Dense(hidden, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.Dropout(dropout)(x)
    # float32 even under a mixed-precision policy: a bf16 softmax rounds probabilities coarsely.
    return layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)


@register("vgg")
def vgg(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """VGG-style: four stages of two 3x3 convs (32-64-128-256), max-pool and dropout; ~1.2M params."""
    return vgg_layout(input_shape, num_classes, (32, 64, 128, 256), hidden=256, name="vgg")


@register("vgg_wide")
def vgg_wide(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """vgg at 1.5x the width (48-96-192-384): ~2.8M params and ~2.25x the compute, for long runs;
    vgg itself stopped improving with more epochs, which points at its capacity."""
    return vgg_layout(input_shape, num_classes, (48, 96, 192, 384), hidden=384, name="vgg_wide")


@register("vgg_lean")
def vgg_lean(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """vgg with its third stage 1.5x as wide (32-64-192-256): capacity where the int8 kernels serve it
    cheaply. On the AMX CPUs measured here a stage's cost follows its width rounded up to a multiple
    of 64 (48 costs as 64, 96 as 128), so vgg_wide pays for more than it holds. Made for the 0.5 ms a
    face target; the measured costs of this and other widths are in docs/RESULTS.md
    (`scripts/benchmark_widths.py`)."""
    return vgg_layout(input_shape, num_classes, (32, 64, 192, 256), hidden=256, name="vgg_lean")


@register("vgg_lean320")
def vgg_lean320(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """vgg_lean with a wider last stage and hidden layer (32-64-192-320, hidden 320): more of the vgg_wide
    soup's last stage kept when slimmed from it, at a cost still inside the 0.5 ms a face target
    (measured costs in docs/RESULTS.md)."""
    return vgg_layout(input_shape, num_classes, (32, 64, 192, 320), hidden=320, name="vgg_lean320")


@register("vgg_thin")
def vgg_thin(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """vgg_lean with its first two stages halved and its third at vgg's width (16-32-128-256): the
    full-resolution stages cost the most per face in the int8 kernels of CPUs with AVX512-VNNI
    (AMD EPYC), where vgg_lean misses the 0.5 ms target; slimmed from a trained vgg_lean
    (training.prune) rather than trained from scratch. Costs measured with
    `scripts/benchmark_widths.py --int8` (docs/RESULTS.md)."""
    return vgg_layout(input_shape, num_classes, (16, 32, 128, 256), hidden=256, name="vgg_thin")


@register("vgg_trim")
def vgg_trim(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """vgg_lean with narrower first stages and one conv in its third (16-48-192-256, convs 2-2-1-2): the
    third stage's width kept at a cost inside 0.5 ms a face on the AVX512-VNNI CPUs (AMD EPYC), where
    vgg_lean's second third-stage conv is its most expensive layer; slimmed and depth-pruned from a
    trained vgg_lean (training.prune). Costs measured with `scripts/benchmark_widths.py --int8`
    (docs/RESULTS.md)."""
    return vgg_layout(input_shape, num_classes, (16, 48, 192, 256), hidden=256, name="vgg_trim", convs=(2, 2, 1, 2))


def vgg_layout(
    input_shape,
    num_classes: int,
    widths: tuple[int, ...],
    hidden: int,
    name: str,
    convs: tuple[int, ...] = (2, 2, 2, 2),
) -> keras.Model:
    """Four stages of `convs` 3x3 conv-BN-ReLU (two each by default) at `widths` (one per stage), each
    then max-pooled and dropped out, a global average pool, a hidden layer of `hidden` units (0: none)
    and the softmax head."""
    inputs = keras.Input(input_shape)
    x = inputs
    for filters, count, drop in zip(widths, convs, (0.05, 0.1, 0.15, 0.25), strict=True):
        for _ in range(count):
            x = _conv_bn_relu(x, filters)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(drop)(x)
    return keras.Model(inputs, _head(x, num_classes, 0.4, hidden=hidden), name=name)


def _residual_block(x, filters: int, strides: int):
    shortcut = x
    y = _conv_bn_relu(x, filters, strides=strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


@register("resnet")
def resnet(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """ResNet for 48x48: a 32-filter stem at full resolution, then three stages (48-96-192 at
    24-12-6 px) of two basic blocks each; ~1.6M params. Starting the residual stages at 24 px,
    not 48, trains 2.3x faster on CPU (202 against 89 images/s measured) for little loss."""
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 32)
    for filters in (48, 96, 192):
        x = _residual_block(x, filters, strides=2)
        x = _residual_block(x, filters, strides=1)
    return keras.Model(inputs, _head(x, num_classes, 0.4), name="resnet")


@register("resnet18")
def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """ResNet-18's layout (a stem, then four stages of two basic blocks) for 48x48 faces: a 3x3
    stem at full resolution and stages of 32-64-128-256 filters at 48-24-12-6 px, half ResNet-18's
    widths, ~2.8M params: about vgg_wide's size, so that its float32 weights (11 MB) come back from
    the GPU machine in one 16 MiB file. For long GPU runs (training/configs/gpu_resnet18.toml)."""
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 32)
    for stage, filters in enumerate((32, 64, 128, 256)):
        x = _residual_block(x, filters, strides=1 if stage == 0 else 2)
        x = _residual_block(x, filters, strides=1)
    return keras.Model(inputs, _head(x, num_classes, 0.4), name="resnet18")


@register("xception")
def mini_xception(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Mini-Xception line: separable-conv residual modules (64-128-256-512) after a plain stem."""
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 32)
    x = _conv_bn_relu(x, 64)
    for filters in (64, 128, 256, 512):
        shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
        y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.Activation("relu")(y)
        y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        y = layers.MaxPooling2D(3, strides=2, padding="same")(y)
        x = layers.Add()([y, shortcut])
    return keras.Model(inputs, _head(x, num_classes, 0.4), name="xception")


def _mbconv(x, filters: int, expand: int, strides: int, se_ratio: float = 0.25):
    in_filters = x.shape[-1]
    y = _conv_bn_relu(x, in_filters * expand, kernel=1) if expand != 1 else x
    y = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    y = layers.Activation("swish")(y)
    squeezed = max(1, int(in_filters * se_ratio))
    se = layers.GlobalAveragePooling2D(keepdims=True)(y)
    se = layers.Conv2D(squeezed, 1, activation="swish")(se)
    se = layers.Conv2D(y.shape[-1], 1, activation="sigmoid")(se)
    y = layers.Multiply()([y, se])
    y = layers.Conv2D(filters, 1, use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if strides == 1 and in_filters == filters:
        y = layers.Add()([x, y])
    return y


@register("efficientnet")
def efficientnet(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """EfficientNet-style: a stride-2 stem (as in EfficientNet) then MBConv blocks with
    squeeze-excitation and swish, widths 32-48-96-192 at 24-24-12-6 px, expansion 3; ~1.0M params.
    Expansion 3 rather than EfficientNet's 6 (or 4) doubles CPU training speed here (156 against
    78 images/s measured), which is what makes a from-scratch run fit in a session."""
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 32, strides=2)
    for filters, expand, strides, repeats in ((32, 1, 1, 1), (48, 3, 1, 2), (96, 3, 2, 3), (192, 3, 2, 3)):
        for r in range(repeats):
            x = _mbconv(x, filters, expand, strides if r == 0 else 1)
    x = _conv_bn_relu(x, 768, kernel=1)
    return keras.Model(inputs, _head(x, num_classes, 0.4), name="efficientnet")
