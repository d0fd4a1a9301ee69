"""The parameters of the Polyvore Outfits builder (`PolyvoreOutfitsConfig`), shared by the builder and `prepare`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import datasets

from umbert_hf.categories import DEFAULT_CATEGORIES

# The tables a dataset folder holds, each a `datasets` config.
CONFIG_NAMES = ("catalogue", "outfits", "fitb", "compatibility")
RESERVED_COLUMNS = ("outfit_id", "label", "blank", "candidates", "item_id", "category")


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


__all__ = ["CONFIG_NAMES", "DEFAULT_CATEGORIES", "RESERVED_COLUMNS", "PolyvoreOutfitsConfig"]
