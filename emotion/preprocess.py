"""The one preprocessing function from a face crop to a model input.

Training (training/data.py) and inference (emotion/pipeline.py) both call `preprocess_face`,
so a model always sees inputs made the same way it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

# Colour order of 3-channel images throughout the project: RGB (PIL's and the browser's order).
# OpenCV-style BGR frames must be converted by the caller (see emotion.imageio.bgr_to_rgb).


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), RGB (H, W, 3) or RGBA (H, W, 4) uint8 -> grey (H, W) uint8.

    RGBA is composited on white first, so a transparent background does not turn black.
    """
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1|3|4), got {image.shape}")
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        image = composite_on_white(image)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA (H, W, 4) uint8 -> RGB (H, W, 3) uint8 with the alpha channel blended onto white."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def preprocess_face(
    crop: np.ndarray, input_size: tuple[int, int] = (48, 48), channels: int = 1, equalize: bool = True
) -> np.ndarray:
    """A face crop of any size -> model input (input_size[0], input_size[1], channels) float32 in [0, 1].

    crop: uint8, grey (H, W) / (H, W, 1), RGB (H, W, 3) or RGBA (H, W, 4). channels=1 converts
    to grey (FER2013 models); channels=3 keeps (or makes) RGB. Shrinking uses area interpolation,
    enlarging bilinear. With equalize (the default; each model's manifest records whether it was
    trained with it) the histogram is then equalised (the luma only, for RGB): the FER2013 copy
    we train on is histogram-equalised already (its faces have mean ~128 and std ~74, and
    equalising them again moves a pixel by ~2.6 grey levels on average), while face crops from
    photos and webcams have std ~40; without this step the model would meet flat, low-contrast
    faces it never saw in training.
    """
    if crop.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {crop.dtype}")
    if crop.size == 0:
        raise ValueError("empty face crop")
    if channels == 1:
        image = to_gray(crop)
    elif channels == 3:
        gray_or_rgb = composite_on_white(crop) if crop.ndim == 3 and crop.shape[2] == 4 else crop
        image = (
            gray_or_rgb
            if gray_or_rgb.ndim == 3 and gray_or_rgb.shape[2] == 3
            else (cv2.cvtColor(to_gray(gray_or_rgb), cv2.COLOR_GRAY2RGB))
        )
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    height, width = input_size
    if image.shape[:2] != (height, width):
        shrinking = image.shape[0] > height or image.shape[1] > width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        image = cv2.resize(image, (width, height), interpolation=interpolation)
    if equalize:
        image = equalize_histogram(image)
    out = image.astype(np.float32) * (1.0 / 255.0)
    return out.reshape(height, width, channels)


def equalize_histogram(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation of a grey (H, W) image, or of the luma of an RGB (H, W, 3) one."""
    if image.ndim == 2:
        return cv2.equalizeHist(image)
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    ycrcb[:, :, 0] = cv2.equalizeHist(ycrcb[:, :, 0])
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def preprocess_batch(
    crops: Iterable[np.ndarray], input_size: tuple[int, int] = (48, 48), channels: int = 1, equalize: bool = True
) -> np.ndarray:
    """Many crops -> (N, H, W, C) float32, each through `preprocess_face`."""
    arrays = [preprocess_face(c, input_size, channels, equalize) for c in crops]
    if not arrays:
        return np.zeros((0, input_size[0], input_size[1], channels), np.float32)
    return np.stack(arrays)


def ten_crops(inputs: np.ndarray, enlarge: float = 0.125) -> np.ndarray:
    """Multi-crop test-time views of model inputs: (N, H, W, C) float32 -> (10, N, H, W, C).

    Each face is enlarged by `enlarge` of its size (48 -> 54 px by default, bilinear), then cut at
    its four corners and centre to the original size, and each of the five crops is mirrored too
    (the classic ten-crop evaluation of Krizhevsky et al., on the already-preprocessed face).
    """
    n, height, width, channels = inputs.shape
    big_h, big_w = height + 2 * round(height * enlarge / 2), width + 2 * round(width * enlarge / 2)
    grown = np.empty((n, big_h, big_w, channels), np.float32)
    for i in range(n):  # cv2 drops a single channel axis: reshape it back
        grown[i] = cv2.resize(inputs[i], (big_w, big_h), interpolation=cv2.INTER_LINEAR).reshape(big_h, big_w, channels)
    dy, dx = big_h - height, big_w - width
    offsets = ((0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2))  # corners, then centre
    crops = [grown[:, y : y + height, x : x + width] for y, x in offsets]
    return np.stack(crops + [c[:, :, ::-1] for c in crops])


# FER2013's registration, measured by `python scripts/fer_registration.py` (BlazeFace on 600 Training
# faces, medians over the faces found), as fractions of the 48 px face's side: the distance between
# the eyes, the height of the eye line; and the detector's box against the face: the face is
# 1 / FER_BOX_SIDE times the box's side, its centre FER_BOX_DROP of the face's side below the box's.
FER_EYE_DISTANCE = 0.348
FER_EYE_Y = 0.381
FER_BOX_SIDE = 0.927
FER_BOX_DROP = 0.055


def aligned_crop(
    image: np.ndarray,
    eyes: tuple[tuple[float, float], tuple[float, float]],
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """A square face crop of an (H, W) or (H, W, C) uint8 image, rotated so that the eyes are level
    and framed as FER2013 registers its faces. eyes: ((x, y), (x, y)) in image pixels, the left one
    in the image first. With the detector's box (x, y, w, h) the framing follows the box (side
    max(w, h) / FER_BOX_SIDE, centre FER_BOX_DROP of it below the box's centre along the face's own
    vertical); without, it follows the eyes (side = eye gap / FER_EYE_DISTANCE, the eyes' midpoint
    centred at FER_EYE_Y of the side from the top). Pixels beyond the image repeat its border. Feed
    the result to preprocess_face like any crop."""
    (lx, ly), (rx, ry) = eyes
    angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))  # > 0: the right eye is lower
    if box is None:
        side = max(8, int(round(float(np.hypot(rx - lx, ry - ly)) / FER_EYE_DISTANCE)))
        anchor, anchor_at = ((lx + rx) / 2, (ly + ry) / 2), (side / 2, FER_EYE_Y * side)
    else:
        x, y, w, h = box
        side = max(8, int(round(max(w, h) / FER_BOX_SIDE)))
        theta = np.radians(angle)
        drop = FER_BOX_DROP * side
        anchor = (x + w / 2 - drop * np.sin(theta), y + h / 2 + drop * np.cos(theta))  # the face's centre
        anchor_at = (side / 2, side / 2)
    matrix = cv2.getRotationMatrix2D(anchor, angle, 1.0)  # about the anchor, eyes level
    matrix[0, 2] += anchor_at[0] - anchor[0]
    matrix[1, 2] += anchor_at[1] - anchor[1]
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
