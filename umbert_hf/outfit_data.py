"""Outfit data for training and evaluation: dataset configs turned into tensors of embeddings-table rows.

Every outfit becomes a (slots,) row of item indices into the embeddings table (which is also the model catalogue),
so umBERT looks embeddings up by row and WumBERT uses the rows as `input_ids`. Records whose items are missing from
the table are counted and reported, never silently dropped.
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .embeddings import EmbeddingsTable

logger = logging.getLogger(__name__)


@dataclass
class OutfitRows:
    """Outfits as table rows: `rows` (outfits, slots); `skipped` counts outfits with an item missing from the table."""

    outfit_ids: list[str]
    rows: torch.LongTensor
    skipped: int = 0


@dataclass
class FitbQuestions:
    """Fill-in-the-blank questions: context outfit rows, blank slot, candidate rows and the right candidate."""

    outfit_rows: torch.LongTensor  # (questions, slots); the blank slot holds the right item
    blanks: torch.LongTensor  # (questions,)
    candidates: torch.LongTensor  # (questions, candidates)
    labels: torch.LongTensor  # (questions,)
    skipped: int = 0


@dataclass
class CompatibilityOutfits:
    """Outfits with a 0/1 compatibility label."""

    rows: torch.LongTensor  # (outfits, slots)
    labels: torch.LongTensor  # (outfits,)
    skipped: int = 0


def load_dataset_config(dataset: str | os.PathLike, config_name: str):
    """`datasets.load_dataset(dataset, config_name)` with a clear error when the config or folder is missing."""
    import datasets

    try:
        return datasets.load_dataset(str(dataset), config_name)
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"Cannot load config {config_name!r} of dataset {str(dataset)!r}: {error}") from error


def dataset_has_config(dataset: str | os.PathLike, config_name: str) -> bool:
    """Whether a dataset folder or Hub repo declares `config_name`."""
    import datasets

    try:
        return config_name in datasets.get_dataset_config_names(str(dataset))
    except Exception:  # noqa: BLE001 - an unreachable repo simply has no such config
        return False


def _rows_of_columns(
    columns: Sequence[Sequence[str]], table: EmbeddingsTable, what: str
) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """(records, columns) table rows and a mask of records whose items are all in the table."""
    index = table.index
    num_records = len(columns[0]) if columns else 0
    rows = torch.full((num_records, len(columns)), -1, dtype=torch.long)
    for position, column in enumerate(columns):
        rows[:, position] = torch.tensor([index.get(item_id, -1) for item_id in column], dtype=torch.long)
    keep = (rows >= 0).all(dim=1)
    missing = int((~keep).sum())
    if missing:
        logger.warning(
            f"{what}: skipped {missing} of {num_records} records with items missing from the embeddings table."
        )
    return rows, keep


def outfit_rows(split, slots: Sequence[str], table: EmbeddingsTable, what: str = "outfits") -> OutfitRows:
    """Rows of every outfit of a `datasets` split (columns `outfit_id` and one per slot)."""
    missing_columns = [slot for slot in slots if slot not in split.column_names]
    if missing_columns:
        raise ValueError(f"{what}: missing slot column(s) {missing_columns}; the split has {split.column_names}.")
    rows, keep = _rows_of_columns([split[slot] for slot in slots], table, what)
    outfit_ids = split["outfit_id"] if "outfit_id" in split.column_names else [str(i) for i in range(len(split))]
    kept_ids = [outfit_id for outfit_id, kept in zip(outfit_ids, keep.tolist()) if kept]
    return OutfitRows(kept_ids, rows[keep], skipped=int((~keep).sum()))


def fitb_questions(fitb_split, outfits_split, slots: Sequence[str], table: EmbeddingsTable) -> FitbQuestions:
    """Join the `fitb` questions with their outfits (by `outfit_id`) and turn everything into table rows."""
    outfits = outfit_rows(outfits_split, slots, table, what="fitb outfits")
    outfit_position = {outfit_id: position for position, outfit_id in enumerate(outfits.outfit_ids)}
    slot_index = {slot: position for position, slot in enumerate(slots)}
    unknown = sorted(set(fitb_split["blank"]) - set(slot_index))
    if unknown:
        raise ValueError(f"fitb: unknown blank slot(s) {unknown}; the slots are {list(slots)}.")
    positions = torch.tensor([outfit_position.get(outfit_id, -1) for outfit_id in fitb_split["outfit_id"]])
    candidates = list(zip(*fitb_split["candidates"])) if len(fitb_split) else []
    candidate_rows, candidates_known = _rows_of_columns([list(column) for column in candidates], table, "fitb")
    keep = (positions >= 0) & candidates_known
    skipped = int((~keep).sum())
    if skipped:
        logger.warning(f"fitb: skipped {skipped} of {len(fitb_split)} questions (outfit or candidate not resolvable).")
    return FitbQuestions(
        outfit_rows=outfits.rows[positions[keep]],
        blanks=torch.tensor([slot_index[slot] for slot in fitb_split["blank"]], dtype=torch.long)[keep],
        candidates=candidate_rows[keep],
        labels=torch.tensor(fitb_split["label"], dtype=torch.long)[keep],
        skipped=skipped,
    )


def compatibility_outfits(split, slots: Sequence[str], table: EmbeddingsTable) -> CompatibilityOutfits:
    """Rows and labels of a `compatibility` split."""
    rows, keep = _rows_of_columns([split[slot] for slot in slots], table, "compatibility")
    labels = torch.tensor(split["label"], dtype=torch.long)
    return CompatibilityOutfits(rows=rows[keep], labels=labels[keep], skipped=int((~keep).sum()))


class RowsDataset(torch.utils.data.Dataset):
    """A tensor of outfit rows as a map-style dataset (one (slots,) row per item); batches collate to (B, slots)."""

    def __init__(self, rows: torch.LongTensor):
        self.rows = rows

    def __len__(self) -> int:
        return self.rows.shape[0]

    def __getitem__(self, index: int) -> torch.LongTensor:
        return self.rows[index]


def catalogue_from_table(table: EmbeddingsTable, slots: Sequence[str]) -> EmbeddingsTable:
    """The table restricted to the slot categories (items of other categories cannot fill a slot)."""
    keep = [row for row, category in enumerate(table.categories) if category in set(slots)]
    if len(keep) == len(table):
        return table
    logger.info(f"Catalogue: kept {len(keep)} of {len(table)} items whose category is a slot {list(slots)}.")
    return EmbeddingsTable(
        [table.item_ids[row] for row in keep],
        [table.categories[row] for row in keep],
        table.embeddings[keep],
        dict(table.metadata),
    )


__all__ = [
    "CompatibilityOutfits",
    "FitbQuestions",
    "OutfitRows",
    "RowsDataset",
    "catalogue_from_table",
    "compatibility_outfits",
    "dataset_has_config",
    "fitb_questions",
    "load_dataset_config",
    "outfit_rows",
]
