"""What a vgg-layout net's channel widths cost per face in the served runtime, before any training.

    python scripts/benchmark_widths.py [--rounds 15] [--calls 200] [--int8] [--size 48] [--widths 24-48-128-192:192 ...]

Builds the vgg layout (`training.backbones.vgg_layout`) at several widths with random weights, exports
each as the app serves a net (LiteRT, dynamic-range int8 weights: `training.export.to_tflite`; with
--int8 full-integer, activations too, calibrated on random inputs, as the default is served now) and
times one face (batch 1, one thread, `invoke()` alone: the app's preprocessing adds the same to every
width). The rounds interleave the files, so a machine whose speed drifts during the run biases none of
them; the figure is the median over rounds of each round's median CPU time. Weights do not change the
cost, so this tells which nets are worth training for a latency budget (docs/RESULTS.md).

--widths takes layouts as stage widths and hidden units (32-64-192-256:256), with the convs per stage
after an x where they are not two each (32-64-192-256:256x1-2-1-2); --size times faces of another side
(the vgg layout pools globally before its head, so the same weights read any size).

Exporting needs TensorFlow and timing uses LiteRT; the two in one process can crash, so each runs in
its own child process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# (name, stage widths, hidden units): the shipped vgg and vgg_wide, vgg_lean, then other widths.
Layout = tuple[str, tuple[int, int, int, int], int, tuple[int, int, int, int]]  # label, widths, hidden, convs
TWO = (2, 2, 2, 2)  # convs per stage of every shipped vgg-layout net
WIDTHS: list[Layout] = [
    ("vgg_wide (shipped)", (48, 96, 192, 384), 384, TWO),
    ("vgg (shipped)", (32, 64, 128, 256), 256, TWO),
    ("vgg_lean", (32, 64, 192, 256), 256, TWO),
    ("", (32, 64, 128, 384), 384, TWO),
    ("", (32, 64, 192, 384), 384, TWO),
    ("", (48, 64, 192, 384), 384, TWO),
    ("", (32, 96, 192, 384), 384, TWO),
    ("", (40, 80, 160, 320), 320, TWO),
    ("", (64, 64, 192, 384), 384, TWO),
]


def parse_widths(text: str) -> Layout:
    """ "24-48-128-192:192" -> ("", (24, 48, 128, 192), 192, (2, 2, 2, 2)): four stage widths, then the
    hidden units; "32-64-192-256:256x1-2-1-2" also sets the convs per stage (two each by default)."""
    stages, _, rest = text.partition(":")
    hidden, _, counts = rest.partition("x")
    widths = tuple(int(v) for v in stages.split("-"))
    convs = tuple(int(v) for v in counts.split("-")) if counts else TWO
    if len(widths) != 4 or len(convs) != 4 or not hidden:
        raise argparse.ArgumentTypeError(
            "expected four widths, the hidden units and optionally four conv counts (32-64-192-256:256x1-2-1-2), "
            f"got {text!r}"
        )
    return "", widths, int(hidden), convs  # type: ignore[return-value]


def layout_text(layout: Layout) -> str:
    """The inverse of parse_widths (without the label)."""
    _, widths, hidden, convs = layout
    counts = "" if convs == TWO else "x" + "-".join(map(str, convs))
    return f"{'-'.join(map(str, widths))}:{hidden}{counts}"


def export_all(folder: Path, layouts: list[Layout], int8: bool, size: int) -> None:
    """Child process: every width as a .tflite file in folder (TensorFlow)."""
    # training.export before Keras (training.backbones): the other order crashed the converter here.
    from training.export import to_tflite  # noqa: I001

    import numpy as np

    from training.backbones import vgg_layout
    from training.export import logits_model

    representative = np.random.default_rng(0).random((32, size, size, 1), dtype=np.float32)
    for index, (_, widths, hidden, convs) in enumerate(layouts):
        net = vgg_layout((size, size, 1), 7, widths, hidden=hidden, name=f"w{index}", convs=convs)
        data = to_tflite(logits_model(net), "int8", representative) if int8 else to_tflite(net, quantize=True)
        (folder / f"{index}.tflite").write_bytes(data)
        print(json.dumps({"index": index, "parameters": net.count_params()}), flush=True)


def time_all(folder: Path, count: int, rounds: int, calls: int, size: int) -> None:
    """Child process: the interleaved timing of every file (LiteRT), one JSON line per width."""
    import time

    import numpy as np

    from emotion.runtime import TFLiteRunner

    face = np.random.default_rng(0).random((1, size, size, 1), dtype=np.float32)
    runners = [TFLiteRunner(folder / f"{i}.tflite") for i in range(count)]
    for runner in runners:
        for _ in range(50):
            runner.predict(face)
    invokes = []
    for runner in runners:
        interpreter = runner._interpreter  # invoke() alone: what the width changes
        interpreter.set_tensor(runner._input["index"], np.zeros_like(face, runner._input["dtype"]))
        invokes.append(interpreter.invoke)
    medians: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for index, invoke in enumerate(invokes):
            times = []
            for _ in range(calls):
                started = time.thread_time()
                invoke()
                times.append(time.thread_time() - started)
            medians[index].append(float(np.median(times)) * 1000)
    for index, values in enumerate(medians):
        print(json.dumps({"index": index, "ms": float(np.median(values)), "min_ms": min(values)}), flush=True)


def child(*args: str) -> list[dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200, help="invoke() calls per file per round")
    parser.add_argument("--int8", action="store_true", help="full-integer files (int8 activations too)")
    parser.add_argument(
        "--widths", nargs="+", type=parse_widths, help="layouts instead of the built-in list: 32-64-192-256:256"
    )
    parser.add_argument(
        "--size", type=int, default=48, help="the faces' side in pixels (a head that pools globally takes any)"
    )
    parser.add_argument("--_export", help=argparse.SUPPRESS)
    parser.add_argument("--_time", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    layouts = args.widths or WIDTHS
    if args._export:
        return export_all(Path(args._export), layouts, args.int8, args.size)
    if args._time:
        return time_all(Path(args._time), len(layouts), args.rounds, args.calls, args.size)
    same = ["--int8"] if args.int8 else []  # what the children need to build and time the same files
    same += ["--size", str(args.size)]
    if args.widths:
        same += ["--widths", *map(layout_text, args.widths)]
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {row["index"]: row["parameters"] for row in child("--_export", tmp, *same)}
        timed = child("--_time", tmp, "--rounds", str(args.rounds), "--calls", str(args.calls), *same)
    print("| net | stage widths (hidden) | parameters | invoke() ms per face: median of rounds (fastest round) |")
    print("|---|---|---|---|")
    for row in timed:
        label, widths, hidden, convs = layouts[row["index"]]
        shape = f"{'-'.join(map(str, widths))} ({hidden})"
        if convs != TWO:
            shape += f", convs {'-'.join(map(str, convs))}"
        size = sizes[row["index"]] / 1e6
        print(f"| {label} | {shape} | {size:.2f}M | {row['ms']:.3f} ({row['min_ms']:.3f}) |")


if __name__ == "__main__":
    main()
