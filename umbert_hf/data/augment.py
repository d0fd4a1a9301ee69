"""Outfit augmentation as in the original WumBERT data: copies of each training outfit with one item swapped for
one of its nearest same-category neighbours in embedding space.

The result is written as a new dataset folder holding a copy of everything the input folder holds (copies, not hard
links: writing into one folder never changes the other) plus a config `outfits_augmented` with one `train` split: the
original training outfits, each followed by its new copies. Training scripts read it with `datasets.load_dataset(OUT, "outfits_augmented")["train"]`.

Nothing the user owns is deleted: the output folder may not be, contain or lie inside the input dataset, may not
contain the embeddings, nor be the working folder or one above it; `--overwrite` replaces only a folder that augment
wrote itself (it holds a `.umbert_augment` marker). The folder is built beside the output and renamed into place,
so a failed run leaves no half-written folder.

    python -m umbert_hf.data.augment --dataset DIR --embeddings FILE --k 5 --output_dir OUT
"""

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import torch
from huggingface_hub import DatasetCard
from transformers.utils import logging

from ..faiss_index import build_index
from ..retrieval import DISTANCES
from ..utils.files import atomic_path, clean_stale_temporaries
from ..utils.paths import check_output, run_command
from .embeddings import EmbeddingsTable, read_embeddings_table
from .outfit_data import load_dataset_config

logger = logging.get_logger(__name__)

CONFIG_NAME = "outfits_augmented"
NEIGHBOUR_POOLS = ("train", "catalogue")
DATA_FILE = f"{CONFIG_NAME}/train-00000-of-00001.parquet"
MARKER_FILE = ".umbert_augment"  # written into every output folder: only such a folder may be overwritten
_CARD_BEGIN = "<!-- outfits_augmented:begin -->"
_CARD_END = "<!-- outfits_augmented:end -->"


@dataclass
class AugmentationSummary:
    """Counts of one augmentation run (also written into the dataset card)."""

    k: int
    distance: str
    neighbours: str
    embeddings: str | None
    num_original_outfits: int
    num_augmented_outfits: int
    num_duplicates_skipped: int
    num_short_neighbour_lists: int

    @property
    def num_outfits(self) -> int:
        return self.num_original_outfits + self.num_augmented_outfits


def slot_columns(outfits: datasets.Dataset) -> list[str]:
    """The slot columns of an `outfits` split: every column but `outfit_id` (and augmentation bookkeeping)."""
    if "outfit_id" not in outfits.column_names:
        raise ValueError(f"The outfits have no `outfit_id` column (found {outfits.column_names}).")
    return [name for name in outfits.column_names if name not in ("outfit_id", "source_outfit_id", "swapped_slot")]


def nearest_same_category(
    table: EmbeddingsTable,
    query_items: Sequence[str],
    category: str,
    k: int,
    distance: str = "euclidean",
    pool: Sequence[str] | None = None,
    index: str = "exact",
    index_parameters: str | None = None,
) -> dict[str, list[str]]:
    """The `k` nearest items of the same category for each query item, nearest first, the item itself excluded.

    Searched with `retrieval.CategoryIndex`, the per-category search of the model and the metrics.

    Args:
        pool: candidate item ids (default: every item of `category` in the table); only those of `category` count.
        index, index_parameters: how to search (`faiss_index.build_index`): exact (the default), or an approximate
            FAISS index for a catalogue of millions of items.
    """
    if category not in set(table.categories):
        raise ValueError(f"No item of category {category!r} in the embeddings table.")
    # Candidates in table order, so ties break as they always did.
    candidate_rows = torch.arange(len(table)) if pool is None else table.rows(list(pool)).unique()
    names = sorted(set(table.categories))
    name_index = {name: index for index, name in enumerate(names)}
    candidate_categories = torch.tensor([name_index[table.categories[row]] for row in candidate_rows.tolist()])
    wanted = name_index[category]
    if not query_items or not bool((candidate_categories == wanted).any()):
        return {item_id: [] for item_id in query_items}
    search = build_index(
        table.embeddings[candidate_rows],
        candidate_categories,
        distance,
        num_categories=len(names),
        index=index,
        parameters=index_parameters,
    )
    queries = table.embeddings[table.rows(list(query_items))]
    # One extra neighbour, because a query usually finds itself first (ties may put it later; it is dropped anyway).
    _, found = search.top_k(queries, torch.full((len(query_items),), wanted), k + 1)
    neighbours = {}
    candidate_ids = [table.item_ids[row] for row in candidate_rows.tolist()]
    for item_id, positions in zip(query_items, found.tolist()):  # -1: a place an approximate index left empty
        neighbours[item_id] = [candidate_ids[p] for p in positions if p >= 0 and candidate_ids[p] != item_id][:k]
    return neighbours


def augment_outfits(
    outfits: datasets.Dataset,
    table: EmbeddingsTable,
    k: int = 5,
    distance: str = "euclidean",
    neighbours: str = "train",
    embeddings_name: str | None = None,
    index: str = "exact",
    index_parameters: str | None = None,
) -> tuple[datasets.Dataset, AugmentationSummary]:
    """Each training outfit followed by its copies with one slot's item swapped for one of its `k` nearest
    same-category neighbours; copies equal to an outfit already present are skipped.

    Args:
        outfits: the `outfits` config's `train` split (columns `outfit_id` + one per slot).
        table: item embeddings; every item of `outfits` must be in it, with its slot as category.
        k: neighbours per item.
        distance: `"euclidean"` or `"cosine"`.
        neighbours: `"train"` draws replacements only from items of the training outfits (no validation/test item
            leaks into training), `"catalogue"` from every item of the table (the original WumBERT data).
        index, index_parameters: the neighbour search (`nearest_same_category`): exact, or FAISS.

    Returns:
        `(augmented, summary)`; `augmented` has the columns of `outfits` plus `source_outfit_id` and `swapped_slot`
        (`""` for the original outfits). New outfit ids are `<outfit_id>-aug-<slot>-<rank>`.
    """
    if k < 1:
        raise ValueError(f"`k` must be at least 1, got {k}.")
    if neighbours not in NEIGHBOUR_POOLS:
        raise ValueError(f"`neighbours` must be one of {NEIGHBOUR_POOLS}, got {neighbours!r}.")
    slots = slot_columns(outfits)
    columns = {name: [str(value) for value in outfits[name]] for name in ["outfit_id", *slots]}
    _check_items(table, columns, slots)

    neighbour_lists = {}
    for slot in slots:
        used = list(dict.fromkeys(columns[slot]))  # unique, first-seen order
        pool = used if neighbours == "train" else None
        neighbour_lists[slot] = nearest_same_category(
            table, used, slot, k, distance=distance, pool=pool, index=index, index_parameters=index_parameters
        )

    rows = {name: [] for name in ["outfit_id", *slots, "source_outfit_id", "swapped_slot"]}
    seen = {tuple(columns[slot][index] for slot in slots) for index in range(len(outfits))}
    duplicates = short_lists = added = 0

    def append(outfit_id: str, items: list[str], source: str, swapped: str) -> None:
        rows["outfit_id"].append(outfit_id)
        for slot, item_id in zip(slots, items):
            rows[slot].append(item_id)
        rows["source_outfit_id"].append(source)
        rows["swapped_slot"].append(swapped)

    for index in range(len(outfits)):
        outfit_id = columns["outfit_id"][index]
        items = [columns[slot][index] for slot in slots]
        append(outfit_id, items, outfit_id, "")
        for position, slot in enumerate(slots):
            replacements = neighbour_lists[slot][items[position]]
            short_lists += len(replacements) < k
            for rank, replacement in enumerate(replacements, start=1):
                new_items = items.copy()
                new_items[position] = replacement
                key = tuple(new_items)
                if key in seen or replacement in items:
                    duplicates += 1
                    continue
                seen.add(key)
                append(f"{outfit_id}-aug-{slot}-{rank}", new_items, outfit_id, slot)
                added += 1

    features = datasets.Features({name: datasets.Value("string") for name in rows})
    summary = AugmentationSummary(
        k=k,
        distance=distance,
        neighbours=neighbours,
        embeddings=embeddings_name,
        num_original_outfits=len(outfits),
        num_augmented_outfits=added,
        num_duplicates_skipped=duplicates,
        num_short_neighbour_lists=short_lists,
    )
    return datasets.Dataset.from_dict(rows, features=features), summary


def _check_items(table: EmbeddingsTable, columns: dict[str, list[str]], slots: list[str]) -> None:
    index = table.index
    for slot in slots:
        missing = sorted({item_id for item_id in columns[slot] if item_id not in index})
        if missing:
            raise ValueError(
                f"{len(missing)} item(s) of slot {slot!r} are not in the embeddings table, e.g. {missing[:5]}; "
                "compute the embeddings for the whole catalogue of this dataset."
            )
        wrong = sorted({item_id for item_id in columns[slot] if table.categories[index[item_id]] != slot})
        if wrong:
            found = table.categories[index[wrong[0]]]
            raise ValueError(
                f"{len(wrong)} item(s) of slot {slot!r} have another category in the embeddings table, e.g. "
                f"{wrong[0]!r} is {found!r}."
            )


def _write_atomically(path: str, write) -> None:
    """`write(temporary_path)`, then rename over `path`."""
    with atomic_path(path) as temporary:
        write(str(temporary))


def _card_section(summary: AugmentationSummary) -> str:
    return "\n".join(
        [
            _CARD_BEGIN,
            "## Config `outfits_augmented`",
            "",
            "The training outfits of `outfits`, each followed by copies in which one slot's item is replaced by one "
            f"of its {summary.k} nearest same-category neighbours ({summary.distance} distance over the item "
            f"embeddings `{summary.embeddings}`, neighbours drawn from the {summary.neighbours} items); copies equal "
            "to an outfit already present are skipped. Columns `source_outfit_id` and `swapped_slot` say where each "
            "copy comes from.",
            "",
            f"- original outfits: {summary.num_original_outfits}",
            f"- added copies: {summary.num_augmented_outfits}",
            f"- duplicates skipped: {summary.num_duplicates_skipped}",
            _CARD_END,
        ]
    )


def check_output_dir(
    output_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    embeddings: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> str:
    """The resolved output folder, or `OutputPathError` (`utils.paths.check_output`) when writing it could touch what
    the user owns; with `overwrite`, only a folder that augment wrote (it holds the `.umbert_augment` marker) is
    replaced, since `--overwrite` deletes it."""
    inputs = {"dataset": dataset_dir, "embeddings": embeddings}
    return str(check_output(output_dir, inputs, overwrite=overwrite, markers=(MARKER_FILE,), command="augment"))


def write_augmented_dataset(
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    augmented: datasets.Dataset,
    summary: AugmentationSummary,
    overwrite: bool = False,
    embeddings: str | os.PathLike | None = None,
) -> str:
    """Write `output_dir` = a copy of the dataset folder + the `outfits_augmented` config + a marker.

    The folder is built in a temporary sibling and renamed into place (an older augment output it replaces is
    removed only then), so a failure leaves `output_dir` as it was. See `check_output_dir` for the folders refused.
    """
    dataset_dir = os.path.realpath(dataset_dir)
    readme = os.path.join(dataset_dir, "README.md")
    if not os.path.isfile(readme):
        raise FileNotFoundError(f"{dataset_dir} has no README.md with the dataset configs; is it a built dataset?")
    clean_stale_temporaries(Path(output_dir))  # first: it may put back a folder that a killed --overwrite moved aside
    output_dir = check_output_dir(output_dir, dataset_dir, embeddings, overwrite=overwrite)
    with atomic_path(output_dir, folder=True) as building:
        shutil.copytree(
            dataset_dir,
            building,
            copy_function=shutil.copy2,  # copies, never hard links: the two folders share no writable file
            ignore=shutil.ignore_patterns(CONFIG_NAME, ".cache", MARKER_FILE),
            dirs_exist_ok=True,
        )
        _write_contents(str(building), augmented, summary)
    return output_dir


def _write_contents(folder: str, augmented: datasets.Dataset, summary: AugmentationSummary) -> None:
    """Add the `outfits_augmented` parquet file, its config and card section, and the marker to a copied dataset."""
    table = augmented.data.table.replace_schema_metadata(
        {**(augmented.data.table.schema.metadata or {}), b"umbert_hf": json.dumps(asdict(summary)).encode()}
    )
    _write_atomically(os.path.join(folder, DATA_FILE), lambda path: pq.write_table(table, path))

    card = DatasetCard(open(os.path.join(folder, "README.md"), encoding="utf-8").read())
    configs = [config for config in (card.data.to_dict().get("configs") or []) if config["config_name"] != CONFIG_NAME]
    configs.append(
        {"config_name": CONFIG_NAME, "data_files": [{"split": "train", "path": f"{CONFIG_NAME}/train-*.parquet"}]}
    )
    card.data["configs"] = configs
    text = card.text
    if _CARD_BEGIN in text and _CARD_END in text:
        text = text[: text.index(_CARD_BEGIN)].rstrip() + text[text.index(_CARD_END) + len(_CARD_END) :]
    card.text = text.rstrip() + "\n\n" + _card_section(summary) + "\n"
    content = str(card)

    def write_text(text: str):
        def write(path: str) -> None:
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)

        return write

    _write_atomically(os.path.join(folder, "README.md"), write_text(content))
    _write_atomically(os.path.join(folder, MARKER_FILE), write_text(json.dumps(asdict(summary), indent=2) + "\n"))


def augment_dataset(
    dataset_dir: str | os.PathLike,
    embeddings: str | os.PathLike,
    output_dir: str | os.PathLike,
    k: int = 5,
    distance: str = "euclidean",
    neighbours: str = "train",
    overwrite: bool = False,
    cache_dir: str | None = None,
    index: str = "exact",
    index_parameters: str | None = None,
) -> AugmentationSummary:
    """Read the dataset's training outfits and the embeddings table, augment, and write the output folder.

    The output folder is checked first (`check_output_dir`), so a refused folder costs no computation.
    """
    check_output_dir(output_dir, dataset_dir, embeddings, overwrite=overwrite)
    table = read_embeddings_table(embeddings)
    outfits = load_dataset_config(dataset_dir, "outfits", cache_dir=cache_dir)["train"]
    augmented, summary = augment_outfits(
        outfits,
        table,
        k=k,
        distance=distance,
        neighbours=neighbours,
        embeddings_name=os.path.basename(embeddings),
        index=index,
        index_parameters=index_parameters,
    )
    write_augmented_dataset(dataset_dir, output_dir, augmented, summary, overwrite=overwrite, embeddings=embeddings)
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="Built dataset folder (with the `outfits` config).")
    parser.add_argument("--embeddings", required=True, help="Embeddings table (parquet file or folder).")
    parser.add_argument(
        "--output_dir",
        required=True,
        help="New output dataset folder: not --dataset, nor inside or around it or the embeddings, nor the working "
        "folder or one above it.",
    )
    parser.add_argument("--k", type=int, default=5, help="Nearest neighbours per item (default 5).")
    parser.add_argument("--distance", choices=DISTANCES, default="euclidean")
    parser.add_argument(
        "--neighbours",
        choices=NEIGHBOUR_POOLS,
        default="train",
        help="Draw replacements from the training outfits' items (default, no leakage of evaluation items) or "
        "from the whole catalogue (the original WumBERT data).",
    )
    parser.add_argument(
        "--index",
        default="exact",
        help="The neighbour search: exact (default), faiss, auto or a FAISS factory string (pip install "
        "'umbert-hf[faiss]'), for catalogues of millions of items.",
    )
    parser.add_argument("--index_parameters", default=None, help="FAISS settings, e.g. efSearch=256.")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"Replace a non-empty --output_dir written by an earlier augment run (it holds {MARKER_FILE}); any "
        "other folder is never deleted.",
    )
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k must be at least 1, got {args.k}.")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (under `run_command`, a bad input or output folder is one `error: ...` line, status 2)."""
    args = parse_args(argv)
    logging.set_verbosity_info()
    summary = augment_dataset(
        args.dataset,
        args.embeddings,
        args.output_dir,
        k=args.k,
        distance=args.distance,
        neighbours=args.neighbours,
        overwrite=args.overwrite,
        index=args.index,
        index_parameters=args.index_parameters,
    )
    print(
        f"{summary.num_original_outfits} training outfits + {summary.num_augmented_outfits} copies "
        f"({summary.num_duplicates_skipped} duplicates skipped) -> {os.path.abspath(args.output_dir)} "
        f"config '{CONFIG_NAME}'"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
