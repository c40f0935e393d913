"""Image decoding and normalisation shared by training, evaluation and serving.

Every path that feeds the model goes through `to_model_array`, so a model never sees
pixels prepared one way in training and another way in production.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

# Decompression bombs: a section wireframe never needs more than this many pixels.
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """The bytes are not a PNG we can use."""


_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _public(message: str) -> str:
    return _REPR.sub("<file>", message.splitlines()[0] if message else "")[:200]


def decode_png(data: bytes) -> Image.Image:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ImageError("not a PNG (bad signature)")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ImageError(f"image too large ({img.width}x{img.height})")
        img.load()
    except ImageError:
        raise
    except Exception as e:  # PIL raises many types for damaged files
        # PIL's messages may carry object reprs (memory addresses): internals a caller must not see,
        # and text that differs on every call. The type and the first words without reprs are enough.
        raise ImageError(f"undecodable PNG ({type(e).__name__}: {_public(str(e))})") from None
    return img


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def to_model_array(img: Image.Image, height: int, width: int, channels: int = 1) -> np.ndarray:
    """PIL image -> float32 [channels, height, width], ink = 1.0 and paper = 0.0.

    The image is stretched to the model's size: coordinates are normalised to the
    canvas, so stretching keeps boxes and pixels in register. Inverting makes blank
    paper zero, the same as the all-zero image of a spec-only example.
    """
    mode = "L" if channels == 1 else "RGB"
    arr = np.asarray(img.convert(mode).resize((width, height), Image.BILINEAR), dtype=np.float32)
    arr = 1.0 - arr / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)
