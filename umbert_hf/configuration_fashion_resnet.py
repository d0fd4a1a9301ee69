"""FashionResNet model configuration: a ResNet-18 fine-tuned to embed and classify fashion item images."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import logging

from .categories import DEFAULT_CATEGORIES

logger = logging.get_logger(__name__)


def set_category_labels(config: PreTrainedConfig) -> None:
    """`categories` as a list (default `DEFAULT_CATEGORIES`) and the classifier's `id2label` / `label2id` from it.

    A config saved before `categories` existed (or written by hand) may only carry `id2label`. Raises a `ValueError`
    unless the categories are at least two unique non-empty strings.
    """
    if config.categories is None:
        config.categories = (
            [config.id2label[key] for key in sorted(config.id2label, key=int)]
            if config.id2label
            else list(DEFAULT_CATEGORIES)
        )
    config.categories = list(config.categories)
    if len(config.categories) < 2:
        raise ValueError(f"`categories` must name at least two classes, got {config.categories!r}.")
    if not all(isinstance(name, str) and name for name in config.categories):
        raise ValueError(f"`categories` must be non-empty strings, got {config.categories!r}.")
    if len(set(config.categories)) != len(config.categories):
        raise ValueError(f"`categories` must be unique, got {config.categories!r}.")
    config.id2label = dict(enumerate(config.categories))
    config.label2id = {name: index for index, name in enumerate(config.categories)}


@strict
class FashionResNetConfig(PreTrainedConfig):
    r"""
    Configuration of [`FashionResNetModel`]: a torchvision ResNet-18 whose final layer is replaced by a linear layer to
    `embedding_dim` (the item embedding) followed by a classification layer over the outfit slot categories, as in
    the original umBERT project.

    Args:
        categories: slot category names, in label order; they become `id2label` / `label2id`.
        embedding_dim: size of the item embedding (the output of the replaced final layer).
        num_channels: number of input image channels.
        image_size: side of the square crops fed to the network. 224 as in the original (ImageNet crops); a lower
            value (e.g. 64) makes CPU training and extraction much faster for demos.
        pretrained_backbone: initialise the backbone from torchvision's ImageNet weights when they are present in the
            local torch hub cache (`torch.hub.get_dir()/checkpoints`); nothing is ever downloaded. When they are
            missing the backbone is randomly initialised and a warning says so. Only used when a model is created
            from this config, never when loading a saved checkpoint.
        classifier_dropout: dropout applied to the embedding before the classification layer.
        initializer_range: standard deviation of the normal initialiser of the linear layers.

    Example:

    ```python
    >>> from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
    >>> from umbert_hf.modeling_fashion_resnet import FashionResNetModel

    >>> config = FashionResNetConfig(image_size=64)
    >>> model = FashionResNetModel(config)
    ```"""

    model_type = "fashion-resnet"

    categories: list[str] | tuple[str, ...] | None = None
    embedding_dim: int = 128
    num_channels: int = 3
    image_size: int = 224
    pretrained_backbone: bool = False
    classifier_dropout: float | int = 0.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        set_category_labels(self)
        self._check_values()
        super().__post_init__(**kwargs)

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    def _check_values(self) -> None:
        """Raise a `ValueError` naming the first invalid value (`set_category_labels` checked the categories)."""
        if self.embedding_dim < 1:
            raise ValueError(f"`embedding_dim` must be positive, got {self.embedding_dim}.")
        if self.num_channels < 1:
            raise ValueError(f"`num_channels` must be positive, got {self.num_channels}.")
        if self.image_size < 32:
            # ResNet-18 downsamples by 32; smaller inputs collapse to nothing before the pooling.
            raise ValueError(f"`image_size` must be at least 32, got {self.image_size}.")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"`classifier_dropout` must be in [0, 1), got {self.classifier_dropout}.")


__all__ = ["DEFAULT_CATEGORIES", "FashionResNetConfig", "set_category_labels"]
