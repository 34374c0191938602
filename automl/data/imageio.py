"""Open an image file safely: one place that decides what an unreadable image is.

:func:`open_image` decodes a file fully or raises :class:`UnreadableImage` with a short
reason: not an image, corrupt or truncated, or a decompression bomb (a small file that
claims more pixels than :data:`max_pixels` allows, e.g. a 389 KB PNG of 20000x20000).
The data loaders skip such files (or refuse them with ``--strict-images``); ``predict``
refuses them in one line. :func:`to_rgb` converts any PIL mode to HxWx3 uint8.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# automl refuses every image PIL would warn about (see max_pixels), so PIL's own warning is
# only noise on stderr; a filter set once is thread-safe (catch_warnings is not, and the
# folder loader decodes in threads).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class UnreadableImage(Exception):
    """The file is not an image automl can read; ``str()`` is a short reason."""


def max_pixels() -> int:
    """The most pixels an image may have: PIL's ``Image.MAX_IMAGE_PIXELS`` (about 89 M,
    e.g. 9459x9459), where PIL starts to warn of a decompression bomb."""
    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else 2**62


def open_image(path: str | Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """``path`` opened and fully decoded (the caller closes it), or :class:`UnreadableImage`.

    ``draft``: a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps it at
    least this size (PIL's ``draft``); the pixel limit applies to its full size.
    """
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as e:  # over twice the limit: PIL refuses it itself
        raise UnreadableImage(f"decompression bomb ({_first_line(e)})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UnreadableImage(type(e).__name__) from None  # not an image, or a format PIL lacks
    try:
        w, h = im.size
        if w * h > max_pixels():
            raise UnreadableImage(
                f"decompression bomb ({w}x{h} = {w * h} pixels, over the {max_pixels()} limit)"
            )
        if draft is not None and im.format == "JPEG":
            im.draft("RGB", draft)
        im.load()
    except UnreadableImage:
        im.close()
        raise
    except Image.DecompressionBombError as e:  # e.g. a frame larger than the header says
        im.close()
        raise UnreadableImage(f"decompression bomb ({_first_line(e)})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        im.close()
        raise UnreadableImage(f"corrupt or truncated: {type(e).__name__}") from None
    return im


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL image as HxWx3 uint8 RGB (16-bit and float scaled, alpha and palette dropped)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        from automl.data.bundle import to_rgb_uint8

        a = np.asarray(im).astype(np.float64)
        return to_rgb_uint8(a / max(float(a.max()), 1.0))
    if im.mode != "RGB":
        im = (
            im.convert("RGBA").convert("RGB")
            if im.mode in ("P", "PA", "LA", "RGBA")
            else im.convert("RGB")
        )
    return np.asarray(im, dtype=np.uint8)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
