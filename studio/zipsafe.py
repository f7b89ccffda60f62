"""Extracting an uploaded zip of images without letting it write outside its folder or fill the disk.

Rejected, with a message for the user and nothing left behind: absolute or '..' paths (zip-slip),
symbolic links, more than `config.MAX_ZIP_MEMBERS` entries, more than `config.MAX_ZIP_BYTES`
uncompressed in total, and members that expand more than `config.MAX_ZIP_RATIO` times. Sizes are
counted while writing, never trusted from the archive's headers. Only image files are extracted:
an archive inside the archive is skipped, never opened, so nesting cannot escape these counts.
"""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from emotion import config


class UnsafeArchiveError(ValueError):
    """A zip that may not be extracted (path traversal, links, bomb); the message is for the user."""


def safe_extract_zip(data: bytes | io.BufferedIOBase, target: Path) -> int:
    """Extract the image files of a zip into `target`; returns how many were written.

    Raises UnsafeArchiveError (and removes `target`) when the archive breaks any rule above.
    """
    target = Path(target).resolve()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes | bytearray) else data)
    except zipfile.BadZipFile as error:
        raise UnsafeArchiveError(f"not a zip file ({error})") from None
    with archive:
        members = archive.infolist()
        if len(members) > config.MAX_ZIP_MEMBERS:
            raise UnsafeArchiveError(f"{len(members):,} entries; the limit is {config.MAX_ZIP_MEMBERS:,}")
        for info in members:
            check_member(info, target)
        written, total = 0, 0
        target.mkdir(parents=True, exist_ok=True)
        try:
            for info in members:
                if not _wanted(info):
                    continue
                dest = target / info.filename
                dest.parent.mkdir(parents=True, exist_ok=True)
                allowed = config.MAX_ZIP_RATIO * max(info.compress_size, 1024)
                with archive.open(info) as src, open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > config.MAX_ZIP_BYTES or out.tell() + len(chunk) > allowed:
                            raise UnsafeArchiveError("the archive expands far beyond its size (zip bomb?)")
                        out.write(chunk)
                written += 1
        except (UnsafeArchiveError, zipfile.BadZipFile, OSError) as error:
            shutil.rmtree(target, ignore_errors=True)
            raise UnsafeArchiveError(str(error)) from None
    return written


def _wanted(info: zipfile.ZipInfo) -> bool:
    """Whether a member is an image file to extract (not a folder, hidden file or macOS metadata)."""
    path = PurePosixPath(info.filename)
    if info.is_dir() or path.suffix.lower() not in config.IMAGE_SUFFIXES:
        return False
    return not any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


def check_member(info: zipfile.ZipInfo, target: Path) -> None:
    """Raise UnsafeArchiveError when one member may not be extracted under `target` (a resolved folder)."""
    name = info.filename
    if name.startswith(("/", "\\")) or ":" in name or ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise UnsafeArchiveError(f"unsafe path in the archive: {name!r}")
    if not (target / name).resolve().is_relative_to(target):
        raise UnsafeArchiveError(f"unsafe path in the archive: {name!r}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(f"link in the archive: {name!r}")
    if info.file_size > config.MAX_ZIP_RATIO * max(info.compress_size, 1024) or info.file_size > config.MAX_ZIP_BYTES:
        raise UnsafeArchiveError(f"{name!r} expands far beyond its size (zip bomb?)")
