"""Everything the studio keeps about one user, as one ZIP file (the Account page's "Download all my data").

The archive, built in memory from the store (each analysis read with the owner's id, as every read is):

    README.txt                      what is in it
    account.json                    username, name, email, member since, counts per kind of analysis
    analyses.json                   one line per analysis: id, time, kind, title, faces, files
    analyses/<id>/report.json       the same JSON report as the analysis's own download
    analyses/<id>/annotated.<ext>   the annotated picture, when one was kept
    analyses/<id>/video.<ext>       the annotated video, when one was kept
    analyses/<id>/frames.csv|json   a video's per-frame results (the same files as its own downloads)
    analyses/<id>/gradcam-<n>.png   each Grad-CAM overlay kept with it (face n)

The password hash is never in it. Pictures and videos are stored as they are (already compressed);
the JSON files are deflated.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

from emotion.video import frames_to_csv
from studio import reports
from studio.analyses import frames_json, stored_gradcam_pngs
from studio.store import Analysis, Store, User

README = """Emotion Studio: your data
=========================

Exported {exported} (UTC) for {username}.

account.json                   your profile and how many analyses of each kind you saved
analyses.json                  a list of every saved analysis, newest first
analyses/<id>/report.json      each analysis's report (faces, emotions, model, timings), the same
                               JSON as its own download in the studio
analyses/<id>/annotated.jpg    the annotated picture the studio kept (photos, snapshots, a frame of a video)
analyses/<id>/video.mp4        the annotated video, for video analyses
analyses/<id>/frames.csv       a video's results frame by frame (also frames.json)
analyses/<id>/gradcam-<n>.png  the Grad-CAM of face n, when you asked for one

Your password is not in this file; the studio keeps only a bcrypt hash of it.
"""


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8")


def export_zip(store: Store, user: User, now: datetime | None = None) -> bytes:
    """The user's account and every analysis of theirs (reports, kept pictures and videos) as ZIP bytes."""
    exported = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    analyses = store.list_analyses(user.id)
    index = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", README.format(exported=exported, username=user.username))
        account = {
            "username": user.username,
            "name": user.name,
            "email": user.email,
            "member_since": user.created_at,
            "analyses": store.count_analyses(user.id),
            "exported_at": exported,
        }
        archive.writestr("account.json", _json(account))
        for analysis in analyses:
            folder = f"analyses/{analysis.id}"
            archive.writestr(f"{folder}/report.json", _json(reports.report_for_analysis(analysis, user.username)))
            files = [f"{folder}/report.json"]
            kept = (
                ("annotated", analysis.image_ext, store.read_image),
                ("video", analysis.media_ext, store.read_media),
            )
            for stem, ext, read in kept:
                data = read(user.id, analysis.id) if ext else None
                if data:  # a file gone missing on disk is left out, not an error
                    name = f"{folder}/{stem}.{ext}"
                    archive.writestr(name, data, compress_type=zipfile.ZIP_STORED)
                    files.append(name)
            for name, data in _kept_in_extra(analysis):
                archive.writestr(f"{folder}/{name}", data)
                files.append(f"{folder}/{name}")
            index.append(
                {
                    "id": analysis.id,
                    "created_at": analysis.created_at,
                    "source": analysis.source,
                    "title": analysis.title,
                    "original_name": analysis.original_name,
                    "faces": len(analysis.faces),
                    "files": files,
                }
            )
        archive.writestr("analyses.json", _json(index))
    return buffer.getvalue()


def _kept_in_extra(analysis: Analysis) -> list[tuple[str, bytes]]:
    """(file name, bytes) of what an analysis keeps in its row rather than in files: a video's
    per-frame results and the Grad-CAM overlays asked for (a damaged overlay is left out)."""
    extra = analysis.extra or {}
    out = []
    frames, labels = extra.get("frames"), list(extra.get("labels") or ())
    if frames:
        out.append(("frames.csv", frames_to_csv(frames, labels).encode()))
        out.append(("frames.json", frames_json(frames, labels)))
    out += [(f"gradcam-{index}.png", png) for index, png in sorted(stored_gradcam_pngs(extra).items())]
    return out


def export_filename(user: User, now: datetime | None = None) -> str:
    """emotion-studio-<username>-<YYYYMMDD>.zip (usernames are [a-z0-9_.-], safe in a file name)."""
    return f"emotion-studio-{user.username}-{(now or datetime.now(UTC)):%Y%m%d}.zip"
