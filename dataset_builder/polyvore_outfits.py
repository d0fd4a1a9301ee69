"""Polyvore Outfits reduced to one item per slot category: the `datasets` builder (its config: `config.py`)."""

from __future__ import annotations

import datasets
from transformers.utils import logging

from .config import PolyvoreOutfitsConfig
from .prepare import CONFIG_NAMES, PreparedPolyvore, PreparedSplit, config_features, prepare_polyvore
from .raw import PolyvoreFormatError, read_raw

logger = logging.get_logger(__name__)

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

    def prepare(self, num_proc: int | None = None) -> PreparedPolyvore:
        """Read, validate and filter the raw folder, and derive the rows of every config (once per builder); the
        images are checked by `num_proc` processes."""
        if self._prepared is None:
            raw_dir = self.config.raw_dir or self.config.data_dir
            if raw_dir is None:
                raise PolyvoreFormatError(
                    "raw_dir is required: download Polyvore Outfits (" + _HOMEPAGE + ") and pass raw_dir=FOLDER"
                )
            raw = read_raw(raw_dir, self.config.split_type, strict=self.config.strict)
            self._prepared = prepare_polyvore(raw, self.config, num_proc)
        return self._prepared

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        # `download_and_prepare(num_proc=N)`: the image checks, the part that parallelises, use N processes.
        self.prepare(prepare_split_kwargs.get("num_proc"))
        super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)

    def _split_generators(self, dl_manager):
        return [
            datasets.SplitGenerator(name=split.name, gen_kwargs={"split": split})
            for split in self.prepare().splits(self.config.name)
        ]

    def _generate_examples(self, split: PreparedSplit):
        yield from enumerate(split.examples())


__all__ = [
    "PolyvoreOutfits",
    "PolyvoreOutfitsConfig",
]
