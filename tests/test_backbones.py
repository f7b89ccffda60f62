"""Every registered backbone builds for 48x48 grey faces and ends in a float32 softmax; the shipped
vgg keeps the layout its weights were saved with."""

from __future__ import annotations

import numpy as np
import pytest

from training.backbones import BACKBONES, build_backbone


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "efficientnet" else n for n in sorted(BACKBONES)]
)  # efficientnet takes longest to build: the full suite runs it
def test_backbone_outputs_probabilities(name):
    model = build_backbone(name, (48, 48, 1), 7)
    probs = np.asarray(model(np.random.default_rng(0).random((2, 48, 48, 1), dtype=np.float32), training=False))
    assert probs.shape == (2, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_vgg_layout_is_unchanged_and_vgg_wide_is_wider():
    assert build_backbone("vgg", (48, 48, 1), 7).count_params() == 1_242_919, "models/vgg's weights need this layout"
    assert build_backbone("vgg_wide", (48, 48, 1), 7).count_params() > 2 * 1_242_919


def test_vgg_lean_widens_only_the_third_stage():
    convs = [layer.filters for layer in build_backbone("vgg_lean", (48, 48, 1), 7).layers if hasattr(layer, "filters")]
    assert convs == [32, 32, 64, 64, 192, 192, 256, 256]  # multiples of 64 past the first: scripts/benchmark_widths.py


def test_vgg_thin_halves_the_full_resolution_stages_and_slims_from_vgg_lean():
    thin = build_backbone("vgg_thin", (48, 48, 1), 7)
    convs = [layer.filters for layer in thin.layers if hasattr(layer, "filters")]
    assert convs == [16, 16, 32, 32, 128, 128, 256, 256]
    from training.prune import slimmed_weights

    lean = build_backbone("vgg_lean", (48, 48, 1), 7)
    thin.set_weights(slimmed_weights(lean, thin))  # same layer graph: training.prune can start it from vgg_lean


def test_benchmark_widths_reads_a_layout():
    import argparse

    from tests.script_support import load_script

    script = load_script("benchmark_widths")
    assert script.parse_widths("16-32-128-256:256") == ("", (16, 32, 128, 256), 256, (2, 2, 2, 2))
    assert script.parse_widths("16-48-192-256:256x2-2-1-2") == ("", (16, 48, 192, 256), 256, (2, 2, 1, 2))
    assert script.layout_text(script.parse_widths("16-48-192-256:256x2-2-1-2")) == "16-48-192-256:256x2-2-1-2"
    with pytest.raises(argparse.ArgumentTypeError):
        script.parse_widths("16-32-128")


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(KeyError, match="vgg_wide"):
        build_backbone("alexnet", (48, 48, 1), 7)
