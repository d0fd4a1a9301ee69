"""Tiny randomly initialised `transformers` CLIP, SigLIP and ViT models, saved with processors built here.

Nothing is downloaded: the tokenizer is a word-level `tokenizers` model over the words of the synthetic titles, and
the image processors are built from their classes with non-default sizes and statistics (so a test notices if our
own `ImagePreprocessing` is used instead). Each `save_tiny_*` writes a folder that `AutoModel`, `AutoImageProcessor`
and `AutoTokenizer` load the way they load a Hub checkpoint such as openai/clip-vit-base-patch32.

SigLIP's own tokenizer (`SiglipTokenizer`) needs `sentencepiece`, which is not installed: the SigLIP folder gets the
same fast word-level tokenizer, which `AutoTokenizer` loads through its saved `tokenizer_class`.
"""

import re
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.normalizers import Lowercase
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    PreTrainedTokenizerFast,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)

from dataset_builder.synthetic import COLOURS, FORMALITIES, MATERIALS, PATTERNS

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
# Title words (the whitespace-and-punctuation pre-tokenizer splits "polka-dot" in three); others are [UNK].
TITLE_WORDS = " ".join([*(name for name, _ in COLOURS), *PATTERNS, *FORMALITIES, *MATERIALS, "shoes tops bottoms"])
VOCABULARY = SPECIAL_TOKENS + sorted(set(re.findall(r"\w+|[^\w\s]", TITLE_WORDS)))
MAX_TEXT_LENGTH = 16  # positions of the text towers: a title has at most 7 tokens with BOS and EOS
PROJECTION_DIM = 8  # CLIP's shared image-text space
HIDDEN_SIZE = 16  # every tower's width (SigLIP's features and ViT's pooled output have this size)
# Processor statistics that differ from ImageNet's and CLIP's defaults.
IMAGE_MEAN = (0.3, 0.4, 0.5)
IMAGE_STD = (0.2, 0.25, 0.3)

TINY_TOWER = {
    "hidden_size": HIDDEN_SIZE,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}
TINY_TEXT_TOWER = {
    **TINY_TOWER,
    "vocab_size": len(VOCABULARY),
    "max_position_embeddings": MAX_TEXT_LENGTH,
    "pad_token_id": PAD_ID,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
}
TINY_VISION_TOWER = {**TINY_TOWER, "image_size": 32, "patch_size": 8}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Lower-cased words of `VOCABULARY` framed by BOS and EOS (CLIP's text tower pools at EOS)."""
    tokenizer = Tokenizer(WordLevel({word: index for index, word in enumerate(VOCABULARY)}, unk_token="[UNK]"))
    tokenizer.normalizer = Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.post_processor = TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", BOS_ID), ("[EOS]", EOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=MAX_TEXT_LENGTH,
    )


def save_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A CLIP with both towers, its `CLIPImageProcessor` (resize to 40, centre-crop 32) and the tiny tokenizer."""
    torch.manual_seed(seed)
    config = CLIPConfig(text_config=TINY_TEXT_TOWER, vision_config=TINY_VISION_TOWER, projection_dim=PROJECTION_DIM)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}, image_mean=IMAGE_MEAN, image_std=IMAGE_STD
    )
    image_processor.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return Path(folder)


def save_tiny_siglip(folder: str | Path, seed: int = 0) -> Path:
    """A SigLIP with both towers, its `SiglipImageProcessor` (resize to 32x32) and the tiny tokenizer."""
    torch.manual_seed(seed)
    config = SiglipConfig(text_config=TINY_TEXT_TOWER, vision_config=TINY_VISION_TOWER)
    SiglipModel(config).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}, image_mean=IMAGE_MEAN, image_std=IMAGE_STD).save_pretrained(
        folder
    )
    tiny_tokenizer().save_pretrained(folder)
    return Path(folder)


def tiny_vit_config() -> ViTConfig:
    return ViTConfig(**TINY_VISION_TOWER)


def tiny_vit_image_processor() -> ViTImageProcessor:
    return ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=IMAGE_MEAN, image_std=IMAGE_STD)


def save_tiny_vit(folder: str | Path, seed: int = 0) -> Path:
    """A plain ViT backbone (with its pooler) and its `ViTImageProcessor`; no tokenizer: it takes images only."""
    torch.manual_seed(seed)
    ViTModel(tiny_vit_config()).save_pretrained(folder)
    tiny_vit_image_processor().save_pretrained(folder)
    return Path(folder)


TINY_MODEL_SAVERS = {"clip": save_tiny_clip, "siglip": save_tiny_siglip, "vit": save_tiny_vit}

__all__ = [
    "MAX_TEXT_LENGTH",
    "PROJECTION_DIM",
    "HIDDEN_SIZE",
    "TINY_MODEL_SAVERS",
    "save_tiny_clip",
    "save_tiny_siglip",
    "save_tiny_vit",
    "tiny_tokenizer",
    "tiny_vit_config",
    "tiny_vit_image_processor",
]
