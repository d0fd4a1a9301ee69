"""Pictures of completed outfits: each row shows the context items, the blank, and the suggestions best first."""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..utils.files import atomic_path

TILE_SIZE = 96
LABEL_HEIGHT = 18
GAP = 12  # between the outfit and its suggestions
BACKGROUND = (255, 255, 255)
HIT_COLOUR = (30, 160, 60)
BLANK_COLOUR = (230, 230, 230)


@dataclass
class CompletionRow:
    """One outfit to draw: its slots in order, the blank slot, the suggested item ids and the right one (if known)."""

    outfit: Mapping[str, str | None]
    blank: str
    suggestions: Sequence[str]
    answer: str | None = None


def layout(num_slots: int, num_suggestions: int, num_rows: int, tile: int = TILE_SIZE) -> tuple[int, int]:
    """(width, height) of the picture: slots tiles, a gap, suggestion tiles; one row per outfit."""
    width = (num_slots + num_suggestions) * tile + GAP
    return width, num_rows * (tile + LABEL_HEIGHT)


def _tile(image: Image.Image | None, tile: int) -> Image.Image:
    if image is None:
        return Image.new("RGB", (tile, tile), BLANK_COLOUR)
    return image.convert("RGB").resize((tile, tile))


def render_completions(
    rows: Sequence[CompletionRow],
    images: Mapping[str, Image.Image],
    path: str | os.PathLike,
    slots: Sequence[str],
    tile: int = TILE_SIZE,
) -> Path:
    """Draw every row and save a PNG (atomically). Missing images are drawn as grey tiles.

    The blank is a grey tile marked "?"; the suggestion equal to `answer` gets a green frame.
    """
    if not rows:
        raise ValueError("Nothing to render: `rows` is empty.")
    num_suggestions = max(len(row.suggestions) for row in rows)
    width, height = layout(len(slots), num_suggestions, len(rows), tile)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, row in enumerate(rows):
        top = index * (tile + LABEL_HEIGHT)
        for position, slot in enumerate(slots):
            left = position * tile
            item_id = row.outfit.get(slot)
            if slot == row.blank:
                canvas.paste(_tile(None, tile), (left, top))
                draw.text((left + tile // 2 - 4, top + tile // 2 - 6), "?", fill=(80, 80, 80))
            else:
                canvas.paste(_tile(images.get(item_id), tile), (left, top))
            draw.text((left + 2, top + tile + 2), slot[:14], fill=(0, 0, 0))
        for rank, item_id in enumerate(row.suggestions):
            left = len(slots) * tile + GAP + rank * tile
            canvas.paste(_tile(images.get(item_id), tile), (left, top))
            if item_id == row.answer:
                draw.rectangle([left, top, left + tile - 1, top + tile - 1], outline=HIT_COLOUR, width=4)
            draw.text(
                (left + 2, top + tile + 2), f"#{rank + 1}", fill=HIT_COLOUR if item_id == row.answer else (0, 0, 0)
            )
    with atomic_path(path) as temporary:
        canvas.save(temporary, format="PNG")
    return Path(path)


__all__ = ["CompletionRow", "layout", "render_completions"]
