"""Structured pruning: start a narrower net from a wider trained one of the same layout.

"Network slimming" (Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017): in every conv or dense layer followed by batch normalisation, keep the
output channels whose batch-norm scale |gamma| is largest, and in the next layer the matching input
channels. The slimmed net computes what the wide one computes minus the channels dropped, and a
short fine-tune (with the wide net as teacher) recovers what they carried. It is how a net of
vgg_lean's cost starts from the vgg_wide soup without the long from-scratch run a GPU gives:

    python -m training.train --config training/configs/vgg_lean_slim.toml

A run does this when its `init_from` model has another backbone than its own (training.distill.initial_weights).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# Layers whose weights follow the channels of the layer before them, and those that hold none.
_NORMALISATION = "BatchNormalization"
_WEIGHTED = ("Conv2D", "Dense")


def kept_channels(gamma: np.ndarray, keep: int) -> np.ndarray:
    """Indices (sorted ascending) of the `keep` channels with the largest |gamma| (ties: the lower index)."""
    if not 0 < keep <= len(gamma):
        raise ValueError(f"cannot keep {keep} of {len(gamma)} channels")
    order = np.argsort(-np.abs(gamma), kind="stable")
    return np.sort(order[:keep])


def slimmed_weights(source, target) -> list[np.ndarray]:
    """The weights of keras.Model `target` taken from `source`, a trained net of the same layer graph
    whose conv and dense layers may be wider: every layer pairs with the one at the same index, a
    narrower Conv2D (kernels (kh, kw, in, out)) or Dense ((in, out)) keeps the output channels ranked
    first by the |gamma| of the batch normalisation right after it, and the next weighted layer keeps
    the matching inputs. Raises ValueError when the graphs differ or a layer would have to grow."""
    if len(source.layers) != len(target.layers):
        raise ValueError(f"{source.name} and {target.name} have different layer graphs")
    weights: list[np.ndarray] = []
    kept_in: np.ndarray | None = None  # channels of the current activations kept so far (None: all)
    for index, (wide, narrow) in enumerate(zip(source.layers, target.layers, strict=True)):
        kind = type(wide).__name__
        if kind != type(narrow).__name__:
            raise ValueError(f"layer {index}: {kind} in {source.name}, {type(narrow).__name__} in {target.name}")
        if not wide.weights:
            continue  # pooling, dropout, activations: channels pass through unchanged
        shapes = [tuple(w.shape) for w in narrow.get_weights()]
        values = wide.get_weights()
        if kind in _WEIGHTED:
            kernel = values[0]
            if kept_in is not None:
                kernel = np.take(kernel, kept_in, axis=-2)
            out_wide, out_narrow = kernel.shape[-1], shapes[0][-1]
            if out_narrow == out_wide:
                kept_out = None
            else:
                following = source.layers[index + 1] if index + 1 < len(source.layers) else None
                if following is None or type(following).__name__ != _NORMALISATION:
                    raise ValueError(f"layer {index} ({wide.name}) narrows but no batch normalisation follows it")
                kept_out = kept_channels(following.get_weights()[0], out_narrow)
                kernel = np.take(kernel, kept_out, axis=-1)
            layer_weights = [kernel] + [v if kept_out is None else v[kept_out] for v in values[1:]]
            kept_in = kept_out
        elif kind == _NORMALISATION:
            layer_weights = [v if kept_in is None else v[kept_in] for v in values]
        else:
            raise ValueError(f"layer {index}: cannot slim a {kind}")
        got = [tuple(w.shape) for w in layer_weights]
        if got != shapes:
            raise ValueError(f"layer {index} ({wide.name}): slimmed to {got}, {target.name} needs {shapes}")
        weights.extend(layer_weights)
    log.info(
        "slimmed %s (%d parameters) to %s (%d)", source.name, source.count_params(), target.name, target.count_params()
    )
    return weights
