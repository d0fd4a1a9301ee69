"""Tests of the item-image preprocessing shared by both encoders: resizing, cropping and normalisation, training
augmentation, decoding of the usual image inputs, and `encode_images`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from support.images import FashionResNetModelTester, png_bytes

from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
from umbert_hf.data.image_processing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    ImagePreprocessing,
    build_image_transforms,
    decode_image,
    encode_images,
)


def test_resnet_preprocessing_crops_and_normalises_with_imagenet_statistics():
    preprocessing = ImagePreprocessing.for_encoder("resnet", image_size=32)
    assert preprocessing.resize_size == round(32 * 256 / 224)
    pixel_values = preprocessing([png_bytes((255, 255, 255), size=50)])
    assert pixel_values.shape == (1, 3, 32, 32)
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(pixel_values[0, :, 16, 16], expected)


def test_autoencoder_preprocessing_resizes_without_normalisation():
    preprocessing = ImagePreprocessing.for_encoder("autoencoder", image_size=16)
    pixel_values = preprocessing([png_bytes((255, 0, 51), size=50)])
    assert pixel_values.shape == (1, 3, 16, 16)
    torch.testing.assert_close(pixel_values[0, :, 8, 8], torch.tensor([1.0, 0.0, 0.2]))


def test_preprocessing_defaults_follow_the_original_models_and_the_config():
    assert ImagePreprocessing.for_encoder("fashion-resnet").image_size == 224
    assert ImagePreprocessing.for_encoder("ssim-autoencoder").image_size == 128
    assert ImagePreprocessing.from_config(FashionResNetConfig(image_size=64)).image_size == 64
    with pytest.raises(ValueError, match="Unknown image encoder"):
        ImagePreprocessing.for_encoder("vit")


def test_training_transforms_augment_but_keep_the_shape():
    torch.manual_seed(0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    for encoder_type in ("resnet", "autoencoder"):
        preprocessing = ImagePreprocessing.for_encoder(encoder_type, image_size=32)
        transform = preprocessing.load_transform(train=True)
        outputs = [transform(image) for _ in range(6)]
        assert all(output.shape == (3, 32, 32) and output.dtype == torch.uint8 for output in outputs)
        assert any(not torch.equal(outputs[0], output) for output in outputs[1:])
    # Evaluation is deterministic: the autoencoder leaves a 32 x 32 photo as it is; the ResNet's resize to 37 leaves a
    # 37 x 37 one as it is, then crops its centre (offset round(5 / 2) = 2, as torchvision rounds).
    square = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (3, 37, 37), dtype=np.uint8))
    autoencoder = ImagePreprocessing.for_encoder("autoencoder", image_size=32).load_transform(train=False)
    resnet = ImagePreprocessing.for_encoder("resnet", image_size=32).load_transform(train=False)
    for _ in range(10):  # a random flip would show with probability 1 - 2**-10
        assert torch.equal(autoencoder(square[:, :32, :32]), square[:, :32, :32])
        assert torch.equal(resnet(square), square[:, 2:34, 2:34])


def test_preprocessing_description_round_trips_through_json():
    preprocessing = ImagePreprocessing.for_encoder("resnet", image_size=64)
    description = json.loads(json.dumps(preprocessing.to_dict()))
    assert ImagePreprocessing.from_dict(description) == preprocessing


def test_build_image_transforms_composes_loading_and_normalisation():
    image = png_bytes((10, 200, 30))  # one colour: resizing and cropping keep it
    expected = (torch.tensor([10, 200, 30]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    resnet = build_image_transforms(FashionResNetConfig(image_size=32))(image)
    torch.testing.assert_close(resnet, expected[:, None, None].expand(3, 32, 32))
    autoencoder = build_image_transforms("autoencoder", image_size=16)(image)  # scaled to [0, 1], not normalised
    torch.testing.assert_close(autoencoder, (torch.tensor([10, 200, 30]) / 255)[:, None, None].expand(3, 16, 16))


def test_decode_image_accepts_the_usual_inputs_and_rejects_bad_ones(tmp_path):
    data = png_bytes((1, 2, 3))
    path = tmp_path / "item.png"
    path.write_bytes(data)
    for source in (data, str(path), {"bytes": data, "path": None}, {"bytes": None, "path": str(path)}):
        assert decode_image(source).getpixel((0, 0)) == (1, 2, 3)
    assert decode_image(Image.new("L", (4, 4))).mode == "RGB"
    for bad in (None, b"", b"not an image", {"bytes": None, "path": None}, str(tmp_path / "missing.png")):
        with pytest.raises(ImageDecodeError):
            decode_image(bad)


def test_encode_images_matches_the_model_on_preprocessed_pixels(tmp_path):
    tester = FashionResNetModelTester()
    model = tester.model()
    images = [png_bytes((255, 0, 0)), png_bytes((0, 0, 255))]
    expected = model.get_image_embeddings(ImagePreprocessing.from_config(model.config)(images))
    torch.testing.assert_close(encode_images(model, images, batch_size=1), expected.detach())
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(encode_images(str(tmp_path), images[:1]), expected[:1].detach())
