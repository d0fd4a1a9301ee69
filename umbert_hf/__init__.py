"""umbert-hf: outfit completion with umBERT and WumBERT as Hugging Face models.

Importing the package registers every model with `AutoConfig` and `AutoModel`, and marks each class for
`register_for_auto_class`, so a saved folder carries its modeling code for `trust_remote_code` loading. It also
registers the `outfit-completion` pipeline: `pipeline("outfit-completion", model=umbert_model)`.
"""

from transformers import AutoConfig, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_fashion_efficientnet import FashionEfficientNetConfig
from .configuration_fashion_resnet import FashionResNetConfig
from .configuration_ssim_autoencoder import SsimAutoEncoderConfig
from .configuration_umbert import UmBertConfig, WumBertConfig
from .masking import expand_fill_in_the_blank, mask_slots
from .modeling_fashion_efficientnet import FashionEfficientNetModel
from .modeling_fashion_resnet import FashionResNetModel
from .modeling_ssim_autoencoder import SsimAutoEncoderModel
from .modeling_umbert import UmBertModel, UmBertOutput, WumBertModel
from .pipeline_outfit_completion import PIPELINE_TASK, OutfitCompletionPipeline
from .retrieval import CategoryIndex, top_k

__version__ = "0.1.0"

_REGISTERED_MODELS = [
    (UmBertConfig, UmBertModel),
    (WumBertConfig, WumBertModel),
    (FashionResNetConfig, FashionResNetModel),
    (FashionEfficientNetConfig, FashionEfficientNetModel),
    (SsimAutoEncoderConfig, SsimAutoEncoderModel),
]


def _register_auto_classes() -> None:
    for config_class, model_class in _REGISTERED_MODELS:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")
    PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=OutfitCompletionPipeline, pt_model=AutoModel)


_register_auto_classes()

__all__ = [
    "CategoryIndex",
    "FashionEfficientNetConfig",
    "FashionEfficientNetModel",
    "FashionResNetConfig",
    "FashionResNetModel",
    "OutfitCompletionPipeline",
    "SsimAutoEncoderConfig",
    "SsimAutoEncoderModel",
    "UmBertConfig",
    "UmBertModel",
    "UmBertOutput",
    "WumBertConfig",
    "WumBertModel",
    "expand_fill_in_the_blank",
    "mask_slots",
    "top_k",
]
