"""Polyvore Outfits for umBERT: a `datasets` builder, a Hub-layout exporter and a synthetic raw-folder generator."""

from .export import BuildSummary, OutputExistsError, build_dataset, push_to_hub
from .polyvore_outfits import (
    CONFIG_NAMES,
    DEFAULT_CATEGORIES,
    EmptyDatasetError,
    PolyvoreOutfits,
    PolyvoreOutfitsConfig,
    config_features,
)
from .raw import PolyvoreFormatError, read_raw
from .synthetic import describe_rules, synthesize_polyvore

__all__ = [
    "CONFIG_NAMES",
    "DEFAULT_CATEGORIES",
    "BuildSummary",
    "EmptyDatasetError",
    "OutputExistsError",
    "PolyvoreFormatError",
    "PolyvoreOutfits",
    "PolyvoreOutfitsConfig",
    "build_dataset",
    "config_features",
    "describe_rules",
    "push_to_hub",
    "read_raw",
    "synthesize_polyvore",
]
