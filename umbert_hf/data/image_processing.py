"""Image preprocessing of the item encoders: the one definition used by training, extraction, the CLI and tests.

Preprocessing is split in two so that loading never bottlenecks the model:

* `ImagePreprocessing.load_transform(train)` runs in DataLoader workers on PIL images and returns `uint8` tensors
  of a fixed size (decode, resize, crop, augment): cheap to collate and to move to the device;
* `ImagePreprocessing.normalize(pixels)` runs on whole batches on the model's device (scale to `[0, 1]`, then the
  ImageNet normalisation for the ResNet).

`build_image_transforms` composes both for single images, and `encode_images` embeds a user's photos with an
encoder loaded from its folder or Hub id.

Any other `transformers` image or image–text model (CLIP, SigLIP, ViT, DINOv2, ...) is an encoder too, through
`TransformersImageEncoder`: its own image processor (`ProcessorPreprocessing`, the saved preprocessor config) replaces
`ImagePreprocessing`, behind the same two-step interface.
"""

import inspect
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torchvision.io import ImageReadMode, read_file
from torchvision.io import decode_image as decode_image_tensor
from torchvision.transforms import v2
from transformers.utils import logging

from ..utils.images import ImageDecodeError, check_image_size

logger = logging.get_logger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The ImageNet evaluation recipe: resize the shorter side to 256/224 of the crop, then centre-crop.
RESNET_RESIZE_RATIO = 256 / 224

# EfficientNet-Lite's own (TensorFlow) normalisation, `(x - 127) / 128`, which its ImageNet weights were trained with.
EFFICIENTNET_MEAN = (127 / 255,) * 3
EFFICIENTNET_STD = (128 / 255,) * 3
# Product photos are padded to a square with white (their usual background), never cropped.
PAD_FILL = 255

ENCODER_TYPES = ("fashion-resnet", "ssim-autoencoder", "fashion-efficientnet")
_ENCODER_ALIASES = {
    "resnet": "fashion-resnet",
    "autoencoder": "ssim-autoencoder",
    "efficientnet": "fashion-efficientnet",
}

ImageInput = Image.Image | bytes | str | os.PathLike | dict


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
        encoder_type: `"fashion-resnet"`, `"ssim-autoencoder"` or `"fashion-efficientnet"`.
        image_size: side of the square model input.
        resize_size: evaluation resize before the centre crop (shorter side) for the ResNet; the autoencoder resizes
            straight to `image_size` x `image_size`.
        mean / std: per-channel normalisation applied after scaling to `[0, 1]`; `None` for none (autoencoder).
        train_crop_scale: area range of the ResNet's training `RandomResizedCrop`. (0.5, 1) rather than ImageNet's
            (0.08, 1): product photos show one centred item, and small crops of them are mostly background.
        train_vertical_flip: the autoencoder's training augmentation also flips vertically (as the original did).
        interpolation: resampling of the resizes (`torchvision` interpolation mode name), always antialiased.
        pad_to_square: pad the photo with white to a square first (the EfficientNet), so a non-square product shot
            is resized whole, never cropped.
    """

    encoder_type: str
    image_size: int
    resize_size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    train_crop_scale: tuple[float, float] = (0.5, 1.0)
    train_vertical_flip: bool = False
    interpolation: str = "bilinear"
    pad_to_square: bool = False

    @classmethod
    def for_encoder(cls, encoder_type: str, image_size: int | None = None) -> "ImagePreprocessing":
        """The preprocessing of an encoder type; `image_size` defaults to the original model's (224 / 128)."""
        encoder_type = normalize_encoder_type(encoder_type)
        if encoder_type == "fashion-efficientnet":
            image_size = image_size or 224
            return cls(
                encoder_type=encoder_type,
                image_size=image_size,
                resize_size=image_size,
                mean=EFFICIENTNET_MEAN,
                std=EFFICIENTNET_STD,
                interpolation="bicubic",
                pad_to_square=True,
            )
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
        if self.pad_to_square:
            steps = [_PadToSquare(PAD_FILL)]
            if train:
                crop = v2.RandomResizedCrop(size, scale=self.train_crop_scale, interpolation=interpolation)
                steps += [crop, v2.RandomHorizontalFlip()]
            else:
                steps.append(_SquareResize(size, interpolation))
        elif self.encoder_type == "fashion-resnet":
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


class _PadToSquare:
    """Pad a `uint8` image `(3, H, W)` with a constant to a centred square of side max(H, W)."""

    def __init__(self, fill: int):
        self.fill = fill

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if height == width:
            return image
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        return nn.functional.pad(image, (left, side - width - left, top, side - height - top), value=self.fill)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fill={self.fill})"


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


def decode_image(image: ImageInput | None, upright: bool = False) -> Image.Image:
    """An RGB PIL image from a PIL image, encoded bytes, a path, or a `datasets.Image` dict (`bytes`/`path`).

    The one decoder of the package's photos (the catalogue, a user's photo in `complete`, the pipeline, the command
    line and the app): files and bytes larger than `MAX_IMAGE_PIXELS` are refused from their header. `upright` applies
    the EXIF orientation (a phone's photo; the catalogue's images are used as stored).

    Raises:
        ImageDecodeError: the image is missing, too large, or cannot be decoded.
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
        check_image_size(source)
        with Image.open(source) as opened:
            return (ImageOps.exif_transpose(opened) if upright else opened).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
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
    encoded = isinstance(image, (bytes, bytearray, memoryview))
    check_image_size(io.BytesIO(bytes(image)) if encoded else os.fspath(image))  # before torchvision decodes it all
    try:
        if encoded:
            data = torch.frombuffer(bytearray(image), dtype=torch.uint8) if len(image) else None
        else:
            data = read_file(os.fspath(image))
        if data is not None:
            return decode_image_tensor(data, mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError):
        pass  # unknown to torchvision, or corrupt: PIL decides (and names the problem)
    return v2.functional.pil_to_tensor(decode_image(image))


class _ProcessorTransform:
    """One image (`uint8` tensor `(3, H, W)` or PIL) -> float `pixel_values` `(3, h, w)` by a `transformers` processor.

    A class rather than a closure so that DataLoader workers can pickle it.
    """

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, image: torch.Tensor | Image.Image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]


class ProcessorPreprocessing:
    """The preprocessing of a `transformers` image model: its own image processor, with `ImagePreprocessing`'s interface.

    The processor does everything (resize, crop, rescale, normalise) in `load_transform`, in DataLoader workers, since
    its steps cannot be split generically; `normalize` then only casts to float on the device.
    """

    def __init__(self, image_processor):
        self.image_processor = image_processor
        self._image_size: int | None = None

    @property
    def image_size(self) -> int:
        """Side of the processor's output, measured once on a blank image."""
        if self._image_size is None:
            self._image_size = int(self.load_transform()(torch.zeros(3, 32, 32, dtype=torch.uint8)).shape[-1])
        return self._image_size

    def load_transform(self, train: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """The processor on one image; there is no training augmentation (these encoders are not trained here)."""
        return _ProcessorTransform(self.image_processor)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float()

    def __call__(self, images: Sequence[ImageInput] | ImageInput, train: bool = False) -> torch.Tensor:
        """Images (PIL, bytes, paths or `datasets` image dicts) -> `pixel_values` `(batch, 3, h, w)`."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixel_values = self.image_processor(images=[read_image(image) for image in images], return_tensors="pt")
        return pixel_values["pixel_values"]

    def to_dict(self) -> dict:
        """The processor's saved config (what the embeddings table records), JSON-safe."""
        return json.loads(self.image_processor.to_json_string())


def pooled_features(output) -> torch.Tensor:
    """The embedding in a `get_*_features` output: a tensor (older and remote-code models) or `pooler_output`."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if hasattr(output, "pooler_output") else output[1]


def _hub_options(subfolder: str | None, revision: str | None, trust_remote_code: bool) -> dict:
    options = {"trust_remote_code": trust_remote_code}
    if subfolder:
        options["subfolder"] = subfolder
    if revision:
        options["revision"] = revision
    return options


class TransformersImageEncoder(nn.Module):
    r"""
    Any `transformers` image or image–text model as an item image encoder, with its own image processor.

    The embedding (`pooling`) is the image tower's `get_image_features` when the model has one (CLIP, SigLIP: the
    projected image features, in the space of their text features), else `pooler_output` (ViT, DINOv2), else the CLS
    state of `last_hidden_state`. `save_pretrained` writes the model and its processor, so the folder reloads as is.

    Args:
        model: the `transformers` model (e.g. from `AutoModel.from_pretrained`).
        image_processor: its image processor (`AutoImageProcessor`), or a processor whose `images=` call gives
            `pixel_values` (`AutoProcessor`).
        trust_remote_code: the model runs code from its repository (recorded with the embeddings).
    """

    def __init__(self, model: nn.Module, image_processor, trust_remote_code: bool = False):
        super().__init__()
        self.model = model
        self.preprocessing = ProcessorPreprocessing(image_processor)
        self.trust_remote_code = trust_remote_code
        # A backbone's pooling is known after its first forward (a model may return no `pooler_output`).
        self.pooling = "get_image_features" if hasattr(model, "get_image_features") else "pooler_output"
        self._embedding_dim: int | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        subfolder: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> "TransformersImageEncoder":
        """`AutoModel` and the saved image processor (`AutoImageProcessor`, else `AutoProcessor`) of a folder or Hub id.

        Raises:
            ValueError: the model takes no images (a text model), or no image processor is saved with it.
        """
        from transformers import AutoImageProcessor, AutoModel, AutoProcessor

        name_or_path = os.fspath(name_or_path)
        where = f"{name_or_path} ({subfolder}/)" if subfolder else name_or_path
        options = _hub_options(subfolder, revision, trust_remote_code)
        model = AutoModel.from_pretrained(name_or_path, **options)
        takes_images = "pixel_values" in inspect.signature(model.forward).parameters
        if not hasattr(model, "get_image_features") and not takes_images:
            raise ValueError(
                f"{where} holds a {model.config.model_type!r} model, which takes no images: give an image or "
                "image–text model as the image encoder (a text model goes to --text_encoder)."
            )
        try:
            image_processor = AutoImageProcessor.from_pretrained(name_or_path, **options)
        except (OSError, ValueError):
            try:
                image_processor = AutoProcessor.from_pretrained(name_or_path, **options)
            except (OSError, ValueError):
                raise ValueError(
                    f"{where} has no image processor (preprocessor_config.json): save the model's processor with it "
                    "(`processor.save_pretrained(folder)`)."
                ) from None
        return cls(model.eval(), image_processor, trust_remote_code=trust_remote_code)

    @property
    def config(self):
        return self.model.config

    @property
    def embedding_dim(self) -> int:
        """Size of the embeddings, measured once on a blank image."""
        if self._embedding_dim is None:
            blank = Image.new("RGB", (32, 32))
            with torch.inference_mode():
                pixel_values = self.preprocessing([blank]).to(next(self.parameters()).device)
                self._embedding_dim = int(self.get_image_embeddings(pixel_values).shape[-1])
        return self._embedding_dim

    def get_image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(batch, 3, h, w)` processor outputs -> `(batch, embedding_dim)`."""
        pixel_values = pixel_values.to(self.model.dtype)
        if self.pooling == "get_image_features":
            return pooled_features(self.model.get_image_features(pixel_values=pixel_values))
        outputs = self.model(pixel_values=pixel_values)
        pooled = getattr(outputs, "pooler_output", None)
        self.pooling = "pooler_output" if pooled is not None else "cls"
        return pooled if pooled is not None else outputs.last_hidden_state[:, 0]  # (batch, hidden)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """The model and its processor in one folder, loadable by `load_image_encoder` (and `AutoModel`)."""
        self.model.save_pretrained(save_directory, **kwargs)
        self.preprocessing.image_processor.save_pretrained(save_directory)


def image_preprocessing_for(
    model, override: "ImagePreprocessing | ProcessorPreprocessing | dict | None" = None
) -> "ImagePreprocessing | ProcessorPreprocessing":
    """The preprocessing of an image encoder: a `transformers` model's own processor, or our encoders' config's.

    `override` (e.g. the description recorded in an embeddings table) replaces our encoders' default; for a
    `transformers` model a recorded description is only a record: its processor, saved with it, is used.
    """
    if isinstance(model, TransformersImageEncoder):
        return override if isinstance(override, ProcessorPreprocessing) else model.preprocessing
    if isinstance(override, dict):
        override = ImagePreprocessing.from_dict(override)
    return override or ImagePreprocessing.from_config(model.config)


def image_embedding_dim(model) -> int:
    """Embedding size of an image encoder (ours record it in their config)."""
    if isinstance(model, TransformersImageEncoder):
        return model.embedding_dim
    return getattr(model.config, "output_dim", None) or model.config.embedding_dim


def image_pooling(model) -> str:
    """How an image encoder reads its embedding (recorded with the embeddings)."""
    return model.pooling if isinstance(model, TransformersImageEncoder) else "get_image_embeddings"


# Names that `load_image_encoder` resolves to a frozen ImageNet backbone shipped in a wheel (no folder, no Hub).
PRETRAINED_IMAGE_ENCODERS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def is_pretrained_image_encoder_name(name_or_path: str | os.PathLike) -> bool:
    """Whether `name_or_path` names a wheel-shipped backbone (`efficientnet_lite0`, or with dashes) and no folder."""
    name = os.fspath(name_or_path)
    return name.replace("-", "_") in PRETRAINED_IMAGE_ENCODERS and not os.path.isdir(name)


def load_image_encoder(
    name_or_path: str | os.PathLike,
    subfolder: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    **kwargs,
):
    """Load an image encoder from a folder or Hub id (optionally a sub-folder of it).

    A `fashion-resnet`, `fashion-efficientnet` or `ssim-autoencoder` model loads as itself; any other `transformers`
    model (CLIP, SigLIP, ViT, DINOv2, ...) as a `TransformersImageEncoder` with its saved image processor.
    `trust_remote_code` is only for models that ship their own modeling code (e.g. Marqo/marqo-fashionSigLIP).

    The names `efficientnet_lite0`, `efficientnet_lite1` and `efficientnet_lite2` (see `PRETRAINED_IMAGE_ENCODERS`)
    give the frozen ImageNet backbone from its wheel, whose 1,280 pooled features are the embedding; a folder of
    that name in the working directory wins.
    """
    from transformers import PreTrainedConfig

    from ..configuration_fashion_efficientnet import FashionEfficientNetConfig
    from ..configuration_fashion_resnet import FashionResNetConfig
    from ..configuration_ssim_autoencoder import SsimAutoEncoderConfig
    from ..modeling_fashion_efficientnet import FashionEfficientNetModel
    from ..modeling_fashion_resnet import FashionResNetModel
    from ..modeling_ssim_autoencoder import SsimAutoEncoderModel

    classes = {
        "fashion-resnet": (FashionResNetConfig, FashionResNetModel),
        "fashion-efficientnet": (FashionEfficientNetConfig, FashionEfficientNetModel),
        "ssim-autoencoder": (SsimAutoEncoderConfig, SsimAutoEncoderModel),
    }
    name_or_path = os.fspath(name_or_path)
    if is_pretrained_image_encoder_name(name_or_path) and subfolder is None:
        backbone = name_or_path.replace("-", "_")
        return FashionEfficientNetModel(FashionEfficientNetConfig(backbone=backbone, pretrained_backbone=True)).eval()
    location = _hub_options(subfolder, revision, trust_remote_code)
    location.pop("trust_remote_code")
    config_dict, _ = PreTrainedConfig.get_config_dict(name_or_path, **location)
    model_type = config_dict.get("model_type")
    if model_type in classes:
        return classes[model_type][1].from_pretrained(name_or_path, **location, **kwargs)
    return TransformersImageEncoder.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **location)


@torch.inference_mode()
def encode_images(
    model,
    images: Sequence[ImageInput] | ImageInput,
    batch_size: int = 64,
    preprocessing: ImagePreprocessing | dict | None = None,
) -> torch.Tensor:
    """Embed images with an image encoder.

    Args:
        model: a `FashionResNetModel` / `SsimAutoEncoderModel` / `TransformersImageEncoder`, or its folder / Hub id
            (e.g. the `image_encoder` recorded in an umBERT config).
        images: PIL images, encoded bytes, paths or `datasets` image dicts.
        batch_size: images per forward pass.
        preprocessing: override of the preprocessing (e.g. the description recorded in an embeddings table);
            defaults to the one of the model's config (see `image_preprocessing_for`).

    Returns:
        `(num_images, embedding_dim)` float32 embeddings on the CPU.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_image_encoder(os.fspath(model))
    preprocessing = image_preprocessing_for(model, preprocessing)
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
        return torch.zeros(0, image_embedding_dim(model))
    return torch.cat(outputs)


__all__ = [
    "EFFICIENTNET_MEAN",
    "EFFICIENTNET_STD",
    "PRETRAINED_IMAGE_ENCODERS",
    "is_pretrained_image_encoder_name",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDecodeError",
    "ImagePreprocessing",
    "ProcessorPreprocessing",
    "TransformersImageEncoder",
    "build_image_transforms",
    "decode_image",
    "encode_images",
    "image_embedding_dim",
    "image_pooling",
    "image_preprocessing_for",
    "load_image_encoder",
    "normalize_encoder_type",
    "pooled_features",
    "read_image",
]
