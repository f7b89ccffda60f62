"""Where things go on the valence-arousal plane, for the web chart (studio.figures) and the PDF
(studio.reports) alike: faces on one spot drawn apart, and each emotion's name put where it covers
no face and no other name. Pure geometry in the drawing's own units (pixels or points), y up."""

from __future__ import annotations

import math
from dataclasses import dataclass

Rect = tuple[float, float, float, float]  # (x0, y0, x1, y1) in drawing units, y up


@dataclass(frozen=True)
class PlaneScale:
    """How big things are on one drawing of the plane: units per plane unit (x, y), a name's width
    per letter and height, the reference dots' and face discs' radii, and the plane's half extent."""

    per_unit: tuple[float, float]
    char: float
    text: float
    dot: float
    face: float
    extent: float = 1.1

    @property
    def face_gap(self) -> float:
        """Plane units between face centres so that two discs do not overlap (a diameter)."""
        return 2 * self.face / min(self.per_unit)


WEB = PlaneScale(per_unit=(115.0, 135.0), char=6.5, text=14.0, dot=5.0, face=13.0)  # studio.figures, 11 px
PDF = PlaneScale(per_unit=(127.5, 127.5), char=4.0, text=8.0, dot=2.2, face=7.0, extent=1.0)  # 9 cm, 7 pt


def spread_points(points: list[tuple[float, float]], gap: float = WEB.face_gap) -> list[tuple[float, float]]:
    """Points moved apart (display only) so that no two are closer than `gap`: each point that
    lands on an earlier one is pushed out on a small spiral around its true place."""
    placed: list[tuple[float, float]] = []
    for x, y in points:
        spot, turn = (x, y), 0
        while any(math.dist(spot, p) < gap for p in placed) and turn < 48:
            turn += 1
            angle, radius = turn * 2.4, gap * (0.6 + 0.12 * turn)
            spot = (x + radius * math.cos(angle), y + radius * math.sin(angle))
        placed.append(spot)
    return placed


def _shifts(label: str, scale: PlaneScale) -> list[tuple[float, float]]:
    """Candidate offsets of a name's centre from its point: above, below, right, left, the diagonals,
    then the same farther out (nearest first)."""
    half_w, half_h = scale.char * len(label) / 2, scale.text / 2
    step = scale.text * 0.85
    near = []
    for extra in (0.0, step, 2 * step, 3 * step):
        gap_x, gap_y = scale.dot + half_w + 1 + extra, scale.dot + half_h + 1 + extra
        near += [(0, gap_y), (0, -gap_y), (gap_x, 0), (-gap_x, 0)]
        near += [(gap_x, gap_y), (-gap_x, gap_y), (gap_x, -gap_y), (-gap_x, -gap_y)]
    return near


def text_box(x: float, y: float, label: str, shift: tuple[float, float], scale: PlaneScale = WEB) -> Rect:
    """The rectangle of `label` centred `shift` drawing units away from the plane point (x, y)."""
    cx, cy = x * scale.per_unit[0] + shift[0], y * scale.per_unit[1] + shift[1]
    half_w, half_h = scale.char * len(label) / 2, scale.text / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def _disc(x: float, y: float, radius: float, scale: PlaneScale) -> Rect:
    px, py = x * scale.per_unit[0], y * scale.per_unit[1]
    return px - radius, py - radius, px + radius, py + radius


def _overlap(a: Rect, b: Rect) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def label_positions(
    references: dict[str, tuple[float, float]], faces: list[tuple[float, float]], scale: PlaneScale = WEB
) -> dict[str, tuple[float, float]]:
    """For each emotion's reference point, the offset of its name (drawing units) whose box overlaps
    least with the face discs, the points and the names placed before it, and stays inside the plane,
    nearest first on ties: no name is printed over a face or another name."""
    taken = [_disc(x, y, scale.face, scale) for x, y in faces]
    taken += [_disc(x, y, scale.dot, scale) for x, y in references.values()]
    half_w, half_h = scale.extent * scale.per_unit[0], scale.extent * scale.per_unit[1]
    edge = (-half_w, -half_h, half_w, half_h)
    chosen = {}
    for label, (x, y) in sorted(references.items(), key=lambda item: (-item[1][1], item[1][0])):
        candidates = _shifts(label, scale)
        best, best_cost = candidates[0], math.inf
        for shift in candidates:  # nearest first: a later candidate must be strictly better
            box = text_box(x, y, label, shift, scale)
            outside = (box[2] - box[0]) * (box[3] - box[1]) - _overlap(box, edge)
            cost = round(sum(_overlap(box, other) for other in taken) + 2 * outside, 3)
            if cost < best_cost:
                best, best_cost = shift, cost
        chosen[label] = best
        taken.append(text_box(x, y, label, best, scale))
    return chosen


def overprints(
    references: dict[str, tuple[float, float]], faces: list[tuple[float, float]], scale: PlaneScale = WEB
) -> float:
    """Area (drawing units squared) where the names placed by label_positions overlap each other or
    a face disc: 0 when the plane reads cleanly."""
    shifts = label_positions(references, faces, scale)
    boxes = [text_box(*references[k], k, shifts[k], scale) for k in sorted(references)]
    discs = [_disc(x, y, scale.face, scale) for x, y in faces]
    pairs = sum(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    return pairs + sum(_overlap(a, d) for a in boxes for d in discs)
