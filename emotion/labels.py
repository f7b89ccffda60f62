"""The label set, its colours and its place on the valence-arousal plane.

FER2013's seven classes are the default. A model carries its own label list in its manifest,
so a model trained on another label set (say the 9-class folder layout) works unchanged; the
tables below cover the union of the label names those datasets use.
"""

from __future__ import annotations

# FER2013 class ids 0..6, in Kaggle's order.
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DEFAULT_LABELS = FER2013_LABELS

# Synonyms folder datasets use, mapped to one canonical name.
LABEL_ALIASES = {"anger": "angry", "happiness": "happy", "sadness": "sad", "fearful": "fear"}

# BGR-free, RGB colours per emotion (one colour per emotion across boxes, bars and charts).
EMOTION_COLORS_RGB: dict[str, tuple[int, int, int]] = {
    "angry": (220, 50, 47),
    "disgust": (133, 153, 0),
    "fear": (108, 113, 196),
    "happy": (255, 193, 7),
    "sad": (38, 139, 210),
    "surprise": (211, 54, 130),
    "neutral": (147, 161, 161),
    "contempt": (181, 137, 0),
    "uncertain": (101, 123, 131),
}
_FALLBACK_COLOR = (200, 200, 200)

# Circumplex coordinates (valence, arousal) in [-1, 1], after Russell (1980) and the placement
# of the basic emotions in Russell & Barrett (1999) / AffectNet's annotation guide. A face's
# position is the probability-weighted mean of these points.
VALENCE_AROUSAL: dict[str, tuple[float, float]] = {
    "angry": (-0.51, 0.59),
    "disgust": (-0.60, 0.35),
    "fear": (-0.64, 0.60),
    "happy": (0.81, 0.51),
    "sad": (-0.63, -0.27),
    "surprise": (0.40, 0.67),
    "neutral": (0.0, 0.0),
    "contempt": (-0.55, 0.25),
    "uncertain": (-0.10, 0.10),
}


def canonical_label(name: str) -> str:
    """Lower-case a folder or label name and map known synonyms ("anger" -> "angry")."""
    key = name.strip().lower()
    return LABEL_ALIASES.get(key, key)


def color_for(label: str) -> tuple[int, int, int]:
    """RGB colour for an emotion label; unknown labels get light grey."""
    return EMOTION_COLORS_RGB.get(canonical_label(label), _FALLBACK_COLOR)


def valence_arousal(scores: dict[str, float]) -> tuple[float, float]:
    """Probability-weighted (valence, arousal) of a face; labels with no coordinates count as 0."""
    total = sum(scores.values()) or 1.0
    valence = sum(p * VALENCE_AROUSAL.get(canonical_label(k), (0.0, 0.0))[0] for k, p in scores.items())
    arousal = sum(p * VALENCE_AROUSAL.get(canonical_label(k), (0.0, 0.0))[1] for k, p in scores.items())
    return valence / total, arousal / total
