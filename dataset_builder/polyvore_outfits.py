"""Polyvore Outfits reduced to one item per slot category: the `datasets` builder and its config."""

from __future__ import annotations

import re
from dataclasses import dataclass

import datasets
from transformers.utils import logging

from .prepare import CONFIG_NAMES, PreparedPolyvore, PreparedSplit, config_features, prepare_polyvore
from .raw import PolyvoreFormatError, read_raw

logger = logging.get_logger(__name__)

DEFAULT_CATEGORIES = ("shoes", "tops", "accessories", "bottoms")
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
_VERSION = datasets.Version("1.0.0")


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
        """The parameters recorded in `build_summary.json` (with the full semantic category -> slot map)."""
        return {
            "split_type": self.split_type,
            "categories": list(self.categories),
            "category_map": dict(sorted(self.slot_of_semantic().items())),
            "with_images": self.with_images,
            "full_catalogue": self.full_catalogue,
            "seed": self.seed,
            "strict": self.strict,
        }


class PolyvoreOutfits(datasets.GeneratorBasedBuilder):
    """Polyvore Outfits for outfit completion, built from the official raw folder (`raw_dir`).

    `prepare()` reads the raw folder and derives the rows of every config once; `_generate_examples` only yields
    them. `build_dataset` (`umbert-hf build`) writes every config from the same `prepare()`.

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
        """Read, validate and filter the raw folder, and derive the rows of every config (once per builder)."""
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
        return [
            datasets.SplitGenerator(name=split.name, gen_kwargs={"split": split})
            for split in self.prepare().splits(self.config.name)
        ]

    def _generate_examples(self, split: PreparedSplit):
        yield from enumerate(split.examples())


__all__ = [
    "DEFAULT_CATEGORIES",
    "PolyvoreOutfits",
    "PolyvoreOutfitsConfig",
]
