"""Outfit data for training and evaluation: dataset configs turned into tensors of embeddings-table rows.

Every outfit becomes a (slots,) row of item indices into the embeddings table (which is also the model catalogue),
so umBERT looks embeddings up by row and WumBERT uses the rows as `input_ids`. Records whose items are missing from
the table are counted and reported, never silently dropped; beyond `MAX_UNUSABLE_SHARE` of a split's outfits,
`check_usable` refuses the data before any training. An item whose table category is not its slot is refused at once.
"""

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.utils import logging

from ..utils.paths import first_line
from .embeddings import EmbeddingsTable, read_embeddings_table

logger = logging.get_logger(__name__)

# The largest share of a split's outfits that may be skipped for items missing from the embeddings table: beyond it,
# the table is not this dataset's and the metrics would describe another set of outfits.
MAX_UNUSABLE_SHARE = 0.10
NUM_EXAMPLES = 5  # item ids quoted in an error message


@dataclass
class OutfitRows:
    """Outfits as table rows: `rows` (outfits, slots); `skipped` counts outfits with an item missing from the table."""

    outfit_ids: list[str]
    rows: torch.LongTensor
    skipped: int = 0
    missing_items: list[str] = field(default_factory=list)  # a few item ids missing from the table, for messages


@dataclass
class FitbQuestions:
    """Fill-in-the-blank questions: context outfit rows, blank slot, candidate rows and the right candidate."""

    outfit_rows: torch.LongTensor  # (questions, slots); the blank slot holds the right item
    blanks: torch.LongTensor  # (questions,)
    candidates: torch.LongTensor  # (questions, candidates)
    labels: torch.LongTensor  # (questions,)
    skipped: int = 0
    missing_items: list[str] = field(default_factory=list)


@dataclass
class CompatibilityOutfits:
    """Outfits with a 0/1 compatibility label."""

    rows: torch.LongTensor  # (outfits, slots)
    labels: torch.LongTensor  # (outfits,)
    skipped: int = 0
    missing_items: list[str] = field(default_factory=list)


def local_fingerprint(folder: str | os.PathLike) -> str | None:
    """A digest of a local dataset folder's files (path, size, modification time in ns), or None for a Hub id.

    `datasets` keys its cache of a local folder on the paths and whole-second times of its files: a parquet file
    rewritten within the same second, even as a PNG, was served from the cache with its old rows."""
    if not os.path.isdir(folder):
        return None
    digest = hashlib.sha1()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and ".cache" not in path.relative_to(folder).parts:
            stat = path.stat()
            digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_dataset_config(dataset: str | os.PathLike, config_name: str, cache_dir: str | None = None):
    """`datasets.load_dataset(dataset, config_name)`: the package's one reader of a built dataset, so that a missing,
    mistyped or damaged one (a truncated or empty parquet file, a file instead of a folder, a Hub id while offline) is
    one `ValueError` naming the dataset and the config, never a traceback."""
    import datasets
    from datasets.exceptions import DatasetsError

    fingerprint = local_fingerprint(dataset)
    if fingerprint is not None:  # a local folder: its cache is keyed on its files, so an edited file is read again
        cache_dir = os.path.join(cache_dir or datasets.config.HF_DATASETS_CACHE, "umbert_hf_local", fingerprint)
    try:
        return datasets.load_dataset(str(dataset), config_name, cache_dir=cache_dir)
    except (OSError, ValueError, DatasetsError) as error:  # OSError: ConnectionError offline, FileNotFoundError
        cause = error
        while cause.__cause__ is not None:  # "An error occurred while generating the dataset" says little: its cause
            cause = cause.__cause__
        raise ValueError(
            f"Cannot load config {config_name!r} of dataset {str(dataset)!r} (missing or damaged): {first_line(cause)}"
        ) from None


def dataset_has_config(dataset: str | os.PathLike, config_name: str) -> bool:
    """Whether a dataset folder or Hub repo declares `config_name`."""
    import datasets

    try:
        return config_name in datasets.get_dataset_config_names(str(dataset))
    except Exception:
        return False


def _check_categories(
    columns: Sequence[Sequence[str]], expected: Sequence[str | Sequence[str]], table: EmbeddingsTable, what: str
) -> None:
    """Refuse an item whose category in the table is not the slot it fills in the dataset.

    `expected` holds, per column, its slot or one slot per record. Such an item would be ranked among the items of
    another slot (an index out of bounds deep in retrieval); items of the table left out of the catalogue (their
    category is no slot) count too, so that they are not reported as missing.
    """
    index, categories, excluded = table.index, table.categories, table.excluded_categories
    for column, slots in zip(columns, expected):
        for record, item_id in enumerate(column):
            row = index.get(item_id)
            category = categories[row] if row is not None else excluded.get(item_id)
            slot = slots if isinstance(slots, str) else slots[record]
            if category is not None and category != slot:
                raise ValueError(
                    f"{what}: item {item_id!r} fills slot {slot!r} but has category {category!r} in {table.source}; "
                    "the table's category of each item must be its slot in the dataset."
                )


def _rows_of_columns(
    columns: Sequence[Sequence[str]], table: EmbeddingsTable, what: str
) -> tuple[torch.LongTensor, torch.BoolTensor, list[str]]:
    """(records, columns) table rows, a mask of records whose items are all in the table, and a few missing ids."""
    index = table.index
    num_records = len(columns[0]) if columns else 0
    rows = torch.full((num_records, len(columns)), -1, dtype=torch.long)
    missing_items: dict[str, None] = {}  # ordered, distinct
    for position, column in enumerate(columns):
        rows[:, position] = torch.tensor([index.get(item_id, -1) for item_id in column], dtype=torch.long)
        for record in torch.nonzero(rows[:, position] < 0).flatten().tolist():
            if len(missing_items) >= NUM_EXAMPLES:
                break
            missing_items[column[record]] = None
    keep = (rows >= 0).all(dim=1)
    missing = int((~keep).sum())
    if missing:
        logger.warning(f"{what}: skipped {missing} of {num_records} records with items missing from {table.source}.")
    return rows, keep, list(missing_items)


def outfit_rows(split, slots: Sequence[str], table: EmbeddingsTable, what: str = "outfits") -> OutfitRows:
    """Rows of every outfit of a `datasets` split (columns `outfit_id` and one per slot)."""
    missing_columns = [slot for slot in slots if slot not in split.column_names]
    if missing_columns:
        raise ValueError(f"{what}: missing slot column(s) {missing_columns}; the split has {split.column_names}.")
    columns = [list(split[slot]) for slot in slots]
    _check_categories(columns, slots, table, what)
    rows, keep, missing_items = _rows_of_columns(columns, table, what)
    outfit_ids = split["outfit_id"] if "outfit_id" in split.column_names else [str(i) for i in range(len(split))]
    kept_ids = [outfit_id for outfit_id, kept in zip(outfit_ids, keep.tolist()) if kept]
    return OutfitRows(kept_ids, rows[keep], skipped=int((~keep).sum()), missing_items=missing_items)


def fitb_questions(
    fitb_split, outfits_split, slots: Sequence[str], table: EmbeddingsTable, what: str = "fitb"
) -> FitbQuestions:
    """Join the `fitb` questions with their outfits (by `outfit_id`) and turn everything into table rows."""
    outfits = outfit_rows(outfits_split, slots, table, what=f"{what} outfits")
    outfit_position = {outfit_id: position for position, outfit_id in enumerate(outfits.outfit_ids)}
    slot_index = {slot: position for position, slot in enumerate(slots)}
    unknown = sorted(set(fitb_split["blank"]) - set(slot_index))
    if unknown:
        raise ValueError(f"{what}: unknown blank slot(s) {unknown}; the slots are {list(slots)}.")
    positions = torch.tensor([outfit_position.get(outfit_id, -1) for outfit_id in fitb_split["outfit_id"]])
    candidates = [list(column) for column in zip(*fitb_split["candidates"])] if len(fitb_split) else []
    _check_categories(candidates, [list(fitb_split["blank"])] * len(candidates), table, f"{what} candidates")
    candidate_rows, candidates_known, missing_items = _rows_of_columns(candidates, table, what)
    keep = (positions >= 0) & candidates_known
    skipped = int((~keep).sum())
    if skipped:
        logger.warning(
            f"{what}: skipped {skipped} of {len(fitb_split)} questions (outfit or candidate not resolvable)."
        )
    return FitbQuestions(
        outfit_rows=outfits.rows[positions[keep]],
        blanks=torch.tensor([slot_index[slot] for slot in fitb_split["blank"]], dtype=torch.long)[keep],
        candidates=candidate_rows[keep],
        labels=torch.tensor(fitb_split["label"], dtype=torch.long)[keep],
        skipped=skipped,
        missing_items=list(dict.fromkeys(outfits.missing_items + missing_items))[:NUM_EXAMPLES],
    )


def compatibility_outfits(
    split, slots: Sequence[str], table: EmbeddingsTable, what: str = "compatibility"
) -> CompatibilityOutfits:
    """Rows and labels of a `compatibility` split."""
    columns = [list(split[slot]) for slot in slots]
    _check_categories(columns, slots, table, what)
    rows, keep, missing_items = _rows_of_columns(columns, table, what)
    labels = torch.tensor(split["label"], dtype=torch.long)
    return CompatibilityOutfits(
        rows=rows[keep], labels=labels[keep], skipped=int((~keep).sum()), missing_items=missing_items
    )


def check_usable(
    what: str,
    kept: int,
    skipped: int,
    missing_items: Sequence[str],
    table: EmbeddingsTable,
    max_share: float | None = MAX_UNUSABLE_SHARE,
    unit: str = "outfits",
) -> None:
    """Refuse a split left empty by items missing from the table, or, with `max_share`, one that lost more than
    that share of its records: training would waste epochs and fail on the missing metric, or report metrics of
    another set of outfits. Under the share, the skipped records are only counted (`skipped_*` in metrics.json)."""
    total = kept + skipped
    if total == 0 or skipped == 0:
        return
    share = skipped / total
    if kept > 0 and (max_share is None or share <= max_share):
        return
    limit = "none is left" if kept == 0 else f"more than the {max_share:.0%} allowed"
    raise ValueError(
        f"{what}: {skipped} of {total} {unit} ({share:.0%}) have items missing from {table.source}, {limit}; "
        f"e.g. missing item ids {list(missing_items)[:NUM_EXAMPLES]}; was it made for this dataset's catalogue?"
    )


class CatalogueItemImages(Mapping):
    """Item id -> PIL image of a built dataset's catalogue, decoded only when looked up (a real catalogue has tens of
    thousands of photos; a completion shows a handful)."""

    def __init__(self, catalogue):
        self._images = catalogue.select_columns(["image"])
        self._row_of = {item_id: row for row, item_id in enumerate(catalogue["item_id"])}

    def __getitem__(self, item_id: str):
        return self._images[self._row_of[item_id]]["image"]

    def __iter__(self) -> Iterator[str]:
        return iter(self._row_of)

    def __len__(self) -> int:
        return len(self._row_of)


def load_catalogue_details(dataset: str | os.PathLike) -> tuple[dict[str, str], Mapping]:
    """`(titles, images)` of a built dataset's catalogue: item id -> title, and item id -> PIL image decoded on
    lookup (empty when the dataset was built without images). `ValueError` naming the dataset when it cannot be read."""
    catalogue = load_dataset_config(dataset, "catalogue")["train"]
    titles = dict(zip(catalogue["item_id"], catalogue["title"]))
    images = CatalogueItemImages(catalogue) if "image" in catalogue.column_names else {}
    return titles, images


class RowsDataset(torch.utils.data.Dataset):
    """A tensor of outfit rows as a map-style dataset (one (slots,) row per item); batches collate to (B, slots)."""

    def __init__(self, rows: torch.LongTensor):
        self.rows = rows

    def __len__(self) -> int:
        return self.rows.shape[0]

    def __getitem__(self, index: int) -> torch.LongTensor:
        return self.rows[index]


def check_shares_item_ids(columns: Iterable[Iterable[str]], table: EmbeddingsTable, what: str) -> None:
    """Refuse a table with none of the item ids of `columns` (another dataset's table, or ids written otherwise,
    e.g. with a prefix): every outfit would be skipped, and the error should say why. Stops at the first known id."""
    known = table.index.keys() | table.excluded_categories.keys()
    examples: dict[str, None] = {}
    for column in columns:
        for item_id in column:
            if item_id in known:
                return
            if len(examples) < 3:
                examples[item_id] = None
    if examples:
        raise ValueError(
            f"{table.source} has none of the item ids of {what}: e.g. {list(examples)} are missing from it, "
            f"whose ids look like {table.item_ids[:3]}."
        )


def catalogue_from_table(table: EmbeddingsTable, slots: Sequence[str]) -> EmbeddingsTable:
    """The table restricted to the slot categories (items of other categories cannot fill a slot).

    The left-out items keep their category in `excluded_categories`, for error messages. Raises `ValueError` when
    no category of the table is a slot: the table labels its items otherwise (e.g. semantic categories).
    """
    slot_set = set(slots)
    keep = [row for row, category in enumerate(table.categories) if category in slot_set]
    if len(keep) == len(table):
        return table
    if not keep:
        categories = sorted(set(table.categories))
        shown = categories[:10] + (["..."] if len(categories) > 10 else [])
        raise ValueError(
            f"{table.source}: none of its categories {shown} is a slot of the dataset {list(slots)}; "
            "its column 'category' must hold the slot of each item."
        )
    logger.info(f"Catalogue: kept {len(keep)} of {len(table)} items whose category is a slot {list(slots)}.")
    kept = set(keep)
    return EmbeddingsTable(
        [table.item_ids[row] for row in keep],
        [table.categories[row] for row in keep],
        table.embeddings[keep],
        dict(table.metadata),
        source=table.source,
        excluded_categories={
            **table.excluded_categories,
            **{table.item_ids[row]: table.categories[row] for row in range(len(table)) if row not in kept},
        },
    )


@dataclass
class OutfitData:
    """Everything a phase needs, as catalogue rows."""

    catalogue: EmbeddingsTable
    slots: list[str]
    outfits: dict[str, OutfitRows] = field(default_factory=dict)
    fitb: dict[str, FitbQuestions] = field(default_factory=dict)
    compatibility: dict[str, CompatibilityOutfits] = field(default_factory=dict)

    @property
    def catalogue_categories(self) -> torch.LongTensor:
        slot_index = {slot: position for position, slot in enumerate(self.slots)}
        return torch.tensor([slot_index[category] for category in self.catalogue.categories], dtype=torch.long)

    def skipped_counts(self) -> dict[str, int]:
        counts = {f"skipped_outfits_{split}": rows.skipped for split, rows in self.outfits.items()}
        counts.update({f"skipped_fitb_{split}": questions.skipped for split, questions in self.fitb.items()})
        counts.update({f"skipped_compatibility_{split}": rows.skipped for split, rows in self.compatibility.items()})
        return counts


def load_outfit_data(
    dataset: str | os.PathLike,
    catalogue: EmbeddingsTable,
    slots: list[str],
    splits: tuple[str, ...] = ("train", "validation", "test"),
    train_config: str = "outfits",
) -> OutfitData:
    """Outfits of every split, plus the `fitb` and `compatibility` configs where the dataset has them.

    Raises `ValueError` before any training when the catalogue does not fit the dataset: it has none of the dataset's
    item ids, an item's category is not its slot, more than `MAX_UNUSABLE_SHARE` of a split's outfits have items
    missing from it, or a `fitb`/`compatibility` split is left empty. Fewer skipped records are only counted.
    """
    data = OutfitData(catalogue=catalogue, slots=list(slots))
    outfits = load_dataset_config(dataset, "outfits")
    check_shares_item_ids(
        (
            outfits[split][slot]
            for split in splits
            if split in outfits
            for slot in slots
            if slot in outfits[split].column_names
        ),
        catalogue,
        f"dataset {str(dataset)!r}",
    )
    for split in splits:
        if split not in outfits:
            continue
        config = train_config if split == "train" else "outfits"
        source = load_dataset_config(dataset, config)["train"] if config != "outfits" else outfits[split]
        rows = data.outfits[split] = outfit_rows(source, slots, catalogue, what=f"{config}/{split}")
        check_usable(f"{config}/{split}", len(rows.rows), rows.skipped, rows.missing_items, catalogue)
    if dataset_has_config(dataset, "fitb"):
        fitb = load_dataset_config(dataset, "fitb")
        for split in splits:
            if split in fitb and split in outfits:
                questions = data.fitb[split] = fitb_questions(
                    fitb[split], outfits[split], slots, catalogue, what=f"fitb/{split}"
                )
                check_usable(
                    f"fitb/{split}",
                    len(questions.labels),
                    questions.skipped,
                    questions.missing_items,
                    catalogue,
                    max_share=None,
                    unit="questions",
                )
    if dataset_has_config(dataset, "compatibility"):
        compatibility = load_dataset_config(dataset, "compatibility")
        for split in splits:
            if split in compatibility:
                records = data.compatibility[split] = compatibility_outfits(
                    compatibility[split], slots, catalogue, what=f"compatibility/{split}"
                )
                check_usable(
                    f"compatibility/{split}",
                    len(records.labels),
                    records.skipped,
                    records.missing_items,
                    catalogue,
                    max_share=None,
                )
    if "train" in splits and ("train" not in data.outfits or len(data.outfits["train"].rows) == 0):
        raise ValueError(f"Dataset {str(dataset)!r} has no usable training outfits for slots {slots}.")
    return data


def read_catalogue(embeddings: str | os.PathLike, slots: list[str]) -> EmbeddingsTable:
    """The embeddings table restricted to the slot categories.

    Raises `FileNotFoundError` or a one-line `ValueError` naming the file (see `read_embeddings_table`), and a
    `ValueError` when no category of the table is a slot.
    """
    return catalogue_from_table(read_embeddings_table(embeddings), slots)


def dataset_slots(dataset: str | os.PathLike, default: list[str] | None = None) -> list[str]:
    """Slot names of a built dataset (the `outfits` columns other than `outfit_id`), in column order.

    Raises `ValueError` when the `outfits` config has no split or no slot column and no `default` is given.
    """
    splits = load_dataset_config(dataset, "outfits")
    if not splits:
        raise ValueError(f"Dataset {str(dataset)!r}: config 'outfits' has no split.")
    columns = next(iter(splits.values())).column_names
    slots = [column for column in columns if column != "outfit_id"]
    if not slots and not default:
        raise ValueError(
            f"Dataset {str(dataset)!r}: config 'outfits' has no slot column (columns {columns}); "
            "expected `outfit_id` and one item id column per slot."
        )
    return slots or list(default or [])


__all__ = [
    "CatalogueItemImages",
    "CompatibilityOutfits",
    "FitbQuestions",
    "MAX_UNUSABLE_SHARE",
    "OutfitData",
    "OutfitRows",
    "RowsDataset",
    "catalogue_from_table",
    "check_shares_item_ids",
    "check_usable",
    "compatibility_outfits",
    "dataset_has_config",
    "dataset_slots",
    "fitb_questions",
    "load_catalogue_details",
    "load_dataset_config",
    "load_outfit_data",
    "outfit_rows",
    "read_catalogue",
]
