"""training.prune: a narrower net of the same layout started from a wider one's weights."""

from __future__ import annotations

import numpy as np
import pytest

from training.backbones import build_backbone, vgg_layout
from training.prune import kept_channels, slimmed_weights


def test_kept_channels_are_the_largest_scales_in_their_order():
    gamma = np.array([0.1, -0.9, 0.5, 0.0, 0.7], np.float32)
    assert kept_channels(gamma, 3).tolist() == [1, 2, 4]
    assert kept_channels(np.ones(4, np.float32), 2).tolist() == [0, 1]  # ties: the lower index
    with pytest.raises(ValueError, match="cannot keep 5 of 4"):
        kept_channels(np.ones(4, np.float32), 5)


def _randomised(net, seed: int):
    """net with random weights and batch-norm statistics (a fresh net's BN is the identity)."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        weights = [rng.normal(0.0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()]
        if type(layer).__name__ == "BatchNormalization":  # gamma, beta, mean, variance > 0
            weights[3] = rng.uniform(0.5, 2.0, weights[3].shape).astype(np.float32)
        layer.set_weights(weights)
    return net


def test_dropped_channels_that_carry_nothing_leave_the_output_unchanged():
    """Zero the scale and shift of the channels slimming will drop: those channels are 0 after ReLU,
    so the slimmed net must give the wide net's probabilities exactly (up to float rounding)."""
    wide = _randomised(vgg_layout((48, 48, 1), 7, (16, 24, 32, 40), hidden=24, name="wide"), seed=1)
    narrow = vgg_layout((48, 48, 1), 7, (8, 16, 32, 24), hidden=16, name="narrow")
    for layer, width in zip(
        [layer for layer in wide.layers if type(layer).__name__ == "BatchNormalization"],
        [8, 8, 16, 16, 32, 32, 24, 24, 16],
        strict=True,
    ):
        gamma, beta, mean, variance = layer.get_weights()
        dropped = np.argsort(-np.abs(gamma), kind="stable")[width:]
        gamma[dropped], beta[dropped] = 0.0, 0.0
        layer.set_weights([gamma, beta, mean, variance])
    narrow.set_weights(slimmed_weights(wide, narrow))
    faces = np.random.default_rng(2).random((4, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(narrow(faces, training=False), wide(faces, training=False), atol=1e-5)
    assert narrow.count_params() < wide.count_params()


def test_same_widths_copy_every_weight():
    wide = _randomised(build_backbone("vgg", (48, 48, 1), 7), seed=3)
    same = build_backbone("vgg", (48, 48, 1), 7)
    copied = slimmed_weights(wide, same)
    assert all(np.array_equal(a, b) for a, b in zip(copied, wide.get_weights(), strict=True))


def test_a_layer_cannot_grow_nor_change_kind():
    vgg = build_backbone("vgg", (48, 48, 1), 7)
    with pytest.raises(ValueError, match="cannot keep 192 of 128 channels"):
        slimmed_weights(vgg, build_backbone("vgg_lean", (48, 48, 1), 7))  # its third stage is wider
    with pytest.raises(ValueError, match=r"layer graphs|layer 1"):
        slimmed_weights(vgg, build_backbone("resnet", (48, 48, 1), 7))


def test_a_shallower_net_keeps_the_convs_that_change_width():
    """Depth pruning: a stage with one conv fewer keeps the wide net's first conv of that stage (the one
    that changes the width) and leaves out the same-width second one."""
    wide = _randomised(build_backbone("vgg_lean", (48, 48, 1), 7), seed=4)
    short = vgg_layout((48, 48, 1), 7, (32, 64, 192, 256), hidden=256, name="short", convs=(1, 2, 1, 2))
    short.set_weights(slimmed_weights(wide, short))
    wide_convs = [layer for layer in wide.layers if type(layer).__name__ == "Conv2D"]
    short_convs = [layer for layer in short.layers if type(layer).__name__ == "Conv2D"]
    kept = [wide_convs[i] for i in (0, 2, 3, 4, 6, 7)]  # stage 1's and stage 3's second convs left out
    for ours, theirs in zip(short_convs, kept, strict=True):
        np.testing.assert_array_equal(ours.get_weights()[0], theirs.get_weights()[0])


def test_vgg_trim_starts_from_vgg_lean():
    lean = _randomised(build_backbone("vgg_lean", (48, 48, 1), 7), seed=5)
    trim = build_backbone("vgg_trim", (48, 48, 1), 7)
    trim.set_weights(slimmed_weights(lean, trim))
    assert trim.count_params() < lean.count_params()
    with pytest.raises(ValueError, match="layer graphs"):  # a conv cannot be added
        slimmed_weights(trim, lean)
