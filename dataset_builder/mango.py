"""MANGO (datathon 2023) outfits -> a raw folder in the official Polyvore Outfits layout, for `dataset_builder build`.

Input: a checkout of the MANGO datathon repository (`vascoG/datathon-fme-2023-mango`, no licence stated: never commit
its data) with `datathon/dataset/product_data.csv` (one row per product), `datathon/dataset/outfit_data.csv` (rows
`cod_outfit, cod_modelo_color` in outfit order) and the photos named by `des_filename` (relative to the checkout).
The conversion is a preset of `convert-csv` (`dataset_builder/tables.py`): the tables below are MANGO's column mapping.

Output (the official file names and fields; see `dataset_builder/raw.py`):

- `polyvore_item_metadata.json`: every product, keyed by `cod_modelo_color`; `semantic_category` from
  `SEMANTIC_CATEGORY_RULES`, a `title` such as "white plain trousers" (colour group, fabric word, product type);
- `categories.csv`: one id per product family (sorted), `id,family,semantic category` (commas of names dropped);
- `polyvore_outfit_titles.json` and `nondisjoint/{train,valid,test}.json`: a seeded 80/10/10 split of the outfits,
  members numbered from 1 in row order. No `disjoint/` folder (MANGO has no item-disjoint split) and no
  compatibility or fill-in-the-blank files (the builder generates them when absent);
- `images/<item_id>.jpg`: the photos, checked by decoding them and copied (the checkout is the user's: copied, never
  linked or moved);
- `mango_import.json`: the seed and the summary; it marks the folder as ours, so `--overwrite` replaces only such.

    python -m dataset_builder convert-mango --source datathon-fme-2023-mango --output_dir mango_raw
    python -m dataset_builder build --raw_dir mango_raw --output_dir mango_umbert --category_map bags=accessories
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from .export import check_output_dir
from .raw import PolyvoreFormatError
from .tables import (
    HELD_OUT_FRACTION,
    SPLIT_TYPE,
    UNMAPPED_CATEGORY,
    CatalogueRecipe,
    OutfitRecipe,
    TableFile,
    normalise,
    read_table,
    read_tables,
    split_outfits,
    write_raw_folder,
)

# (level, name) -> semantic category. Looked up from the most specific level: product family, then aggregated family,
# then category; the slot names (`tops`, `bottoms`, `shoes`, `accessories`; `bags` joins `accessories` with
# `--category_map bags=accessories`) fill slots, the others are kept in the metadata but never fill a slot. Names are
# compared after `normalise` (case, punctuation), so "Hats, scarves and gloves" matches as written in the CSV.
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
CATEGORY_COLUMNS = PRODUCT_COLUMNS[3:7]  # category, aggregated family, family, type: the metadata's "catgeories"
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
# the names of mango_import.json's skipped counts -> the counters of `dataset_builder.tables`
SKIPPED_NAMES = {
    "outfit_rows_unknown_product": "unknown_product_references",
    "outfit_rows_deduplicated": "repeated_references",
    "outfit_rows_without_cod_outfit": "outfit_rows_without_outfit_id",
    "empty_outfits": "empty_outfits",
    "duplicate_product_rows": "duplicate_product_rows",
    "invalid_product_id_rows": "invalid_product_id_rows",
}

_RULES = {(level, normalise(name)): semantic for (level, name), semantic in SEMANTIC_CATEGORY_RULES.items()}


def semantic_category(category: str, aggregated_family: str, family: str) -> str:
    """The semantic category of a product (`SEMANTIC_CATEGORY_RULES`, most specific level first)."""
    for level, name in (("family", family), ("aggregated_family", aggregated_family), ("category", category)):
        semantic = _RULES.get((level, normalise(name)))
        if semantic is not None:
            return semantic
    return UNMAPPED_CATEGORY


def product_title(colour_group: str, fabric: str, product_type: str) -> str:
    """Lower-case "colour fabric type", e.g. "white plain trousers"; an unknown fabric gives no word."""
    words = (colour_group, FABRIC_WORDS.get(fabric, ""), product_type)
    return " ".join(" ".join(words).lower().split())


def read_csv(path: Path, root: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV file of the checkout as dicts with every field stripped; one-line errors naming the file."""
    return read_table(TableFile(path, path.relative_to(root).as_posix()), required).rows


def mango_recipe(unknown_fabrics: Counter) -> CatalogueRecipe:
    """MANGO's products table as items: its category levels, `semantic_category`, `product_title` (the product
    family when it gives no word), the photo in `des_filename`. Fabrics without a word are counted in
    `unknown_fabrics`."""

    def title(row) -> str:
        fabric = row.get("des_fabric", "")
        if fabric not in FABRIC_WORDS:
            unknown_fabrics[fabric] += 1
        words = product_title(row.get("des_agrup_color_eng", ""), fabric, row.get("des_product_type", ""))
        return words or normalise(row.get("des_product_family", ""))

    return CatalogueRecipe(
        id_column="cod_modelo_color",
        category_columns=CATEGORY_COLUMNS,
        semantic_category=lambda levels: semantic_category(*levels[:3]),
        title=title,
        fine_category=2,  # categories.csv lists product families
        description_columns=DESCRIPTION_COLUMNS,
        image_column="des_filename",
        required_columns=PRODUCT_COLUMNS,
    )


def _mango_summary(summary: dict, unknown_fabrics: Counter) -> dict:
    """The summary in mango_import.json's terms (the generic counters under their MANGO names)."""
    names = ("products", "products_per_semantic_category", "outfits", "outfit_items")
    return {
        **{name: summary[name] for name in names},
        "skipped": {name: summary["skipped"][counter] for name, counter in SKIPPED_NAMES.items()},
        "photos_copied": summary["photos_copied"],
        "missing_photos": summary["missing_photos"],
        "unknown_fabrics": dict(sorted(unknown_fabrics.items())),
    }


def convert_mango(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    seed: int = 0,
    with_images: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write the MANGO checkout at `source` as a raw Polyvore Outfits folder in `output_dir`; return a summary dict.

    A preset of `convert-csv` (`dataset_builder.tables`) with MANGO's columns and rules. Raises `PolyvoreFormatError`
    (one line naming the file and field) on bad input; the folder appears only once complete. The same seed gives the
    same bytes.
    """
    source, output = Path(source), Path(output_dir)
    if not source.is_dir():
        raise PolyvoreFormatError(
            f"{source}: MANGO checkout folder not found (expected {PRODUCTS_FILE} and {OUTFITS_FILE} inside)"
        )
    inputs = {"source": source}
    check_output_dir(output, overwrite, inputs, marker=MARKER_FILE)  # never write into (or over) the checkout
    unknown_fabrics = Counter()
    tables = read_tables(
        TableFile(source / PRODUCTS_FILE, PRODUCTS_FILE),
        TableFile(source / OUTFITS_FILE, OUTFITS_FILE),
        mango_recipe(unknown_fabrics),
        OutfitRecipe(id_column="cod_outfit", item_column="cod_modelo_color"),
        image_root=source if with_images else None,
        seed=seed,
    )

    def marker(summary: dict) -> dict:
        return {
            "converter": "dataset_builder convert-mango",
            "source": source.resolve().name,
            "seed": seed,
            "with_images": with_images,
            "summary": _mango_summary(summary, unknown_fabrics),
        }

    summary = write_raw_folder(
        tables,
        output,
        overwrite=overwrite,
        inputs=inputs,
        marker_file=MARKER_FILE,
        marker=marker,
        outfit_title=lambda set_id: {"url_name": f"mango-outfit-{set_id}", "title": f"MANGO outfit {set_id}"},
    )
    mango_summary = _mango_summary(summary, unknown_fabrics)
    return {"source": str(source), "output_dir": str(output), "seed": seed, "with_images": with_images, **mango_summary}


__all__ = [
    "FABRIC_WORDS",
    "HELD_OUT_FRACTION",
    "SEMANTIC_CATEGORY_RULES",
    "SPLIT_TYPE",
    "convert_mango",
    "mango_recipe",
    "product_title",
    "read_csv",
    "semantic_category",
    "split_outfits",
]
