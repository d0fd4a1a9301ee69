"""Both image encoders' `forward` accept only their documented arguments: a misspelt one raises `TypeError`."""

import pytest
import torch

from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.modeling_fashion_resnet import FashionResNetModel
from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel


def tiny_resnet() -> tuple[FashionResNetModel, dict]:
    config = FashionResNetConfig(image_size=32, embedding_dim=8, categories=["shoes", "tops"])
    return FashionResNetModel(config).eval(), {"labels": torch.tensor([0, 1])}


def tiny_autoencoder() -> tuple[SsimAutoEncoderModel, dict]:
    config = SsimAutoEncoderConfig(
        image_size=16, hidden_channels=8, latent_channels=8, intermediate_size=16, embedding_dim=8, ssim_window_size=3
    )
    return SsimAutoEncoderModel(config).eval(), {"return_loss": True}


@pytest.mark.parametrize("build", [tiny_resnet, tiny_autoencoder])
def test_forward_refuses_unknown_arguments(build):
    torch.manual_seed(0)
    model, documented = build()
    pixel_values = torch.rand(2, 3, model.config.image_size, model.config.image_size)
    with pytest.raises(TypeError, match="unexpected keyword argument 'label'"):
        model(pixel_values, label=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="unexpected keyword argument 'output_hidden_states'"):
        model(pixel_values, output_hidden_states=True)
    # The documented arguments still work, `return_dict` included.
    assert model(pixel_values, **documented).loss is not None
    assert isinstance(model(pixel_values, **documented, return_dict=False), tuple)
