"""Serving runtime: a LiteRT (TFLite) interpreter behind a lock.

Batch-1 inference in LiteRT is many times faster than Keras `model(x)` (scripts/benchmark.py
measures both; figures in docs/RESULTS.md). An interpreter is not thread-safe, and the webcam
callback runs in its own thread while pages may call the same cached model, so every call
holds the runner's lock; calls are short, so contention costs little. A runner serves with
`config.serve_threads()` LiteRT threads unless told otherwise; the answers are the same with any number
(tests/test_runtime.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from emotion import config

# The interpreter's tensor arena grows to the largest batch it has run and stays that size while
# the model is cached: one 3,589-face PublicTest batch took gigabytes per model, and nine cached
# models ran a committee search out of 24 GiB. Larger inputs run in chunks of this size instead.
MAX_BATCH = 256


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's bundled copy works too
        from tensorflow.lite import Interpreter  # type: ignore[no-redef]
    return Interpreter


class TFLiteRunner:
    """predict((N, H, W, C) float32) -> (N, K) float32 (the model's first output); run_all for every
    output (the BlazeFace detector's boxes and scores). Both run inputs in chunks of at most MAX_BATCH.

    Full-integer files (int8 or uint8 input and outputs) take and give float32 all the same: inputs
    are quantized and outputs dequantized here with the scale and zero point stored in the file.
    """

    def __init__(self, path: str | Path, num_threads: int | None = None):
        """num_threads: LiteRT threads per call (None: config.serve_threads())."""
        self.path = Path(path)
        self.num_threads = num_threads or config.serve_threads()
        self._interpreter = _interpreter_class()(model_path=str(self.path), num_threads=self.num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()
        self._batch = int(self._input["shape"][0])
        self._lock = threading.Lock()
        self.input_shape = tuple(int(v) for v in self._input["shape"][1:])
        self.quantized = np.dtype(self._input["dtype"]).kind in "iu"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = self._checked(batch)
        if len(batch) == 0:
            return np.zeros((0, int(self._outputs[0]["shape"][-1])), np.float32)
        return self._run(batch)[0]

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """(N, *input_shape) float32, N >= 1 -> every output tensor, in the model's output order."""
        return self._run(self._checked(batch))

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if len(batch) <= MAX_BATCH:  # every live frame and photo: one interpreter call, no copies
            return self._run_chunk(batch)
        chunks = [self._run_chunk(batch[i : i + MAX_BATCH]) for i in range(0, len(batch), MAX_BATCH)]
        return [np.concatenate(outputs) for outputs in zip(*chunks, strict=True)]

    def _run_chunk(self, batch: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            if len(batch) != self._batch:
                self._interpreter.resize_tensor_input(self._input["index"], [len(batch), *self.input_shape])
                self._interpreter.allocate_tensors()
                self._batch = len(batch)
            self._interpreter.set_tensor(self._input["index"], _quantize(batch, self._input))
            self._interpreter.invoke()
            return [_dequantize(self._interpreter.get_tensor(output["index"]), output) for output in self._outputs]

    def _checked(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 1 + len(self.input_shape) or batch.shape[1:] != self.input_shape:
            raise ValueError(f"expected (N, {', '.join(map(str, self.input_shape))}), got {batch.shape}")
        return batch


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """float32 -> the tensor's dtype: q = round(x / scale) + zero_point, clipped to the dtype's range
    (a float tensor passes through)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return values
    scale, zero_point = detail["quantization"]
    limits = np.iinfo(dtype)
    return np.clip(np.rint(values / scale) + zero_point, limits.min, limits.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """The tensor's values as float32: (q - zero_point) * scale (a float tensor is copied, since the
    interpreter reuses its buffer)."""
    if np.dtype(detail["dtype"]).kind not in "iu":
        return values.copy()
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
