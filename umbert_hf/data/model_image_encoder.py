"""The image encoder recorded with an umBERT/WumBERT model: where it lives, loading it, saving it with the model, and
embedding photos with it as the catalogue was embedded (`OutfitCatalogueMixin.embed_images`)."""

import os
from collections.abc import Callable
from typing import Any

import torch
from transformers.utils import cached_file

from ..utils.paths import first_line
from .extraction import embed_new_items
from .image_processing import load_image_encoder

# Sub-folder of a saved model holding the image encoder of its catalogue (`config.image_encoder` names it).
IMAGE_ENCODER_FOLDER = "image_encoder"


def image_encoder_location(model) -> tuple[str, str | None]:
    """`(folder or Hub id, sub-folder or None)` of the recorded image encoder; `ValueError` when it is missing.

    `config.image_encoder` is `"image_encoder"` for an encoder saved with the model (the sub-folder of the folder
    or Hub repo the model was loaded from), or the Hub id of the encoder, or, in configs saved before encoders
    were saved with their model, an absolute path. `set_image_encoder_source` overrides it.
    """
    metadata = model.config.embedding_metadata or {}
    source = getattr(model, "_image_encoder_source", None)
    encoder = source or model.config.image_encoder or metadata.get("image_encoder")
    if not encoder:
        raise ValueError(
            "This model's config records no image encoder (its embeddings did not come from "
            "compute_embeddings.py with --image_encoder), so photos cannot be embedded; give item ids instead."
        )
    if encoder == IMAGE_ENCODER_FOLDER and not source:
        model_location = model.name_or_path
        if not model_location:
            raise ValueError(
                f"This model's image encoder is saved with it, in its {IMAGE_ENCODER_FOLDER}/ sub-folder, but the "
                "model was not loaded from a folder or Hub repo: load it with `from_pretrained`, or call "
                "`set_image_encoder_source(encoder_folder)`."
            )
        if os.path.isdir(model_location):
            folder = os.path.join(model_location, IMAGE_ENCODER_FOLDER)
            if not os.path.isfile(os.path.join(folder, "config.json")):
                raise ValueError(
                    f"This model's image encoder should be in {folder}, which holds none: copy the model folder "
                    f"with its {IMAGE_ENCODER_FOLDER}/ sub-folder (or `save_image_encoder` it), or give item ids."
                )
            return folder, None
        return model_location, IMAGE_ENCODER_FOLDER
    if os.path.isabs(encoder) and not os.path.isdir(encoder):
        raise ValueError(
            f"This model's image encoder is recorded as the folder {encoder}, which does not exist here; "
            "give item ids instead, or `set_image_encoder_source` the encoder's folder."
        )
    return encoder, None


def load_model_image_encoder(model):
    """The image encoder that embedded the catalogue: a `FashionResNetModel`, `SsimAutoEncoderModel`, or any
    `transformers` image model with its processor (a `TransformersImageEncoder`, e.g. CLIP's image tower).

    Resolved by `image_encoder_location`. Raises `ValueError` with one line when it cannot be loaded (no
    encoder recorded, the model folder moved without its `image_encoder/` sub-folder, an unreachable Hub id).
    """
    location, subfolder = image_encoder_location(model)
    trust_remote_code = getattr(model, "_image_encoder_trust_remote_code", False)
    where = f"the {subfolder}/ sub-folder of {location}" if subfolder else location
    try:
        if subfolder is None:
            image_model = load_image_encoder(location, trust_remote_code=trust_remote_code)
        else:
            # The config is fetched first: without it, the loader's error would not say that the sub-folder is
            # missing.
            revision = getattr(model.config, "_commit_hash", None)
            if cached_file(location, "config.json", subfolder=subfolder, revision=revision) is None:
                raise OSError(
                    f"{location} has no {subfolder}/config.json (push the model folder with its {subfolder}/ "
                    "sub-folder), so give item ids instead."
                )
            image_model = load_image_encoder(
                location, subfolder=subfolder, revision=revision, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError) as error:
        reason = first_line(error)
        raise ValueError(f"Cannot load this model's image encoder from {where}: {reason}") from None
    if not hasattr(image_model, "get_image_embeddings"):
        raise ValueError(f"{where} holds a {image_model.config.model_type!r} model, not an image encoder.")
    return image_model.eval()


def save_model_image_encoder(model, save_directory: str | os.PathLike) -> str | None:
    """Save the image encoder (weights and config, with its preprocessing) in `save_directory/image_encoder/`.

    So the saved (or pushed) model embeds photos wherever its folder goes: the config then records
    `image_encoder = "image_encoder"`, a path relative to the model, and no local path. Only for catalogues
    embedded with an image encoder and not projected; an encoder recorded as a Hub id stays one (nothing saved).
    Returns the folder written, or None.
    """
    metadata = model.config.embedding_metadata or {}
    encoder = model.config.image_encoder or metadata.get("image_encoder")
    if not encoder or "image" not in (metadata.get("parts") or ["image"]) or metadata.get("projection"):
        return None
    if encoder != IMAGE_ENCODER_FOLDER and not os.path.isabs(encoder):
        return None  # a Hub id: loadable from anywhere as is
    target = os.path.join(os.fspath(save_directory), IMAGE_ENCODER_FOLDER)
    location, subfolder = image_encoder_location(model)
    if subfolder is not None or os.path.realpath(location) != os.path.realpath(target):
        load_model_image_encoder(model).save_pretrained(target)
    model.config.image_encoder = IMAGE_ENCODER_FOLDER
    if isinstance(metadata.get("image_encoder"), str) and os.path.isabs(metadata["image_encoder"]):
        name = os.path.basename(os.path.normpath(metadata["image_encoder"]))
        model.config.embedding_metadata = {**metadata, "image_encoder": name}
    return target


def recorded_image_embedder(model) -> Callable[[list[Any]], torch.Tensor]:
    """How `model.embed_images` embeds photos: the recorded image encoder and preprocessing (`embed_new_items`, the
    one path that embeds new items as a table was made), or `ValueError` saying why photos cannot be used."""
    metadata = model.config.embedding_metadata or {}
    if metadata.get("projection"):
        raise ValueError(
            "This model's item embeddings were projected (PCA) after extraction, so photos cannot be embedded "
            "the same way; give item ids instead."
        )
    if metadata.get("parts") == ["text"]:
        encoder = metadata.get("text_encoder")
        if metadata.get("text_pooling") == "get_text_features":  # an image–text model: its image tower fits
            remedy = f"recompute the embeddings with `compute_embeddings.py --image_encoder {encoder}` (its image "
            remedy += "tower)"
        else:
            remedy = "recompute the embeddings with an image encoder (`compute_embeddings.py --image_encoder`)"
        raise ValueError(
            f"This model's catalogue was embedded from item titles by the text encoder {encoder!r} only, so a "
            f"photo cannot be embedded the same way: give item ids, or {remedy} and train on those."
        )
    if metadata.get("parts", ["image"]) not in (["image"], ["image", "text"]):
        raise ValueError(
            f"This model's item embeddings combine {metadata.get('parts')}, not an image part first, so photos "
            "cannot be used as context items."
        )
    image_model = load_model_image_encoder(model)
    image_part = {**metadata, "parts": ["image"]}  # a photo has no title: `embed_images` fills the text part
    return lambda images: embed_new_items(image_part, images=images, image_encoder=image_model)


__all__ = [
    "IMAGE_ENCODER_FOLDER",
    "image_encoder_location",
    "load_model_image_encoder",
    "recorded_image_embedder",
    "save_model_image_encoder",
]
