"""Tests of the SSIM autoencoder item encoder and its GDN layers: outputs, SSIM loss, the original architecture,
config checks, save/load and the GDN formula, bounds and training."""

import pytest
import torch
from support.images import SsimAutoEncoderModelTester

from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.modeling_ssim_autoencoder import GDN, SsimAutoEncoderModel, SsimAutoEncoderOutput


def test_autoencoder_outputs_have_the_documented_shapes_and_ranges():
    tester = SsimAutoEncoderModelTester()
    pixel_values = tester.pixel_values()
    outputs = tester.model()(pixel_values)
    assert isinstance(outputs, SsimAutoEncoderOutput)
    assert outputs.reconstruction.shape == pixel_values.shape
    assert outputs.embeddings.shape == (tester.batch_size, 8)
    assert 0.0 <= outputs.reconstruction.min() and outputs.reconstruction.max() <= 1.0
    assert tester.model()(pixel_values, return_loss=False).loss is None


def test_autoencoder_loss_is_scaled_one_minus_ssim_and_has_gradients():
    from pytorch_msssim import ssim

    tester = SsimAutoEncoderModelTester()
    model = tester.model(loss_scale=100.0).train()
    pixel_values = tester.pixel_values()
    outputs = model(pixel_values)
    expected = 100.0 * (1.0 - ssim(outputs.reconstruction, pixel_values, data_range=1.0, win_size=3))
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_autoencoder_code_is_the_encoder_output():
    tester = SsimAutoEncoderModelTester()
    model, pixel_values = tester.model(), tester.pixel_values()
    outputs = model(pixel_values)
    torch.testing.assert_close(model.get_image_embeddings(pixel_values), outputs.embeddings)
    torch.testing.assert_close(model.decoder(outputs.embeddings), outputs.reconstruction)


def test_autoencoder_default_config_is_the_original_architecture():
    model = SsimAutoEncoderModel(SsimAutoEncoderConfig())
    convolutions = [layer for layer in model.encoder.convolutions if isinstance(layer, torch.nn.Conv2d)]
    assert len(convolutions) == 4
    assert all(conv.kernel_size == (5, 5) and conv.stride == (2, 2) for conv in convolutions)
    assert sum(isinstance(layer, GDN) and not layer.inverse for layer in model.encoder.convolutions) == 3
    assert sum(isinstance(layer, GDN) and layer.inverse for layer in model.decoder.deconvolutions) == 3
    assert model.encoder.bottleneck[0].in_features == 128 * 8 * 8  # 128x128 input, four halvings
    assert model.encoder.bottleneck[-1].out_features == 128


def test_autoencoder_save_load_round_trip_gives_identical_outputs(tmp_path):
    tester = SsimAutoEncoderModelTester()
    model, pixel_values = tester.model(), tester.pixel_values()
    with torch.no_grad():
        model.encoder.convolutions[1].gamma.mul_(3.0)  # trained-looking GDN parameters must survive too
    model.save_pretrained(tmp_path)
    reloaded = SsimAutoEncoderModel.from_pretrained(tmp_path).eval()
    expected, actual = model(pixel_values), reloaded(pixel_values)
    torch.testing.assert_close(actual.reconstruction, expected.reconstruction)
    torch.testing.assert_close(actual.loss, expected.loss)


def test_autoencoder_config_rejects_bad_values():
    with pytest.raises(ValueError, match="multiple of"):
        SsimAutoEncoderConfig(image_size=100)
    with pytest.raises(ValueError, match="kernel_size"):
        SsimAutoEncoderConfig(kernel_size=4)
    with pytest.raises(ValueError, match="gdn_beta_min"):
        SsimAutoEncoderConfig(gdn_beta_min=0.0)


# ------------------------------------------------------------------------------------------------------------ GDN


def direct_gdn(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, inverse: bool) -> torch.Tensor:
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2) (times for the inverse), pixel by pixel with plain loops."""
    out = torch.empty_like(x)
    channels = x.shape[1]
    for i in range(channels):
        norm = beta[i] + sum(gamma[i, j] * x[:, j] ** 2 for j in range(channels))
        out[:, i] = x[:, i] * norm.sqrt() if inverse else x[:, i] / norm.sqrt()
    return out


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_the_direct_formula(inverse):
    generator = torch.Generator().manual_seed(0)
    layer = GDN(4, inverse=inverse)
    with torch.no_grad():
        layer.beta.copy_(torch.rand(4, generator=generator) + 0.5)
        layer.gamma.copy_(torch.rand(4, 4, generator=generator))
    x = torch.randn(2, 4, 5, 3, generator=generator)
    expected = direct_gdn(x, layer.effective_beta(), layer.effective_gamma(), inverse)
    torch.testing.assert_close(layer(x), expected)
    # The reparametrisation: effective = stored^2 - offset^2.
    torch.testing.assert_close(layer.effective_beta(), layer.beta**2 - layer.pedestal)


def test_gdn_starts_as_beta_one_and_diagonal_gamma():
    layer = GDN(3, gamma_init=0.1)
    torch.testing.assert_close(layer.effective_beta(), torch.ones(3))
    torch.testing.assert_close(layer.effective_gamma(), 0.1 * torch.eye(3), atol=1e-9, rtol=0)


def test_gdn_parameter_bounds_hold_whatever_the_stored_values():
    layer = GDN(3, beta_min=1e-3)
    with torch.no_grad():
        layer.beta.fill_(-2.0)
        layer.gamma.fill_(-2.0)
    beta, gamma = layer.effective_beta(), layer.effective_gamma()
    assert (beta >= 1e-3 - 1e-9).all() and (gamma >= 0).all()
    torch.testing.assert_close(beta, torch.full((3,), 1e-3))
    x = torch.randn(2, 3, 4, 4)
    assert torch.isfinite(layer(x)).all()  # no division by zero however far below the bounds training went


def test_gdn_lower_bound_lets_gradients_push_parameters_back_up():
    layer = GDN(2, beta_min=1e-3)
    with torch.no_grad():
        layer.beta.fill_(-1.0)  # far below the bound
    (-layer.effective_beta().sum()).backward()  # minimising this wants a larger beta: gradient < 0 passes
    assert (layer.beta.grad < 0).all()
    layer.beta.grad = None
    layer.effective_beta().sum().backward()  # wants a smaller beta, which the bound forbids: blocked
    assert (layer.beta.grad == 0).all()


def test_gdn_parameters_train_in_the_autoencoder():
    tester = SsimAutoEncoderModelTester()
    model = tester.model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pixel_values = tester.pixel_values()
    for _ in range(2):  # the output layer starts at zero: the first step only moves it
        optimizer.zero_grad()
        model(pixel_values).loss.backward()
        optimizer.step()
    gdn = model.encoder.convolutions[1]
    assert isinstance(gdn, GDN) and gdn.gamma.grad is not None and gdn.beta.grad.abs().sum() > 0


def test_autoencoder_starts_from_a_flat_reconstruction_with_healthy_inner_signals():
    tester = SsimAutoEncoderModelTester()
    model = tester.model()
    outputs = model(tester.pixel_values())
    torch.testing.assert_close(outputs.reconstruction, torch.full_like(outputs.reconstruction, 0.5))
    assert outputs.embeddings.std() > 0.1  # not the vanishing signals that stall training
