"""Benchmark the live frame pipeline, and the frame rate a headless Chromium with a fake camera gets.

    python scripts/benchmark_live.py                  # frame pipeline on 640x480 frames with one face
    python scripts/benchmark_live.py --browser 15     # plus 15 s of WebRTC through `streamlit run` + Chromium

The pipeline figure is FrameProcessor.process on RGB frames built from a ../shared photo (the face drifts
a few pixels a frame), timed with the default frame budget and with full detection on every frame, plus
the av.VideoFrame <-> ndarray conversion the WebRTC callback adds. The browser figures: frames the
page's <video> element renders (requestVideoFrameCallback; all, and those showing a new camera frame),
glass-to-glass latency (each camera frame carries its number in black/white squares, read where the local
camera and the annotated video are presented), and frames the server processed/dropped.
The browser helpers here are also used by tests/test_browser_live.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from emotion import load_image  # noqa: E402
from emotion.config import SHARED_DIR  # noqa: E402
from emotion.live import FrameProcessor, LiveSettings  # noqa: E402
from emotion.video import write_y4m  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]  # fmt: skip


def camera_frame(photo: np.ndarray, dx: int = 0, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """RGB (H, W, 3) webcam-like frame: the photo scaled to 90% of the height on grey, shifted dx pixels."""
    width, height = size
    scale = 0.9 * height / photo.shape[0]
    small = cv2.resize(photo, (int(photo.shape[1] * scale), int(photo.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 90, np.uint8)
    y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2 + dx
    frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return frame


def benchmark_pipeline(photo: np.ndarray, frames: int = 300, settings: LiveSettings | None = None) -> dict:
    """Time FrameProcessor over `frames` 640x480 frames (after 20 warm-up frames), with the av conversion."""
    import av

    processor = FrameProcessor(settings or LiveSettings())
    inputs = [camera_frame(photo, dx=int(12 * np.sin(i / 8))) for i in range(64)]
    times, cpu, modes = [], [], []
    load_before = os.getloadavg()[0]
    for i in range(frames + 20):
        source = av.VideoFrame.from_ndarray(inputs[i % len(inputs)], format="rgb24")
        started, cpu_started = time.perf_counter(), time.process_time()
        out, result = processor.process(source.to_ndarray(format="rgb24"), started=started)
        av.VideoFrame.from_ndarray(out, format="rgb24")
        if i >= 20:
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
            modes.append(result.mode)
    ms = np.array(times)
    return {
        "frames": frames,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_ms_per_frame": round(float(np.mean(cpu)), 2),  # CPU time of all this process's threads
        "mean_ms": round(float(ms.mean()), 2),
        "median_ms": round(float(np.median(ms)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "fps": round(1000 / float(ms.mean()), 1),
        "full_detections": modes.count("full"),
        "faces_last_frame": len(result.faces),
        "detect_every_last": result.detect_every,
    }


LAUNCHER = """
import sys
sys.path.insert(0, {repo!r})
import streamlit as st
from studio.store import get_store

if "user" not in st.session_state:  # what app.py's login does, for a local test user
    store = get_store()
    st.session_state["user"] = store.get_user_by_username("livebench") or store.create_user(
        "livebench", "Live Bench", "livebench@example.com", "not-a-login"
    )
path = {page!r}
exec(compile(open(path).read(), path, "exec"), {{"__name__": "__main__", "__file__": path}})
"""


@contextlib.contextmanager
def serve_live_page(workdir: Path, env: dict | None = None) -> Iterator[str]:
    """`streamlit run` pages/live.py (logged in as a local test user) on a free port; yields its URL."""
    from tests.browser_support import serve_streamlit

    launcher = workdir / "live_launcher.py"
    launcher.write_text(textwrap.dedent(LAUNCHER.format(repo=str(REPO), page=str(REPO / "pages" / "live.py"))))
    with serve_streamlit(launcher, workdir / "streamlit.log", env) as url:
        yield url


PLAYING_JS = "() => { const v = document.querySelector('video'); return v && v.readyState >= 2 && v.currentTime > 1; }"
# Before any page script: keep each RTCPeerConnection, so that its inbound video statistics can be read.
KEEP_PEERS_JS = """(() => {
  const Original = window.RTCPeerConnection;
  if (!Original) return;
  window.__peers = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args); window.__peers.push(pc); return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
})();"""
INBOUND_STATS_JS = """async () => {
  const rows = [];
  for (const pc of window.__peers || []) {
    (await pc.getStats()).forEach(s => {
      if ((s.type === 'inbound-rtp' || s.type === 'outbound-rtp') && s.kind === 'video') rows.push({
        type: s.type, framesReceived: s.framesReceived, framesDecoded: s.framesDecoded, framesDropped: s.framesDropped,
        framesSent: s.framesSent, framesEncoded: s.framesEncoded, packetsLost: s.packetsLost, nackCount: s.nackCount,
        pliCount: s.pliCount, keyFramesDecoded: s.keyFramesDecoded, totalDecodeTime: s.totalDecodeTime,
        totalEncodeTime: s.totalEncodeTime, jitterBufferDelay: s.jitterBufferDelay,
        jitterBufferEmittedCount: s.jitterBufferEmittedCount, framesPerSecond: s.framesPerSecond,
        qualityLimitationReason: s.qualityLimitationReason, frameWidth: s.frameWidth,
      });
    });
  }
  return rows;
}"""
GRAB_FRAME_JS = """() => {
  const video = document.querySelector('video');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  return canvas.toDataURL('image/png');
}"""


def metric(page, name: str) -> float:
    """The value of an st.metric on the page, by its label."""
    text = page.locator('[data-testid="stMetric"]', has_text=name).first.inner_text()
    return float(re.findall(r"[\d.]+", text.split(name, 1)[1])[0])


def run_browser(
    url: str,
    y4m: Path,
    seconds: float = 10.0,
    screenshot: Path | None = None,
    snapshot: bool = False,
    latency: bool = True,
) -> dict:
    """Open the live page in headless Chromium with `y4m` as its camera, press Start, measure, press Stop.

    Returns rendered frames/s at the <video>, server frames processed/arrived/dropped over the same window
    and the last rendered frame as RGB (H, W, 3). snapshot=True also presses the snapshot button and
    returns the confirmation text under "snapshot_message".
    """
    import base64

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={y4m}"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script(KEEP_PEERS_JS)
            page.goto(url)
            component = page.frame_locator('iframe[title*="webrtc"]').first
            component.get_by_role("button", name=re.compile("^start$", re.I)).click(timeout=60_000)
            video = component.locator("video")
            video.wait_for(timeout=60_000)
            frame = next(f for f in page.frames if f.url and "streamlit_webrtc" in f.url)
            frame.wait_for_function(PLAYING_JS, timeout=60_000)
            page.wait_for_timeout(2000)  # let the frame budget settle
            processed0, dropped0, t0 = (
                metric(page, "Frames processed"),
                metric(page, "Frames dropped"),
                time.monotonic(),
            )
            stats0 = frame.evaluate(INBOUND_STATS_JS)
            code = [CODE_BITS, CODE_BLOCK, CODE_X, CODE_Y]
            counted = frame.evaluate(
                LATENCY_JS, [int(seconds * 1000), *code, latency, CAMERA_FPS, LOOP_FRAMES]
            )  # rendered frames and glass-to-glass latency over the same window
            stats1 = frame.evaluate(INBOUND_STATS_JS)
            page.wait_for_timeout(1100)  # one more panel refresh
            processed1, dropped1, t1 = (
                metric(page, "Frames processed"),
                metric(page, "Frames dropped"),
                time.monotonic(),
            )
            png = base64.b64decode(frame.evaluate(GRAB_FRAME_JS).split(",", 1)[1])
            rendered = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            message = None
            if snapshot:
                page.get_by_role("button", name=re.compile("Snapshot")).click()
                message = page.get_by_text(re.compile("Snapshot saved")).inner_text(timeout=30_000)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            component.get_by_role("button", name=re.compile("^stop$", re.I)).click()
            page.wait_for_timeout(1000)
            elapsed = t1 - t0
            arrived = processed1 + dropped1 - processed0 - dropped0
            return {
                "snapshot_message": message,
                "rendered_fps": round(counted["count"] / seconds, 1),
                "rendered_distinct_fps": round(counted["distinct"] / seconds, 1),  # new camera frames shown
                **latency_stats(counted["latencies"]),
                "dropped_percent": round(100 * (dropped1 - dropped0) / arrived, 1) if arrived else None,
                "video_size": [counted["width"], counted["height"]],
                "server_processed_fps": round((processed1 - processed0) / elapsed, 1),
                "server_arrived_fps": round(arrived / elapsed, 1),
                "frames_dropped": int(dropped1 - dropped0),
                "seconds": seconds,
                "webrtc_stats": webrtc_rates(stats0, stats1, seconds),
                "last_frame": rendered,
            }
        finally:
            browser.close()


CODE_BITS, CODE_BLOCK, CODE_X, CODE_Y = 7, 20, 380, 2  # frame number in black/white blocks, top strip
CAMERA_FPS = 30
LOOP_FRAMES = 2**CODE_BITS  # the fake camera file: 128 frames, 4.3 s before Chromium loops it


def stamp_code(frame: np.ndarray, number: int) -> np.ndarray:
    """Write `number` (0..127) into an RGB (H, W, 3) frame as CODE_BITS squares (white = 1), in place; the
    top strip is the camera's grey background, away from faces, labels and the stats banner (bottom)."""
    for bit in range(CODE_BITS):
        x = CODE_X + bit * (CODE_BLOCK + 4)
        frame[CODE_Y : CODE_Y + CODE_BLOCK, x : x + CODE_BLOCK] = 255 if number >> bit & 1 else 0
    return frame


def camera_y4m(photo: np.ndarray, path: Path, frames: int = LOOP_FRAMES) -> Path:
    """A fake-camera file: `frames` 640x480 frames (Chromium loops it) of the photo, each stamped with its
    number (stamp_code) so that a frame can be recognised where the page shows it (glass-to-glass latency)."""
    frames_out = (stamp_code(camera_frame(photo), i % 2**CODE_BITS) for i in range(frames))
    return write_y4m(frames_out, path, fps=CAMERA_FPS)


# In the webrtc component's frame: a second getUserMedia (the same fake camera) plays locally and gives the
# camera's clock: a local frame m presented at time T puts the loop's start at T - m / fps (the median of
# the last 15 such estimates is kept, so a frame the local <video> skips costs nothing). The annotated
# frame with number n presented at time T' then has latency (T' - start - n / fps) modulo the loop's length
# (4.3 s: far above any latency seen). Frames are counted at the same time (rendered frames per second at
# the page's <video>); `distinct` counts the ones that show a new camera frame.
LATENCY_JS = """async ([ms, bits, block, x0, y0, withLocal, fps, loopFrames]) => {
  const out = document.querySelector('video');
  const local = document.createElement('video');
  local.muted = true; local.playsInline = true;
  if (withLocal) {
    local.srcObject = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false});
    await local.play();
  }
  const width = x0 + bits * (block + 4);
  const canvas = document.createElement('canvas'); canvas.width = width; canvas.height = y0 + block;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const read = (video) => {
    ctx.drawImage(video, 0, 0, width, y0 + block, 0, 0, width, y0 + block);
    let n = 0;
    for (let b = 0; b < bits; b++) {
      const px = ctx.getImageData(x0 + b * (block + 4) + block / 2, y0 + block / 2, 1, 1).data;
      if (px[1] > 128) n |= 1 << b;
    }
    return n;
  };
  const period = 1000 * loopFrames / fps, frameMs = 1000 / fps;
  const mod = (a, b) => ((a % b) + b) % b;
  const starts = [];  // recent estimates of when the loop started, as phases in [0, period)
  const loopStart = () => {  // circular median: unwrap around the first estimate
    const ref = starts[0];
    const unwrapped = starts.map(s => ref + mod(s - ref + period / 2, period) - period / 2).sort((a, b) => a - b);
    return unwrapped[Math.floor(unwrapped.length / 2)];
  };
  const latencies = []; let count = 0, distinct = 0, last = -1, running = true;
  const onLocal = (now, meta) => {
    const m = read(local);
    starts.push(mod(meta.expectedDisplayTime - m * frameMs, period));
    if (starts.length > 15) starts.shift();
    if (running) local.requestVideoFrameCallback(onLocal);
  };
  const onOut = (now, meta) => {
    count += 1;
    const n = read(out);
    if (n !== last) {
      distinct += 1;
      if (starts.length >= 5) latencies.push(mod(meta.expectedDisplayTime - loopStart() - n * frameMs, period));
    }
    last = n;
    if (running) out.requestVideoFrameCallback(onOut);
  };
  if (withLocal) local.requestVideoFrameCallback(onLocal);
  out.requestVideoFrameCallback(onOut);
  await new Promise(r => setTimeout(r, ms));
  running = false;
  if (withLocal) local.srcObject.getTracks().forEach(t => t.stop());
  return {count, distinct, latencies, width: out.videoWidth, height: out.videoHeight};
}"""


def webrtc_rates(before: list[dict], after: list[dict], seconds: float) -> dict:
    """Chromium's own counters over the window, per second: frames it encoded and sent (the camera, out) and
    received, decoded and dropped (the annotated video, in); tells the network, decoder and renderer apart."""
    rates = {}
    for old, new in zip(before, after, strict=False):
        prefix = "browser_in" if new["type"] == "inbound-rtp" else "browser_out"
        for key, value in new.items():
            if isinstance(value, (int, float)) and isinstance(old.get(key), (int, float)):
                rates[f"{prefix}_{key}_per_s"] = round((value - old[key]) / seconds, 2)
            elif key == "qualityLimitationReason":
                rates[f"{prefix}_{key}"] = value
    return rates


def latency_stats(latencies: list[float]) -> dict:
    """Median and p95 (ms) of glass-to-glass latencies, and how many frames were matched."""
    if not latencies:
        return {"latency_matched": 0}
    values = np.array(latencies)
    return {
        "latency_median_ms": round(float(np.median(values)), 1),
        "latency_p95_ms": round(float(np.percentile(values, 95)), 1),
        "latency_matched": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=SHARED_DIR / "photos" / "obama.jpg")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--browser", type=float, default=0, help="seconds of browser measurement (0: skip)")
    args = parser.parse_args()
    photo = load_image(args.photo)
    report = {
        "pipeline_default_budget": benchmark_pipeline(photo, args.frames),
        "pipeline_full_detection_every_frame": benchmark_pipeline(photo, args.frames, LiveSettings(budget_ms=None)),
    }
    if args.browser:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            y4m = camera_y4m(photo, Path(tmp) / "camera.y4m")
            env = {"EMOTION_DB_PATH": str(Path(tmp) / "bench.db"), "EMOTION_MEDIA_DIR": str(Path(tmp) / "media")}
            with serve_live_page(Path(tmp), env) as url:
                browser = run_browser(url, y4m, args.browser)
            browser.pop("last_frame")
            report["browser"] = browser
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
