"""FashionResNet: a torchvision ResNet-18 fine-tuned to embed fashion item images, as a Hugging Face model."""

import os
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_fashion_resnet import FashionResNetConfig

logger = logging.get_logger(__name__)


def imagenet_weights_path() -> str:
    """Where torchvision caches the ImageNet ResNet-18 weights (`$TORCH_HOME/hub/checkpoints/...`)."""
    filename = os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


@dataclass
class FashionResNetOutput(ModelOutput):
    r"""
    Output of [`FashionResNetModel`].

    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        Cross-entropy of the category classification.
    logits (`torch.FloatTensor` of shape `(batch_size, num_categories)`):
        Category scores (before softmax).
    embeddings (`torch.FloatTensor` of shape `(batch_size, embedding_dim)`):
        The item embeddings: the output of the layer that replaced ResNet-18's final layer.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class FashionResNetPreTrainedModel(PreTrainedModel):
    config: FashionResNetConfig
    config_class = FashionResNetConfig
    base_model_prefix = "resnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):
            # torchvision's ResNet initialisation: BatchNorm follows every convolution.
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if self.config.pretrained_backbone and module is getattr(getattr(self, "resnet", None), "fc", None):
            # Initialisation visits modules children-first and skips parameter-less containers, so the backbone's
            # last child (its final layer) is where every other backbone tensor is already initialised and can be
            # overwritten by ImageNet weights. Tensors loaded from a checkpoint are flagged and `init.copy_` skips them.
            self._load_imagenet_weights(self.resnet)

    @staticmethod
    def _load_imagenet_weights(backbone: ResNet) -> None:
        path = imagenet_weights_path()
        if not os.path.isfile(path):
            logger.warning(
                f"`pretrained_backbone=True` but torchvision's ImageNet ResNet-18 weights are not cached at {path}; "
                "the backbone is randomly initialised instead (nothing is downloaded). Put the file there, e.g. with "
                "`torchvision.models.resnet18(weights='IMAGENET1K_V1')` on a machine with internet access."
            )
            return
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        for name, tensor in backbone.state_dict(keep_vars=True).items():
            if name.startswith("fc."):  # replaced by the embedding layer
                continue
            init.copy_(tensor, state_dict[name])
        logger.info(f"Initialised the ResNet-18 backbone from ImageNet weights at {path}.")


class FashionResNetModel(FashionResNetPreTrainedModel):
    """ResNet-18 with its final layer replaced by `Linear(512, embedding_dim)`, then a category classifier."""

    def __init__(self, config: FashionResNetConfig):
        super().__init__(config)
        self.config = config
        # torchvision's `num_classes` sizes the final layer, which is exactly the embedding layer we want.
        self.resnet = resnet18(weights=None, num_classes=config.embedding_dim)
        if config.num_channels != 3:
            self.resnet.conv1 = nn.Conv2d(config.num_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.embedding_dim, config.num_categories)
        self.post_init()

    def get_image_embeddings(self, pixel_values: torch.FloatTensor) -> torch.FloatTensor:
        """Item embeddings of preprocessed images `(batch, channels, size, size)` -> `(batch, embedding_dim)`."""
        return self.resnet(pixel_values)

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
    ) -> FashionResNetOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
            Images preprocessed by `umbert_hf.data.image_processing` (ImageNet normalisation).
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Category indices (see `config.id2label`); when given, the cross-entropy loss is returned.
        return_dict (`bool`, *optional*, defaults to `config.return_dict`):
            Return a [`FashionResNetOutput`] rather than a tuple `([loss,] logits, embeddings)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        embeddings = self.resnet(pixel_values)  # (batch, embedding_dim)
        logits = self.classifier(self.dropout(embeddings))  # (batch, num_categories)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.to(logits.device))

        if not return_dict:
            output = (logits, embeddings)
            return ((loss,) + output) if loss is not None else output
        return FashionResNetOutput(loss=loss, logits=logits, embeddings=embeddings)


__all__ = ["FashionResNetModel", "FashionResNetPreTrainedModel", "FashionResNetOutput"]
