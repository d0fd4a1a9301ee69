"""Polyvore Outfits reduced to one item per slot category: the `datasets` builder, its config and the shared preparation."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from .raw import METADATA_FILE, PolyvoreFormatError, PolyvoreRaw, check_images, read_raw

logger = logging.getLogger(__name__)

DEFAULT_CATEGORIES = ("shoes", "tops", "accessories", "bottoms")
CONFIG_NAMES = ("catalogue", "outfits", "fitb", "compatibility")
SPLITS = ("train", "validation", "test")
CONFIG_SPLITS = {
    "catalogue": ("train",),
    "outfits": SPLITS,
    "fitb": ("validation", "test"),
    "compatibility": SPLITS,
}
NUM_FITB_CANDIDATES = 4
RESERVED_COLUMNS = ("outfit_id", "label", "blank", "candidates", "item_id", "category")

_DESCRIPTION = (
    "Polyvore Outfits (Vasileva et al., ECCV 2018) reduced to outfits with one item of each slot category, "
    "as used by umBERT for outfit completion."
)
_HOMEPAGE = "https://github.com/mvasil/fashion-compatibility"
_LICENSE = "Research use only (Polyvore Outfits terms); not for commercial use."
_CITATION = """\
@inproceedings{vasileva2018learning,
  title     = {Learning Type-Aware Embeddings for Fashion Compatibility},
  author    = {Vasileva, Mariya I. and Plummer, Bryan A. and Dusad, Krishna and Rajpal, Shreya and
               Kumar, Ranjitha and Forsyth, David},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2018}
}
"""
_CONFIG_DESCRIPTIONS = {
    "catalogue": "Every item of a kept outfit (or every item of the slot categories with full_catalogue).",
    "outfits": "Kept outfits: one item id per slot category.",
    "fitb": "Fill in the blank: one blank slot per outfit, 4 candidates of the blank's category, label = right index.",
    "compatibility": "Outfits labelled compatible (1, the split's outfits) or not (0).",
}
_SPLIT_SEED = {"train": 0, "validation": 1, "test": 2}
_VERSION = datasets.Version("1.0.0")


class EmptyDatasetError(PolyvoreFormatError):
    """The outfit rule kept no outfit in some split."""


@dataclass
class PolyvoreOutfitsConfig(datasets.BuilderConfig):
    """Builder parameters; `name` picks the table (`catalogue`, `outfits`, `fitb` or `compatibility`)."""

    raw_dir: str | None = None
    split_type: str = "nondisjoint"
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    category_map: dict[str, str] | None = None
    with_images: bool = True
    full_catalogue: bool = False
    seed: int = 0
    strict: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.validate()

    def validate(self) -> None:
        """Check and normalise the parameters (also called after `datasets` overrides fields by `setattr`)."""
        if self.name not in CONFIG_NAMES:
            raise ValueError(f"config name {self.name!r} is not one of {CONFIG_NAMES}")
        if self.split_type not in ("nondisjoint", "disjoint"):
            raise ValueError(f"split_type {self.split_type!r} is not 'nondisjoint' or 'disjoint'")
        if isinstance(self.categories, str):
            self.categories = tuple(part for part in re.split(r"[,\s]+", self.categories) if part)
        self.categories = tuple(self.categories)
        if not self.categories:
            raise ValueError("categories is empty: give at least one slot category")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories {self.categories} repeats a category")
        for category in self.categories:
            if not isinstance(category, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", category):
                raise ValueError(f"category {category!r} should be a word (letters, digits, '-' or '_')")
            if category in RESERVED_COLUMNS:
                raise ValueError(f"category {category!r} clashes with a column name {RESERVED_COLUMNS}")
        if self.category_map is not None:
            self.category_map = dict(self.category_map)
            for semantic, slot in self.category_map.items():
                if slot and slot not in self.categories:
                    raise ValueError(
                        f"category_map sends {semantic!r} to {slot!r}, which is not one of categories {self.categories}"
                    )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed {self.seed!r} should be a non-negative integer")

    def slot_of_semantic(self) -> dict[str, str]:
        """Semantic category -> slot. Each slot takes its own semantic category unless `category_map` says
        otherwise; mapping a semantic category to "" leaves it out."""
        mapping = {category: category for category in self.categories}
        mapping.update(self.category_map or {})
        return {semantic: slot for semantic, slot in mapping.items() if slot}

    def parameters(self) -> dict:
        return {
            "split_type": self.split_type,
            "categories": list(self.categories),
            "category_map": dict(sorted(self.slot_of_semantic().items())),
            "with_images": self.with_images,
            "full_catalogue": self.full_catalogue,
            "seed": self.seed,
            "strict": self.strict,
        }


def config_features(config_name: str, categories, with_images: bool = True) -> datasets.Features:
    """The `Features` of one config (see ../shared/README.md)."""
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
class PreparedPolyvore:
    """Every table of every config, as columns, plus the counts of what was read, kept and dropped and why."""

    raw: PolyvoreRaw
    categories: tuple[str, ...]
    with_images: bool
    tables: dict[str, dict[str, dict[str, list]]]  # config -> split -> column -> values
    report: dict

    def columns(self, config_name: str, split: str) -> dict[str, list]:
        return self.tables[config_name][split]

    def num_rows(self, config_name: str, split: str) -> int:
        columns = self.tables[config_name][split]
        return len(next(iter(columns.values())))

    def features(self, config_name: str) -> datasets.Features:
        return config_features(config_name, self.categories, self.with_images)

    def image_path(self, item_id: str) -> Path:
        return self.raw.image_path(item_id)


def prepare_polyvore(raw: PolyvoreRaw, config: PolyvoreOutfitsConfig) -> PreparedPolyvore:
    """Apply the outfit rule and derive every config's rows from the parsed raw folder (dict lookups only)."""
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

    bad_images: dict[str, str] = {}
    if config.with_images:
        candidates = {item for outfits in raw.outfits.values() for o in outfits for _, item in o.members}
        candidates = {item for item in candidates if item in item_slot}
        if config.full_catalogue:
            candidates = set(item_slot)
        missing, unreadable = check_images(raw, candidates, strict=config.strict)
        bad_images = {**dict.fromkeys(missing, "missing_image"), **dict.fromkeys(unreadable, "unreadable_image")}
        for item_id in bad_images:
            del item_slot[item_id]
    report["items"]["missing_image"] = sum(reason == "missing_image" for reason in bad_images.values())
    report["items"]["unreadable_image"] = sum(reason == "unreadable_image" for reason in bad_images.values())

    kept, missing_refs, bad_image_refs = {}, {}, 0
    for split in SPLITS:
        kept[split], split_report = _keep_outfits(raw, split, slots, item_slot, bad_images, config.strict)
        missing_refs[split] = split_report.pop("missing_item_references")
        bad_image_refs += split_report.pop("bad_image_references")
        report["outfits"][split] = split_report
    report["references"] = {
        "missing_item": sum(missing_refs.values()),
        "missing_item_per_split": missing_refs,
        "bad_image": bad_image_refs,
    }
    _raise_if_empty(kept, report, config, raw)

    slot_position = {slot: position for position, slot in enumerate(slots)}
    if config.full_catalogue:
        catalogue_items = set(item_slot)
    else:
        catalogue_items = {item for split in SPLITS for _, chosen in kept[split] for item in chosen}
    catalogue_order = sorted(catalogue_items, key=lambda item: (slot_position[item_slot[item]], item))
    tables = {name: {} for name in CONFIG_NAMES}
    tables["catalogue"]["train"] = {
        "item_id": catalogue_order,
        "category": [item_slot[item] for item in catalogue_order],
        "semantic_category": [raw.item_category[item] for item in catalogue_order],
        "title": [raw.item_title[item] for item in catalogue_order],
    }
    _check_utf8(tables["catalogue"]["train"], kept, raw)
    per_slot = Counter(item_slot[item] for item in catalogue_order)
    report["catalogue"] = {**{slot: per_slot[slot] for slot in slots}, "total": len(catalogue_order)}

    pools = {}
    for split in SPLITS:
        columns = {"outfit_id": [set_id for set_id, _ in kept[split]]}
        for position, slot in enumerate(slots):
            columns[slot] = [chosen[position] for _, chosen in kept[split]]
        tables["outfits"][split] = columns
        pools[split] = {slot: np.array(sorted(set(columns[slot])), dtype=object) for slot in slots}
        report["items_per_split"][split] = {slot: len(pools[split][slot]) for slot in slots}

    catalogue_pools, start = {}, 0
    for slot in slots:  # catalogue_order is sorted by slot, then item id
        stop = start + report["catalogue"][slot]
        catalogue_pools[slot] = np.array(catalogue_order[start:stop], dtype=object)
        start = stop
    for split in CONFIG_SPLITS["fitb"]:
        tables["fitb"][split], report["fitb"][split] = _make_fitb(
            raw, split, slots, kept[split], item_slot, catalogue_items, pools[split], catalogue_pools, config.seed
        )
        if not tables["fitb"][split]["outfit_id"]:  # no blank slot had 4 candidates
            raise EmptyDatasetError(
                f"fitb {split}: no question can be made: every slot category needs at least {NUM_FITB_CANDIDATES} "
                f"items for the candidates, and the catalogue has {report['catalogue']}"
            )
    for split in CONFIG_SPLITS["compatibility"]:
        tables["compatibility"][split], report["compatibility"][split] = _make_compatibility(
            raw, split, slots, kept[split], item_slot, catalogue_items, pools[split], config.seed
        )
    return PreparedPolyvore(raw, slots, config.with_images, tables, report)


def _check_utf8(catalogue: dict[str, list[str]], kept, raw: PolyvoreRaw) -> None:
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
        for set_id, _ in kept[split]:
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


def _keep_outfits(raw, split, slots, item_slot, bad_images, strict):
    """The outfit rule: keep an outfit with an item of every slot; of several items of one slot, the lowest index.

    References to items absent from the metadata or with a bad image are dropped first (fatal with `strict`).
    """
    slot_position = {slot: position for position, slot in enumerate(slots)}
    item_category = raw.item_category
    kept, lacking = [], Counter()
    dropped_bad_reference = dropped_missing_slot = bad_refs = missing_refs = 0
    for outfit in raw.outfits[split]:
        chosen = [None] * len(slots)
        best = [0] * len(slots)
        had_bad = False
        for index, item_id in outfit.members:
            slot = item_slot.get(item_id)
            if slot is None:
                if item_id in bad_images:
                    had_bad = True
                    bad_refs += 1
                elif item_id not in item_category:
                    if strict:
                        raise PolyvoreFormatError(
                            f"{_split_file(raw, split)}: outfit '{outfit.set_id}' references item '{item_id}', "
                            "which is absent from polyvore_item_metadata.json"
                        )
                    had_bad = True
                    missing_refs += 1
                continue
            position = slot_position[slot]
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
    split_report = {
        "read": len(raw.outfits[split]) + raw.duplicate_set_ids.get(split, 0),
        "kept": len(kept),
        "dropped": {
            "missing_slot": dropped_missing_slot,
            "incomplete_after_bad_references": dropped_bad_reference,
            "duplicate_set_id": raw.duplicate_set_ids.get(split, 0),
        },
        "lacking_slot": {slot: lacking.get(slot, 0) for slot in slots},
        "missing_item_references": missing_refs,
        "bad_image_references": bad_refs,
    }
    return kept, split_report


def _raise_if_empty(kept, report, config, raw) -> None:
    for split in SPLITS:
        if kept[split]:
            continue
        split_report = report["outfits"][split]
        lacking = ", ".join(f"{slot}: {n}" for slot, n in split_report["lacking_slot"].items())
        present = sorted(set(raw.item_category.values()))
        raise EmptyDatasetError(
            f"{_split_file(raw, split)}: no outfit of the {split} split has an item of every slot category "
            f"{list(config.categories)} ({split_report['read']} read; outfits lacking each slot: {lacking}). "
            f"Semantic categories in the metadata: {present}; map them to slots with --category_map."
        )


def _rng(seed: int, split: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_SEED[split], stream])


def _draw_distinct_negatives(rng, pool_size: int, true_positions: np.ndarray, count: int) -> np.ndarray:
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


def _make_fitb(raw, split, slots, kept, item_slot, catalogue_items, pool, catalogue_pools, seed):
    """One question per kept outfit: the official one when it resolves, else a generated one (seeded blank slot,
    negatives from the same category in the same split)."""
    reasons = Counter()
    official = {}
    kept_by_id = {set_id: chosen for set_id, chosen in kept}
    questions = raw.fitb[split]
    if questions is not None:
        ref_index = raw.reference_index(split)
        for question in questions:
            resolved = _resolve_fitb(question, ref_index, kept_by_id, slots, item_slot, catalogue_items)
            if isinstance(resolved, str):
                reasons[resolved] += 1
            elif resolved[0] in official:
                reasons["outfit_already_has_a_question"] += 1
            else:
                official[resolved[0]] = resolved[1:]

    rng = _rng(seed, split, 0)
    num_outfits = len(kept)
    blank_positions = rng.integers(0, len(slots), size=num_outfits)
    labels = rng.integers(0, NUM_FITB_CANDIDATES, size=num_outfits)
    generated = {}
    needs = np.array([set_id not in official for set_id, _ in kept], dtype=bool)
    for position, slot in enumerate(slots):
        rows = np.flatnonzero(needs & (blank_positions == position))
        if len(rows) == 0:
            continue
        slot_pool = pool[slot] if len(pool[slot]) >= NUM_FITB_CANDIDATES else catalogue_pools[slot]
        if len(slot_pool) < NUM_FITB_CANDIDATES:
            reasons["too_few_items_of_the_category"] += len(rows)
            continue
        true_items = np.array([kept[row][1][position] for row in rows], dtype=object)
        true_positions = np.searchsorted(slot_pool, true_items)
        negatives = _draw_distinct_negatives(rng, len(slot_pool), true_positions, NUM_FITB_CANDIDATES - 1)
        for row, true_item, negative in zip(rows, true_items, negatives):
            candidates = [str(item) for item in slot_pool[negative]]
            candidates.insert(int(labels[row]), str(true_item))
            generated[int(row)] = (slot, candidates, int(labels[row]))

    columns = {"outfit_id": [], "blank": [], "candidates": [], "label": []}
    for row, (set_id, _) in enumerate(kept):
        entry = official.get(set_id) or generated.get(row)
        if entry is None:
            continue
        columns["outfit_id"].append(set_id)
        columns["blank"].append(entry[0])
        columns["candidates"].append(entry[1])
        columns["label"].append(entry[2])
    split_report = {
        "rows": len(columns["outfit_id"]),
        "official": len(official),
        "generated": len(generated),
        "official_file": questions is not None,
        "official_read": len(questions) if questions is not None else 0,
        "official_unresolved": dict(sorted(reasons.items())),
    }
    return columns, split_report


def _split_ref(ref: str) -> str:
    return ref.rsplit("_", 1)[0]


def _resolve_fitb(question, ref_index, kept_by_id, slots, item_slot, catalogue_items):
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
    blank_slot = item_slot.get(blank_item)
    if blank_slot is None or chosen[slots.index(blank_slot)] != blank_item:
        return "blank_not_a_slot_item"
    question_items = {ref_index.get(ref) for ref in question.question}
    if any(item not in question_items for item in chosen if item != blank_item):
        return "question_lacks_slot_items"
    if len(set(answers)) != len(answers):
        return "repeated_candidate"
    for item in answers:
        if item_slot.get(item) != blank_slot:
            return "candidate_of_another_category"
        if item not in catalogue_items:
            return "candidate_not_in_catalogue"
    return set_id, blank_slot, answers, right[0]


def _make_compatibility(raw, split, slots, kept, item_slot, catalogue_items, pool, seed):
    """Positives: the kept outfits. Negatives: official ones that resolve to full slot outfits of catalogue items,
    topped up to as many as positives with random same-category outfits from the split's items."""
    positives = [tuple(chosen) for _, chosen in kept]
    positive_set = set(positives)
    reasons = Counter()
    negatives = []
    official_positive_lines = 0
    lines = raw.compatibility[split]
    slot_position = {slot: position for position, slot in enumerate(slots)}
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
                slot = item_slot.get(item_id)
                if slot is not None and chosen[slot_position[slot]] is None:
                    chosen[slot_position[slot]] = item_id
            if reason is None and None in chosen:
                reason = "lacks_a_slot"
            if reason is None and any(item not in catalogue_items for item in chosen):
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
        draws = [pool[slot][rng.integers(0, len(pool[slot]), size=count)] for slot in slots]
        for row in zip(*draws):
            if row not in positive_set:
                swapped.append(tuple(str(item) for item in row))
    swapped = swapped[:needed]

    rows = [(1, outfit) for outfit in positives] + [(0, outfit) for outfit in negatives + swapped]
    order = rng.permutation(len(rows))
    columns = {"label": [rows[i][0] for i in order]}
    for position, slot in enumerate(slots):
        columns[slot] = [rows[i][1][position] for i in order]
    split_report = {
        "rows": len(rows),
        "positives": len(positives),
        "official_negatives": official_negatives,
        "swap_negatives": len(swapped),
        "official_file": lines is not None,
        "official_positive_lines": official_positive_lines,
        "official_negatives_unresolved": dict(sorted(reasons.items())),
    }
    return columns, split_report


class PolyvoreOutfits(datasets.GeneratorBasedBuilder):
    """Polyvore Outfits for outfit completion, built from the official raw folder (`raw_dir`).

    Example:
        builder = PolyvoreOutfits(config_name="outfits", raw_dir="polyvore_outfits", cache_dir="cache")
        builder.download_and_prepare()
        outfits = builder.as_dataset()
    """

    BUILDER_CONFIG_CLASS = PolyvoreOutfitsConfig
    VERSION = _VERSION
    BUILDER_CONFIGS = [
        PolyvoreOutfitsConfig(name=name, version=_VERSION, description=_CONFIG_DESCRIPTIONS[name])
        for name in CONFIG_NAMES
    ]
    DEFAULT_CONFIG_NAME = "outfits"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepared: PreparedPolyvore | None = None

    def _create_builder_config(self, *args, **kwargs):
        builder_config, config_id = super()._create_builder_config(*args, **kwargs)
        builder_config.validate()  # overrides are applied by setattr, after __post_init__
        return builder_config, config_id

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=config_features(self.config.name, self.config.categories, self.config.with_images),
            homepage=_HOMEPAGE,
            citation=_CITATION,
            license=_LICENSE,
        )

    def prepare(self) -> PreparedPolyvore:
        """Read, validate and filter the raw folder (once per builder)."""
        if self._prepared is None:
            raw_dir = self.config.raw_dir or self.config.data_dir
            if raw_dir is None:
                raise PolyvoreFormatError(
                    "raw_dir is required: download Polyvore Outfits (" + _HOMEPAGE + ") and pass raw_dir=FOLDER"
                )
            raw = read_raw(raw_dir, self.config.split_type, strict=self.config.strict)
            self._prepared = prepare_polyvore(raw, self.config)
        return self._prepared

    def _split_generators(self, dl_manager):
        self.prepare()
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"split": split})
            for split in CONFIG_SPLITS[self.config.name]
        ]

    def _generate_examples(self, split):
        prepared = self._prepared
        columns = prepared.columns(self.config.name, split)
        names = list(columns)
        with_images = self.config.name == "catalogue" and prepared.with_images
        for key, values in enumerate(zip(*columns.values())):
            example = dict(zip(names, values))
            if with_images:
                item_id = example["item_id"]
                example["image"] = {"bytes": prepared.image_path(item_id).read_bytes(), "path": f"{item_id}.jpg"}
            yield key, example


__all__ = [
    "CONFIG_NAMES",
    "CONFIG_SPLITS",
    "DEFAULT_CATEGORIES",
    "EmptyDatasetError",
    "PolyvoreOutfits",
    "PolyvoreOutfitsConfig",
    "PreparedPolyvore",
    "config_features",
    "prepare_polyvore",
]
