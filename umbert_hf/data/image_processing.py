"""Image preprocessing of the item encoders: the one definition used by training, extraction, the CLI and tests.

Preprocessing is split in two so that loading never bottlenecks the model:

* `ImagePreprocessing.load_transform(train)` runs in DataLoader workers on PIL images and returns `uint8` tensors
  of a fixed size (decode, resize, crop, augment): cheap to collate and to move to the device;
* `ImagePreprocessing.normalize(pixels)` runs on whole batches on the model's device (scale to `[0, 1]`, then the
  ImageNet normalisation for the ResNet).

`build_image_transforms` composes both for single images, and `encode_images` embeds a user's photos with an
encoder loaded from its folder or Hub id.
"""

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, read_file
from torchvision.io import decode_image as decode_image_tensor
from torchvision.transforms import v2
from transformers.utils import logging

logger = logging.get_logger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The ImageNet evaluation recipe: resize the shorter side to 256/224 of the crop, then centre-crop.
RESNET_RESIZE_RATIO = 256 / 224

ENCODER_TYPES = ("fashion-resnet", "ssim-autoencoder")
_ENCODER_ALIASES = {"resnet": "fashion-resnet", "autoencoder": "ssim-autoencoder"}

ImageInput = Image.Image | bytes | str | os.PathLike | dict


class ImageDecodeError(ValueError):
    """An item image is missing or cannot be decoded."""


def normalize_encoder_type(encoder_type: str) -> str:
    """Map `"resnet"`/`"autoencoder"` (script flags) or a model type to the model type."""
    encoder_type = _ENCODER_ALIASES.get(encoder_type, encoder_type)
    if encoder_type not in ENCODER_TYPES:
        raise ValueError(
            f"Unknown image encoder type {encoder_type!r}; expected one of {ENCODER_TYPES} (or 'resnet'/'autoencoder')."
        )
    return encoder_type


@dataclass(frozen=True)
class ImagePreprocessing:
    r"""
    How images become `pixel_values` for one encoder; `to_dict()` is what the embeddings table records.

    Args:
        encoder_type: `"fashion-resnet"` or `"ssim-autoencoder"`.
        image_size: side of the square model input.
        resize_size: evaluation resize before the centre crop (shorter side) for the ResNet; the autoencoder resizes
            straight to `image_size` x `image_size`.
        mean / std: per-channel normalisation applied after scaling to `[0, 1]`; `None` for none (autoencoder).
        train_crop_scale: area range of the ResNet's training `RandomResizedCrop`. (0.5, 1) rather than ImageNet's
            (0.08, 1): product photos show one centred item, and small crops of them are mostly background.
        train_vertical_flip: the autoencoder's training augmentation also flips vertically (as the original did).
        interpolation: resampling of the resizes (`torchvision` interpolation mode name), always antialiased.
    """

    encoder_type: str
    image_size: int
    resize_size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    train_crop_scale: tuple[float, float] = (0.5, 1.0)
    train_vertical_flip: bool = False
    interpolation: str = "bilinear"

    @classmethod
    def for_encoder(cls, encoder_type: str, image_size: int | None = None) -> "ImagePreprocessing":
        """The preprocessing of an encoder type; `image_size` defaults to the original model's (224 / 128)."""
        encoder_type = normalize_encoder_type(encoder_type)
        if encoder_type == "fashion-resnet":
            image_size = image_size or 224
            return cls(
                encoder_type=encoder_type,
                image_size=image_size,
                resize_size=round(image_size * RESNET_RESIZE_RATIO),
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
            )
        image_size = image_size or 128
        return cls(encoder_type=encoder_type, image_size=image_size, resize_size=image_size, train_vertical_flip=True)

    @classmethod
    def from_config(cls, config) -> "ImagePreprocessing":
        """The preprocessing matching a `FashionResNetConfig` or `SsimAutoEncoderConfig`."""
        return cls.for_encoder(config.model_type, config.image_size)

    @classmethod
    def from_dict(cls, description: dict) -> "ImagePreprocessing":
        values = dict(description)
        for key in ("mean", "std", "train_crop_scale"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def load_transform(self, train: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """`uint8` image tensor `(3, H, W)` (see `read_image`; PIL images work too) -> `uint8` tensor
        `(3, image_size, image_size)`, with augmentation when `train`."""
        size = self.image_size
        interpolation = v2.InterpolationMode(self.interpolation)
        if self.encoder_type == "fashion-resnet":
            if train:
                crop = v2.RandomResizedCrop(size, scale=self.train_crop_scale, interpolation=interpolation)
                steps = [crop, v2.RandomHorizontalFlip()]
            else:
                steps = [v2.Resize(self.resize_size, interpolation=interpolation), v2.CenterCrop(size)]
        else:
            steps = [_SquareResize(size, interpolation)]
            if train:
                steps.append(v2.RandomHorizontalFlip())
                if self.train_vertical_flip:
                    steps.append(v2.RandomVerticalFlip())
        # Tensors pass through PILToTensor; the resizes then run on uint8 tensors (faster than on PIL images).
        return v2.Compose([v2.PILToTensor(), *steps])

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """`uint8` images `(..., 3, H, W)` -> float `pixel_values` on the same device."""
        pixel_values = pixels.float().div_(255.0)
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=pixel_values.device).view(-1, 1, 1)
            std = torch.tensor(self.std, device=pixel_values.device).view(-1, 1, 1)
            pixel_values = (pixel_values - mean) / std
        return pixel_values

    def __call__(self, images: Sequence[ImageInput] | ImageInput, train: bool = False) -> torch.Tensor:
        """Images (PIL, bytes, paths or `datasets` image dicts) -> `pixel_values` `(batch, 3, size, size)`."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        transform = self.load_transform(train)
        pixels = torch.stack([transform(read_image(image)) for image in images])
        return self.normalize(pixels)


class _SquareResize:
    """Resize to `size` x `size`, skipping images already that size (the common case of a prepared catalogue)."""

    def __init__(self, size: int, interpolation: v2.InterpolationMode):
        self.size = size
        self.resize = v2.Resize((size, size), interpolation=interpolation)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image if tuple(image.shape[-2:]) == (self.size, self.size) else self.resize(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, interpolation={self.resize.interpolation})"


def build_image_transforms(
    encoder_type_or_config, train: bool = False, image_size: int | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """A single-image transform (PIL, bytes, path) -> float `(3, size, size)`: `read_image`, `load_transform`, then
    `normalize`."""
    if isinstance(encoder_type_or_config, str):
        preprocessing = ImagePreprocessing.for_encoder(encoder_type_or_config, image_size)
    else:
        preprocessing = ImagePreprocessing.from_config(encoder_type_or_config)
    load = preprocessing.load_transform(train)
    return lambda image: preprocessing.normalize(load(read_image(image)))


def decode_image(image: ImageInput | None) -> Image.Image:
    """An RGB PIL image from a PIL image, encoded bytes, a path, or a `datasets.Image` dict (`bytes`/`path`).

    Raises:
        ImageDecodeError: the image is missing or cannot be decoded.
    """
    if image is None:
        raise ImageDecodeError("no image")
    if isinstance(image, dict):
        data = image.get("bytes")
        image = data if data else image.get("path")
        if image is None:
            raise ImageDecodeError("no image bytes or path")
    try:
        if isinstance(image, Image.Image):
            return image.convert("RGB")
        if isinstance(image, (bytes, bytearray, memoryview)):
            if len(image) == 0:
                raise ImageDecodeError("empty image bytes")
            source = io.BytesIO(image)
        else:
            source = os.fspath(image)
        with Image.open(source) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageDecodeError):
            raise
        raise ImageDecodeError(f"cannot decode image: {error}") from error


def read_image(image: ImageInput | None) -> torch.Tensor:
    """An RGB `uint8` tensor `(3, H, W)` from the same inputs as `decode_image`.

    Encoded bytes and files are decoded by `torchvision.io` (libjpeg / libpng: faster than PIL, which decodes the
    formats it does not know); PIL images are converted. Both decoders are libjpeg-turbo / libpng builds and gave
    identical pixels for JPEG and PNG in our checks, so the catalogue path and the single-photo path agree.

    Raises:
        ImageDecodeError: the image is missing or cannot be decoded.
    """
    if isinstance(image, dict):
        data = image.get("bytes")
        image = data if data else image.get("path")
    if isinstance(image, Image.Image) or image is None:
        return v2.functional.pil_to_tensor(decode_image(image))
    try:
        if isinstance(image, (bytes, bytearray, memoryview)):
            data = torch.frombuffer(bytearray(image), dtype=torch.uint8) if len(image) else None
        else:
            data = read_file(os.fspath(image))
        if data is not None:
            return decode_image_tensor(data, mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError):
        pass  # unknown to torchvision, or corrupt: PIL decides (and names the problem)
    return v2.functional.pil_to_tensor(decode_image(image))


def load_image_encoder(name_or_path: str, **kwargs):
    """Load a `fashion-resnet` or `ssim-autoencoder` model from a folder or Hub id, whatever `AutoModel` knows."""
    from transformers import PreTrainedConfig

    from ..configuration_fashion_resnet import FashionResNetConfig
    from ..configuration_ssim_autoencoder import SsimAutoEncoderConfig
    from ..modeling_fashion_resnet import FashionResNetModel
    from ..modeling_ssim_autoencoder import SsimAutoEncoderModel

    classes = {
        "fashion-resnet": (FashionResNetConfig, FashionResNetModel),
        "ssim-autoencoder": (SsimAutoEncoderConfig, SsimAutoEncoderModel),
    }
    config_dict, _ = PreTrainedConfig.get_config_dict(name_or_path)
    model_type = config_dict.get("model_type")
    if model_type not in classes:
        raise ValueError(f"{name_or_path} holds a {model_type!r} model, not an image encoder ({', '.join(classes)}).")
    return classes[model_type][1].from_pretrained(name_or_path, **kwargs)


@torch.inference_mode()
def encode_images(
    model,
    images: Sequence[ImageInput] | ImageInput,
    batch_size: int = 64,
    preprocessing: ImagePreprocessing | dict | None = None,
) -> torch.Tensor:
    """Embed images with an image encoder.

    Args:
        model: a `FashionResNetModel` / `SsimAutoEncoderModel`, or its folder / Hub id (e.g. the `image_encoder`
            recorded in an umBERT config).
        images: PIL images, encoded bytes, paths or `datasets` image dicts.
        batch_size: images per forward pass.
        preprocessing: override of the preprocessing (e.g. the description recorded in an embeddings table);
            defaults to the one of the model's config.

    Returns:
        `(num_images, embedding_dim)` float32 embeddings on the CPU.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_image_encoder(os.fspath(model))
    if isinstance(preprocessing, dict):
        preprocessing = ImagePreprocessing.from_dict(preprocessing)
    preprocessing = preprocessing or ImagePreprocessing.from_config(model.config)
    if not isinstance(images, (list, tuple)):
        images = [images]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(images), batch_size):
        pixel_values = preprocessing(images[start : start + batch_size]).to(device)
        outputs.append(model.get_image_embeddings(pixel_values).float().cpu())
    model.train(was_training)
    if not outputs:
        return torch.zeros(0, model.config.embedding_dim)
    return torch.cat(outputs)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDecodeError",
    "ImagePreprocessing",
    "build_image_transforms",
    "decode_image",
    "encode_images",
    "load_image_encoder",
    "normalize_encoder_type",
    "read_image",
]
