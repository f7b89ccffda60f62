"""Structured pruning: start a narrower net from a wider trained one of the same layout.

"Network slimming" (Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017): in every conv or dense layer followed by batch normalisation, keep the
output channels whose batch-norm scale |gamma| is largest, and in the next layer the matching input
channels. The slimmed net computes what the wide one computes minus the channels dropped, and a
short fine-tune (with the wide net as teacher) recovers what they carried. It is how a net of
vgg_lean's cost starts from the vgg_wide soup without the long from-scratch run a GPU gives:

    python -m training.train --config training/configs/vgg_lean_slim.toml

A run does this when its `init_from` model has another backbone than its own (training.distill.initial_weights).

A shallower net starts the same way ("depth pruning"): where the narrower net has one conv-BN-ReLU
block fewer in a stage, the wide net's block that keeps its width (C in, C out: the second conv of a
vgg stage) is left out, and the next layer reads the channels the block before it made.
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


def aligned_layers(source, target) -> list:
    """`source`'s layers paired in order with `target`'s, leaving out each conv-BN-activation block of
    `source` that keeps its width (kernels (kh, kw, C, C)) where `target` goes on with another kind of
    layer: what a net with fewer convs per stage keeps of a deeper one. Raises ValueError when the
    graphs differ otherwise."""
    kinds = [type(layer).__name__ for layer in source.layers]
    wanted = [type(layer).__name__ for layer in target.layers]
    kept, index = [], 0
    for kind in wanted:
        while index < len(kinds) and kinds[index] != kind and _same_width_block(source.layers, kinds, index):
            log.info("left out %s's %s (depth pruning)", source.name, source.layers[index].name)
            index += 3
        if index >= len(kinds) or kinds[index] != kind:
            raise ValueError(f"{source.name} and {target.name} have different layer graphs")
        kept.append(source.layers[index])
        index += 1
    if index != len(kinds):
        raise ValueError(f"{source.name} and {target.name} have different layer graphs")
    return kept


def _same_width_block(layers, kinds: list[str], index: int) -> bool:
    """Whether layers[index:index + 3] is Conv2D, BatchNormalization, Activation with as many output
    channels as inputs (so the layers after it can read its input instead)."""
    if kinds[index : index + 3] != ["Conv2D", _NORMALISATION, "Activation"]:
        return False
    kernel_shape = layers[index].get_weights()[0].shape
    return kernel_shape[-2] == kernel_shape[-1]


def slimmed_weights(source, target) -> list[np.ndarray]:
    """The weights of keras.Model `target` taken from `source`, a trained net of the same layer graph
    (or one with more same-width convs: `aligned_layers`) whose conv and dense layers may be wider:
    every layer pairs with its aligned one, a narrower Conv2D (kernels (kh, kw, in, out)) or Dense
    ((in, out)) keeps the output channels ranked first by the |gamma| of the batch normalisation right
    after it, and the next weighted layer keeps the matching inputs. Raises ValueError when the graphs
    differ or a layer would have to grow."""
    sources = aligned_layers(source, target)
    weights: list[np.ndarray] = []
    kept_in: np.ndarray | None = None  # channels of the current activations kept so far (None: all)
    for index, (wide, narrow) in enumerate(zip(sources, target.layers, strict=True)):
        kind = type(wide).__name__  # the same as narrow's: aligned_layers paired them by kind
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
                following = sources[index + 1] if index + 1 < len(sources) else None
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
