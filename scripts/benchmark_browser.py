"""What a user gets, measured in headless Chromium against `streamlit run app.py` (the README's command,
with the checkout's .streamlit/config.toml): every row of issue 22's target table.

    python scripts/benchmark_browser.py                          # everything, 5 repeats
    python scripts/benchmark_browser.py --only photo gradcam     # some rows
    python scripts/benchmark_browser.py --users 10 20 --repeats 3 --live-seconds 10 --json out.json

Rows (medians and p95 over the repeats):
- idle: server CPU (% of one core) with one logged-in tab open on Home, over --idle-seconds;
- photo: Analyze click to the annotated result visible (the new <img> loaded), per photo of ../shared/photos,
  with the page's own "Answered in" figure and the time until the run is over (saved, downloads there);
- gradcam: "Explain (Grad-CAM)" click to the explanation visible, per face; the first click after the server
  started (the Keras model may still be warming) apart from the others;
- explorer: a fresh server on an empty cache, log in (at once, and after --login-pause seconds), click
  Dataset (the explorer): seconds to the FER2013 summary with the page idle, then to its Samples and
  Duplicates & blanks tabs (FER2013 from ../shared; the app warms the cache in the background from its
  first request), and a reload;
- live: the webcam page with Chromium's fake 30 fps 640x480 camera (a .y4m made at run time from
  ../shared/photos/obama.jpg in a temporary folder, never kept): frames rendered by the page's <video>,
  frames dropped by the server, glass-to-glass latency (scripts/benchmark_live.py);
- users: N users in separate browser contexts of one Chromium, logged in, each with two_people.jpg uploaded,
  click Analyze at once, then all once more: failures, p50/p95 click-to-result of each burst, the server's
  CPU seconds per click, the login times, and where each burst's CPU went (the whole machine's busy time,
  and each kind of process's: server, Chromium's renderers, GPU and browser processes, Playwright); the
  second burst's new titles are typed only once everyone's first answer is in, so that the first burst
  times the clicks alone;
  --settle N waits N seconds between the last upload and the first burst (default 0: at once).

Figures depend on what else runs on the machine: the 1-minute load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from emotion.config import SHARED_DIR  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
PASSWORD = "benchmark-password-1"
ROWS = ("idle", "photo", "gradcam", "live", "users", "explorer")
TIMEOUT_MS = 120_000  # per step; --timeout changes it
# Called just before a click: the result pictures on the page now, and the page's "Answered in" caption. The
# same photo analysed again keeps its picture's URL, so its new result shows as that picture going stale and
# fresh again (a MutationObserver notes it), or, when the browser is so loaded that it renders the new run's
# elements without ever marking the old ones stale, as the new run's caption (its timings differ).
IMAGES_JS = """() => { window.__sawStale = false;
  if (!window.__staleObserver) {
    window.__staleObserver = new MutationObserver(records => {
      if (records.some(r => r.oldValue === 'true' || (r.target.getAttribute
          && r.target.getAttribute('data-stale') === 'true'))) window.__sawStale = true;
    });
    window.__staleObserver.observe(document.body,
      {subtree: true, attributes: true, attributeFilter: ['data-stale'], attributeOldValue: true});
  }
  const caption = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
    .map(e => e.innerText).find(t => t.startsWith('Answered in')) || null;
  return {images: [...document.querySelectorAll('img[src*="/media/"]')].map(i => i.src), caption: caption}; }"""
NEW_IMAGE_JS = """(previous) => {
  if (document.querySelector('[data-stale="true"] img[src*="/media/"]')) window.__sawStale = true;
  const fresh = c => !c.closest('[data-stale="true"]') && c.innerText.startsWith('Answered in');
  const newCaption = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
    .some(c => fresh(c) && c.innerText !== previous.caption);
  return [...document.querySelectorAll('img[src*="/media/"]')].some(i => i.complete && i.naturalWidth > 0
    && !i.closest('[data-stale="true"]') && (!previous.images.includes(i.src) || window.__sawStale || newCaption));
}"""
# Waits for a condition in the page without polling it: checked once per frame after DOM changes (the
# changes of one frame coalesced), on every picture loaded, and every 250 ms for anything else.
# Playwright's wait_for_function(polling=20) ran its check 50 times a second in every waiting tab, and its
# role and text locators walk the whole page computing ARIA roles at every poll (50-100 ms of a tab's
# renderer per Analyze click, measured with the CDP profiler): with 10-20 tabs on the server's two cores,
# that polling was part of what the benchmark measured. So the waits after a click use these CSS checks.
WAIT_JS = """([source, arg]) => new Promise(resolve => {
  const condition = (0, eval)('(' + source + ')');
  let timer = null, frame = null;
  const check = () => {
    frame = null;
    if (!condition(arg)) return;
    observer.disconnect(); clearInterval(timer); document.removeEventListener('load', check, true);
    resolve(true);
  };
  const observer = new MutationObserver(() => { if (frame === null) frame = requestAnimationFrame(check); });
  observer.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  document.addEventListener('load', check, true);
  timer = setInterval(check, 250);
  check();
})"""
# The live (not stale) "Answered in" caption's text, and whether the live PDF download button is there.
CAPTION_JS = """() => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
  .filter(c => !c.closest('[data-stale="true"]')).map(c => c.innerText)
  .filter(t => /^Answered in \\d+ ms/.test(t)).pop() || null"""
PDF_BUTTON_JS = """() => [...document.querySelectorAll('[data-testid="stDownloadButton"] button')]
  .some(b => !b.closest('[data-stale="true"]') && b.innerText.trim() === 'PDF report')"""
RUN_OVER_JS = """() => !document.querySelector('[data-stale="true"]') && document.querySelector(
  '[data-testid="stApp"]').getAttribute('data-test-script-state') === 'notRunning'"""
# From now on, window.__runSeen() is true once the page's script state has changed (a rerun started) or 1.5 s
# have passed: the frontend may apply "running" and "notRunning" of a short run in one go, with no change.
RUN_SEEN_ARM_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (window.__runObserver) window.__runObserver.disconnect();
  let changed = false;
  const armed = performance.now();
  window.__runSeen = () => changed || performance.now() - armed > 1500;
  window.__runObserver = new MutationObserver(() => { changed = true; });
  window.__runObserver.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def stats(values: list[float], digits: int = 3) -> dict:
    """{"n", "median", "p95", "min", "max"} of a list of numbers (empty: {"n": 0})."""
    if not values:
        return {"n": 0}
    array = np.array(values, dtype=float)
    return {
        "n": len(values),
        "median": round(float(np.median(array)), digits),
        "p95": round(float(np.percentile(array, 95)), digits),
        "min": round(float(array.min()), digits),
        "max": round(float(array.max()), digits),
    }


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds with its threads) of a process, from one read of /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), its threads included."""
    return _stat(pid)[1]


async def wait_in_page(page, condition_js: str, arg=None) -> None:
    """Until `condition_js` (a JavaScript function of `arg`) is true in the page (WAIT_JS); TimeoutError
    after the step timeout."""
    try:
        await asyncio.wait_for(page.evaluate(WAIT_JS, [condition_js, arg]), TIMEOUT_MS / 1000)
    except TimeoutError:
        raise TimeoutError(f"waited {TIMEOUT_MS / 1000:.0f} s for {condition_js[:80]!r}") from None


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes, /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_by_process_kind(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the processes a browser row involves, summed by kind: the server (with its
    helper processes), each kind of Chromium process (browser, renderer, gpu-process, utility), Playwright's
    driver and this script. Differences of two calls say where a burst's CPU went."""
    parents: dict[int, int] = {}
    spent: dict[int, float] = {}
    commands: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):  # a process may end while it is read
            pid = int(entry.name)
            parents[pid], spent[pid] = _stat(pid)
            # Chromium rewrites its child processes' titles into one space-separated string
            commands[pid] = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split()

    def descends_from(pid: int, ancestor: int) -> bool:
        while pid > 1:
            if pid == ancestor:
                return True
            pid = parents.get(pid, 1)
        return False

    totals: dict[str, float] = {}
    for pid, command in commands.items():
        if descends_from(pid, server_pid):
            kind = "server"
        elif pid == os.getpid():
            kind = "benchmark script"
        elif command and command[0].endswith("chromium"):
            kind = next((f"chromium {a[7:]}" for a in command if a.startswith("--type=")), "chromium browser")
        elif command and Path(command[0]).name == "node":
            kind = "playwright driver"
        else:
            continue
        totals[kind] = totals.get(kind, 0.0) + spent[pid]
    return totals


def make_users(db: Path, count: int) -> list[str]:
    """bench00..benchNN with PASSWORD (cheap bcrypt rounds: logins measure the app, not the hash)."""
    import bcrypt

    from studio.store import Store

    store = Store(db, db.parent / "media")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    names = [f"bench{i:02d}" for i in range(count)]
    for name in names:
        if store.get_user_by_username(name) is None:
            store.create_user(name, f"Bench {name}", f"{name}@example.com", hashed)
    return names


@contextlib.contextmanager
def serve_app(workdir: Path, env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run app.py` from the checkout (its .streamlit/config.toml applies) on a free port:
    (URL, server process), the process for its CPU time."""
    from tests.browser_support import streamlit_server

    with streamlit_server(REPO / "app.py", workdir / "streamlit.log", env) as (url, server):
        yield url, server


async def log_in(page, url: str, username: str) -> float:
    """Open the studio and log in through its form; seconds from the page load to "Signed in as"."""
    started = time.perf_counter()
    await page.goto(url)
    form = page.get_by_role("tabpanel", name="Log in")
    await form.get_by_label("Username", exact=True).fill(username)
    await form.get_by_label("Password", exact=True).fill(PASSWORD)
    await form.get_by_role("button", name="Log in").click()
    await page.get_by_text("Signed in as").wait_for(timeout=TIMEOUT_MS)
    return time.perf_counter() - started


async def open_photo_page(page) -> None:
    await page.get_by_role("link", name="Photo").first.click()
    await page.get_by_role("heading", name="Classify a photo").wait_for(timeout=TIMEOUT_MS)


async def upload(page, photo: Path) -> None:
    """Choose the file and wait until the upload is done (the Analyze button enabled). The uploader takes
    several files (a batch): the previous photo is removed first, so that this one is analysed alone."""
    from playwright.async_api import expect

    chips = page.get_by_test_id("stFileChipDeleteBtn")
    while await chips.count():
        await chips.first.click()
        await page.wait_for_timeout(200)
    await page.locator('input[type="file"]').set_input_files(str(photo))
    await page.get_by_text(photo.name).first.wait_for(timeout=TIMEOUT_MS)
    await expect(page.get_by_role("button", name="Analyze")).to_be_enabled(timeout=TIMEOUT_MS)


async def retitle(page, title: str) -> None:
    """Type a new title (an option of the analysis) and wait for its rerun: Analyze on the same input with the
    same options keeps the result on screen, so each repeat gets its own title to be analysed again (the save
    then finds the same photo in the history: "Already in your history", no second picture and row). The
    rerun is waited for once it has been seen to start (or 1.5 s have passed): on a busy machine it may start
    late, and an Analyze click before it is over would see that rerun end the click's run."""
    await page.evaluate(RUN_SEEN_ARM_JS)
    box = page.get_by_label("Title or note (optional, kept with the analysis)")
    await box.fill(title)
    await box.press("Enter")
    await wait_in_page(page, f"() => window.__runSeen() && ({RUN_OVER_JS})()")


async def click_analyze(page) -> dict:
    """Click Analyze; seconds until a new result image is loaded and until the run is over (downloads there,
    saved to the history), and the page's own figure (the "Answered in" caption, ms). Waits with CSS checks
    in the page (WAIT_JS), not Playwright's locators, whose polling would cost the other tabs' CPU."""
    previous = await page.evaluate(IMAGES_JS)
    analyze = page.get_by_role("button", name="Analyze")
    await analyze.wait_for()  # located before the clock starts
    started = time.perf_counter()
    await analyze.click()
    await wait_in_page(page, NEW_IMAGE_JS, previous)
    visible = time.perf_counter() - started
    # The caption is written last, after the downloads: the run is over when all three hold.
    await wait_in_page(page, f"() => ({CAPTION_JS})() !== null && ({PDF_BUTTON_JS})() && ({RUN_OVER_JS})()")
    downloads = time.perf_counter() - started
    text = await page.evaluate(CAPTION_JS)
    answered = float(re.findall(r"Answered in (\d+) ms", text)[0])
    return {"visible_s": visible, "finished_s": downloads, "page_says_ms": answered, "caption": text}


async def click_gradcam(page, index: int) -> tuple[float, float]:
    """Turn on the index-th face's Grad-CAM toggle; seconds until its explanation is shown, and the page's
    own figure (ms, "Grad-CAM computed in")."""
    done = page.get_by_text(re.compile(r"^Grad-CAM computed in"))
    before = await done.count()
    started = time.perf_counter()
    await page.get_by_text("Explain (Grad-CAM)").nth(index).click()
    await wait_in_page(
        page,
        "(n) => [...document.querySelectorAll('p')].filter(p => p.textContent.startsWith('Grad-CAM computed in'))"
        ".length > n",
        before,
    )
    seconds = time.perf_counter() - started
    text = await done.nth(before).inner_text()
    return seconds, float(re.findall(r"computed in (\d+) ms", text)[0])


async def photo_rows(browser, url: str, user: str, photos: list[Path], repeats: int, gradcam: bool) -> dict:
    """Analyze each photo `repeats` times in one logged-in tab; Grad-CAM on every face of the first photo."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    await log_in(page, url, user)
    await open_photo_page(page)
    rows: dict = {}
    cams: list[float] = []
    cam_server: list[float] = []
    first_cam: float | None = None
    for photo in photos:
        clicks = []
        await upload(page, photo)
        for repeat in range(repeats + 1):  # the first click warms the models and is reported apart
            if repeat:
                await retitle(page, f"benchmark {photo.name} {repeat}")
            clicks.append(await click_analyze(page))
            if gradcam and photo == photos[0]:
                faces = await page.get_by_text("Explain (Grad-CAM)").count()
                for index in range(faces):
                    seconds, server_ms = await click_gradcam(page, index)
                    if first_cam is None:
                        first_cam = seconds
                    else:
                        cams.append(seconds)
                        cam_server.append(server_ms)
            del repeat
        rows[photo.name] = {
            "first_click_s": round(clicks[0]["visible_s"], 3),
            "click_to_result_s": stats([c["visible_s"] for c in clicks[1:]]),
            "click_to_run_finished_s": stats([c["finished_s"] for c in clicks[1:]]),
            "page_says_ms": stats([c["page_says_ms"] for c in clicks[1:]], 0),
            "last_caption": clicks[-1]["caption"],
        }
    await page.close()
    if gradcam:
        rows["gradcam"] = {
            "first_click_s": first_cam,
            "per_face_s": stats(cams),
            "page_says_ms": stats(cam_server, 0),
        }
    return rows


async def idle_row(browser, url: str, user: str, server: subprocess.Popen, seconds: float) -> dict:
    """Server CPU with one logged-in tab on Home, after a 3 s settle."""
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await log_in(page, url, user)
    await page.wait_for_timeout(3000)
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    await page.wait_for_timeout(seconds * 1000)
    cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
    await page.close()
    return {"server_cpu_percent_of_a_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2), "seconds": seconds}


async def explorer_row(browser, repeats: int, login_pause: float = 0.0) -> dict:
    """The dataset explorer's first visit after a fresh start: each repeat starts `streamlit run app.py`
    on an empty cache, opens the login page, waits `login_pause` seconds (a person typing; 0: a robot),
    logs a user in, clicks "Dataset" and times the click to the FER2013 summary shown with the script
    stopped; then a reload of the page. FER2013 must be in ../shared."""
    from tests.test_browser_offline import IDLE_JS  # the browser tests' "script has stopped" check

    async def shown(page, text: str) -> None:
        """`text` is on the page and the script has stopped."""
        await page.get_by_text(text).first.wait_for(timeout=TIMEOUT_MS)
        await page.wait_for_function(IDLE_JS, timeout=TIMEOUT_MS)

    first, reload, samples, duplicates = [], [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            user = make_users(work / "studio.db", 1)[0]
            env = {
                "EMOTION_DB_PATH": str(work / "studio.db"),
                "EMOTION_MEDIA_DIR": str(work / "media"),
                "EMOTION_LOG_DIR": str(work / "logs"),
                "EMOTION_CACHE_DIR": str(work / "cache"),  # empty: the coldest first visit
                "EMOTION_COOKIE_KEY": "benchmark-browser-cookie-key-" + "x" * 32,
            }
            with serve_app(work, env) as (url, _server):
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(TIMEOUT_MS)
                await page.goto(url)  # the first request: the app starts filling the cache
                await page.wait_for_timeout(login_pause * 1000)
                await log_in(page, url, user)
                started = time.perf_counter()
                await page.get_by_role("link", name="Dataset", exact=True).first.click()
                await shown(page, "FER2013: 35,887 images")
                first.append(time.perf_counter() - started)
                # Only the open tab runs: the first tabs that need the images wait for them if the
                # start-up warm-up has not parsed them yet.
                for tab, text, times in (
                    ("Samples", "Samples per class", samples),
                    ("Duplicates & blanks", "Exact duplicate groups", duplicates),
                ):
                    started = time.perf_counter()
                    await page.get_by_role("tab", name=tab).click()
                    await shown(page, text)
                    times.append(time.perf_counter() - started)
                await page.get_by_role("tab", name="Classes").click()
                await page.wait_for_function(IDLE_JS, timeout=TIMEOUT_MS)
                started = time.perf_counter()
                await page.reload()
                await shown(page, "FER2013: 35,887 images")
                reload.append(time.perf_counter() - started)
                await page.close()
    return {
        "first_visit_s": stats(first),
        "then_samples_tab_s": stats(samples),
        "then_duplicates_tab_s": stats(duplicates),
        "reload_s": stats(reload),
        "login_pause_s": login_pause,
    }


class Bursts:
    """Two moments when every user clicks Analyze at once; `ready[k]`: who waits for the k-th."""

    def __init__(self) -> None:
        self.starts = [asyncio.Event(), asyncio.Event()]
        self.ready: list[list[str]] = [[], []]
        self.done: list[list[str]] = [[], []]  # whose k-th answer is in (or who failed)
        # Everyone's k-th answer is in and the burst's CPU is read: only then does anyone prepare the next
        # burst (a new title is a rerun of the whole page, which would take the machine from those still
        # waiting in this one), and after the last one the contexts may close.
        self.over = [asyncio.Event(), asyncio.Event()]


async def one_user(browser, url: str, user: str, photo: Path, bursts: Bursts) -> dict:
    """A separate browser context: log in, upload, wait for everyone, click Analyze; then once more, again
    with everyone (the browser has built the result page once by then); its figures or its error."""
    context = await browser.new_context(viewport={"width": 1280, "height": 1200})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    figures: dict = {}
    step = "log in"
    try:
        figures["login_s"] = await log_in(page, url, user)
        step = "upload"
        await open_photo_page(page)
        await upload(page, photo)
        for k, key in enumerate(("first", "again")):
            if k:  # another title: the same photo with the same options is not analysed twice
                await bursts.over[k - 1].wait()
                step = "retitle"
                await retitle(page, f"again {user}")
            bursts.ready[k].append(user)
            await bursts.starts[k].wait()
            step = f"{key} analysis"
            figures[key] = await click_analyze(page)
            bursts.done[k].append(user)
        await bursts.over[-1].wait()  # a closed context's renderer takes its CPU time with it
        return figures
    except Exception as error:  # a failure is a figure of this benchmark, not its end
        for waiting in (*bursts.ready, *bursts.done):
            if user not in waiting:
                waiting.append(user)
        shot = Path(tempfile.gettempdir()) / f"benchmark_users_{user}.png"
        with contextlib.suppress(Exception):
            await page.screenshot(path=str(shot), full_page=True)
        return {**figures, "error": f"{step}: {type(error).__name__}: {str(error).splitlines()[0][:200]} ({shot})"}
    finally:
        await context.close()


async def users_row(
    browser, url: str, users: list[str], photo: Path, server: subprocess.Popen, settle: float = 0.0
) -> dict:
    """len(users) users click Analyze at the same moment, twice: each user's first analysis (when each
    browser also builds the result page for the first time, here on the server's own cores) and a second one.
    With the server's CPU seconds per click over each burst (its own cost, apart from the browsers
    sharing the machine: the capacity per core), and every process kind's. `settle`: seconds between the
    last upload and the first burst (0: at once, as users who all upload at the same moment)."""
    bursts = Bursts()
    tasks = [asyncio.create_task(one_user(browser, url, user, photo, bursts)) for user in users]
    row: dict = {"users": len(users), "settle_s": settle}
    for k, key in enumerate(("first", "again")):
        while len(bursts.ready[k]) < len(users):
            await asyncio.sleep(0.05)
        if k == 0 and settle:
            await asyncio.sleep(settle)
        kinds0 = cpu_by_process_kind(server.pid)  # reads all of /proc: before the clock starts
        cpu0, busy0, t0 = cpu_seconds(server.pid), machine_busy_seconds(), time.monotonic()
        bursts.starts[k].set()
        while len(bursts.done[k]) < len(users):  # everyone's answer is in
            await asyncio.sleep(0.05)
        row[f"{key}_burst_s"] = round(time.monotonic() - t0, 2)
        row[f"{key}_server_cpu_s"] = round(cpu_seconds(server.pid) - cpu0, 2)
        row[f"{key}_machine_busy_cpu_s"] = round(machine_busy_seconds() - busy0, 2)
        kinds1 = cpu_by_process_kind(server.pid)
        row[f"{key}_cpu_s_by_process"] = {
            kind: round(kinds1[kind] - kinds0.get(kind, 0.0), 2) for kind in sorted(kinds1)
        }
        bursts.over[k].set()
    await asyncio.gather(*tasks)
    results = [task.result() for task in tasks]
    first = [r["first"]["visible_s"] for r in results if "first" in r]
    again = [r["again"]["visible_s"] for r in results if "again" in r]
    return {
        **row,
        "server_cpu_s_per_click": round(row["first_server_cpu_s"] / max(1, len(first)), 3),
        "server_cpu_s_per_click_again": round(row["again_server_cpu_s"] / max(1, len(again)), 3),
        "failures": sum("error" in r for r in results),
        "errors": sorted({r["error"] for r in results if "error" in r}),
        "click_to_result_s": stats(first),
        "again_click_to_result_s": stats(again),
        "login_s": stats([r["login_s"] for r in results if "login_s" in r]),
    }


def live_row(seconds: float, repeats: int) -> dict:
    """scripts/benchmark_live.py's browser run, `repeats` times, on its own server (the live page)."""
    from benchmark_live import camera_y4m, run_browser, serve_live_page

    from emotion import load_image

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        y4m = camera_y4m(load_image(SHARED_DIR / "photos" / "obama.jpg"), Path(tmp) / "camera.y4m")
        env = {"EMOTION_DB_PATH": str(Path(tmp) / "live.db"), "EMOTION_MEDIA_DIR": str(Path(tmp) / "media")}
        with serve_live_page(Path(tmp), env) as url:
            for _ in range(repeats):
                run = run_browser(url, y4m, seconds)
                run.pop("last_frame")
                runs.append(run)
    keys = ("rendered_fps", "rendered_distinct_fps", "dropped_percent", "latency_median_ms", "latency_p95_ms")
    return {
        **{key: stats([r[key] for r in runs if r.get(key) is not None], 1) for key in keys},
        "server_processed_fps": stats([r["server_processed_fps"] for r in runs], 1),
        "runs": runs,
    }


async def main_async(args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright

    photos = [SHARED_DIR / "photos" / name for name in args.photos]
    missing = [str(p) for p in photos if not p.is_file()]
    if missing:
        raise SystemExit(f"missing photos: {', '.join(missing)} (../shared/photos)")
    report: dict = {"load_average_1min_before": round(os.getloadavg()[0], 2)}
    browser_rows = [row for row in args.only if row not in ("live", "explorer")]
    if "explorer" in args.only:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                report["explorer"] = await explorer_row(browser, max(1, min(args.repeats, 3)))
                if args.login_pause:
                    report["explorer_after_pause"] = await explorer_row(
                        browser, max(1, min(args.repeats, 3)), args.login_pause
                    )
            finally:
                await browser.close()
    if browser_rows:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            users = make_users(work / "studio.db", max([1, *args.users]))
            env = {
                "EMOTION_DB_PATH": str(work / "studio.db"),
                "EMOTION_MEDIA_DIR": str(work / "media"),
                "EMOTION_LOG_DIR": str(work / "logs"),
                "EMOTION_COOKIE_KEY": "benchmark-browser-cookie-key-" + "x" * 32,
            }
            with serve_app(work, env) as (url, server):
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                    try:
                        if "idle" in args.only:
                            report["idle"] = await idle_row(browser, url, users[0], server, args.idle_seconds)
                        if "photo" in args.only or "gradcam" in args.only:
                            report["photo"] = await photo_rows(
                                browser, url, users[0], photos, args.repeats, "gradcam" in args.only
                            )
                        if "users" in args.only:
                            for count in args.users:
                                row = await users_row(browser, url, users[:count], photos[0], server, args.settle)
                                report[f"users_{count}"] = row
                    finally:
                        await browser.close()
    return report


def summary(report: dict) -> list[str]:
    """The issue's target table, one line per row, from the report."""
    lines = ["what the user gets | measured (median / p95) | target"]
    if "idle" in report:
        lines.append(f"server CPU, one idle tab | {report['idle']['server_cpu_percent_of_a_core']}% of a core | < 2%")
    live = report.get("live")
    if live:
        lines.append(
            f"webcam: frames rendered | {live['rendered_fps'].get('median')} fps (new camera frames "
            f"{live['rendered_distinct_fps'].get('median')}); dropped {live['dropped_percent'].get('median')}%; "
            f"latency p95 {live['latency_p95_ms'].get('median')} ms | >= 25 fps, < 10%, < 150 ms"
        )
    targets = {"two_people.jpg": 0.8, "obama_and_biden.jpg": 1.5}
    for name, row in report.get("photo", {}).items():
        if name == "gradcam":
            lines.append(
                f"Grad-CAM, one face | {row['per_face_s'].get('median')} / {row['per_face_s'].get('p95')} s "
                f"(page says {row['page_says_ms'].get('median')} ms; first click after start "
                f"{row['first_click_s']:.1f} s) | <= 0.5 s"
            )
            continue
        click = row["click_to_result_s"]
        lines.append(
            f"Analyze click to result, {name} | {click.get('median')} / {click.get('p95')} s "
            f"(page says {row['page_says_ms'].get('median')} ms) | <= {targets.get(name, '?')} s"
        )
    for key in ("explorer", "explorer_after_pause"):
        if key not in report:
            continue
        first, again, pause = report[key]["first_visit_s"], report[key]["reload_s"], report[key]["login_pause_s"]
        lines.append(
            f"Dataset explorer, FER2013, first visit after a fresh start (empty cache; {pause:g} s on the login "
            f"page, log in, click) | {first.get('median')} / {first.get('p95')} s (reload {again.get('median')} s) "
            "| <= 5 s"
        )
        tabs = report[key]["then_samples_tab_s"], report[key]["then_duplicates_tab_s"]
        lines.append(
            f"  then the Samples tab, then Duplicates & blanks | {tabs[0].get('median')} / {tabs[0].get('p95')} s, "
            f"{tabs[1].get('median')} / {tabs[1].get('p95')} s |"
        )
    for key, row in report.items():
        if key.startswith("users_"):
            click = row["click_to_result_s"]
            again = row["again_click_to_result_s"]
            lines.append(
                f"{row['users']} users at once, each one's first analysis | {row['failures']} failures, "
                f"{click.get('median')} / {click.get('p95')} s (login p50 {row['login_s'].get('median')} s; "
                f"server CPU {row['server_cpu_s_per_click']} s a click) | 0 failures, p95 <= "
                f"{2.5 if row['users'] <= 10 else 5} s"
            )
            lines.append(
                f"  the same users at once again | {again.get('median')} / {again.get('p95')} s (server CPU "
                f"{row['server_cpu_s_per_click_again']} s a click) |"
            )
            for burst in ("first", "again"):
                spent = ", ".join(f"{kind} {cpu}" for kind, cpu in row[f"{burst}_cpu_s_by_process"].items())
                lines.append(
                    f"  CPU seconds of the {burst} burst: machine {row[f'{burst}_machine_busy_cpu_s']} in "
                    f"{row[f'{burst}_burst_s']} s on {os.cpu_count()} cores ({spent}) |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=ROWS, default=list(ROWS), help="rows to measure")
    parser.add_argument("--repeats", type=int, default=5, help="clicks per photo (after one warm-up click)")
    parser.add_argument("--photos", nargs="+", default=["two_people.jpg", "obama_and_biden.jpg"])
    parser.add_argument("--users", nargs="+", type=int, default=[10, 20], help="users clicking at once")
    parser.add_argument(
        "--settle", type=float, default=0.0, help="users: seconds between the last upload and the first burst"
    )
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument(
        "--login-pause", type=float, default=8.0, help="explorer row: also time a user who spends this long logging in"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a step may take before it fails")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    args = parser.parse_args()
    global TIMEOUT_MS
    TIMEOUT_MS = int(args.timeout * 1000)
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing (Debian's chromium)")
    report = asyncio.run(main_async(args))
    if "live" in args.only:  # playwright's sync API (benchmark_live), outside the event loop
        report["live"] = live_row(args.live_seconds, max(1, min(args.repeats, 3)))
    report["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    print("\n".join(summary(report)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
