"""Every setting, environment variable and limit of the project, in one place (the README's
settings table documents each once).

Every path is anchored at the repository root, never at the current directory. Each can be
overridden with an environment variable, so a deployment can keep data and the database
elsewhere without touching code. Functions (db_path, media_dir, ice_servers_env) read their
variables when called, so tests can point them elsewhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _path_setting(env_name: str, default: Path) -> Path:
    value = os.environ.get(env_name)
    return Path(value).expanduser().resolve() if value else default


# Where datasets are read from. FER2013 is looked for as <DATA_DIR>/fer2013/fer2013.csv(.gz),
# then in ../shared/datasets (the team's machines). A folder-per-class dataset can live anywhere.
DATA_DIR = _path_setting("EMOTION_DATA_DIR", REPO_ROOT / "data")
SHARED_DIR = _path_setting("EMOTION_SHARED_DIR", REPO_ROOT.parent / "shared")
MODELS_DIR = _path_setting("EMOTION_MODELS_DIR", REPO_ROOT / "models")
LOG_DIR = _path_setting("EMOTION_LOG_DIR", REPO_ROOT / "logs")
# Numbers the project computed from FER2013 and ships in the repository (counts, histograms, duplicate
# figures; never an image): part of the code's release, so it stays beside the code whatever
# EMOTION_DATA_DIR says.
DERIVED_DIR = REPO_ROOT / "data" / "derived"
# What the app computes from the datasets at run time (decoded FER2013 arrays, their statistics and
# mean/std faces): follows EMOTION_DATA_DIR, or EMOTION_CACHE_DIR. Safe to delete.
CACHE_DIR = _path_setting("EMOTION_CACHE_DIR", DATA_DIR / "cache")


def warm_cache_enabled() -> bool:
    """EMOTION_WARM_CACHE (default 1): the app fills the explorer's FER2013 cache in the background when
    it starts (studio.eda.warm_fer2013_cache); 0 leaves it to the first visit (the test suite's servers)."""
    return os.environ.get("EMOTION_WARM_CACHE", "1") != "0"


# Image input limits (see emotion.imageio). A 50 MB upload cap lives in .streamlit/config.toml.
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # about 7700x5200; above this a file is treated as a decompression bomb
ALLOWED_IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
UPLOAD_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
# An image is also judged by the bytes its decoded pixels take (width x height x bands x bytes per band,
# read from the header before decoding), not by its file size: a 150 KB RGBA PNG can declare 600 MB.
# Under this cap, one photo through the whole Photo page path (decode, detect, classify, annotate,
# PNG, PDF) stays under 1 GB of process memory (scripts/fuzz_uploads.py measures it).
MAX_DECODED_IMAGE_BYTES = 128 * 1024 * 1024
# Decodes larger than this wait for one of MAX_CONCURRENT_LARGE_DECODES slots (at most DECODE_WAIT_S
# seconds, then a "busy" error), so that several large uploads at once do not add up.
LARGE_DECODE_BYTES = 16 * 1024 * 1024
MAX_CONCURRENT_LARGE_DECODES = 1
DECODE_WAIT_S = 120.0
# A zip of a dataset uploaded to the explorer (studio.zipsafe): at most this many entries, this many bytes
# uncompressed in total, and no member expanding more than MAX_ZIP_RATIO times (JPEG/PNG stay near 1).
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_BYTES = 2 * 1024**3
MAX_ZIP_RATIO = 100
# Video analysis (emotion.video): accepted containers, the largest file, and the longest frame side kept
# (larger frames are scaled down before analysis and encoding). The first MAX_VIDEO_SECONDS are analysed,
# sampled to at most MAX_ANALYSIS_FPS frames per second (a 240 fps clip is analysed at this rate), at most
# MAX_DECODED_VIDEO_FRAMES frames are decoded (which bounds the CPU whatever the frame rate), and frames
# above MAX_VIDEO_FRAME_PIXELS are refused.
VIDEO_EXTENSIONS = ("mp4", "webm", "avi", "mov", "mkv")
MAX_VIDEO_BYTES = 50 * 1024 * 1024  # the upload cap of .streamlit/config.toml
MAX_VIDEO_SIDE = 1280
MAX_VIDEO_SECONDS = 120.0
MAX_ANALYSIS_FPS = 10.0
MAX_DECODED_VIDEO_FRAMES = 7_200
MAX_VIDEO_FRAME_PIXELS = 4096 * 2304
# Files taken as images when a folder is read (datasets, the CLI).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# The default model serves every webcam frame and every face of a photo, so it must classify a face
# within this budget of CPU time, all the runtime's threads together (its metrics file's measured LiteRT
# cost): a second thread shortens a face's wait but does not make a net cheaper for the machine, so it
# cannot bring a larger net within the budget. See registry.default_model_name.
DEFAULT_MODEL_BUDGET_MS = 1.0

# LiteRT threads per call where the app serves (the emotion models and the face detector): on the two
# cores measured here a second thread nearly halves a face's and a frame's wait for about a tenth more CPU
# (docs/RESULTS.md, section 13). More than two were never measured: one 48x48 face has little work to
# split. A machine serving many users at once can set EMOTION_SERVE_THREADS=1 and spend its cores on
# users rather than on one call (docs/DEPLOY.md).
SERVE_THREADS_ENV = "EMOTION_SERVE_THREADS"
MAX_DEFAULT_SERVE_THREADS = 2


def serve_threads() -> int:
    """EMOTION_SERVE_THREADS as a positive integer when set (read at call time), else two, or one on a
    one-core machine. A value that is not a positive integer is reported and the default used."""
    default = min(MAX_DEFAULT_SERVE_THREADS, os.cpu_count() or 1)
    value = os.environ.get(SERVE_THREADS_ENV, "").strip()
    if not value:
        return default
    if value.isdigit() and int(value) >= 1:
        return int(value)
    logging.getLogger(__name__).warning(
        "%s=%r is not a positive integer: serving with %d threads", SERVE_THREADS_ENV, value, default
    )
    return default


def fer2013_csv_candidates() -> list[Path]:
    """Places where FER2013 in Kaggle's CSV layout is looked for, in order."""
    names = ("fer2013.csv.gz", "fer2013.csv")
    dirs = [DATA_DIR / "fer2013", DATA_DIR, SHARED_DIR / "datasets" / "fer2013"]
    return [d / n for d in dirs for n in names]


def find_fer2013_csv() -> Path | None:
    """The first FER2013 CSV that exists, or None when the dataset is not on this machine."""
    return next((p for p in fer2013_csv_candidates() if p.is_file()), None)


FER2013_MISSING_HELP = (
    "FER2013 was not found. Download `fer2013.csv` from Kaggle's 'Challenges in Representation "
    "Learning: Facial Expression Recognition Challenge' and put it (or fer2013.csv.gz) in "
    f"`{DATA_DIR / 'fer2013'}`, or set the EMOTION_DATA_DIR environment variable to the folder "
    "that holds it."
)


# The live page's WebRTC ICE servers (emotion.live.rtc_configuration): a JSON list of RTCIceServer objects
# in EMOTION_ICE_SERVERS, else `ice_servers` in .streamlit/secrets.toml, else these (none: the webcam
# works on this machine and a LAN; see docs/LIVE.md for a STUN/TURN server).
ICE_SERVERS_ENV = "EMOTION_ICE_SERVERS"
DEFAULT_ICE_SERVERS: tuple[dict, ...] = ()
# The key that signs login cookies (studio.auth.cookie_key): EMOTION_COOKIE_KEY, else `cookie_key` in
# .streamlit/secrets.toml, else one generated and written there on first start.
COOKIE_KEY_ENV = "EMOTION_COOKIE_KEY"
SECRETS_PATH = REPO_ROOT / ".streamlit" / "secrets.toml"


def ice_servers_env() -> str | None:
    """EMOTION_ICE_SERVERS as set now (read at call time), or None."""
    return os.environ.get(ICE_SERVERS_ENV)


def db_path() -> Path:
    """The SQLite store of users and analyses (read at call time so tests can point it elsewhere)."""
    return _path_setting("EMOTION_DB_PATH", DATA_DIR / "studio.db")


def media_dir(db: Path | None = None) -> Path:
    """Where annotated images and videos of saved analyses are kept, one folder per user:
    EMOTION_MEDIA_DIR, else media/ beside the database (`db`, default db_path())."""
    return _path_setting("EMOTION_MEDIA_DIR", (db or db_path()).parent / "media")


def dataset_roots() -> list[Path]:
    """Folders under which the app may read a user-named dataset: data/, ../shared/datasets, and
    any extra ones listed in EMOTION_DATASET_ROOTS (separated by os.pathsep). A logged-in user
    must not be able to make the server read arbitrary folders."""
    extra = [Path(p).expanduser().resolve() for p in os.environ.get("EMOTION_DATASET_ROOTS", "").split(os.pathsep) if p]
    return [DATA_DIR.resolve(), (SHARED_DIR / "datasets").resolve(), *extra]


def private_folders() -> list[Path]:
    """Folders no typed dataset path may reach, though they can lie under a dataset root: the users'
    saved pictures and videos (media_dir(), data/media/ by default). A dataset at or above it would
    show one user the faces another one saved."""
    return [media_dir().resolve()]


def resolve_dataset_path(text: str) -> Path | None:
    """A typed dataset path (relative ones are taken under DATA_DIR) if it lies inside one of
    dataset_roots() and neither is, nor lies inside, nor holds a private folder; else None."""
    raw = Path(text.strip()).expanduser()
    path = (raw if raw.is_absolute() else DATA_DIR / raw).resolve()
    if not any(path == root or root in path.parents for root in dataset_roots()):
        return None
    private = private_folders()
    return None if any(path == p or p in path.parents or path in p.parents for p in private) else path
