"""Logging set-up: console and a rotating file under logs/, configured once per process, under a lock
(concurrent first runs of the app used to add the handlers several times: each line written up to
six times)."""

from __future__ import annotations

import logging
import logging.handlers
import threading
from pathlib import Path

from emotion.config import LOG_DIR

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LOCK = threading.Lock()


def setup_logging(app_name: str, level: int = logging.INFO, log_file: Path | None = None) -> None:
    """Idempotent and thread-safe: a second call (Streamlit reruns the script, sessions start at once)
    adds no handlers."""
    root = logging.getLogger()
    if getattr(root, "_emotion_configured", False):
        return
    with _LOCK:
        if not getattr(root, "_emotion_configured", False):
            _configure(root, app_name, level, log_file)


def _configure(root: logging.Logger, app_name: str, level: int, log_file: Path | None) -> None:
    """The handlers (called once, under _LOCK)."""
    root.setLevel(level)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(console)
    path = log_file or LOG_DIR / f"{app_name}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
        rotating.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(rotating)
    except OSError as error:  # a read-only checkout still runs, logging to the console only
        root.warning("file logging disabled: %s", error)
    for noisy in ("PIL", "matplotlib", "h5py", "absl", "tensorflow", "aioice", "aiortc", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._emotion_configured = True  # type: ignore[attr-defined]
