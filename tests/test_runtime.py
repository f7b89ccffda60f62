"""emotion.runtime: the LiteRT runner on a shipped model file."""

import numpy as np

from emotion import runtime
from emotion.config import MODELS_DIR


def test_large_batches_run_in_chunks_with_the_same_answers():
    """A batch over MAX_BATCH gives the rows batch-1 calls give, and the interpreter never grows
    past MAX_BATCH (its arena would stay that large while the model is cached)."""
    runner = runtime.TFLiteRunner(MODELS_DIR / "vgg" / "model.tflite")
    rng = np.random.default_rng(0)
    faces = rng.normal(size=(runtime.MAX_BATCH + 37, *runner.input_shape)).astype(np.float32)

    probs = runner.predict(faces)

    assert probs.shape == (len(faces), 7)
    assert runner._batch <= runtime.MAX_BATCH
    for i in (0, runtime.MAX_BATCH - 1, runtime.MAX_BATCH, len(faces) - 1):
        np.testing.assert_allclose(probs[i], runner.predict(faces[i : i + 1])[0], atol=1e-5)
    assert runner.predict(faces[:0]).shape == (0, 7)
