"""SSIM autoencoder model configuration: the original umBERT project's convolutional image autoencoder."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)


@strict
class SsimAutoEncoderConfig(PreTrainedConfig):
    r"""
    Configuration of [`SsimAutoEncoderModel`]: strided 5x5 convolutions with GDN (generalized divisive
    normalization), a linear bottleneck to an `embedding_dim` code, a mirrored decoder with inverse GDN and a sigmoid
    output, trained with the loss `loss_scale * (1 - SSIM)`.

    The defaults reproduce the original model (128x128 inputs, 128 channels, four downsampling layers, a 1024-unit
    bottleneck layer, 128-d code). `image_size=64` with `hidden_channels=32` trains in about a minute on two CPU
    cores, which the synthetic demo uses.

    Args:
        num_channels: number of image channels (input and reconstruction).
        image_size: side of the square input images; must be divisible by `2 ** num_downsampling_layers`.
        hidden_channels: channels of the inner convolutions (`M` in the original).
        latent_channels: channels of the last convolution, flattened into the bottleneck (`C` in the original).
        num_downsampling_layers: number of stride-2 convolutions (each halves the image side).
        kernel_size: convolution kernel size (odd).
        intermediate_size: hidden units of the bottleneck MLP on each side of the code.
        embedding_dim: size of the code, i.e. of the item embedding.
        gdn_beta_min: lower bound of GDN's `beta` (keeps the denominator away from zero).
        gdn_gamma_init: initial diagonal of GDN's `gamma`.
        gdn_reparam_offset: GDN reparametrisation offset (Ballé et al.): `beta` and `gamma` are stored as the square
            roots of `value + offset**2`, which keeps gradients well-behaved near zero.
        ssim_window_size / ssim_window_sigma: Gaussian window of the SSIM loss.
        loss_scale: the loss is `loss_scale * (1 - SSIM)`; the original used 100.
        initializer_range: standard deviation of the normal initialiser of the linear layers.
    """

    model_type = "ssim-autoencoder"

    num_channels: int = 3
    image_size: int = 128
    hidden_channels: int = 128
    latent_channels: int = 128
    num_downsampling_layers: int = 4
    kernel_size: int = 5
    intermediate_size: int = 1024
    embedding_dim: int = 128
    gdn_beta_min: float = 1e-6
    gdn_gamma_init: float = 0.1
    gdn_reparam_offset: float = 2**-18
    ssim_window_size: int = 11
    ssim_window_sigma: float = 1.5
    loss_scale: float | int = 1.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self._check_values()
        super().__post_init__(**kwargs)

    @property
    def latent_size(self) -> int:
        """Side of the feature map entering the bottleneck."""
        return self.image_size // 2**self.num_downsampling_layers

    def _check_values(self) -> None:
        """Raise a `ValueError` naming the first invalid value."""
        for name in ("num_channels", "hidden_channels", "latent_channels", "intermediate_size", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}.")
        if self.num_downsampling_layers < 1:
            raise ValueError(f"`num_downsampling_layers` must be at least 1, got {self.num_downsampling_layers}.")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd number, got {self.kernel_size}.")
        factor = 2**self.num_downsampling_layers
        if self.image_size < factor or self.image_size % factor != 0:
            raise ValueError(
                f"`image_size` must be a positive multiple of 2**num_downsampling_layers = {factor}, "
                f"got {self.image_size}."
            )
        if self.gdn_beta_min <= 0:
            raise ValueError(f"`gdn_beta_min` must be positive, got {self.gdn_beta_min}.")
        if self.gdn_gamma_init < 0:
            raise ValueError(f"`gdn_gamma_init` must be non-negative, got {self.gdn_gamma_init}.")
        if self.gdn_reparam_offset <= 0:
            raise ValueError(f"`gdn_reparam_offset` must be positive, got {self.gdn_reparam_offset}.")
        if self.ssim_window_size < 1 or self.ssim_window_size % 2 == 0:
            raise ValueError(f"`ssim_window_size` must be a positive odd number, got {self.ssim_window_size}.")
        if self.loss_scale <= 0:
            raise ValueError(f"`loss_scale` must be positive, got {self.loss_scale}.")


__all__ = ["SsimAutoEncoderConfig"]
