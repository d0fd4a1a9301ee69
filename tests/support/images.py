"""Tiny image-encoder testers (FashionResNet, SSIM autoencoder) and in-memory PNG images shared by the image tests."""

import io

import torch
from PIL import Image

from umbert_hf.configuration_fashion_efficientnet import FashionEfficientNetConfig
from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.modeling_fashion_efficientnet import FashionEfficientNetModel
from umbert_hf.modeling_fashion_resnet import FashionResNetModel
from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel


class FashionResNetModelTester:
    """Tiny inputs for the (fixed-size) ResNet-18: batch 3, 32-pixel images, 3 categories, 16-d embeddings."""

    batch_size = 3
    image_size = 32
    embedding_dim = 16
    categories = ["shoes", "tops", "bags"]

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def config(self, **overrides) -> FashionResNetConfig:
        kwargs = {"image_size": self.image_size, "embedding_dim": self.embedding_dim, "categories": self.categories}
        return FashionResNetConfig(**{**kwargs, **overrides})

    def model(self, **overrides) -> FashionResNetModel:
        torch.manual_seed(0)
        return FashionResNetModel(self.config(**overrides)).eval()

    def pixel_values(self) -> torch.Tensor:
        return torch.randn(self.batch_size, 3, self.image_size, self.image_size, generator=self.generator)

    def labels(self) -> torch.Tensor:
        return torch.randint(len(self.categories), (self.batch_size,), generator=self.generator)


class FashionEfficientNetModelTester(FashionResNetModelTester):
    """A random-weight EfficientNet-Lite0 (the architecture is fixed) on 64-pixel images, 16-d embeddings."""

    image_size = 64

    def config(self, **overrides) -> FashionEfficientNetConfig:
        kwargs = {"image_size": self.image_size, "embedding_dim": self.embedding_dim, "categories": self.categories}
        return FashionEfficientNetConfig(**{"pretrained_backbone": False, **kwargs, **overrides})

    def model(self, **overrides) -> FashionEfficientNetModel:
        torch.manual_seed(0)
        return FashionEfficientNetModel(self.config(**overrides)).eval()


class SsimAutoEncoderModelTester:
    """Tiny autoencoder: batch 3, 16-pixel images, 8 channels, 16-unit bottleneck, 8-d code, SSIM window 3."""

    batch_size = 3

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def config(self, **overrides) -> SsimAutoEncoderConfig:
        kwargs = {
            "image_size": 16,
            "hidden_channels": 8,
            "latent_channels": 8,
            "intermediate_size": 16,
            "embedding_dim": 8,
            "ssim_window_size": 3,
        }
        return SsimAutoEncoderConfig(**{**kwargs, **overrides})

    def model(self, **overrides) -> SsimAutoEncoderModel:
        torch.manual_seed(0)
        return SsimAutoEncoderModel(self.config(**overrides)).eval()

    def pixel_values(self, image_size: int = 16) -> torch.Tensor:
        return torch.rand(self.batch_size, 3, image_size, image_size, generator=self.generator)


def png_bytes(color: tuple[int, int, int], size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = ["FashionEfficientNetModelTester", "FashionResNetModelTester", "SsimAutoEncoderModelTester", "png_bytes"]
