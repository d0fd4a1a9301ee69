"""Polyvore Outfits for umBERT: a `datasets` builder, a Hub-layout exporter, a synthetic raw-folder generator and a
MANGO importer."""

from .export import BuildSummary, OutputExistsError, build_dataset, push_to_hub
from .mango import convert_mango
from .polyvore_outfits import DEFAULT_CATEGORIES, PolyvoreOutfits, PolyvoreOutfitsConfig
from .prepare import CONFIG_NAMES, EmptyDatasetError, config_features
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
    "convert_mango",
    "describe_rules",
    "push_to_hub",
    "read_raw",
    "synthesize_polyvore",
]
