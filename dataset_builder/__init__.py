"""Polyvore Outfits for umBERT: a `datasets` builder, a Hub-layout exporter, a synthetic raw-folder generator, an
importer of any products and outfits tables (`convert_csv`) and its MANGO preset."""

from umbert_hf.utils.paths import OutputPathError

from .config import DEFAULT_CATEGORIES, PolyvoreOutfitsConfig
from .export import BuildSummary, build_dataset, push_to_hub
from .mango import convert_mango
from .polyvore_outfits import PolyvoreOutfits
from .prepare import CONFIG_NAMES, EmptyDatasetError, config_features
from .raw import PolyvoreFormatError, read_raw
from .synthetic import describe_rules, synthesize_polyvore
from .tables import convert_csv

__all__ = [
    "CONFIG_NAMES",
    "DEFAULT_CATEGORIES",
    "BuildSummary",
    "EmptyDatasetError",
    "OutputPathError",
    "PolyvoreFormatError",
    "PolyvoreOutfits",
    "PolyvoreOutfitsConfig",
    "build_dataset",
    "config_features",
    "convert_csv",
    "convert_mango",
    "describe_rules",
    "push_to_hub",
    "read_raw",
    "synthesize_polyvore",
]
