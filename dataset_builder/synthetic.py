"""Synthetic Polyvore Outfits: a raw folder in the official format, drawn procedurally, with hidden compatibility rules.

Items
-----
Every item has a semantic category (the slots `tops`, `bottoms`, `shoes`, `accessories`, and also `bags`,
`jewellery`, `outerwear`, `all-body`, `sunglasses`, `hats`, `scarves`) and three latent attributes:

- colour, one of 8: black, navy, red, mustard, green, pink, brown, teal;
- pattern, one of 4: plain, striped, polka-dot, checked;
- formality, casual or formal.

The image draws the category's silhouette (formality picks the casual or the formal one: tee / blouse,
shorts / trousers, sneakers / pumps, belt / watch, backpack / clutch, ...), filled with the colour and overdrawn with
the pattern. The title says the same in words, e.g. "navy striped formal wool blouse"; the fine-grained category
(`categories.csv`) is the silhouette. Nuisance that follows no rule: the material word of the title, a small shade
jitter and a small shift of the drawing, so items of the same attributes are not identical.

Outfits: the hidden rules
-------------------------
An outfit draws three latents: a style `s` in 0..7, a pattern key `q` in 0..3 and a formality `f`. Each member of
category `c` gets

- colour = (A[c] * s + B[c]) mod 8, a different bijection per category (`COLOUR_RULE`);
- pattern = PATTERN_RULE[c][q], a different permutation per category;
- formality = f, shared by the whole outfit;

then each attribute of each member is replaced by a uniformly random value with probability `NOISE` (0.12).
For the four slots, the rules give four different colours in every style and four different patterns for every key:

    style  tops     bottoms  shoes    accessories   |  key  tops       bottoms    shoes      accessories
    0      black    pink     red      mustard       |  0    plain      striped    polka-dot  checked
    1      navy     black    teal     red           |  1    striped    plain      checked    polka-dot
    2      red      mustard  green    navy          |  2    polka-dot  checked    striped    plain
    3      mustard  brown    navy     black         |  3    checked    polka-dot  plain      striped
    4      green    navy     brown    teal          |
    5      pink     green    mustard  brown         |
    6      brown    teal     black    pink          |
    7      teal     red      pink     green         |

So the items of an outfit do not look alike: the top's colour tells the style, and the style tells the shoes' colour
through another mapping. Averaging the other items (a "context mean" baseline) recovers only the shared formality;
a model that learns the mappings, from images or titles, recovers colour and pattern too. Negatives (compatibility
`0` lines, fill-in-the-blank wrong answers) are items of the same category from other outfits, so they break the
rules; chance stays at chance.

Outfits and splits
------------------
Each outfit has one item per slot, except that 20% lack one slot (a missing top or bottom is replaced by an
`all-body` dress half of the time), 8% have a second item of one slot, and 0-3 members of other categories are
added. Members are shuffled, then numbered by `index` from 1. Items are shared between outfits (catalogue items are
allocated to the attribute combinations in proportion to how often outfits ask for them), so every item appears in
about `members / num_items` outfits. Outfits are drawn on two sides (70% / 30%) whose items never mix;
`nondisjoint/` splits the outfits at random 70/10/20 (items shared across splits), `disjoint/` puts the first side
in `train` and splits the second one 1:2 into `valid` and `test`, so no item of `train` is in `valid` or `test`.
`compatibility_*.txt` holds every outfit of the split (`1`) and one negative per outfit (`0`, each member replaced
by an item of its category from another outfit of the split); `fill_in_blank_*.json` asks about 60% of the outfits,
with the blank at a random member (any category) and 3 wrong answers of its category from other outfits.

Besides the official files, `synthetic_latents.json` records the rules and every item's and outfit's latents.
The same seed gives the same bytes.

    python -m dataset_builder synthesize --output_dir synthetic_polyvore --num_items 2000 --num_outfits 3000
"""

from __future__ import annotations

import functools
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from transformers.utils import logging

from .export import atomic_output_dir
from .raw import PolyvoreFormatError

logger = logging.get_logger(__name__)

SLOT_CATEGORIES = ("tops", "bottoms", "shoes", "accessories")
EXTRA_CATEGORIES = ("bags", "jewellery", "outerwear", "all-body", "sunglasses", "hats", "scarves")
SEMANTIC_CATEGORIES = SLOT_CATEGORIES + EXTRA_CATEGORIES
COLOURS = (
    ("black", (28, 28, 30)),
    ("navy", (26, 40, 100)),
    ("red", (200, 34, 44)),
    ("mustard", (224, 170, 38)),
    ("green", (38, 130, 62)),
    ("pink", (238, 128, 170)),
    ("brown", (122, 74, 38)),
    ("teal", (22, 142, 142)),
)
PATTERNS = ("plain", "striped", "polka-dot", "checked")
FORMALITIES = ("casual", "formal")
STYLE_NAMES = ("city", "riviera", "autumn", "festival", "preppy", "boho", "sport", "noir")
MATERIALS = ("cotton", "linen", "wool", "denim", "jersey", "velvet", "leather", "satin", "canvas", "cashmere")
# colour of category c in style s: (A * s + B) mod 8; A odd, so a bijection per category
COLOUR_RULE = {
    "tops": (1, 0),
    "bottoms": (3, 5),
    "shoes": (5, 2),
    "accessories": (7, 3),
    "bags": (3, 1),
    "jewellery": (5, 6),
    "outerwear": (7, 4),
    "all-body": (1, 4),
    "sunglasses": (3, 2),
    "hats": (5, 1),
    "scarves": (7, 6),
}
# pattern of category c for outfit pattern key q: PATTERN_RULE[c][q]
PATTERN_RULE = {
    "tops": (0, 1, 2, 3),
    "bottoms": (1, 0, 3, 2),
    "shoes": (2, 3, 1, 0),
    "accessories": (3, 2, 0, 1),
    "bags": (1, 2, 3, 0),
    "jewellery": (2, 0, 1, 3),
    "outerwear": (3, 0, 2, 1),
    "all-body": (0, 2, 3, 1),
    "sunglasses": (1, 3, 0, 2),
    "hats": (2, 1, 3, 0),
    "scarves": (3, 1, 0, 2),
}
# (semantic category, formality) -> (category_id, fine-grained category, title noun, silhouette)
FINE_CATEGORIES = {
    ("tops", 0): (101, "T-Shirts", "tee", "tee"),
    ("tops", 1): (102, "Blouses", "blouse", "blouse"),
    ("bottoms", 0): (111, "Shorts", "shorts", "shorts"),
    ("bottoms", 1): (112, "Trousers", "trousers", "trousers"),
    ("shoes", 0): (121, "Sneakers", "sneakers", "sneaker"),
    ("shoes", 1): (122, "Pumps", "pumps", "pump"),
    ("accessories", 0): (131, "Belts", "belt", "belt"),
    ("accessories", 1): (132, "Watches", "watch", "watch"),
    ("bags", 0): (141, "Backpacks", "backpack", "backpack"),
    ("bags", 1): (142, "Clutches", "clutch", "clutch"),
    ("jewellery", 0): (151, "Bracelets", "bracelet", "bracelet"),
    ("jewellery", 1): (152, "Necklaces", "necklace", "necklace"),
    ("outerwear", 0): (161, "Jackets", "jacket", "jacket"),
    ("outerwear", 1): (162, "Coats", "coat", "coat"),
    ("all-body", 0): (171, "Day Dresses", "sundress", "sundress"),
    ("all-body", 1): (172, "Gowns", "gown", "gown"),
    ("sunglasses", 0): (181, "Round Sunglasses", "round sunglasses", "round_glasses"),
    ("sunglasses", 1): (182, "Square Sunglasses", "square sunglasses", "square_glasses"),
    ("hats", 0): (191, "Caps", "cap", "cap"),
    ("hats", 1): (192, "Fedoras", "fedora", "fedora"),
    ("scarves", 0): (201, "Knit Scarves", "knit scarf", "knit_scarf"),
    ("scarves", 1): (202, "Silk Scarves", "silk scarf", "silk_scarf"),
}
NOISE = 0.12
P_MISSING_SLOT = 0.20
P_DRESS_FOR_MISSING = 0.5
P_DUPLICATE_SLOT = 0.08
EXTRA_COUNT_PROBS = (0.3, 0.35, 0.25, 0.1)
P_FIRST_SIDE = 0.7
P_FITB_QUESTION = 0.6
JPEG_QUALITY = 90
LATENTS_FILE = "synthetic_latents.json"
MIN_ITEMS, MIN_OUTFITS = 30, 20

_NUM_COLOURS, _NUM_PATTERNS, _NUM_FORMALITIES = len(COLOURS), len(PATTERNS), len(FORMALITIES)
_CATEGORY_INDEX = {category: index for index, category in enumerate(SEMANTIC_CATEGORIES)}
_COLOUR_A = np.array([COLOUR_RULE[c][0] for c in SEMANTIC_CATEGORIES])
_COLOUR_B = np.array([COLOUR_RULE[c][1] for c in SEMANTIC_CATEGORIES])
_PATTERN_TABLE = np.array([PATTERN_RULE[c] for c in SEMANTIC_CATEGORIES])


def describe_rules() -> dict:
    """The hidden rules, as data: per category, the colour name of each style and the pattern of each key."""
    return {
        "noise": NOISE,
        "colours": [name for name, _ in COLOURS],
        "patterns": list(PATTERNS),
        "formalities": list(FORMALITIES),
        "styles": list(STYLE_NAMES),
        "colour_of_style": {
            category: [COLOURS[(a * s + b) % _NUM_COLOURS][0] for s in range(len(STYLE_NAMES))]
            for category, (a, b) in COLOUR_RULE.items()
        },
        "pattern_of_key": {category: [PATTERNS[p] for p in table] for category, table in PATTERN_RULE.items()},
        "formality": "shared by every member of an outfit",
    }


# --------------------------------------------------------------------------------------------------------------------
# Drawing: one cached (body, detail) mask pair per silhouette and size, one cached mask per pattern and size.


def _points(points, size):
    return [(x * (size - 1), y * (size - 1)) for x, y in points]


def _box(x0, y0, x1, y1, size):
    return [x0 * (size - 1), y0 * (size - 1), x1 * (size - 1), y1 * (size - 1)]


def _draw_silhouette(shape: str, body: ImageDraw.ImageDraw, detail: ImageDraw.ImageDraw, size: int) -> None:
    width = max(1, size // 32)
    P = functools.partial(_points, size=size)
    B = functools.partial(_box, size=size)
    if shape == "tee":
        body.polygon(P([(0.34, 0.14), (0.44, 0.14), (0.5, 0.2), (0.56, 0.14), (0.66, 0.14), (0.9, 0.32),
                        (0.8, 0.44), (0.7, 0.37), (0.7, 0.88), (0.3, 0.88), (0.3, 0.37), (0.2, 0.44),
                        (0.1, 0.32)]), fill=255)  # fmt: skip
        detail.line(P([(0.44, 0.14), (0.5, 0.2), (0.56, 0.14)]), fill=255, width=width)
    elif shape == "blouse":
        body.polygon(P([(0.34, 0.12), (0.44, 0.12), (0.5, 0.3), (0.56, 0.12), (0.66, 0.12), (0.86, 0.24),
                        (0.94, 0.84), (0.84, 0.86), (0.72, 0.42), (0.72, 0.9), (0.28, 0.9), (0.28, 0.42),
                        (0.16, 0.86), (0.06, 0.84), (0.14, 0.24)]), fill=255)  # fmt: skip
        detail.line(P([(0.4, 0.12), (0.5, 0.3), (0.6, 0.12)]), fill=255, width=width)
        detail.line(P([(0.5, 0.3), (0.5, 0.9)]), fill=255, width=width)
        for y in (0.45, 0.6, 0.75):
            detail.ellipse(B(0.47, y - 0.03, 0.53, y + 0.03), fill=255)
    elif shape == "shorts":
        body.polygon(P([(0.24, 0.22), (0.76, 0.22), (0.82, 0.7), (0.56, 0.72), (0.5, 0.44), (0.44, 0.72),
                        (0.18, 0.7)]), fill=255)  # fmt: skip
        detail.line(P([(0.24, 0.28), (0.76, 0.28)]), fill=255, width=width)
    elif shape == "trousers":
        body.polygon(P([(0.3, 0.06), (0.7, 0.06), (0.76, 0.94), (0.56, 0.94), (0.5, 0.36), (0.44, 0.94),
                        (0.24, 0.94)]), fill=255)  # fmt: skip
        detail.line(P([(0.3, 0.13), (0.7, 0.13)]), fill=255, width=width)
        detail.line(P([(0.38, 0.2), (0.35, 0.92)]), fill=255, width=width)
        detail.line(P([(0.62, 0.2), (0.65, 0.92)]), fill=255, width=width)
    elif shape == "sneaker":
        body.polygon(P([(0.08, 0.46), (0.42, 0.4), (0.58, 0.56), (0.88, 0.62), (0.92, 0.74), (0.08, 0.74)]), fill=255)
        detail.rectangle(B(0.06, 0.72, 0.94, 0.8), fill=255)
        for x in (0.3, 0.38, 0.46):
            detail.line(P([(x, 0.46), (x + 0.06, 0.54)]), fill=255, width=width)
    elif shape == "pump":
        body.polygon(P([(0.1, 0.5), (0.32, 0.5), (0.58, 0.62), (0.86, 0.58), (0.93, 0.66), (0.7, 0.72),
                        (0.3, 0.72), (0.18, 0.7)]), fill=255)  # fmt: skip
        detail.polygon(P([(0.1, 0.5), (0.2, 0.56), (0.2, 0.9), (0.14, 0.9)]), fill=255)
    elif shape == "belt":
        body.rectangle(B(0.06, 0.42, 0.94, 0.58), fill=255)
        detail.rectangle(B(0.16, 0.34, 0.32, 0.66), outline=255, width=max(2, width))
        for x in (0.6, 0.7, 0.8):
            detail.ellipse(B(x - 0.02, 0.48, x + 0.02, 0.52), fill=255)
    elif shape == "watch":
        body.rectangle(B(0.4, 0.04, 0.6, 0.96), fill=255)
        body.ellipse(B(0.26, 0.26, 0.74, 0.74), fill=255)
        detail.ellipse(B(0.26, 0.26, 0.74, 0.74), outline=255, width=max(2, width))
        detail.line(P([(0.5, 0.5), (0.5, 0.34)]), fill=255, width=width)
        detail.line(P([(0.5, 0.5), (0.62, 0.5)]), fill=255, width=width)
    elif shape == "backpack":
        body.rounded_rectangle(B(0.22, 0.2, 0.78, 0.92), radius=0.12 * size, fill=255)
        detail.arc(B(0.36, 0.06, 0.64, 0.34), start=180, end=360, fill=255, width=max(2, width))
        detail.rectangle(B(0.32, 0.56, 0.68, 0.84), outline=255, width=width)
    elif shape == "clutch":
        body.rectangle(B(0.1, 0.36, 0.9, 0.72), fill=255)
        detail.line(P([(0.1, 0.36), (0.5, 0.58), (0.9, 0.36)]), fill=255, width=width)
        detail.ellipse(B(0.46, 0.54, 0.54, 0.62), fill=255)
    elif shape == "bracelet":
        body.ellipse(B(0.18, 0.18, 0.82, 0.82), fill=255)
        body.ellipse(B(0.34, 0.34, 0.66, 0.66), fill=0)
        detail.ellipse(B(0.44, 0.14, 0.56, 0.26), fill=255)
    elif shape == "necklace":
        body.arc(B(0.14, 0.02, 0.86, 0.74), start=20, end=160, fill=255, width=max(2, size // 14))
        body.polygon(P([(0.5, 0.64), (0.62, 0.78), (0.5, 0.94), (0.38, 0.78)]), fill=255)
        detail.polygon(P([(0.5, 0.64), (0.62, 0.78), (0.5, 0.94), (0.38, 0.78)]), outline=255)
    elif shape == "jacket":
        body.polygon(P([(0.32, 0.1), (0.68, 0.1), (0.9, 0.22), (0.94, 0.8), (0.82, 0.82), (0.74, 0.4),
                        (0.74, 0.86), (0.26, 0.86), (0.26, 0.4), (0.18, 0.82), (0.06, 0.8), (0.1, 0.22)]),
                     fill=255)  # fmt: skip
        detail.line(P([(0.5, 0.1), (0.5, 0.86)]), fill=255, width=width)
        detail.line(P([(0.3, 0.64), (0.42, 0.64)]), fill=255, width=width)
        detail.line(P([(0.58, 0.64), (0.7, 0.64)]), fill=255, width=width)
    elif shape == "coat":
        body.polygon(P([(0.32, 0.04), (0.68, 0.04), (0.88, 0.16), (0.94, 0.78), (0.84, 0.8), (0.76, 0.36),
                        (0.8, 0.97), (0.2, 0.97), (0.24, 0.36), (0.16, 0.8), (0.06, 0.78), (0.12, 0.16)]),
                     fill=255)  # fmt: skip
        detail.line(P([(0.4, 0.04), (0.5, 0.4), (0.6, 0.04)]), fill=255, width=width)
        detail.line(P([(0.24, 0.56), (0.76, 0.56)]), fill=255, width=max(2, width))
    elif shape == "sundress":
        body.polygon(P([(0.4, 0.08), (0.6, 0.08), (0.62, 0.4), (0.84, 0.92), (0.16, 0.92), (0.38, 0.4)]), fill=255)
        detail.line(P([(0.38, 0.4), (0.62, 0.4)]), fill=255, width=width)
    elif shape == "gown":
        body.polygon(P([(0.38, 0.03), (0.62, 0.03), (0.6, 0.36), (0.94, 0.97), (0.06, 0.97), (0.4, 0.36)]), fill=255)
        detail.line(P([(0.4, 0.36), (0.6, 0.36)]), fill=255, width=max(2, width))
        detail.line(P([(0.42, 0.03), (0.5, 0.16), (0.58, 0.03)]), fill=255, width=width)
    elif shape == "round_glasses":
        body.ellipse(B(0.06, 0.34, 0.44, 0.7), fill=255)
        body.ellipse(B(0.56, 0.34, 0.94, 0.7), fill=255)
        detail.line(P([(0.44, 0.46), (0.56, 0.46)]), fill=255, width=max(2, width))
        detail.ellipse(B(0.06, 0.34, 0.44, 0.7), outline=255, width=width)
        detail.ellipse(B(0.56, 0.34, 0.94, 0.7), outline=255, width=width)
    elif shape == "square_glasses":
        body.rectangle(B(0.06, 0.38, 0.44, 0.64), fill=255)
        body.rectangle(B(0.56, 0.38, 0.94, 0.64), fill=255)
        detail.line(P([(0.02, 0.38), (0.98, 0.38)]), fill=255, width=max(2, width))
    elif shape == "cap":
        body.pieslice(B(0.18, 0.28, 0.78, 0.88), start=180, end=360, fill=255)
        body.polygon(P([(0.5, 0.56), (0.96, 0.56), (0.92, 0.66), (0.5, 0.64)]), fill=255)
        detail.ellipse(B(0.44, 0.24, 0.52, 0.32), fill=255)
    elif shape == "fedora":
        body.polygon(P([(0.3, 0.28), (0.7, 0.28), (0.74, 0.62), (0.26, 0.62)]), fill=255)
        body.ellipse(B(0.04, 0.56, 0.96, 0.74), fill=255)
        detail.rectangle(B(0.26, 0.5, 0.74, 0.58), fill=255)
    elif shape == "knit_scarf":
        body.polygon(P([(0.18, 0.1), (0.42, 0.04), (0.82, 0.84), (0.58, 0.92)]), fill=255)
        for x in (0.6, 0.66, 0.72, 0.78):
            detail.line(P([(x, 0.9), (x + 0.02, 0.98)]), fill=255, width=width)
    elif shape == "silk_scarf":
        body.polygon(P([(0.5, 0.08), (0.92, 0.5), (0.5, 0.92), (0.08, 0.5)]), fill=255)
        detail.polygon(P([(0.5, 0.2), (0.8, 0.5), (0.5, 0.8), (0.2, 0.5)]), outline=255)
    else:
        raise ValueError(f"unknown silhouette {shape!r}")


@functools.cache
def _silhouette_masks(shape: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    body, detail = Image.new("L", (size, size), 0), Image.new("L", (size, size), 0)
    _draw_silhouette(shape, ImageDraw.Draw(body), ImageDraw.Draw(detail), size)
    body_mask, detail_mask = np.asarray(body) > 127, np.asarray(detail) > 127
    body_mask.flags.writeable = detail_mask.flags.writeable = False  # shared through the cache
    return body_mask, detail_mask


@functools.cache
def _pattern_mask(pattern: int, size: int) -> np.ndarray:
    period = max(4, size // 8)
    yy, xx = np.mgrid[0:size, 0:size]
    name = PATTERNS[pattern]
    if name == "plain":
        mask = np.zeros((size, size), dtype=bool)
    elif name == "striped":
        mask = (yy % period) < max(1, period // 3)
    elif name == "polka-dot":
        offset = (yy // period % 2) * (period // 2)  # staggered rows
        dy, dx = yy % period - period / 2, (xx + offset) % period - period / 2
        mask = dy * dy + dx * dx <= (period / 4) ** 2 + 0.5
    else:  # checked
        mask = ((yy % period) < max(1, period // 4)) | ((xx % period) < max(1, period // 4))
    mask.flags.writeable = False
    return mask


def _shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`mask` moved by (dy, dx) pixels, without wrapping around."""
    size_y, size_x = mask.shape
    moved = np.zeros_like(mask)
    moved[max(dy, 0) : size_y + min(dy, 0), max(dx, 0) : size_x + min(dx, 0)] = mask[
        max(-dy, 0) : size_y + min(-dy, 0), max(-dx, 0) : size_x + min(-dx, 0)
    ]
    return moved


def draw_item(category: str, colour: int, pattern: int, formality: int, size: int = 64, jitter=(0, 0, 0), shift=(0, 0)):
    """One item picture as an RGB `uint8` array (size, size, 3) on a white background."""
    shape = FINE_CATEGORIES[category, formality][3]
    body, detail = _silhouette_masks(shape, size)
    if shift != (0, 0):
        body, detail = _shifted(body, *shift), _shifted(detail, *shift)
    base = np.clip(np.array(COLOURS[colour][1]) + np.asarray(jitter), 0, 255)
    luminance = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]
    ink = (245, 245, 245) if luminance < 140 else (40, 40, 40)
    outline = base * 0.45 if luminance > 60 else np.array((120, 120, 120))
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    image[body] = base
    image[body & _pattern_mask(pattern, size)] = ink
    image[detail] = outline
    return image


def encode_jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------------------------
# Sampling: outfits and their members' attributes, then catalogue items, then splits.


def _unique_ids(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct 9-digit id strings, in random order."""
    values = np.empty(0, dtype=np.int64)
    while len(values) < count:
        draws = np.concatenate([values, rng.integers(100_000_000, 1_000_000_000, size=count + 16)])
        _, first = np.unique(draws, return_index=True)
        values = draws[np.sort(first)]
    return [str(value) for value in values[:count]]


def _sample_members(rng: np.random.Generator, num_outfits: int):
    """Per member: its outfit and category; per outfit: style, pattern key, formality and side."""
    num_slots, num_extra = len(SLOT_CATEGORIES), len(EXTRA_CATEGORIES)
    missing = rng.random(num_outfits) < P_MISSING_SLOT
    missing_slot = rng.integers(0, num_slots, size=num_outfits)
    dress = rng.random(num_outfits) < P_DRESS_FOR_MISSING
    duplicate = rng.random(num_outfits) < P_DUPLICATE_SLOT
    duplicate_slot = rng.integers(0, num_slots, size=num_outfits)
    num_extras = rng.choice(len(EXTRA_COUNT_PROBS), size=num_outfits, p=EXTRA_COUNT_PROBS)
    extra_order = rng.permuted(np.tile(np.arange(num_extra), (num_outfits, 1)), axis=1) + num_slots
    all_body = _CATEGORY_INDEX["all-body"]
    member_outfit, member_category = [], []
    for outfit in range(num_outfits):
        categories = list(range(num_slots))
        if missing[outfit]:
            removed = categories.pop(missing_slot[outfit])
            if removed in (_CATEGORY_INDEX["tops"], _CATEGORY_INDEX["bottoms"]) and dress[outfit]:
                categories.append(all_body)
        if duplicate[outfit]:
            categories.append(int(duplicate_slot[outfit]))
        categories.extend(c for c in extra_order[outfit, : num_extras[outfit]].tolist() if c not in categories)
        member_outfit.extend([outfit] * len(categories))
        member_category.extend(categories)
    latents = {
        "style": rng.integers(0, len(STYLE_NAMES), size=num_outfits),
        "pattern_key": rng.integers(0, _NUM_PATTERNS, size=num_outfits),
        "formality": rng.integers(0, _NUM_FORMALITIES, size=num_outfits),
    }
    side = np.zeros(num_outfits, dtype=np.int64)
    side[rng.permutation(num_outfits)[: max(2, round((1 - P_FIRST_SIDE) * num_outfits))]] = 1
    latents["side"] = side
    return np.array(member_outfit), np.array(member_category), latents


def _member_attributes(rng, member_outfit, member_category, latents):
    """Apply the hidden rules, then the noise."""
    style = latents["style"][member_outfit]
    colour = (_COLOUR_A[member_category] * style + _COLOUR_B[member_category]) % _NUM_COLOURS
    pattern = _PATTERN_TABLE[member_category, latents["pattern_key"][member_outfit]]
    formality = latents["formality"][member_outfit].copy()
    for values, size in ((colour, _NUM_COLOURS), (pattern, _NUM_PATTERNS), (formality, _NUM_FORMALITIES)):
        noisy = rng.random(len(values)) < NOISE
        values[noisy] = rng.integers(0, size, size=int(noisy.sum()))
    return colour, pattern, formality


def _allocate_items(rng, member_cell, num_items):
    """Create `num_items` items over the attribute cells in proportion to demand and give each member an item.

    Returns (item_cell, member_item). With fewer items than demanded cells, members of an uncovered cell take an item
    of the nearest covered cell of the same side and category (same colour first, then formality, then pattern);
    members with no such cell get -1.
    """
    cells, member_position, demand = np.unique(member_cell, return_inverse=True, return_counts=True)
    num_cells = len(cells)
    side_category = cells // (_NUM_COLOURS * _NUM_PATTERNS * _NUM_FORMALITIES)
    if num_items >= num_cells:
        share = (num_items - num_cells) * demand / demand.sum()
        allocation = 1 + np.floor(share).astype(np.int64)
        leftover = num_items - int(allocation.sum())
        allocation[np.argsort(-(share - np.floor(share)), kind="stable")[:leftover]] += 1
    else:
        # cover every (side, category) first, then the most demanded cells
        priority = np.lexsort((rng.random(num_cells), -demand))
        _, first_of_group = np.unique(side_category[priority], return_index=True)
        chosen = list(priority[np.sort(first_of_group)])
        chosen_set = set(chosen)
        chosen += [cell for cell in priority if cell not in chosen_set][: max(0, num_items - len(chosen))]
        allocation = np.zeros(num_cells, dtype=np.int64)
        allocation[np.array(chosen[:num_items])] = 1
    target = np.arange(num_cells)
    for cell in np.flatnonzero(allocation == 0):
        candidates = np.flatnonzero((allocation > 0) & (side_category == side_category[cell]))
        if len(candidates) == 0:
            target[cell] = -1
            continue
        colour, pattern, formality = _decode_cell(cells[candidates])
        own = _decode_cell(cells[cell : cell + 1])
        score = 4 * (colour == own[0]) + 2 * (formality == own[2]) + (pattern == own[1])
        target[cell] = candidates[int(np.argmax(score))]
    member_cell_index = target[member_position]
    offsets = np.concatenate([[0], np.cumsum(allocation)])
    item_cell = np.repeat(cells, allocation)

    member_item = np.full(len(member_cell), -1, dtype=np.int64)
    valid = np.flatnonzero(member_cell_index >= 0)
    order = valid[np.lexsort((rng.random(len(valid)), member_cell_index[valid]))]
    sorted_cells = member_cell_index[order]
    starts = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.arange(len(order)) - starts
    count = allocation[sorted_cells]
    local = np.where(rank < count, rank, rng.integers(0, np.maximum(count, 1)))  # every item used once first
    member_item[order] = offsets[sorted_cells] + local
    return item_cell, member_item


def _encode_cell(side, category, colour, pattern, formality):
    return (((side * len(SEMANTIC_CATEGORIES) + category) * _NUM_COLOURS + colour) * _NUM_PATTERNS + pattern) * (
        _NUM_FORMALITIES
    ) + formality


def _decode_cell(cell):
    formality = cell % _NUM_FORMALITIES
    pattern = cell // _NUM_FORMALITIES % _NUM_PATTERNS
    colour = cell // (_NUM_FORMALITIES * _NUM_PATTERNS) % _NUM_COLOURS
    return colour, pattern, formality


def _assign_splits(rng, num_outfits, side):
    """Official stems (`train`, `valid`, `test`) per outfit for both split types."""
    nondisjoint = np.full(num_outfits, "train", dtype=object)
    order = rng.permutation(num_outfits)
    num_valid, num_test = max(1, round(0.1 * num_outfits)), max(1, round(0.2 * num_outfits))
    nondisjoint[order[:num_valid]] = "valid"
    nondisjoint[order[num_valid : num_valid + num_test]] = "test"
    disjoint = np.full(num_outfits, "train", dtype=object)
    second = rng.permutation(np.flatnonzero(side == 1))
    num_valid = max(1, len(second) // 3)
    disjoint[second[:num_valid]] = "valid"
    disjoint[second[num_valid:]] = "test"
    return {"nondisjoint": nondisjoint, "disjoint": disjoint}


# --------------------------------------------------------------------------------------------------------------------
# The official files


def _split_files(rng, split_of_outfit, outfit_members, set_ids, item_ids, item_category):
    """Outfit list, compatibility lines and fill-in-the-blank questions of one split."""
    outfits = np.flatnonzero(split_of_outfit)
    outfit_json = [
        {
            "items": [{"index": index, "item_id": item_ids[item]} for index, item in outfit_members[o]],
            "set_id": set_ids[o],
        }
        for o in outfits
    ]
    # every member of the split, grouped by category, to draw replacements from
    member_outfit = np.array([o for o in outfits for _ in outfit_members[o]], dtype=np.int64)
    member_item = np.array([item for o in outfits for _, item in outfit_members[o]], dtype=np.int64)
    member_ref = np.array([f"{set_ids[o]}_{index}" for o in outfits for index, _ in outfit_members[o]], dtype=object)
    member_category = item_category[member_item] if len(member_item) else np.empty(0, dtype=np.int64)
    by_category = {c: np.flatnonzero(member_category == c) for c in np.unique(member_category)}

    replacement = np.empty(len(member_item), dtype=np.int64)
    for members in by_category.values():
        draws = members[rng.integers(0, len(members), size=(len(members), 4))]
        clash = member_outfit[draws] == member_outfit[members][:, None]
        pick = np.argmax(~clash, axis=1)  # first draw from another outfit (or the first draw)
        replacement[members] = draws[np.arange(len(members)), pick]
    compatibility, start = [], 0
    for o in outfits:
        stop = start + len(outfit_members[o])
        compatibility.append("1 " + " ".join(member_ref[start:stop]))
        compatibility.append("0 " + " ".join(member_ref[replacement[start:stop]]))
        start = stop

    asked = rng.random(len(outfits)) < P_FITB_QUESTION
    blank_choice = rng.random(len(outfits))
    wrong_draws = rng.integers(0, 1 << 30, size=(len(outfits), 8))
    answer_order = rng.permuted(np.tile(np.arange(4), (len(outfits), 1)), axis=1)
    questions, start = [], 0
    for row, o in enumerate(outfits):
        members = outfit_members[o]
        stop = start + len(members)
        if asked[row] and len(members) >= 2:
            blank = start + int(blank_choice[row] * len(members))
            pool = by_category[member_category[blank]]
            wrong, seen = [], {member_item[blank]}
            for draw in wrong_draws[row]:
                candidate = pool[draw % len(pool)]
                if member_outfit[candidate] != o and member_item[candidate] not in seen:
                    wrong.append(candidate)
                    seen.add(member_item[candidate])
                    if len(wrong) == 3:
                        break
            if len(wrong) == 3:
                answers = [blank, *wrong]
                questions.append(
                    {
                        "answers": [member_ref[answers[k]] for k in answer_order[row]],
                        "blank_position": members[blank - start][0],
                        "question": [member_ref[m] for m in range(start, stop) if m != blank],
                    }
                )
        start = stop
    return outfit_json, compatibility, questions


def check_synthesis_parameters(num_items: int, num_outfits: int, image_size: int, seed: int) -> None:
    """Raise `PolyvoreFormatError` (a `ValueError`: bad input, exit code 2 on the command line) naming the parameter
    that is out of range. `synthesize_polyvore` runs it before anything is written."""
    if num_items < MIN_ITEMS:
        raise PolyvoreFormatError(f"num_items={num_items}: need at least {MIN_ITEMS} items")
    if num_outfits < MIN_OUTFITS:
        raise PolyvoreFormatError(f"num_outfits={num_outfits}: need at least {MIN_OUTFITS} outfits")
    if not 16 <= image_size <= 1024:
        raise PolyvoreFormatError(f"image_size={image_size}: expected 16 to 1024 pixels")
    if seed < 0:
        raise PolyvoreFormatError(f"seed={seed}: expected a non-negative integer")


def synthesize_polyvore(
    output_dir: str | os.PathLike,
    num_items: int = 2000,
    num_outfits: int = 3000,
    image_size: int = 64,
    seed: int = 0,
    with_images: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic raw Polyvore Outfits folder (official format) to `output_dir`; return a summary dict."""
    check_synthesis_parameters(num_items, num_outfits, image_size, seed)
    rng = np.random.default_rng(seed)

    member_outfit, member_category, latents = _sample_members(rng, num_outfits)
    colour, pattern, formality = _member_attributes(rng, member_outfit, member_category, latents)
    member_cell = _encode_cell(latents["side"][member_outfit], member_category, colour, pattern, formality)
    item_cell, member_item = _allocate_items(rng, member_cell, num_items)
    num_items = len(item_cell)
    item_category = item_cell // (_NUM_COLOURS * _NUM_PATTERNS * _NUM_FORMALITIES) % len(SEMANTIC_CATEGORIES)
    item_colour, item_pattern, item_formality = _decode_cell(item_cell)

    # drop members without an item and repeats of an item within an outfit, then number members from 1 in random order
    keep = member_item >= 0
    pairs = member_outfit * num_items + np.where(keep, member_item, 0)
    _, first = np.unique(pairs, return_index=True)
    keep &= np.isin(np.arange(len(pairs)), first)
    member_outfit, member_item = member_outfit[keep], member_item[keep]
    shuffled = np.lexsort((rng.random(len(member_outfit)), member_outfit))
    member_outfit, member_item = member_outfit[shuffled], member_item[shuffled]
    outfit_members = [[] for _ in range(num_outfits)]
    for outfit, item in zip(member_outfit.tolist(), member_item.tolist()):
        outfit_members[outfit].append((len(outfit_members[outfit]) + 1, item))

    ids = _unique_ids(rng, num_items + num_outfits)
    item_ids, set_ids = ids[:num_items], ids[num_items:]
    material = rng.integers(0, len(MATERIALS), size=num_items)
    margin = max(1, image_size // 16)
    jitter = rng.integers(-14, 15, size=(num_items, 3))
    shift = rng.integers(-margin, margin + 1, size=(num_items, 2))
    splits = _assign_splits(rng, num_outfits, latents["side"])

    metadata = {}
    for item in range(num_items):
        category = SEMANTIC_CATEGORIES[item_category[item]]
        category_id, fine, noun, _ = FINE_CATEGORIES[category, int(item_formality[item])]
        colour_name = COLOURS[item_colour[item]][0]
        pattern_name = PATTERNS[item_pattern[item]]
        formality_name = FORMALITIES[item_formality[item]]
        title = f"{colour_name} {pattern_name} {formality_name} {MATERIALS[material[item]]} {noun}"
        metadata[item_ids[item]] = {
            "catgeories": ["Women's Fashion", category.capitalize(), fine],
            "category_id": str(category_id),
            "description": f"A {formality_name} {noun} in {colour_name}, {pattern_name}.",
            "related": [fine, f"{colour_name} {noun}", f"{pattern_name} {category}"],
            "semantic_category": category,
            "title": title,
            "url_name": title,
        }
    outfit_titles = {
        set_ids[o]: {
            "title": f"{STYLE_NAMES[latents['style'][o]]} {FORMALITIES[latents['formality'][o]]} look",
            "url_name": f"{STYLE_NAMES[latents['style'][o]]} {FORMALITIES[latents['formality'][o]]} look",
        }
        for o in range(num_outfits)
    }
    categories_csv = "".join(
        f"{category_id},{fine},{semantic}\n"
        for (semantic, _), (category_id, fine, _, _) in sorted(FINE_CATEGORIES.items(), key=lambda kv: kv[1][0])
    )
    split_counts = {}
    with atomic_output_dir(output_dir, overwrite=overwrite, marker=LATENTS_FILE) as folder:
        _write_json(folder / "polyvore_item_metadata.json", metadata)
        _write_json(folder / "polyvore_outfit_titles.json", outfit_titles)
        (folder / "categories.csv").write_text(categories_csv, encoding="utf-8")
        for type_number, (split_type, split_of) in enumerate(splits.items()):
            (folder / split_type).mkdir()
            split_counts[split_type] = {}
            for stem_number, stem in enumerate(("train", "valid", "test")):
                split_rng = np.random.default_rng([seed, 1 + type_number, stem_number])
                outfit_json, compatibility, questions = _split_files(
                    split_rng, split_of == stem, outfit_members, set_ids, item_ids, item_category
                )
                _write_json(folder / split_type / f"{stem}.json", outfit_json)
                (folder / split_type / f"compatibility_{stem}.txt").write_text(
                    "\n".join(compatibility) + "\n", encoding="utf-8"
                )
                _write_json(folder / split_type / f"fill_in_blank_{stem}.json", questions)
                split_counts[split_type][stem] = len(outfit_json)
        _write_json(
            folder / LATENTS_FILE,
            {
                "description": "Synthetic Polyvore Outfits written by dataset_builder.synthetic (not real data).",
                "rules": describe_rules(),
                "items": {
                    item_ids[i]: {
                        "colour": COLOURS[item_colour[i]][0],
                        "pattern": PATTERNS[item_pattern[i]],
                        "formality": FORMALITIES[item_formality[i]],
                    }
                    for i in range(num_items)
                },
                "outfits": {
                    set_ids[o]: {
                        "style": int(latents["style"][o]),
                        "pattern_key": int(latents["pattern_key"][o]),
                        "formality": FORMALITIES[latents["formality"][o]],
                    }
                    for o in range(num_outfits)
                },
            },
        )
        if with_images:
            images = folder / "images"
            images.mkdir()
            for item in range(num_items):
                array = draw_item(
                    SEMANTIC_CATEGORIES[item_category[item]],
                    int(item_colour[item]),
                    int(item_pattern[item]),
                    int(item_formality[item]),
                    image_size,
                    jitter=tuple(jitter[item]),
                    shift=(int(shift[item, 0]), int(shift[item, 1])),
                )
                (images / f"{item_ids[item]}.jpg").write_bytes(encode_jpeg(array))

    logger.info("wrote a synthetic Polyvore folder to %s", output_dir)
    slots = {_CATEGORY_INDEX[c] for c in SLOT_CATEGORIES}
    complete = sum(slots <= {int(item_category[item]) for _, item in members} for members in outfit_members)
    used = np.unique(member_item)
    return {
        "output_dir": str(output_dir),
        "num_items": num_items,
        "num_items_in_outfits": len(used),
        "num_outfits": num_outfits,
        "num_outfits_with_every_slot": complete,
        "mean_outfits_per_item": round(len(member_item) / max(1, len(used)), 2),
        "splits": split_counts,
        "with_images": with_images,
        "image_size": image_size,
        "seed": seed,
    }


def _write_json(path: Path, data) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True, ensure_ascii=False)


__all__ = ["check_synthesis_parameters", "describe_rules", "draw_item", "synthesize_polyvore"]
