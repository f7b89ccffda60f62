"""studio.zipsafe: zip-slip, links, bombs (total size, ratio), entry count, nested archives."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from emotion import config
from emotion.datasets import dataset_root
from studio.zipsafe import UnsafeArchiveError, safe_extract_zip


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _zip(entries: dict[str, bytes], **kwargs) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", **kwargs) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_extracts_only_images(tmp_path):
    png = _png()
    data = _zip({"set/happy/a.png": png, "set/sad/b.png": png, "set/readme.md": b"x",
                 "__MACOSX/set/._a.png": b"junk", "set/.hidden/c.png": png})  # fmt: skip
    assert safe_extract_zip(data, tmp_path / "out") == 2
    assert dataset_root(tmp_path / "out") == tmp_path / "out" / "set"
    assert not (tmp_path / "out" / "set" / "readme.md").exists()
    assert not (tmp_path / "out" / "__MACOSX").exists()


@pytest.mark.parametrize(
    "name", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "c:/evil.png", "..\\evil.png", "\\evil.png"]
)
def test_path_traversal_rejected(tmp_path, name):
    with pytest.raises(UnsafeArchiveError, match="unsafe path"):
        safe_extract_zip(_zip({"happy/ok.png": _png(), name: b"x"}), tmp_path / "out")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "out").exists()


def test_links_rejected(tmp_path):
    info = zipfile.ZipInfo("happy/link.png")
    info.external_attr = 0o120777 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract_zip(buffer.getvalue(), tmp_path / "out")


def test_bomb_by_ratio_rejected(tmp_path):
    bomb = _zip({"happy/a.png": b"\0" * (50 * 2**20)}, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        safe_extract_zip(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_header_that_lies_about_its_size_rejected(tmp_path):
    """A member whose header claims a small size does not get past extraction, and nothing is left."""
    data = bytearray(_zip({"happy/a.png": b"\0" * (4 * 2**20)}, compression=zipfile.ZIP_DEFLATED))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.infolist()[0]
    # Patch the declared uncompressed size (local header and central directory) down to 1 kB.
    for offset in (info.header_offset + 22, data.rfind(b"PK\x01\x02") + 24):
        data[offset : offset + 4] = (1024).to_bytes(4, "little")
    with pytest.raises(UnsafeArchiveError):
        safe_extract_zip(bytes(data), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bomb_by_total_size_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_ZIP_BYTES", 3000)
    noise = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()  # incompressible
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        safe_extract_zip(_zip({"happy/a.png": noise, "happy/b.png": noise}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_too_many_entries_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_ZIP_MEMBERS", 5)
    with pytest.raises(UnsafeArchiveError, match="the limit is 5"):
        safe_extract_zip(_zip({f"happy/{i}.png": b"x" for i in range(6)}), tmp_path / "out")


def test_nested_archive_is_never_opened(tmp_path):
    inner = _zip({"happy/deep.png": b"\0" * 2**20}, compression=zipfile.ZIP_DEFLATED)
    data = _zip({"set/happy/a.png": _png(), "set/inner.zip": inner, "set/happy/more.zip": inner})
    assert safe_extract_zip(data, tmp_path / "out") == 1
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == ["a.png"]


def test_not_a_zip(tmp_path):
    with pytest.raises(UnsafeArchiveError, match="not a zip"):
        safe_extract_zip(b"plain bytes", tmp_path / "out")
