"""Reading and validating a raw Polyvore Outfits folder (the official download layout), once and fast."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageFile
from transformers.utils import logging

from umbert_hf.utils.files import regular_file_inside
from umbert_hf.utils.images import check_image_size

logger = logging.get_logger(__name__)

METADATA_FILE = "polyvore_item_metadata.json"
OUTFIT_TITLES_FILE = "polyvore_outfit_titles.json"
CATEGORIES_FILE = "categories.csv"
IMAGES_DIR = "images"
SPLIT_TYPES = ("nondisjoint", "disjoint")
# official file stem -> `datasets` split name
SPLIT_FILES = {"train": "train", "valid": "validation", "test": "test"}
SPLIT_PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))


class PolyvoreFormatError(ValueError):
    """Bad input to the Polyvore builder; the message names the file or field and what was expected."""


@dataclass
class RawOutfit:
    """One outfit of a split file: `members` are `(index, item_id)` pairs in file order."""

    set_id: str
    members: list[tuple[int, str]]


@dataclass
class FitbQuestion:
    """One question of an official `fill_in_blank_*.json` file (references are `<set_id>_<index>`)."""

    question: list[str]
    answers: list[str]
    blank_position: int | None


@dataclass
class PolyvoreRaw:
    """The parsed raw folder: item metadata, one split type's outfits and the official FITB/compatibility files."""

    root: Path
    split_type: str
    item_category: dict[str, str]  # item_id -> semantic category
    item_title: dict[str, str]  # item_id -> title (falls back to `url_name`)
    outfits: dict[str, list[RawOutfit]]  # split -> outfits, file order
    compatibility: dict[str, list[tuple[int, list[str]]] | None]  # split -> (label, refs); None: file absent
    fitb: dict[str, list[FitbQuestion] | None]  # split -> questions; None: file absent
    duplicate_set_ids: dict[str, int] = field(default_factory=dict)  # split -> outfits dropped as repeated
    shared_set_ids: dict[str, int] = field(default_factory=dict)  # "train-test" -> set ids found in both splits

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    def image_path(self, item_id: str) -> Path:
        return self.root / IMAGES_DIR / f"{item_id}.jpg"

    def reference_index(self, split: str) -> dict[str, str]:
        """`<set_id>_<index>` -> item id for every member of every outfit of `split`."""
        index = {}
        for outfit in self.outfits[split]:
            prefix = outfit.set_id + "_"
            for member_index, item_id in outfit.members:
                index[prefix + str(member_index)] = item_id
        return index


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load_json(path: Path, root: Path | None = None):
    """`json.load` with a `PolyvoreFormatError` naming the file, line and column on failure."""
    name = _relative(path, root) if root is not None else str(path)
    if not path.is_file():
        raise PolyvoreFormatError(f"{name}: file not found (expected at {path})")
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read())
    except json.JSONDecodeError as error:
        raise PolyvoreFormatError(
            f"{name}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from error
    except UnicodeDecodeError as error:
        raise PolyvoreFormatError(f"{name}: not UTF-8 text ({error.reason} at byte {error.start})") from error


def _read_metadata(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    metadata = load_json(root / METADATA_FILE, root)
    if not isinstance(metadata, dict):
        raise PolyvoreFormatError(
            f"{METADATA_FILE}: expected a JSON object {{item_id: {{...}}}}, got {type(metadata).__name__}"
        )
    item_category, item_title = {}, {}
    for raw_id, meta in metadata.items():
        item_id = raw_id.strip()  # ids and categories are compared as strings: " 101" and "tops " must match
        try:
            category = meta["semantic_category"]
            title = meta.get("title") or meta.get("url_name") or ""
        except (KeyError, TypeError, AttributeError):
            if not isinstance(meta, dict):
                raise PolyvoreFormatError(
                    f"{METADATA_FILE}: item '{raw_id}' should be an object, got {type(meta).__name__}"
                ) from None
            raise PolyvoreFormatError(f"{METADATA_FILE}: item '{raw_id}' has no 'semantic_category'") from None
        if not isinstance(category, str) or not category.strip():
            raise PolyvoreFormatError(
                f"{METADATA_FILE}: item '{raw_id}' has 'semantic_category' {category!r}, expected a non-empty string"
            )
        if not isinstance(title, str):
            raise PolyvoreFormatError(f"{METADATA_FILE}: item '{raw_id}' has 'title' {title!r}, expected a string")
        if not item_id:
            raise PolyvoreFormatError(f"{METADATA_FILE}: item {raw_id!r} has an empty id")
        if item_id in item_category:
            raise PolyvoreFormatError(
                f"{METADATA_FILE}: item {raw_id!r} repeats item '{item_id}' once whitespace is stripped"
            )
        item_category[item_id] = category.strip()
        item_title[item_id] = title
    return item_category, item_title


def _outfit_error(name: str, position: int, entry, problem: str) -> PolyvoreFormatError:
    set_id = entry.get("set_id") if isinstance(entry, dict) else None
    where = f"outfit #{position}" + (f" (set_id '{set_id}')" if set_id is not None else "")
    return PolyvoreFormatError(f"{name}: {where} {problem}")


def _read_outfits(path: Path, root: Path, strict: bool) -> tuple[list[RawOutfit], int]:
    name = _relative(path, root)
    entries = load_json(path, root)
    if not isinstance(entries, list):
        raise PolyvoreFormatError(f"{name}: expected a JSON list of outfits, got {type(entries).__name__}")
    outfits, seen, duplicates = [], set(), 0
    for position, entry in enumerate(entries):
        try:
            set_id = str(entry["set_id"]).strip()
            members = [(int(member["index"]), str(member["item_id"]).strip()) for member in entry["items"]]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _describe_outfit_problem(name, position, entry) from None
        if not set_id:
            raise _outfit_error(name, position, entry, "has an empty 'set_id'")
        if not all(item_id for _, item_id in members):
            raise _outfit_error(name, position, entry, "has an item with an empty 'item_id'")
        if set_id in seen:
            if strict:
                raise _outfit_error(name, position, entry, "repeats a set_id already seen in this file")
            duplicates += 1
            continue
        seen.add(set_id)
        outfits.append(RawOutfit(set_id, members))
    return outfits, duplicates


def _describe_outfit_problem(name: str, position: int, entry) -> PolyvoreFormatError:
    # slow path, only on failure: say precisely what is wrong
    if not isinstance(entry, dict):
        return _outfit_error(name, position, entry, f"should be an object, got {type(entry).__name__}")
    for key in ("set_id", "items"):
        if key not in entry:
            return _outfit_error(name, position, entry, f"has no '{key}'")
    if not isinstance(entry["items"], list):
        return _outfit_error(name, position, entry, "has 'items' that is not a list")
    for number, member in enumerate(entry["items"]):
        if not isinstance(member, dict):
            return _outfit_error(name, position, entry, f"item #{number} should be an object")
        for key in ("item_id", "index"):
            if key not in member:
                return _outfit_error(name, position, entry, f"item #{number} has no '{key}'")
        try:
            int(member["index"])
        except (TypeError, ValueError):
            return _outfit_error(
                name, position, entry, f"item #{number} has 'index' {member['index']!r}, expected an integer"
            )
    return _outfit_error(name, position, entry, "is malformed")


def _read_compatibility(path: Path, root: Path) -> list[tuple[int, list[str]]] | None:
    if not path.is_file():
        return None
    name = _relative(path, root)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if tokens[0] not in ("0", "1"):
                raise PolyvoreFormatError(
                    f"{name}: line {line_number} starts with {tokens[0]!r}, expected a label 1 or 0 then references"
                )
            rows.append((int(tokens[0]), tokens[1:]))
    return rows


def _read_fitb(path: Path, root: Path) -> list[FitbQuestion] | None:
    if not path.is_file():
        return None
    name = _relative(path, root)
    entries = load_json(path, root)
    if not isinstance(entries, list):
        raise PolyvoreFormatError(f"{name}: expected a JSON list of questions, got {type(entries).__name__}")
    questions = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise PolyvoreFormatError(f"{name}: question #{position} should be an object")
        for key in ("question", "answers"):
            value = entry.get(key)
            if not isinstance(value, list) or not all(isinstance(ref, str) for ref in value):
                raise PolyvoreFormatError(
                    f"{name}: question #{position} has '{key}' {value!r}, expected a list of '<set_id>_<index>' strings"
                )
        blank = entry.get("blank_position")
        question, answers = [ref.strip() for ref in entry["question"]], [ref.strip() for ref in entry["answers"]]
        questions.append(FitbQuestion(question, answers, blank if isinstance(blank, int) else None))
    return questions


def read_raw(raw_dir: str | os.PathLike, split_type: str = "nondisjoint", strict: bool = False) -> PolyvoreRaw:
    """Read and validate the parts of a raw Polyvore Outfits folder that the builder uses.

    Required: `polyvore_item_metadata.json` and `<split_type>/{train,valid,test}.json`. The official
    `compatibility_*.txt` and `fill_in_blank_*.json` files are read when present. Images are checked later
    (`check_images`), only for the items that can reach the dataset. Ids, set ids and semantic categories are
    stripped of surrounding whitespace. A set id in two splits is counted (`shared_set_ids`), or fatal with `strict`.
    """
    root = Path(raw_dir)
    if split_type not in SPLIT_TYPES:
        raise PolyvoreFormatError(f"split_type {split_type!r} is not one of {SPLIT_TYPES}")
    if not root.is_dir():
        raise PolyvoreFormatError(f"raw folder {root} not found (expected the unpacked Polyvore Outfits download)")
    split_dir = root / split_type
    if not split_dir.is_dir():
        raise PolyvoreFormatError(f"{split_type}/: folder not found in {root}")
    item_category, item_title = _read_metadata(root)
    outfits, compatibility, fitb, duplicates = {}, {}, {}, {}
    for stem, split in SPLIT_FILES.items():
        outfits[split], duplicates[split] = _read_outfits(split_dir / f"{stem}.json", root, strict)
        compatibility[split] = _read_compatibility(split_dir / f"compatibility_{stem}.txt", root)
        fitb[split] = _read_fitb(split_dir / f"fill_in_blank_{stem}.json", root)
    shared = _shared_set_ids(outfits, split_type, strict)
    return PolyvoreRaw(root, split_type, item_category, item_title, outfits, compatibility, fitb, duplicates, shared)


def _shared_set_ids(outfits: dict[str, list[RawOutfit]], split_type: str, strict: bool) -> dict[str, int]:
    """Count the set ids found in two splits ("train-test": n): the same outfit in train and test leaks the answer."""
    stems = {split: stem for stem, split in SPLIT_FILES.items()}
    set_ids = {split: {outfit.set_id for outfit in split_outfits} for split, split_outfits in outfits.items()}
    shared = {}
    for first, second in SPLIT_PAIRS:
        both = set_ids[first] & set_ids[second]
        shared[f"{first}-{second}"] = len(both)
        if not both:
            continue
        example = next(outfit.set_id for outfit in outfits[second] if outfit.set_id in both)
        message = (
            f"{split_type}/{stems[second]}.json: set_id '{example}' is also in {split_type}/{stems[first]}.json "
            f"({len(both)} set ids in both); an outfit must be in one split only"
        )
        if strict:
            raise PolyvoreFormatError(message)
        logger.warning("%s (kept in both; --strict refuses this)", message)
    return shared


def check_images(
    raw: PolyvoreRaw, item_ids, strict: bool = False, num_proc: int | None = None
) -> tuple[set[str], set[str]]:
    """Return `(missing, unreadable)` among `item_ids`: no `images/<item_id>.jpg`, or bytes PIL cannot decode
    (a truncated JPEG included).

    With `strict`, the first bad image (in item id order) raises `PolyvoreFormatError`. With `num_proc` > 1 the images
    are decoded by that many processes (`datasets`' name for it); the answer is the same.
    """
    images_dir = raw.images_dir
    if not images_dir.is_dir():
        raise PolyvoreFormatError(
            f"{IMAGES_DIR}/: folder not found in {raw.root} (build with --no_images to skip images)"
        )
    with os.scandir(images_dir) as entries:
        present = {entry.name for entry in entries}
    missing, readable_candidates = set(), []
    for item_id in sorted(item_ids):
        # A link leaving the raw folder (to a user's file elsewhere) counts as missing: it is never read nor copied.
        if f"{item_id}.jpg" not in present or not regular_file_inside(raw.image_path(item_id), raw.root):
            missing.add(item_id)
        else:
            readable_candidates.append(item_id)
    errors = decode_errors([str(raw.image_path(item_id)) for item_id in readable_candidates], num_proc)
    unreadable = {readable_candidates[index]: error for index, error in errors}
    if strict and (missing or unreadable):
        item_id = min(missing | set(unreadable))
        if item_id in missing:
            raise PolyvoreFormatError(f"{IMAGES_DIR}/{item_id}.jpg: image of item '{item_id}' not found")
        raise PolyvoreFormatError(
            f"{IMAGES_DIR}/{item_id}.jpg: unreadable image of item '{item_id}' ({unreadable[item_id]})"
        )
    return missing, set(unreadable)


def _decode_errors_of(paths: list[str]) -> list[tuple[int, str]]:
    """(position, error) of each file of `paths` that `read_image_bytes` refuses."""
    errors = []
    for index, path in enumerate(paths):
        try:
            read_image_bytes(Path(path))
        except Exception as error:  # PIL raises many types on corrupt files
            errors.append((index, str(error)))
    return errors


def decode_errors(paths: list[str], num_proc: int | None = None) -> list[tuple[int, str]]:
    """(position, error) of each image of `paths` that does not decode, in order; `num_proc` processes share them
    in contiguous chunks. The workers fork from a fresh server process, never from this one: a fork of a process
    holding threads (arrow's, torch's) may deadlock."""
    if not num_proc or num_proc < 2 or len(paths) < 2 * num_proc:
        return _decode_errors_of(paths)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(paths) // num_proc)
    chunks = [paths[start : start + size] for start in range(0, len(paths), size)]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # the server imports this module once; each worker forks from it
    with ProcessPoolExecutor(num_proc, mp_context=context) as pool:
        results = list(pool.map(_decode_errors_of, chunks))
    return [(number * size + index, error) for number, errors in enumerate(results) for index, error in errors]


def read_image_bytes(path: Path) -> bytes:
    """The file's bytes, after checking that PIL decodes them to the last pixel.

    `verify()` checks the structure (and PNG checksums) but reads no JPEG scan data, so a JPEG cut short passes it;
    the image is therefore reopened (verify leaves it unusable) and decoded with `load()`, which raises on truncation.
    A JPEG is decoded at 1/8 scale (`draft`): every byte of its scan data is still read, in half the time.
    """
    data = path.read_bytes()
    check_image_size(io.BytesIO(data), name=path.name)  # a decompression bomb is refused before it is decoded
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES  # other code may set it; it would pad a truncated image silently
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        with Image.open(io.BytesIO(data)) as image:
            image.draft(image.mode, (1, 1))  # JPEG only; other formats ignore it
            image.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    return data


__all__ = [
    "FitbQuestion",
    "PolyvoreFormatError",
    "PolyvoreRaw",
    "RawOutfit",
    "check_images",
    "decode_errors",
    "load_json",
    "read_image_bytes",
    "read_raw",
]
