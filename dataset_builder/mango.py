"""MANGO (datathon 2023) outfits -> a raw folder in the official Polyvore Outfits layout, for `dataset_builder build`.

Input: a checkout of the MANGO datathon repository (`vascoG/datathon-fme-2023-mango`, no licence stated: never commit
its data) with `datathon/dataset/product_data.csv` (one row per product), `datathon/dataset/outfit_data.csv` (rows
`cod_outfit, cod_modelo_color` in outfit order) and the photos named by `des_filename` (relative to the checkout).

Output (the official file names and fields; see `dataset_builder/raw.py`):

- `polyvore_item_metadata.json`: every product, keyed by `cod_modelo_color`; `semantic_category` from
  `SEMANTIC_CATEGORY_RULES`, a `title` such as "white plain trousers" (colour group, fabric word, product type);
- `categories.csv`: one id per product family (sorted), `id,family,semantic category` (commas of names dropped);
- `polyvore_outfit_titles.json` and `nondisjoint/{train,valid,test}.json`: a seeded 80/10/10 split of the outfits,
  members numbered from 1 in row order. No `disjoint/` folder (MANGO has no item-disjoint split) and no
  compatibility or fill-in-the-blank files (the builder generates them when absent);
- `images/<item_id>.jpg`: copies of the photos (the checkout is the user's: copied, never linked or moved);
- `mango_import.json`: the seed and the summary; it marks the folder as ours, so `--overwrite` replaces only such.

    python -m dataset_builder convert-mango --source datathon-fme-2023-mango --output_dir mango_raw
    python -m dataset_builder build --raw_dir mango_raw --output_dir mango_umbert --category_map bags=accessories
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers.utils import logging

from umbert_hf.utils.files import regular_file_inside

from .export import atomic_output_dir, check_output_dir
from .raw import CATEGORIES_FILE, IMAGES_DIR, METADATA_FILE, OUTFIT_TITLES_FILE, PolyvoreFormatError
from .synthetic import _write_json

logger = logging.get_logger(__name__)

# (level, name) -> semantic category. Looked up from the most specific level: product family, then aggregated family,
# then category; the slot names (`tops`, `bottoms`, `shoes`, `accessories`; `bags` joins `accessories` with
# `--category_map bags=accessories`) fill slots, the others are kept in the metadata but never fill a slot. Names are
# compared after `_normalise` (case, punctuation), so "Hats, scarves and gloves" matches as written in the CSV.
SEMANTIC_CATEGORY_RULES: dict[tuple[str, str], str] = {
    ("family", "Footwear"): "shoes",
    ("family", "Bags"): "bags",
    ("family", "Jewellery"): "jewellery",
    ("family", "Belts and Ties"): "accessories",
    ("family", "Gadgets"): "accessories",
    ("family", "Glasses"): "accessories",
    ("family", "Hats, scarves and gloves"): "accessories",
    ("family", "Wallets & cases"): "accessories",
    ("family", "Intimate"): "swimwear-intimate",
    ("family", "Swimwear"): "swimwear-intimate",
    ("aggregated_family", "Swim and intimate"): "swimwear-intimate",
    ("category", "Tops"): "tops",
    ("category", "Bottoms"): "bottoms",
    ("category", "Outerwear"): "outerwear",
    ("category", "Dresses, jumpsuits and Complete set"): "all-body",
    ("category", "Beauty"): "beauty",
    ("category", "Home"): "home",
}
UNMAPPED_CATEGORY = "other"  # a product no rule matches: kept, counted in the summary, never a slot
# `des_fabric` -> the title's fabric word ("" for none); other values give no word and are counted
FABRIC_WORDS = {
    "P-PLANA": "plain",
    "K-CIRCULAR": "jersey",
    "T-TRICOT": "knit",
    "J-JEANS": "denim",
    "O-POLIPIEL": "faux leather",
    "L-PIEL": "leather",
    "C-COMPLEMENTOS": "",
}
PRODUCTS_FILE = "datathon/dataset/product_data.csv"
OUTFITS_FILE = "datathon/dataset/outfit_data.csv"
PRODUCT_COLUMNS = (
    "cod_modelo_color",
    "des_agrup_color_eng",
    "des_fabric",
    "des_product_category",
    "des_product_aggregated_family",
    "des_product_family",
    "des_product_type",
    "des_filename",
)
DESCRIPTION_COLUMNS = (
    "des_product_type",
    "des_color_specification_esp",
    "des_fabric",
    "des_sex",
    "des_age",
    "des_line",
)
OUTFIT_COLUMNS = ("cod_outfit", "cod_modelo_color")
MARKER_FILE = "mango_import.json"
SPLIT_TYPE = "nondisjoint"
HELD_OUT_FRACTION = 0.1  # each of valid and test
_VALID_ID = re.compile(r"\w[\w.-]*")  # ids become file names: no separators, no leading dot


def _normalise(name: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", name.lower()).split())


_RULES = {(level, _normalise(name)): semantic for (level, name), semantic in SEMANTIC_CATEGORY_RULES.items()}


def semantic_category(category: str, aggregated_family: str, family: str) -> str:
    """The semantic category of a product (`SEMANTIC_CATEGORY_RULES`, most specific level first)."""
    for level, name in (("family", family), ("aggregated_family", aggregated_family), ("category", category)):
        semantic = _RULES.get((level, _normalise(name)))
        if semantic is not None:
            return semantic
    return UNMAPPED_CATEGORY


def product_title(colour_group: str, fabric: str, product_type: str) -> str:
    """Lower-case "colour fabric type", e.g. "white plain trousers"; an unknown fabric gives no word."""
    words = (colour_group, FABRIC_WORDS.get(fabric, ""), product_type)
    return " ".join(" ".join(words).lower().split())


def read_csv(path: Path, root: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV file as dicts with every field stripped (also of CR); one-line errors naming the file."""
    name = path.relative_to(root).as_posix()
    if not path.is_file():
        raise PolyvoreFormatError(f"{name}: file not found in {root} (expected the MANGO datathon checkout)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PolyvoreFormatError(f"{name}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader, [])]
        if not any(header):
            raise PolyvoreFormatError(f"{name}: empty file (expected a header with {', '.join(required)})")
        for column in required:
            if column not in header:
                raise PolyvoreFormatError(f"{name}: required column '{column}' not found (header: {', '.join(header)})")
        rows = []
        for fields in reader:
            if any(field.strip() for field in fields):
                rows.append({column: value.strip() for column, value in zip(header, fields)})
    except csv.Error as error:
        raise PolyvoreFormatError(f"{name}: malformed CSV at line {reader.line_num}: {error}") from None
    return rows


def _check_paths(source: Path, output: Path, overwrite: bool) -> None:
    """Never write into (or over) the input; replace only a folder that an earlier conversion wrote."""
    if not source.is_dir():
        raise PolyvoreFormatError(
            f"{source}: MANGO checkout folder not found (expected {PRODUCTS_FILE} and {OUTFITS_FILE} inside)"
        )
    check_output_dir(output, overwrite, {"source": source}, marker=MARKER_FILE)


def _read_products(
    source: Path, with_images: bool, skipped: Counter, unknown_fabrics: Counter
) -> tuple[dict[str, dict], dict[str, Path]]:
    """item_id -> metadata, and item_id -> photo path (only for photos that exist in the checkout)."""
    rows = read_csv(source / PRODUCTS_FILE, source, PRODUCT_COLUMNS)
    if not rows:
        raise PolyvoreFormatError(f"{PRODUCTS_FILE}: no product rows (expected one row per product)")
    metadata, photos = {}, {}
    for row in rows:
        item_id = row.get("cod_modelo_color", "")
        if not _VALID_ID.fullmatch(item_id):
            skipped["invalid_product_id_rows"] += 1
            continue
        if item_id in metadata:
            skipped["duplicate_product_rows"] += 1
            continue
        levels = [row.get(column, "") for column in PRODUCT_COLUMNS[3:7]]  # category, aggregated, family, type
        fabric = row.get("des_fabric", "")
        if fabric not in FABRIC_WORDS:
            unknown_fabrics[fabric] += 1
        title = product_title(row.get("des_agrup_color_eng", ""), fabric, levels[3]) or _normalise(levels[2])
        metadata[item_id] = {
            "url_name": title,
            "description": ", ".join(row[column] for column in DESCRIPTION_COLUMNS if row.get(column)),
            "catgeories": levels,
            "title": title,
            "related": [],
            "category_id": "",  # set once every family is known
            "semantic_category": semantic_category(*levels[:3]),
        }
        if with_images:
            relative = Path(os.path.normpath(row.get("des_filename") or "."))
            inside = not relative.is_absolute() and relative.parts[:1] not in ((), ("..",))
            if inside and regular_file_inside(source / relative, source):  # leaving the checkout counts as missing
                photos[item_id] = source / relative
    return metadata, photos


def _read_outfits(source: Path, metadata: dict, skipped: Counter) -> dict[str, list[str]]:
    """set_id -> item ids in row order, without unknown products and repeated rows, in order of first appearance."""
    rows = read_csv(source / OUTFITS_FILE, source, OUTFIT_COLUMNS)
    if not rows:
        raise PolyvoreFormatError(f"{OUTFITS_FILE}: no outfit rows (expected rows of {', '.join(OUTFIT_COLUMNS)})")
    outfits: dict[str, list[str]] = {}
    for row in rows:
        set_id, item_id = row.get("cod_outfit", ""), row.get("cod_modelo_color", "")
        if not set_id:
            skipped["outfit_rows_without_cod_outfit"] += 1
            continue
        members = outfits.setdefault(set_id, [])
        if item_id not in metadata:
            skipped["outfit_rows_unknown_product"] += 1
        elif item_id in members:
            skipped["outfit_rows_deduplicated"] += 1
        else:
            members.append(item_id)
    skipped["empty_outfits"] = sum(not members for members in outfits.values())
    outfits = {set_id: members for set_id, members in outfits.items() if members}
    if not outfits:
        raise PolyvoreFormatError(f"{OUTFITS_FILE}: no outfit references a product of {PRODUCTS_FILE}")
    return outfits


def split_outfits(set_ids: list[str], seed: int) -> dict[str, list[str]]:
    """Seeded 80/10/10 split (official stems `train`, `valid`, `test`); each split keeps the input order."""
    order = np.random.default_rng(seed).permutation(len(set_ids))
    held_out = max(1, int(len(set_ids) * HELD_OUT_FRACTION)) if len(set_ids) >= 3 else 0
    stem_of = np.full(len(set_ids), "train", dtype=object)
    stem_of[order[:held_out]] = "valid"
    stem_of[order[held_out : 2 * held_out]] = "test"
    return {stem: [s for s, of in zip(set_ids, stem_of) if of == stem] for stem in ("train", "valid", "test")}


def convert_mango(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    seed: int = 0,
    with_images: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write the MANGO checkout at `source` as a raw Polyvore Outfits folder in `output_dir`; return a summary dict.

    Raises `PolyvoreFormatError` (one line naming the file and field) on bad input; the folder appears only once
    complete. The same seed gives the same bytes.
    """
    source, output = Path(source), Path(output_dir)
    _check_paths(source, output, overwrite)
    skipped, unknown_fabrics = Counter(), Counter()
    metadata, photos = _read_products(source, with_images, skipped, unknown_fabrics)
    outfits = _read_outfits(source, metadata, skipped)

    families = sorted({meta["catgeories"][2] for meta in metadata.values()})
    family_id = {family: str(number) for number, family in enumerate(families, start=1)}
    family_semantic: dict[str, Counter] = {family: Counter() for family in families}
    for meta in metadata.values():
        meta["category_id"] = family_id[meta["catgeories"][2]]
        family_semantic[meta["catgeories"][2]][meta["semantic_category"]] += 1
    categories_csv = ""
    for family in families:  # no commas inside fields: the official file is read by splitting on commas
        fine = " ".join(family.replace(",", " ").split())
        categories_csv += f"{family_id[family]},{fine},{family_semantic[family].most_common(1)[0][0]}\n"
    splits = split_outfits(list(outfits), seed)
    titles = {set_id: {"url_name": f"mango-outfit-{set_id}", "title": f"MANGO outfit {set_id}"} for set_id in outfits}
    summary = {
        "products": len(metadata),
        "products_per_semantic_category": dict(
            sorted(Counter(meta["semantic_category"] for meta in metadata.values()).items())
        ),
        "outfits": {stem: len(set_ids) for stem, set_ids in splits.items()},
        "outfit_items": sum(len(members) for members in outfits.values()),
        "skipped": {
            key: skipped[key]
            for key in (
                "outfit_rows_unknown_product",
                "outfit_rows_deduplicated",
                "outfit_rows_without_cod_outfit",
                "empty_outfits",
                "duplicate_product_rows",
                "invalid_product_id_rows",
            )
        },
        "photos_copied": len(photos) if with_images else 0,
        "missing_photos": len(metadata) - len(photos) if with_images else 0,
        "unknown_fabrics": dict(sorted(unknown_fabrics.items())),
    }
    marker = {
        "converter": "dataset_builder convert-mango",
        "source": source.resolve().name,
        "seed": seed,
        "with_images": with_images,
        "summary": summary,
    }
    with atomic_output_dir(output, overwrite=overwrite, inputs={"source": source}, marker=MARKER_FILE) as folder:
        _write_json(folder / METADATA_FILE, metadata)
        _write_json(folder / OUTFIT_TITLES_FILE, titles)
        (folder / CATEGORIES_FILE).write_text(categories_csv, encoding="utf-8")
        (folder / SPLIT_TYPE).mkdir()
        for stem, set_ids in splits.items():
            entries = [
                {"set_id": s, "items": [{"item_id": i, "index": n} for n, i in enumerate(outfits[s], start=1)]}
                for s in set_ids
            ]
            _write_json(folder / SPLIT_TYPE / f"{stem}.json", entries)
        if with_images:
            (folder / IMAGES_DIR).mkdir()
            for item_id, photo in tqdm(sorted(photos.items()), desc="Copying photos", unit="photo"):
                shutil.copyfile(photo, folder / IMAGES_DIR / f"{item_id}.jpg")
        _write_json(folder / MARKER_FILE, marker)
    logger.info("wrote a MANGO raw folder to %s", output)
    return {"source": str(source), "output_dir": str(output), "seed": seed, "with_images": with_images, **summary}


__all__ = [
    "FABRIC_WORDS",
    "SEMANTIC_CATEGORY_RULES",
    "convert_mango",
    "product_title",
    "read_csv",
    "semantic_category",
    "split_outfits",
]
