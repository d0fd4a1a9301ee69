"""Any products table and outfits table -> a raw folder in the official Polyvore Outfits layout (`convert-csv`).

Shops keep a catalogue in two tables: products (an id, a category, text fields, a photo path) and outfits (one row per
member, `outfit id, product id`; or one row per outfit with its product ids in one cell). `convert_csv` maps their
columns onto the raw layout that `dataset_builder build` reads, so everything downstream is the same as for Polyvore.
`convert_mango` (`dataset_builder/mango.py`) is a preset of the same code (`read_tables`, then `write_raw_folder`)
with MANGO's columns and rules.

Tables are read by suffix: `.csv` and `.tsv` (UTF-8 by default, a BOM accepted; every cell is text, so `00123` stays
`00123`), `.parquet` / `.pq`, `.jsonl` / `.ndjson`, and `.gz` of the text formats. Every cell is stripped.

Output (see `dataset_builder/raw.py`):

- `polyvore_item_metadata.json`: every product, keyed by its id; `semantic_category` from the category map
  (`UNMAPPED_CATEGORY` for a value the map does not name: kept, counted, never a slot), `title` from the text columns;
- `categories.csv`: one id per category value (sorted), `id,category,semantic category`;
- `polyvore_outfit_titles.json` and `nondisjoint/{train,valid,test}.json`: a seeded 80/10/10 split of the outfits, or
  the one of a split column, members numbered from 1 in table order. No compatibility or fill-in-the-blank files (the
  builder generates them);
- `images/<item_id>.jpg`: the photos, checked by decoding them; JPEG files are copied byte for byte, other formats
  (PNG, WebP, ...) are written as JPEG over white; inputs are never modified, linked or moved;
- `csv_import.json` (`MARKER_FILE`): the mapping and the summary; it marks the folder as ours for `--overwrite`.

    python -m dataset_builder convert-csv --products products.csv --outfits outfits.csv --output_dir shop_raw \\
        --id_column sku --category_column family --category_map Footwear=shoes Tops=tops Bottoms=bottoms \\
        --title_columns colour name --image_column photo --outfit_id_column look --outfit_item_column sku
"""

from __future__ import annotations

import ast
import csv
import functools
import gzip
import io
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from PIL import Image
from tqdm.auto import tqdm
from transformers.utils import logging

from umbert_hf.utils.files import regular_file_inside

from .export import atomic_output_dir, check_output_dir
from .raw import (
    CATEGORIES_FILE,
    IMAGES_DIR,
    METADATA_FILE,
    OUTFIT_TITLES_FILE,
    PolyvoreFormatError,
    read_image_bytes,
)
from .synthetic import _write_json

logger = logging.get_logger(__name__)

MARKER_FILE = "csv_import.json"
SPLIT_TYPE = "nondisjoint"
HELD_OUT_FRACTION = 0.1  # each of valid and test
UNMAPPED_CATEGORY = "other"  # a product the category map does not name: kept, counted, never a slot
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
TABLE_SUFFIXES |= {".jsonl": "jsonl", ".ndjson": "jsonl"}
# split column value (compared after `normalise`) -> official file stem
SPLIT_NAMES = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid"}
SPLIT_NAMES |= {"dev": "valid", "test": "test", "testing": "test"}
PHOTO_PROBLEMS = ("no_image", "url", "outside_image_root", "not_found", "unreadable")
JPEG_SIGNATURE = b"\xff\xd8\xff"  # a JPEG file (MPO included) is copied as it is; other formats are written as JPEG
JPEG_QUALITY = 95
_VALID_ID = re.compile(r"\w[\w.-]*")  # ids become file names: no separators, no leading dot
_MAX_ID_BYTES = 200
_URL = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@functools.lru_cache(maxsize=1 << 16)  # category values repeat on every row
def normalise(name: str) -> str:
    """A name as categories are compared: case, accents, punctuation and spacing dropped ("Hats, Scarves " ->
    "hats scarves", "Calzado Niño" -> "calzado nino"); letters of any script are kept."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(re.sub(r"[\W_]+", " ", letters).split())


def valid_item_id(item_id: str) -> bool:
    """Whether an id can name its photo file: letters, digits, `_`, `.` and `-`, not starting with `.` or `-`."""
    return bool(_VALID_ID.fullmatch(item_id)) and len(item_id.encode("utf-8")) <= _MAX_ID_BYTES


def split_outfits(set_ids: list[str], seed: int) -> dict[str, list[str]]:
    """Seeded 80/10/10 split (official stems `train`, `valid`, `test`); each split keeps the input order."""
    order = np.random.default_rng(seed).permutation(len(set_ids))
    held_out = max(1, int(len(set_ids) * HELD_OUT_FRACTION)) if len(set_ids) >= 3 else 0
    stem_of = np.full(len(set_ids), "train", dtype=object)
    stem_of[order[:held_out]] = "valid"
    stem_of[order[held_out : 2 * held_out]] = "test"
    return {stem: [s for s, of in zip(set_ids, stem_of) if of == stem] for stem in ("train", "valid", "test")}


# --- reading a table ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableFile:
    """A table to read: its path, how messages name it, and the options of the text formats."""

    path: Path
    name: str
    encoding: str = "utf-8"
    delimiter: str | None = None  # default: "," for .csv, tab for .tsv


@dataclass
class Table:
    """The rows of a table: every cell stripped text ("" when empty), or a list of texts in a `list_columns` column."""

    name: str
    header: list[str]
    rows: list[dict[str, str | list[str]]]


def _cell(value) -> str | list[str]:
    """A parquet or JSON value as text: integral floats without `.0` (ids that went through pandas), lists as lists."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:  # NaN: an empty cell
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (list, tuple)):
        return [text for text in (_scalar(_cell(item)) for item in value) if text]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return str(value).strip()


def _scalar(value: str | list[str]) -> str:
    return value if isinstance(value, str) else ", ".join(value)


def _table_format(file: TableFile) -> tuple[str, bool]:
    suffixes = [suffix.lower() for suffix in file.path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = (suffixes[-2] if compressed and len(suffixes) > 1 else suffixes[-1]) if suffixes else ""
    kind = TABLE_SUFFIXES.get(suffix)
    if kind is None or (compressed and kind == "parquet"):
        raise PolyvoreFormatError(
            f"{file.name}: unknown table format {''.join(file.path.suffixes) or '(no suffix)'!r} (expected .csv, "
            ".tsv, .parquet, .pq, .jsonl or .ndjson; .gz for the text ones)"
        )
    return kind, compressed


def _read_text(file: TableFile, compressed: bool) -> str:
    data = file.path.read_bytes()
    if compressed:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise PolyvoreFormatError(f"{file.name}: not a gzip file ({error})") from None
    utf8 = normalise(file.encoding) in ("utf 8", "utf8")
    try:
        return data.decode("utf-8-sig" if utf8 else file.encoding)
    except LookupError:
        raise PolyvoreFormatError(f"{file.name}: unknown --encoding {file.encoding!r}") from None
    except UnicodeDecodeError as error:
        what, hint = ("UTF-8", "; pass --encoding, e.g. cp1252 or latin-1") if utf8 else (file.encoding, "")
        raise PolyvoreFormatError(
            f"{file.name}: not {what} text ({error.reason} at byte {error.start}){hint}"
        ) from None


def _read_csv_rows(file: TableFile, text: str, delimiter: str) -> tuple[list[str], list[dict]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [column.strip() for column in next(reader, [])]
        rows = []
        for fields in reader:
            if any(field.strip() for field in fields):
                rows.append({column: value.strip() for column, value in zip(header, fields)})
    except csv.Error as error:
        raise PolyvoreFormatError(f"{file.name}: malformed CSV at line {reader.line_num}: {error}") from None
    return header, rows


def _read_arrow(file: TableFile, kind: str, compressed: bool) -> pa.Table:
    try:
        if kind == "parquet":
            return pq.read_table(file.path)
        data = file.path.read_bytes()
        return pa_json.read_json(io.BytesIO(gzip.decompress(data) if compressed else data))
    except (pa.ArrowException, OSError, EOFError) as error:
        what = "parquet file" if kind == "parquet" else "JSON lines file"
        message = " ".join(str(error).split())[:200]
        raise PolyvoreFormatError(f"{file.name}: not a readable {what} ({message})") from None


def read_table(
    file: TableFile,
    required: Sequence[str],
    flags: Mapping[str, str] | None = None,
    list_columns: Sequence[str | None] = (),
    optional: Sequence[str] = (),
) -> Table:
    """The rows of a CSV, TSV, parquet or JSON lines table, with every `required` column present.

    Raises `PolyvoreFormatError` with one line naming the file (and the flag that named a missing column, from
    `flags`: column -> flag). Cells become stripped text; a list (parquet, JSON) stays a list in `list_columns`
    and is joined with ", " elsewhere. Rows whose cells are all empty are left out. Of a parquet or JSON table only
    the `required`, `optional` and `list_columns` columns are read.
    """
    kind, compressed = _table_format(file)
    if not file.path.is_file():
        where = "" if file.name == str(file.path) else f" (looked for {file.path})"
        raise PolyvoreFormatError(f"{file.name}: file not found{where}")
    if kind in ("csv", "tsv"):
        delimiter = file.delimiter or ("\t" if kind == "tsv" else ",")
        if len(delimiter) != 1:
            raise PolyvoreFormatError(f"--delimiter {delimiter!r}: expected one character")
        header, rows = _read_csv_rows(file, _read_text(file, compressed), delimiter)
    else:
        table = _read_arrow(file, kind, compressed)
        header = [str(column).strip() for column in table.column_names]
        wanted = {*required, *optional, *list_columns}
        columns = {name: table.column(index).to_pylist() for index, name in enumerate(header) if name in wanted}
        rows = [{name: _cell(values[row]) for name, values in columns.items()} for row in range(table.num_rows)]
        rows = [row for row in rows if any(row.values())]
    if not any(header):
        raise PolyvoreFormatError(f"{file.name}: empty file (expected a header with {', '.join(required)})")
    for column in required:
        if header.count(column) > 1:
            raise PolyvoreFormatError(f"{file.name}: column '{column}' appears {header.count(column)} times")
        if column not in header:
            raise PolyvoreFormatError(_missing_column(file, column, header, (flags or {}).get(column)))
    for row in rows:
        for column, value in row.items():
            if isinstance(value, list) and column not in list_columns:
                row[column] = _scalar(value)
    return Table(file.name, header, rows)


def _missing_column(file: TableFile, column: str, header: list[str], flag: str | None) -> str:
    named = f" (named by {flag})" if flag else ""
    hints = [f"did you mean {name!r}?" for name in header if name.casefold() == column.casefold()]
    if len(header) == 1 and file.delimiter is None and any(char in header[0] for char in ";|\t"):
        hints.append("one column only: is it separated by ';' or '|'? pass --delimiter")
    shown = ", ".join(header[:30]) + (", ..." if len(header) > 30 else "")
    return f"{file.name}: required column '{column}'{named} not found (header: {shown})" + "".join(
        f"; {hint}" for hint in hints
    )


# --- from rows to items and outfits ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueRecipe:
    """How a products table becomes the raw item metadata.

    `category_columns` are the metadata's `catgeories` (in order; a repeated id must repeat them), `fine_category`
    the index among them of the category that `categories.csv` lists; `semantic_category` maps their values to a
    semantic category, `title` a row to the title (and `url_name`), `description_columns` are joined with ", ".
    """

    id_column: str
    category_columns: tuple[str, ...]
    semantic_category: Callable[[list[str]], str]
    title: Callable[[Mapping[str, str]], str]
    fine_category: int = 0
    description_columns: tuple[str, ...] = ()
    image_column: str | None = None
    required_columns: tuple[str, ...] = ()  # what the table must have, in the order they are checked
    flags: Mapping[str, str] = field(default_factory=dict)  # column -> the flag that named it, for messages


@dataclass(frozen=True)
class OutfitRecipe:
    """How an outfits table lists its outfits: one row per member (`item_column`) or one row per outfit with its
    members in one cell (`items_column`: a list, a JSON list, or text split on `separator`)."""

    id_column: str | None  # None (one row per outfit only): outfits are numbered by row from 1
    item_column: str | None = None
    items_column: str | None = None
    separator: str = ";"
    split_column: str | None = None
    flags: Mapping[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        names = (self.id_column, self.item_column, self.items_column, self.split_column)
        return tuple(name for name in names if name)


def _photo(value: str, image_root: Path) -> tuple[Path | None, str | None]:
    """The photo file a cell names under `image_root`, or why there is none (one of `PHOTO_PROBLEMS`)."""
    if not value:
        return None, "no_image"
    if _URL.match(value):
        return None, "url"
    path = image_root / value.replace("\\", "/")  # an absolute path stays as it is: it must lie inside the root
    try:
        if regular_file_inside(path, image_root):  # a link or `..` leaving the root never reads a file of the user's
            return path, None
        return None, "outside_image_root" if path.exists() else "not_found"
    except (OSError, ValueError):  # a name too long, a NUL byte
        return None, "not_found"


def read_catalogue(
    table: Table, recipe: CatalogueRecipe, image_root: Path | None, skipped: Counter, photo_problems: Counter
) -> tuple[dict[str, dict], dict[str, Path]]:
    """item_id -> metadata, and item_id -> photo file (for `image_root` not None: photos are wanted).

    Counted and skipped: a row whose id is empty or cannot name a file, a repeated id with the same categories (the
    first row is kept). A repeated id with other categories is an error.
    """
    if not table.rows:
        raise PolyvoreFormatError(f"{table.name}: no product rows (expected one row per product)")
    metadata, photos, first_categories = {}, {}, {}
    for row in table.rows:
        item_id = row.get(recipe.id_column, "")
        if not valid_item_id(item_id):
            skipped["invalid_product_id_rows"] += 1
            continue
        levels = [row.get(column, "") for column in recipe.category_columns]
        key = tuple(map(normalise, levels))
        if item_id in metadata:
            if key != first_categories[item_id]:
                raise PolyvoreFormatError(
                    f"{table.name}: product id '{item_id}' appears twice with different categories, "
                    f"{' / '.join(metadata[item_id]['catgeories'])!r} and {' / '.join(levels)!r}"
                )
            skipped["duplicate_product_rows"] += 1
            continue
        first_categories[item_id] = key
        title = recipe.title(row)
        metadata[item_id] = {
            "url_name": title,
            "description": ", ".join(row[column] for column in recipe.description_columns if row.get(column)),
            "catgeories": levels,
            "title": title,
            "related": [],
            "category_id": "",  # set once every category is known
            "semantic_category": recipe.semantic_category(levels),
        }
        if image_root is not None and recipe.image_column:
            path, problem = _photo(row.get(recipe.image_column, ""), image_root)
            if path is None:
                photo_problems[problem] += 1
            else:
                photos[item_id] = path
    if not metadata:
        raise PolyvoreFormatError(
            f"{table.name}: no row has a usable product id in column '{recipe.id_column}' (ids name files: letters, "
            "digits, '_', '.', '-')"
        )
    return metadata, photos


def _members(value: str | list[str], separator: str) -> list[str]:
    """The product ids of one outfit's cell: a list, a JSON or Python list literal, or text split on `separator`."""
    if isinstance(value, list):
        return value
    if value.startswith("[") and value.endswith("]"):  # a list written by pandas' to_csv or json.dumps
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, list):
                return [text for text in (_scalar(_cell(item)) for item in parsed) if text]
    return [part.strip() for part in value.split(separator) if part.strip()]


def _split_stem(table: Table, recipe: OutfitRecipe, set_id: str, value: str) -> str | None:
    if not value:
        return None
    stem = SPLIT_NAMES.get(normalise(value))
    if stem is None:
        raise PolyvoreFormatError(
            f"{table.name}: --split_column '{recipe.split_column}' has {value!r} (outfit '{set_id}'); expected "
            "train (training), valid (validation, val, dev) or test (testing)"
        )
    return stem


def read_outfits(
    table: Table, recipe: OutfitRecipe, known: Container[str], skipped: Counter
) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    """set_id -> item ids in table order (known products only, each once), and set_id -> split stem (with a split
    column; None for an empty cell). Outfits are in order of first appearance; empty ones are counted and dropped."""
    if not table.rows:
        raise PolyvoreFormatError(f"{table.name}: no outfit rows (expected rows of {', '.join(recipe.columns)})")
    outfits: dict[str, list[str]] = {}
    stems: dict[str, str | None] = {}
    for number, row in enumerate(table.rows, start=1):
        set_id = row.get(recipe.id_column, "") if recipe.id_column else str(number)
        if not set_id:
            skipped["outfit_rows_without_outfit_id"] += 1
            continue
        if recipe.items_column:
            if set_id in outfits:
                skipped["duplicate_outfit_rows"] += 1
                continue
            references = _members(row.get(recipe.items_column, ""), recipe.separator)
        else:
            references = [row.get(recipe.item_column, "")]
        members = outfits.setdefault(set_id, [])
        if recipe.split_column:
            stem = _split_stem(table, recipe, set_id, row.get(recipe.split_column, ""))
            if stems.get(set_id) is not None and stem is not None and stem != stems[set_id]:
                raise PolyvoreFormatError(
                    f"{table.name}: outfit '{set_id}' is in two splits of --split_column "
                    f"'{recipe.split_column}', {stems[set_id]} and {stem}; an outfit must be in one split only"
                )
            stems[set_id] = stems.get(set_id) or stem
        for item_id in references:
            if item_id not in known:
                skipped["unknown_product_references"] += 1
            elif item_id in members:
                skipped["repeated_references"] += 1
            else:
                members.append(item_id)
    skipped["empty_outfits"] = sum(not members for members in outfits.values())
    outfits = {set_id: members for set_id, members in outfits.items() if members}
    if recipe.split_column:
        skipped["outfits_without_split"] = sum(stems[set_id] is None for set_id in outfits)
        outfits = {set_id: members for set_id, members in outfits.items() if stems[set_id] is not None}
    return outfits, stems


# --- writing the raw folder -----------------------------------------------------------------------------------------


def _categories_csv(metadata: dict[str, dict], fine_category: int) -> str:
    """Set each item's `category_id` (one per category value, sorted; spellings that `normalise` to the same name
    share the first one's) and return `categories.csv`: `id,category,most common semantic category`."""
    spelling: dict[str, str] = {}
    for meta in metadata.values():
        name = meta["catgeories"][fine_category]
        spelling.setdefault(normalise(name), name)
    names = sorted(set(spelling.values()))
    number = {name: str(position) for position, name in enumerate(names, start=1)}
    semantic: dict[str, Counter] = {name: Counter() for name in names}
    for meta in metadata.values():
        name = spelling[normalise(meta["catgeories"][fine_category])]
        meta["category_id"] = number[name]
        semantic[name][meta["semantic_category"]] += 1
    lines = []
    for name in names:  # no commas inside fields: the official file is read by splitting on commas
        fine = " ".join(name.replace(",", " ").split())
        lines.append(f"{number[name]},{fine},{semantic[name].most_common(1)[0][0]}\n")
    return "".join(lines)


def _encoded_photo(source: Path) -> tuple[bytes, str] | None:
    """The bytes to write for a photo and "copied" (a JPEG, byte for byte) or "converted" (another format, written as
    JPEG over white); None when it does not decode to its last pixel (`read_image_bytes`)."""
    try:
        data = read_image_bytes(source)
        if data.startswith(JPEG_SIGNATURE):
            return data, "copied"
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = image.convert("RGB")
        encoded = io.BytesIO()
        flat.save(encoded, "JPEG", quality=JPEG_QUALITY)
        return encoded.getvalue(), "converted"
    except Exception:  # PIL raises many types on corrupt or unknown files: the item stays, without a photo
        return None


def _write_photo(source: Path, target: Path) -> str:
    photo = _encoded_photo(source)
    if photo is None:
        return "unreadable"
    target.write_bytes(photo[0])  # a full disk is an error, not a skipped photo
    return photo[1]


def _copy_photos(photos: dict[str, Path], folder: Path) -> Counter:
    (folder / IMAGES_DIR).mkdir()
    written = Counter()
    for item_id, path in tqdm(sorted(photos.items()), desc="Copying photos", unit="photo"):
        written[_write_photo(path, folder / IMAGES_DIR / f"{item_id}.jpg")] += 1
    return written


SKIPPED = (
    "invalid_product_id_rows",
    "duplicate_product_rows",
    "outfit_rows_without_outfit_id",
    "duplicate_outfit_rows",
    "unknown_product_references",
    "repeated_references",
    "empty_outfits",
    "outfits_without_split",
)


@dataclass
class ImportedTables:
    """The two tables read and checked, ready to write: item metadata, photo files, outfits and their split."""

    metadata: dict[str, dict]
    photos: dict[str, Path] | None  # None: no photos wanted
    outfits: dict[str, list[str]]
    splits: dict[str, list[str]]
    categories_csv: str
    skipped: Counter
    photo_problems: Counter


def read_tables(
    products: TableFile,
    outfits: TableFile,
    catalogue: CatalogueRecipe,
    outfit_recipe: OutfitRecipe,
    image_root: Path | None,
    seed: int,
) -> ImportedTables:
    """Read and check both tables (photos are looked for under `image_root` when it is given and the recipe names an
    image column); the split comes from the split column, or is seeded. Raises `PolyvoreFormatError` (one line)."""
    skipped, photo_problems = Counter(), Counter()
    with_images = image_root is not None and catalogue.image_column is not None
    product_table = read_table(products, catalogue.required_columns, catalogue.flags, (), catalogue.description_columns)
    outfit_table = read_table(outfits, outfit_recipe.columns, outfit_recipe.flags, (outfit_recipe.items_column,))
    root = image_root if with_images else None
    metadata, photos = read_catalogue(product_table, catalogue, root, skipped, photo_problems)
    members, stems = read_outfits(outfit_table, outfit_recipe, metadata, skipped)
    if not members:
        raise PolyvoreFormatError(
            f"{outfits.name}: no outfit references a product of {products.name} (e.g. "
            f"'{_first_reference(outfit_table, outfit_recipe)}' is not an id of '{catalogue.id_column}', such as "
            f"'{next(iter(metadata), '')}')"
        )
    if outfit_recipe.split_column:
        splits = {stem: [s for s in members if stems[s] == stem] for stem in ("train", "valid", "test")}
    else:
        splits = split_outfits(list(members), seed)
    categories_csv = _categories_csv(metadata, catalogue.fine_category)
    photos = photos if with_images else None
    return ImportedTables(metadata, photos, members, splits, categories_csv, skipped, photo_problems)


def _first_reference(table: Table, recipe: OutfitRecipe) -> str:
    for row in table.rows:
        if recipe.items_column:
            references = _members(row.get(recipe.items_column, ""), recipe.separator)
        else:
            references = [row.get(recipe.item_column, "")]
        if references:
            return references[0]
    return ""


def write_raw_folder(
    tables: ImportedTables,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool,
    inputs: Mapping[str, str | os.PathLike | None],
    marker_file: str,
    marker: Callable[[dict], dict],
    outfit_title: Callable[[str], dict],
) -> dict:
    """Write the raw Polyvore Outfits folder (photos checked and copied) and return the summary; `marker(summary)`
    gives the JSON of `marker_file`, written last. The folder appears only once complete (`atomic_output_dir`)."""
    output, metadata, members = Path(output_dir), tables.metadata, tables.outfits
    with atomic_output_dir(output, overwrite=overwrite, inputs=inputs, marker=marker_file) as folder:
        _write_json(folder / METADATA_FILE, metadata)
        _write_json(folder / OUTFIT_TITLES_FILE, {set_id: outfit_title(set_id) for set_id in members})
        (folder / CATEGORIES_FILE).write_text(tables.categories_csv, encoding="utf-8")
        (folder / SPLIT_TYPE).mkdir()
        for stem, set_ids in tables.splits.items():
            entries = [
                {"set_id": s, "items": [{"item_id": i, "index": n} for n, i in enumerate(members[s], start=1)]}
                for s in set_ids
            ]
            _write_json(folder / SPLIT_TYPE / f"{stem}.json", entries)
        with_images = tables.photos is not None
        written = _copy_photos(tables.photos, folder) if with_images else Counter()
        tables.photo_problems["unreadable"] += written["unreadable"]
        copied = written["copied"] + written["converted"]
        summary = {
            "products": len(metadata),
            "products_per_semantic_category": dict(
                sorted(Counter(meta["semantic_category"] for meta in metadata.values()).items())
            ),
            "outfits": {stem: len(set_ids) for stem, set_ids in tables.splits.items()},
            "outfit_items": sum(len(members[s]) for set_ids in tables.splits.values() for s in set_ids),
            "skipped": {key: tables.skipped[key] for key in SKIPPED},
            "with_images": with_images,
            "photos_copied": copied,
            "photos_converted": written["converted"],
            "missing_photos": len(metadata) - copied if with_images else 0,
            "photo_problems": {key: tables.photo_problems[key] for key in PHOTO_PROBLEMS} if with_images else {},
        }
        _write_json(folder / marker_file, marker(summary))
    logger.info("wrote a raw folder to %s", output)
    return summary


# --- convert-csv ----------------------------------------------------------------------------------------------------


class CategoryMap:
    """Category values -> semantic categories (`--category_map VALUE=SLOT`, the slot lower-cased), values compared
    after `normalise`.

    `VALUE=` names a value that never fills a slot. Every other value the map does not name is counted in
    `unmapped` (by its first spelling) and gets `UNMAPPED_CATEGORY`.
    """

    def __init__(self, mapping: Sequence[tuple[str, str]] | Mapping[str, str]):
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        self.targets: dict[str, str] = {}
        self.spelling: dict[str, str] = {}
        for value, target in pairs:
            key, target = normalise(value), target.strip().lower()  # slots are lower case: Footwear=Shoes is shoes
            if not key:
                raise ValueError(f"--category_map {value}={target}: the value has no letter or digit")
            if "," in target or target != " ".join(target.split()):
                raise ValueError(f"--category_map {value}={target}: a slot name has no comma and no inner spaces")
            if self.targets.get(key, target) != target:
                raise ValueError(
                    f"--category_map maps {self.spelling[key]!r} and {value!r} (the same value once case, accents "
                    f"and punctuation are ignored) to two slots, {self.targets[key]} and {target}"
                )
            self.targets[key] = target
            self.spelling.setdefault(key, value)
        self.unmapped: Counter = Counter()
        self.used: set[str] = set()
        self._first: dict[str, str] = {}

    def __call__(self, values: Sequence[str]) -> str:
        key = normalise(values[0])
        if key in self.targets:
            self.used.add(key)
            return self.targets[key] or UNMAPPED_CATEGORY
        self.unmapped[self._first.setdefault(key, values[0] or "(empty)")] += 1
        return UNMAPPED_CATEGORY

    def unused(self) -> list[str]:
        """The map's values that no product has (a typo?)."""
        return [self.spelling[key] for key in self.targets if key not in self.used]


def text_title(columns: Sequence[str], fallback: str) -> Callable[[Mapping[str, str]], str]:
    """The title rule of `convert-csv`: the non-empty `columns` joined with spaces (whitespace collapsed, Unicode
    NFC), or the `fallback` column's value when they are all empty."""

    def title(row: Mapping[str, str]) -> str:
        text = " ".join(" ".join(row.get(column, "") for column in columns).split())
        return unicodedata.normalize("NFC", text or " ".join(row.get(fallback, "").split()))

    return title


def _table_file(path: str | os.PathLike, encoding: str, delimiter: str | None) -> TableFile:
    return TableFile(Path(path), str(path), encoding=encoding, delimiter=delimiter)


def _check_mapped(tables: ImportedTables, mapping: CategoryMap, products: TableFile, column: str) -> None:
    """Refuse a conversion where no product fills a slot: the map names none of the table's values."""
    if any(meta["semantic_category"] != UNMAPPED_CATEGORY for meta in tables.metadata.values()):
        return
    common = ", ".join(f"{value} {count}" for value, count in mapping.unmapped.most_common(8))
    raise PolyvoreFormatError(
        f"{products.name}: no product is mapped to a slot: --category_map names none of the values of "
        f"--category_column '{column}' (most common: {common}); e.g. --category_map 'Footwear=shoes'"
    )


def convert_csv(
    products: str | os.PathLike,
    outfits: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    id_column: str,
    category_column: str,
    category_map: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    title_columns: Sequence[str] = (),
    image_column: str | None = None,
    image_root: str | os.PathLike | None = None,
    outfit_id_column: str | None = None,
    outfit_item_column: str | None = None,
    outfit_items_column: str | None = None,
    item_separator: str = ";",
    split_column: str | None = None,
    seed: int = 0,
    with_images: bool = True,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Write a products table and an outfits table as a raw Polyvore Outfits folder in `output_dir`.

    Columns are named as on the command line (`convert-csv --help`): the outfits are one row per member
    (`outfit_id_column` + `outfit_item_column`) or one row per outfit (`outfit_items_column`, with an optional
    `outfit_id_column`). `image_root` defaults to the products table's folder. Returns the summary (what was written,
    what was counted and skipped). Raises `ValueError` (`PolyvoreFormatError` for the data) with one line naming the
    file, flag or column; nothing is written then, and the inputs are never modified.
    """
    if (outfit_item_column is None) == (outfit_items_column is None):
        raise ValueError(
            "give one of --outfit_item_column (one row per outfit member, with --outfit_id_column) and "
            "--outfit_items_column (one row per outfit, its product ids in one cell)"
        )
    if outfit_item_column is not None and outfit_id_column is None:
        raise ValueError("--outfit_item_column needs --outfit_id_column (the outfit of each row)")
    if not item_separator.strip():
        raise ValueError(f"--item_separator {item_separator!r}: expected a visible character, e.g. ';' or '|'")
    if image_root is not None and image_column is None:
        raise ValueError("--image_root needs --image_column (the column of the photo paths)")
    mapping = CategoryMap(category_map)
    root = None
    if with_images and image_column is not None:
        root = Path(image_root) if image_root is not None else Path(products).parent
    inputs = {"image_root": root, "products": products, "outfits": outfits}  # the widest first: errors name it
    check_output_dir(Path(output_dir), overwrite, inputs, marker=MARKER_FILE)
    if root is not None and not root.is_dir():
        raise PolyvoreFormatError(f"--image_root {str(root)!r}: folder not found (the photo paths are relative to it)")
    flags = {column: "--title_columns" for column in title_columns}
    flags |= {image_column: "--image_column", category_column: "--category_column", id_column: "--id_column"}
    columns = [id_column, category_column, *title_columns] + ([image_column] if image_column else [])
    catalogue = CatalogueRecipe(
        id_column=id_column,
        category_columns=(category_column,),
        semantic_category=mapping,
        title=text_title(title_columns, category_column),
        image_column=image_column,
        required_columns=tuple(dict.fromkeys(columns)),
        flags={column: flag for column, flag in flags.items() if column},
    )
    outfit_flags = {outfit_id_column: "--outfit_id_column", outfit_item_column: "--outfit_item_column"}
    outfit_flags |= {outfit_items_column: "--outfit_items_column", split_column: "--split_column"}
    outfit_flags = {column: flag for column, flag in outfit_flags.items() if column}
    outfit_recipe = OutfitRecipe(
        id_column=outfit_id_column,
        item_column=outfit_item_column,
        items_column=outfit_items_column,
        separator=item_separator,
        split_column=split_column,
        flags=outfit_flags,
    )
    products_file = _table_file(products, encoding, delimiter)
    outfits_file = _table_file(outfits, encoding, delimiter)
    tables = read_tables(products_file, outfits_file, catalogue, outfit_recipe, root, seed)
    _check_mapped(tables, mapping, products_file, category_column)
    parameters = {
        "columns": {
            "id": id_column,
            "category": category_column,
            "title": list(title_columns),
            "image": image_column,
            "outfit_id": outfit_id_column,
            "outfit_item": outfit_item_column,
            "outfit_items": outfit_items_column,
            "split": split_column,
        },
        "category_map": {mapping.spelling[key]: target for key, target in mapping.targets.items()},
        "item_separator": item_separator if outfit_items_column else None,
        "seed": None if split_column else seed,
    }

    def describe(summary: dict) -> dict:
        summary["unmapped_categories"] = dict(mapping.unmapped.most_common())
        summary["unused_category_map"] = mapping.unused()
        names = {"products": products_file.path.name, "outfits": outfits_file.path.name}
        return {"converter": "dataset_builder convert-csv", **names, **parameters, "summary": summary}

    summary = write_raw_folder(
        tables,
        output_dir,
        overwrite=overwrite,
        inputs=inputs,
        marker_file=MARKER_FILE,
        marker=describe,
        outfit_title=lambda set_id: {"url_name": f"outfit-{set_id}", "title": f"outfit {set_id}"},
    )
    files = {"products_file": str(products), "outfits_file": str(outfits), "output_dir": str(output_dir)}
    return {**files, **parameters, **summary}


__all__ = [
    "MARKER_FILE",
    "UNMAPPED_CATEGORY",
    "CatalogueRecipe",
    "CategoryMap",
    "ImportedTables",
    "OutfitRecipe",
    "Table",
    "TableFile",
    "convert_csv",
    "normalise",
    "read_catalogue",
    "read_outfits",
    "read_table",
    "read_tables",
    "split_outfits",
    "text_title",
    "valid_item_id",
    "write_raw_folder",
]
