"""SSIM autoencoder: the original umBERT project's GDN convolutional image autoencoder, as a Hugging Face model."""

import math
from dataclasses import dataclass

import torch
from pytorch_msssim import ssim
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_ssim_autoencoder import SsimAutoEncoderConfig

logger = logging.get_logger(__name__)


class _LowerBound(torch.autograd.Function):
    """`max(x, bound)` whose gradient still flows below the bound when it pushes `x` back up (Ballé et al.)."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(inputs)
        ctx.bound = bound
        return inputs.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (inputs,) = ctx.saved_tensors
        # A plain clamp would freeze a parameter stuck below the bound; let through gradients that raise it.
        pass_through = (inputs >= ctx.bound) | (grad_output < 0)
        return grad_output * pass_through.to(grad_output.dtype), None


class GDN(nn.Module):
    r"""
    Generalized divisive normalization (Ballé, Laparra and Simoncelli, 2016) over channels:
    `y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j^2)`, or with `inverse=True` (IGDN) `y_i = x_i * sqrt(...)`.

    `beta` and `gamma` are stored reparametrised as `sqrt(value + offset**2)` and bounded from below, so the effective
    `beta >= beta_min > 0` and `gamma >= 0` however training moves the stored parameters.
    """

    def __init__(
        self,
        num_channels: int,
        inverse: bool = False,
        beta_min: float = 1e-6,
        gamma_init: float = 0.1,
        reparam_offset: float = 2**-18,
    ):
        super().__init__()
        self.num_channels = num_channels
        self.inverse = inverse
        self.gamma_init = gamma_init
        self.pedestal = reparam_offset**2
        self.beta_bound = math.sqrt(beta_min + self.pedestal)
        self.gamma_bound = math.sqrt(self.pedestal)
        self.beta = nn.Parameter(torch.empty(num_channels))
        self.gamma = nn.Parameter(torch.empty(num_channels, num_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Identity-like start: `beta = 1`, `gamma = gamma_init * I`."""
        with torch.no_grad():
            self.beta.copy_(self.initial_beta())
            self.gamma.copy_(self.initial_gamma())

    def initial_beta(self) -> torch.Tensor:
        return torch.sqrt(torch.ones(self.num_channels) + self.pedestal)

    def initial_gamma(self) -> torch.Tensor:
        return torch.sqrt(self.gamma_init * torch.eye(self.num_channels) + self.pedestal)

    def effective_beta(self) -> torch.Tensor:
        """The `beta` actually used, `>= beta_min`: shape `(channels,)`."""
        return _LowerBound.apply(self.beta, self.beta_bound) ** 2 - self.pedestal

    def effective_gamma(self) -> torch.Tensor:
        """The `gamma` actually used, `>= 0`: shape `(channels, channels)`, row i weighs the inputs of channel i."""
        return _LowerBound.apply(self.gamma, self.gamma_bound) ** 2 - self.pedestal

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gamma = self.effective_gamma().view(self.num_channels, self.num_channels, 1, 1)
        # The weighted sum over channels of x_j^2 is a 1x1 convolution.
        norm = nn.functional.conv2d(hidden_states**2, gamma, bias=self.effective_beta()).sqrt()
        return hidden_states * norm if self.inverse else hidden_states / norm

    def extra_repr(self) -> str:
        return f"{self.num_channels}, inverse={self.inverse}"


@dataclass
class SsimAutoEncoderOutput(ModelOutput):
    r"""
    Output of [`SsimAutoEncoderModel`].

    loss (`torch.FloatTensor` of shape `()`, *optional*, returned unless `return_loss=False`):
        `config.loss_scale * (1 - SSIM(reconstruction, pixel_values))`.
    reconstruction (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
        The decoded images, in `[0, 1]`.
    embeddings (`torch.FloatTensor` of shape `(batch_size, embedding_dim)`):
        The bottleneck code: the item embedding.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class SsimAutoEncoderEncoder(nn.Module):
    def __init__(self, config: SsimAutoEncoderConfig):
        super().__init__()
        num_layers = config.num_downsampling_layers
        layers = []
        for index in range(num_layers):
            in_channels = config.num_channels if index == 0 else config.hidden_channels
            out_channels = config.latent_channels if index == num_layers - 1 else config.hidden_channels
            layers.append(
                nn.Conv2d(
                    in_channels, out_channels, config.kernel_size, stride=2, padding=config.kernel_size // 2, bias=False
                )
            )
            if index < num_layers - 1:
                layers.append(
                    GDN(out_channels, False, config.gdn_beta_min, config.gdn_gamma_init, config.gdn_reparam_offset)
                )
        self.convolutions = nn.Sequential(*layers)
        flat_size = config.latent_channels * config.latent_size**2
        self.bottleneck = nn.Sequential(
            nn.Linear(flat_size, config.intermediate_size),
            nn.ReLU(),
            nn.Linear(config.intermediate_size, config.embedding_dim),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.convolutions(pixel_values)  # (batch, latent_channels, latent_size, latent_size)
        return self.bottleneck(hidden_states.flatten(1))  # (batch, embedding_dim)


class SsimAutoEncoderDecoder(nn.Module):
    def __init__(self, config: SsimAutoEncoderConfig):
        super().__init__()
        self.latent_shape = (config.latent_channels, config.latent_size, config.latent_size)
        self.bottleneck = nn.Sequential(
            nn.Linear(config.embedding_dim, config.intermediate_size),
            nn.ReLU(),
            nn.Linear(config.intermediate_size, math.prod(self.latent_shape)),
        )
        num_layers = config.num_downsampling_layers
        layers = []
        for index in range(num_layers):
            in_channels = config.latent_channels if index == 0 else config.hidden_channels
            out_channels = config.num_channels if index == num_layers - 1 else config.hidden_channels
            layers.append(
                nn.ConvTranspose2d(
                    in_channels,
                    out_channels,
                    config.kernel_size,
                    stride=2,
                    padding=config.kernel_size // 2,
                    output_padding=1,
                    bias=False,
                )
            )
            if index < num_layers - 1:
                layers.append(
                    GDN(out_channels, True, config.gdn_beta_min, config.gdn_gamma_init, config.gdn_reparam_offset)
                )
        self.deconvolutions = nn.Sequential(*layers)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        hidden_states = self.bottleneck(embeddings).view(-1, *self.latent_shape)  # (batch, C, latent, latent)
        return torch.sigmoid(self.deconvolutions(hidden_states))  # (batch, channels, image_size, image_size)


class SsimAutoEncoderPreTrainedModel(PreTrainedModel):
    config: SsimAutoEncoderConfig
    config_class = SsimAutoEncoderConfig
    base_model_prefix = "autoencoder"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # Variance-preserving initialisation, and a zero output layer. With small initial signals (torch's default or
        # the 0.02-normal initialisation) the decoder starts out flat grey, Adam's normalised steps grow every weight
        # at once, the inverse GDN layers (quadratic for large inputs) push the sigmoid into saturation and every
        # gradient becomes exactly zero within a few dozen steps. With healthy signals but random output structure,
        # the first steps instead shrink everything to remove that structure and training stalls on SSIM's flat-image
        # plateau. Starting flat (zero output layer) with healthy inner signals avoids both.
        if isinstance(module, nn.ConvTranspose2d) and module is self._output_layer():
            init.zeros_(module.weight)
        elif isinstance(module, nn.Linear):
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, nonlinearity="linear")
        elif isinstance(module, nn.ConvTranspose2d):
            # Each output pixel of a stride-s transposed convolution sums in_channels * k^2 / s^2 inputs.
            in_channels, _, height, width = module.weight.shape
            fan_in = in_channels * height * width / (module.stride[0] * module.stride[1])
            init.normal_(module.weight, mean=0.0, std=fan_in**-0.5)
        elif isinstance(module, GDN):
            init.copy_(module.beta, module.initial_beta())
            init.copy_(module.gamma, module.initial_gamma())

    def _output_layer(self) -> nn.Module | None:
        decoder = getattr(self, "decoder", None)
        return decoder.deconvolutions[-1] if decoder is not None else None


class SsimAutoEncoderModel(SsimAutoEncoderPreTrainedModel):
    """Encoder (strided convolutions + GDN, linear bottleneck) -> code -> mirrored decoder (inverse GDN, sigmoid)."""

    def __init__(self, config: SsimAutoEncoderConfig):
        super().__init__(config)
        self.config = config
        self.encoder = SsimAutoEncoderEncoder(config)
        self.decoder = SsimAutoEncoderDecoder(config)
        self.post_init()

    def get_image_embeddings(self, pixel_values: torch.FloatTensor) -> torch.FloatTensor:
        """Codes of preprocessed images `(batch, channels, size, size)` in `[0, 1]` -> `(batch, embedding_dim)`."""
        return self.encoder(pixel_values)

    def ssim(self, reconstruction: torch.Tensor, pixel_values: torch.Tensor, size_average: bool = True) -> torch.Tensor:
        """SSIM between reconstructions and inputs (both in `[0, 1]`), per image unless `size_average`."""
        return ssim(
            reconstruction.float(),
            pixel_values.float(),
            data_range=1.0,
            size_average=size_average,
            win_size=self.config.ssim_window_size,
            win_sigma=self.config.ssim_window_sigma,
        )

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        return_loss: bool = True,
        return_dict: bool | None = None,
    ) -> SsimAutoEncoderOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
            Images in `[0, 1]` preprocessed by `umbert_hf.data.image_processing` (no normalisation).
        return_loss (`bool`, *optional*, defaults to `True`):
            Compute the SSIM loss against the input (the target of an autoencoder is its input).
        return_dict (`bool`, *optional*, defaults to `config.return_dict`):
            Return a [`SsimAutoEncoderOutput`] rather than a tuple `([loss,] reconstruction, embeddings)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        embeddings = self.encoder(pixel_values)  # (batch, embedding_dim)
        reconstruction = self.decoder(embeddings)  # (batch, channels, image_size, image_size)

        loss = None
        if return_loss:
            loss = self.config.loss_scale * (1.0 - self.ssim(reconstruction, pixel_values))

        if not return_dict:
            output = (reconstruction, embeddings)
            return ((loss,) + output) if loss is not None else output
        return SsimAutoEncoderOutput(loss=loss, reconstruction=reconstruction, embeddings=embeddings)


__all__ = ["GDN", "SsimAutoEncoderModel", "SsimAutoEncoderPreTrainedModel", "SsimAutoEncoderOutput"]
