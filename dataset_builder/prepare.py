"""The rules that turn a parsed raw Polyvore Outfits folder into the rows of every config: the outfit rule (one item
per slot category), the catalogue, fill-in-the-blank questions and compatibility negatives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers.utils import logging

from .config import CONFIG_NAMES, PolyvoreOutfitsConfig
from .raw import METADATA_FILE, FitbQuestion, PolyvoreFormatError, PolyvoreRaw, check_images

logger = logging.get_logger(__name__)

SPLITS = ("train", "validation", "test")
CONFIG_SPLITS = {
    "catalogue": ("train",),
    "outfits": SPLITS,
    "fitb": ("validation", "test"),
    "compatibility": SPLITS,
}
NUM_FITB_CANDIDATES = 4
_SPLIT_SEED = {"train": 0, "validation": 1, "test": 2}


class EmptyDatasetError(PolyvoreFormatError):
    """The outfit rule kept no outfit in some split."""


def config_features(config_name: str, categories: tuple[str, ...], with_images: bool = True) -> datasets.Features:
    """The `Features` of one config: its columns, with one item id column per slot category."""
    slots = {category: datasets.Value("string") for category in categories}
    if config_name == "catalogue":
        features = {
            "item_id": datasets.Value("string"),
            "category": datasets.Value("string"),
            "semantic_category": datasets.Value("string"),
            "title": datasets.Value("string"),
        }
        if with_images:
            features["image"] = datasets.Image()
    elif config_name == "outfits":
        features = {"outfit_id": datasets.Value("string"), **slots}
    elif config_name == "fitb":
        features = {
            "outfit_id": datasets.Value("string"),
            "blank": datasets.Value("string"),
            "candidates": datasets.List(datasets.Value("string")),
            "label": datasets.Value("int64"),
        }
    elif config_name == "compatibility":
        features = {"label": datasets.Value("int64"), **slots}
    else:
        raise ValueError(f"config name {config_name!r} is not one of {CONFIG_NAMES}")
    return datasets.Features(features)


@dataclass
class PreparedSplit:
    """The rows of one split of one config, as columns. A catalogue built with images also has an `image` column,
    whose files are read only when rows are (`batches`, `examples`), so the prepared dataset stays small."""

    config_name: str
    name: str
    columns: dict[str, list]
    images_dir: Path | None = None  # set for a catalogue with images: `<images_dir>/<item_id>.jpg`

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values())))

    def image_path(self, item_id: str) -> Path:
        return self.images_dir / f"{item_id}.jpg"

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[dict[str, list]]:
        """The columns of rows `start:stop`, `batch_size` rows at a time, with the embedded `image` when there is one."""
        stop = self.num_rows if stop is None else stop
        for first in range(start, stop, batch_size):
            rows = slice(first, min(first + batch_size, stop))
            batch = {name: values[rows] for name, values in self.columns.items()}
            if self.images_dir is not None:
                batch["image"] = [
                    {"bytes": self.image_path(item_id).read_bytes(), "path": f"{item_id}.jpg"}
                    for item_id in batch["item_id"]
                ]
            yield batch

    def examples(self, batch_size: int = 100) -> Iterator[dict]:
        """One dict per row, in order."""
        for batch in self.batches(batch_size):
            names = list(batch)
            for values in zip(*batch.values()):
                yield dict(zip(names, values))


@dataclass
class PreparedPolyvore:
    """Every split of every config, plus the counts of what was read, kept and dropped and why (`report`)."""

    raw: PolyvoreRaw
    categories: tuple[str, ...]
    with_images: bool
    tables: dict[str, dict[str, PreparedSplit]]  # config -> split -> rows
    report: dict

    def features(self, config_name: str) -> datasets.Features:
        return config_features(config_name, self.categories, self.with_images)

    def splits(self, config_name: str) -> list[PreparedSplit]:
        """The splits of `config_name`, in the order of `CONFIG_SPLITS`."""
        return [self.tables[config_name][split] for split in CONFIG_SPLITS[config_name]]


@dataclass
class SlotItems:
    """The items that can fill a slot: `item_slot` maps each to its slot; items of other semantic categories and
    items with a bad image (`bad_images`: item id -> "missing_image" or "unreadable_image") are absent."""

    slots: tuple[str, ...]
    item_slot: dict[str, str]
    bad_images: dict[str, str] = field(default_factory=dict)
    slot_position: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.slot_position = {slot: position for position, slot in enumerate(self.slots)}


@dataclass
class KeptSplit:
    """The outfits of one split kept by the outfit rule, `(set_id, item per slot)` in file order, and what was
    dropped (`report`, as in `build_summary.json`)."""

    name: str
    outfits: list[tuple[str, list[str]]]
    report: dict
    pools: dict[str, np.ndarray]  # slot -> the split's distinct items, sorted (negatives are drawn from them)
    missing_references: int  # to items absent from the metadata
    bad_image_references: int


@dataclass
class Catalogue:
    """The catalogue: `items` ordered by slot then item id, and each slot's items as a sorted array (`pools`)."""

    items: list[str]
    pools: dict[str, np.ndarray]
    members: set[str] = field(init=False)

    def __post_init__(self):
        self.members = set(self.items)


def prepare_polyvore(raw: PolyvoreRaw, config: PolyvoreOutfitsConfig, num_proc: int | None = None) -> PreparedPolyvore:
    """Apply the outfit rule and derive every config's rows from the parsed raw folder (dict lookups only); the
    images are checked by `num_proc` processes (`check_images`)."""
    slots = config.categories
    slot_of_semantic = config.slot_of_semantic()
    item_slot = {}
    for item_id, semantic in raw.item_category.items():
        slot = slot_of_semantic.get(semantic)
        if slot is not None:
            item_slot[item_id] = slot
    report = {
        "items": {"read": len(raw.item_category), "in_slot_categories": len(item_slot)},
        "references": {},
        "outfits": {},
        "catalogue": {},
        "items_per_split": {},
        "fitb": {},
        "compatibility": {},
        "shared_set_ids": dict(raw.shared_set_ids),  # "train-test" -> set ids in both splits (a leak; kept)
    }
    bad_images = _bad_images(raw, item_slot, config, num_proc) if config.with_images else {}
    for item_id in bad_images:
        del item_slot[item_id]
    items = SlotItems(slots, item_slot, bad_images)
    report["items"]["missing_image"] = sum(reason == "missing_image" for reason in bad_images.values())
    report["items"]["unreadable_image"] = sum(reason == "unreadable_image" for reason in bad_images.values())

    kept = {split: keep_outfits(raw, split, items, config.strict) for split in SPLITS}
    report["outfits"] = {split: kept[split].report for split in SPLITS}
    missing_refs = {split: kept[split].missing_references for split in SPLITS}
    report["references"] = {
        "missing_item": sum(missing_refs.values()),
        "missing_item_per_split": missing_refs,
        "bad_image": sum(kept[split].bad_image_references for split in SPLITS),
    }
    _raise_if_empty(raw, kept, slots)

    catalogue = make_catalogue(items, kept, config.full_catalogue)
    tables = {name: {} for name in CONFIG_NAMES}
    catalogue_columns = {
        "item_id": catalogue.items,
        "category": [item_slot[item] for item in catalogue.items],
        "semantic_category": [raw.item_category[item] for item in catalogue.items],
        "title": [raw.item_title[item] for item in catalogue.items],
    }
    _check_utf8(raw, catalogue_columns, kept)
    images_dir = raw.images_dir if config.with_images else None
    tables["catalogue"]["train"] = PreparedSplit("catalogue", "train", catalogue_columns, images_dir)
    report["catalogue"] = {**{slot: len(catalogue.pools[slot]) for slot in slots}, "total": len(catalogue.items)}

    for split in SPLITS:
        columns = {"outfit_id": [set_id for set_id, _ in kept[split].outfits]}
        for position, slot in enumerate(slots):
            columns[slot] = [chosen[position] for _, chosen in kept[split].outfits]
        tables["outfits"][split] = PreparedSplit("outfits", split, columns)
        report["items_per_split"][split] = {slot: len(kept[split].pools[slot]) for slot in slots}
    for split in CONFIG_SPLITS["fitb"]:
        columns, report["fitb"][split] = make_fitb(raw, kept[split], items, catalogue, config.seed)
        if not columns["outfit_id"]:  # no blank slot had 4 candidates
            raise EmptyDatasetError(
                f"fitb {split}: no question can be made: every slot category needs at least {NUM_FITB_CANDIDATES} "
                f"items for the candidates, and the catalogue has {report['catalogue']}"
            )
        tables["fitb"][split] = PreparedSplit("fitb", split, columns)
    for split in CONFIG_SPLITS["compatibility"]:
        columns, report["compatibility"][split] = make_compatibility(raw, kept[split], items, catalogue, config.seed)
        tables["compatibility"][split] = PreparedSplit("compatibility", split, columns)
    return PreparedPolyvore(raw, slots, config.with_images, tables, report)


def _bad_images(
    raw: PolyvoreRaw, item_slot: dict[str, str], config: PolyvoreOutfitsConfig, num_proc: int | None = None
) -> dict[str, str]:
    """Item id -> "missing_image" or "unreadable_image", among the items the dataset could hold."""
    candidates = set(item_slot)
    if not config.full_catalogue:
        candidates = {item for outfits in raw.outfits.values() for o in outfits for _, item in o.members} & candidates
    missing, unreadable = check_images(raw, candidates, strict=config.strict, num_proc=num_proc)
    return {**dict.fromkeys(missing, "missing_image"), **dict.fromkeys(unreadable, "unreadable_image")}


def _check_utf8(raw: PolyvoreRaw, catalogue: dict[str, list[str]], kept: dict[str, KeptSplit]) -> None:
    """Refuse text that UTF-8 cannot encode: a lone surrogate (`"\\ud83d"` in the JSON, half an emoji) would make
    parquet fail later with an error naming no item. Every item id of every config is a catalogue id."""
    for name in ("item_id", "semantic_category", "title"):
        values = catalogue[name]
        if _encodes("\n".join(values)):
            continue
        row = next(row for row, value in enumerate(values) if not _encodes(value))
        bad = next(position for position, char in enumerate(values[row]) if not _encodes(char))
        raise PolyvoreFormatError(
            f"{METADATA_FILE}: item {catalogue['item_id'][row]!r} has a '{name}' that is not valid Unicode text "
            f"(a lone surrogate {values[row][bad]!r} at character {bad}); fix it in the metadata"
        )
    for split in SPLITS:
        for set_id, _ in kept[split].outfits:
            if not _encodes(set_id):
                raise PolyvoreFormatError(
                    f"{_split_file(raw, split)}: outfit set_id {set_id!r} is not valid Unicode text (a lone surrogate)"
                )


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _split_file(raw: PolyvoreRaw, split: str) -> str:
    stem = {"train": "train", "validation": "valid", "test": "test"}[split]
    return f"{raw.split_type}/{stem}.json"


def keep_outfits(raw: PolyvoreRaw, split: str, items: SlotItems, strict: bool = False) -> KeptSplit:
    """The outfit rule: keep an outfit with an item of every slot; of several items of one slot, the lowest index.

    References to items absent from the metadata or with a bad image are dropped first (fatal with `strict`).
    """
    slots = items.slots
    kept, lacking = [], Counter()
    dropped_bad_reference = dropped_missing_slot = bad_refs = missing_refs = 0
    for outfit in raw.outfits[split]:
        chosen = [None] * len(slots)
        best = [0] * len(slots)
        had_bad = False
        for index, item_id in outfit.members:
            slot = items.item_slot.get(item_id)
            if slot is None:
                if item_id in items.bad_images:
                    had_bad = True
                    bad_refs += 1
                elif item_id not in raw.item_category:
                    if strict:
                        raise PolyvoreFormatError(
                            f"{_split_file(raw, split)}: outfit '{outfit.set_id}' references item '{item_id}', "
                            "which is absent from polyvore_item_metadata.json"
                        )
                    had_bad = True
                    missing_refs += 1
                continue
            position = items.slot_position[slot]
            if chosen[position] is None or index < best[position]:
                chosen[position] = item_id
                best[position] = index
        if None in chosen:
            for position, item_id in enumerate(chosen):
                if item_id is None:
                    lacking[slots[position]] += 1
            if had_bad:
                dropped_bad_reference += 1
            else:
                dropped_missing_slot += 1
            continue
        kept.append((outfit.set_id, chosen))
    report = {
        "read": len(raw.outfits[split]) + raw.duplicate_set_ids.get(split, 0),
        "kept": len(kept),
        "dropped": {
            "missing_slot": dropped_missing_slot,
            "incomplete_after_bad_references": dropped_bad_reference,
            "duplicate_set_id": raw.duplicate_set_ids.get(split, 0),
        },
        "lacking_slot": {slot: lacking.get(slot, 0) for slot in slots},
    }
    pools = {
        slot: np.array(sorted({chosen[position] for _, chosen in kept}), dtype=object)
        for position, slot in enumerate(slots)
    }
    return KeptSplit(split, kept, report, pools, missing_refs, bad_refs)


def _raise_if_empty(raw: PolyvoreRaw, kept: dict[str, KeptSplit], slots: tuple[str, ...]) -> None:
    for split in SPLITS:
        if kept[split].outfits:
            continue
        split_report = kept[split].report
        lacking = ", ".join(f"{slot}: {n}" for slot, n in split_report["lacking_slot"].items())
        present = sorted(set(raw.item_category.values()))
        raise EmptyDatasetError(
            f"{_split_file(raw, split)}: no outfit of the {split} split has an item of every slot category "
            f"{list(slots)} ({split_report['read']} read; outfits lacking each slot: {lacking}). "
            f"Semantic categories in the metadata: {present}; map them to slots with --category_map."
        )


def make_catalogue(items: SlotItems, kept: dict[str, KeptSplit], full_catalogue: bool = False) -> Catalogue:
    """Every item of a kept outfit of any split (every usable item of the slot categories with `full_catalogue`)."""
    if full_catalogue:
        members = set(items.item_slot)
    else:
        members = {item for split in SPLITS for _, chosen in kept[split].outfits for item in chosen}
    order = sorted(members, key=lambda item: (items.slot_position[items.item_slot[item]], item))
    per_slot = Counter(items.item_slot[item] for item in order)
    pools, start = {}, 0
    for slot in items.slots:  # `order` is sorted by slot, then item id
        stop = start + per_slot[slot]
        pools[slot] = np.array(order[start:stop], dtype=object)
        start = stop
    return Catalogue(order, pools)


def _rng(seed: int, split: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_SEED[split], stream])


def _draw_distinct_negatives(
    rng: np.random.Generator, pool_size: int, true_positions: np.ndarray, count: int
) -> np.ndarray:
    """(rows, count) indices into a pool, distinct within a row and never the row's true position."""
    rows = len(true_positions)
    negatives = rng.integers(0, pool_size - 1, size=(rows, count))
    negatives += negatives >= true_positions[:, None]  # skip the true item
    while True:
        ordered = np.sort(negatives, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not repeated.any():
            return negatives
        redraw = rng.integers(0, pool_size - 1, size=(int(repeated.sum()), count))
        redraw += redraw >= true_positions[repeated][:, None]
        negatives[repeated] = redraw


def make_fitb(
    raw: PolyvoreRaw, kept: KeptSplit, items: SlotItems, catalogue: Catalogue, seed: int
) -> tuple[dict[str, list], dict]:
    """One question per kept outfit: the official one when it resolves, else a generated one (seeded blank slot,
    negatives from the same category in the same split). Returns the columns and the split's report."""
    slots, split = items.slots, kept.name
    reasons = Counter()
    official = {}
    kept_by_id = {set_id: chosen for set_id, chosen in kept.outfits}
    questions = raw.fitb[split]
    if questions is not None:
        ref_index = raw.reference_index(split)
        for question in questions:
            resolved = _resolve_fitb(question, ref_index, kept_by_id, items, catalogue)
            if isinstance(resolved, str):
                reasons[resolved] += 1
            elif resolved[0] in official:
                reasons["outfit_already_has_a_question"] += 1
            else:
                official[resolved[0]] = resolved[1:]

    rng = _rng(seed, split, 0)
    num_outfits = len(kept.outfits)
    blank_positions = rng.integers(0, len(slots), size=num_outfits)
    labels = rng.integers(0, NUM_FITB_CANDIDATES, size=num_outfits)
    generated = {}
    needs = np.array([set_id not in official for set_id, _ in kept.outfits], dtype=bool)
    for position, slot in enumerate(slots):
        rows = np.flatnonzero(needs & (blank_positions == position))
        if len(rows) == 0:
            continue
        pool = kept.pools[slot]
        slot_pool = pool if len(pool) >= NUM_FITB_CANDIDATES else catalogue.pools[slot]
        if len(slot_pool) < NUM_FITB_CANDIDATES:
            reasons["too_few_items_of_the_category"] += len(rows)
            continue
        true_items = np.array([kept.outfits[row][1][position] for row in rows], dtype=object)
        true_positions = np.searchsorted(slot_pool, true_items)
        negatives = _draw_distinct_negatives(rng, len(slot_pool), true_positions, NUM_FITB_CANDIDATES - 1)
        for row, true_item, negative in zip(rows, true_items, negatives):
            candidates = [str(item) for item in slot_pool[negative]]
            candidates.insert(int(labels[row]), str(true_item))
            generated[int(row)] = (slot, candidates, int(labels[row]))

    columns = {"outfit_id": [], "blank": [], "candidates": [], "label": []}
    for row, (set_id, _) in enumerate(kept.outfits):
        entry = official.get(set_id) or generated.get(row)
        if entry is None:
            continue
        columns["outfit_id"].append(set_id)
        columns["blank"].append(entry[0])
        columns["candidates"].append(entry[1])
        columns["label"].append(entry[2])
    report = {
        "rows": len(columns["outfit_id"]),
        "official": len(official),
        "generated": len(generated),
        "official_file": questions is not None,
        "official_read": len(questions) if questions is not None else 0,
        "official_unresolved": dict(sorted(reasons.items())),
    }
    return columns, report


def _split_ref(ref: str) -> str:
    return ref.rsplit("_", 1)[0]


def _resolve_fitb(
    question: FitbQuestion,
    ref_index: dict[str, str],
    kept_by_id: dict[str, list[str]],
    items: SlotItems,
    catalogue: Catalogue,
) -> tuple[str, str, list[str], int] | str:
    """(set_id, blank slot, candidates, label) or the reason the question does not resolve."""
    set_ids = {_split_ref(ref) for ref in question.question}
    if len(set_ids) != 1:
        return "question_mixes_outfits" if set_ids else "empty_question"
    (set_id,) = set_ids
    chosen = kept_by_id.get(set_id)
    if chosen is None:
        return "outfit_not_kept"
    right = [position for position, ref in enumerate(question.answers) if _split_ref(ref) == set_id]
    if len(right) != 1:
        return "no_single_right_answer"
    if len(question.answers) != NUM_FITB_CANDIDATES:
        return "not_4_answers"
    answers = [ref_index.get(ref) for ref in question.answers]
    if None in answers:
        return "unknown_reference"
    blank_item = answers[right[0]]
    blank_slot = items.item_slot.get(blank_item)
    if blank_slot is None or chosen[items.slot_position[blank_slot]] != blank_item:
        return "blank_not_a_slot_item"
    question_items = {ref_index.get(ref) for ref in question.question}
    if any(item not in question_items for item in chosen if item != blank_item):
        return "question_lacks_slot_items"
    if len(set(answers)) != len(answers):
        return "repeated_candidate"
    for item in answers:
        if items.item_slot.get(item) != blank_slot:
            return "candidate_of_another_category"
        if item not in catalogue.members:
            return "candidate_not_in_catalogue"
    return set_id, blank_slot, answers, right[0]


def make_compatibility(
    raw: PolyvoreRaw, kept: KeptSplit, items: SlotItems, catalogue: Catalogue, seed: int
) -> tuple[dict[str, list], dict]:
    """Positives: the kept outfits. Negatives: official ones that resolve to full slot outfits of catalogue items,
    topped up to as many as positives with random same-category outfits from the split's items. Returns the columns
    and the split's report."""
    slots, split = items.slots, kept.name
    positives = [tuple(chosen) for _, chosen in kept.outfits]
    positive_set = set(positives)
    reasons = Counter()
    negatives = []
    official_positive_lines = 0
    lines = raw.compatibility[split]
    if lines is not None:
        ref_index = raw.reference_index(split)
        for label, refs in lines:
            if label == 1:
                official_positive_lines += 1
                continue
            chosen = [None] * len(slots)
            reason = None
            for ref in refs:
                item_id = ref_index.get(ref)
                if item_id is None:
                    reason = "unknown_reference"
                    break
                slot = items.item_slot.get(item_id)
                if slot is not None and chosen[items.slot_position[slot]] is None:
                    chosen[items.slot_position[slot]] = item_id
            if reason is None and None in chosen:
                reason = "lacks_a_slot"
            if reason is None and any(item not in catalogue.members for item in chosen):
                reason = "item_not_in_catalogue"
            if reason is None and tuple(chosen) in positive_set:
                reason = "same_as_a_positive"
            if reason is not None:
                reasons[reason] += 1
                continue
            negatives.append(tuple(chosen))
    official_negatives = len(negatives)

    rng = _rng(seed, split, 1)
    needed = max(0, len(positives) - official_negatives)
    swapped = []
    for _ in range(100):  # redraw the rare draws that recreate a positive
        if len(swapped) >= needed:
            break
        count = needed - len(swapped)
        draws = [kept.pools[slot][rng.integers(0, len(kept.pools[slot]), size=count)] for slot in slots]
        for row in zip(*draws):
            if row not in positive_set:
                swapped.append(tuple(str(item) for item in row))
    swapped = swapped[:needed]

    rows = [(1, outfit) for outfit in positives] + [(0, outfit) for outfit in negatives + swapped]
    order = rng.permutation(len(rows))
    columns = {"label": [rows[i][0] for i in order]}
    for position, slot in enumerate(slots):
        columns[slot] = [rows[i][1][position] for i in order]
    report = {
        "rows": len(rows),
        "positives": len(positives),
        "official_negatives": official_negatives,
        "swap_negatives": len(swapped),
        "official_file": lines is not None,
        "official_positive_lines": official_positive_lines,
        "official_negatives_unresolved": dict(sorted(reasons.items())),
    }
    return columns, report


__all__ = [
    "CONFIG_NAMES",
    "CONFIG_SPLITS",
    "NUM_FITB_CANDIDATES",
    "SPLITS",
    "Catalogue",
    "EmptyDatasetError",
    "KeptSplit",
    "PreparedPolyvore",
    "PreparedSplit",
    "SlotItems",
    "config_features",
    "keep_outfits",
    "make_catalogue",
    "make_compatibility",
    "make_fitb",
    "prepare_polyvore",
]
