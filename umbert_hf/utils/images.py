"""The size limit of every photo the package decodes, checked from the image's header before any pixel is decoded.

In `utils` (PIL only) so that the dataset builder checks raw images with it without importing torch.
"""

import io
import os

from PIL import Image, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """An item image is missing or cannot be decoded."""


# The largest image the package decodes (width x height): a photo of a garment needs far less, and a small file can
# declare 30,000 x 30,000 pixels (a "decompression bomb") that would take gigabytes to decode.
MAX_IMAGE_PIXELS = 40_000_000


def check_image_size(source: str | os.PathLike | io.BytesIO, name: str = "image") -> None:
    """Refuse an image larger than `MAX_IMAGE_PIXELS`, from its header alone (nothing is decoded).

    Raises:
        ImageDecodeError: naming the size and the limit.
    """
    try:
        with Image.open(source) as opened:
            width, height = opened.size
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"{name} is too large to decode safely ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return  # not an image PIL knows: the decoder names the problem
    finally:
        if isinstance(source, io.BytesIO):
            source.seek(0)
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(
            f"{name} has {width} x {height} pixels, more than the limit of {MAX_IMAGE_PIXELS:,} (MAX_IMAGE_PIXELS)"
        )


__all__ = ["MAX_IMAGE_PIXELS", "ImageDecodeError", "check_image_size"]
