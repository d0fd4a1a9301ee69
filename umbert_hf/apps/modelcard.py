"""Model cards of the four models (fashion-resnet, ssim-autoencoder, umbert, wumbert) from the templates in
`model_cards/`, with model-index evaluation results (and their chance levels), training data and hyperparameters.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.utils import logging

logger = logging.get_logger(__name__)

TEMPLATE_DIR_ENV = "UMBERT_HF_MODEL_CARDS"
POLYVORE_CITATION = """@inproceedings{vasileva2018learning,
  title     = {Learning Type-Aware Embeddings for Fashion Compatibility},
  author    = {Vasileva, Mariya I. and Plummer, Bryan A. and Dusad, Krishna and Rajpal, Shreya and
               Kumar, Ranjitha and Forsyth, David},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2018}
}"""
UMBERT_CITATION = """@misc{umbert_original,
  title        = {umBERT: outfit completion with a BERT-like transformer over item embeddings},
  howpublished = {The original umBERT project repository},
  note         = {Pretraining by embedding reconstruction, fine-tuning by masked-item prediction; WumBERT variant}
}"""
RESNET_CITATION = """@inproceedings{he2016deep,
  title     = {Deep Residual Learning for Image Recognition},
  author    = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2016}
}"""
GDN_CITATION = """@inproceedings{balle2017end,
  title     = {End-to-end Optimized Image Compression},
  author    = {Ball{\\'e}, Johannes and Laparra, Valero and Simoncelli, Eero P.},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2017}
}
@article{wang2004image,
  title   = {Image Quality Assessment: From Error Visibility to Structural Similarity},
  author  = {Wang, Zhou and Bovik, Alan C. and Sheikh, Hamid R. and Simoncelli, Eero P.},
  journal = {IEEE Transactions on Image Processing},
  volume  = {13},
  number  = {4},
  pages   = {600--612},
  year    = {2004}
}"""


@dataclass(frozen=True)
class CardKind:
    """What differs between the models' cards."""

    template: str
    task_type: str
    task_name: str
    pipeline_tag: str | None
    tags: tuple[str, ...]
    default_config: str
    default_split: str
    citations: tuple[str, ...]


CARD_KINDS = {
    "fashion-resnet": CardKind(
        template="fashion-resnet.md",
        task_type="image-classification",
        task_name="Item category classification",
        pipeline_tag="image-feature-extraction",
        tags=("fashion", "polyvore", "resnet", "image-feature-extraction", "umbert-hf"),
        default_config="catalogue",
        default_split="validation",
        citations=(RESNET_CITATION, POLYVORE_CITATION, UMBERT_CITATION),
    ),
    "ssim-autoencoder": CardKind(
        template="ssim-autoencoder.md",
        task_type="image-to-image",
        task_name="Image reconstruction",
        pipeline_tag="image-feature-extraction",
        tags=("fashion", "polyvore", "autoencoder", "gdn", "ssim", "image-feature-extraction", "umbert-hf"),
        default_config="catalogue",
        default_split="validation",
        citations=(GDN_CITATION, POLYVORE_CITATION, UMBERT_CITATION),
    ),
    "umbert": CardKind(
        template="umbert.md",
        task_type="outfit-completion",
        task_name="Outfit completion",
        pipeline_tag=None,
        tags=("fashion", "polyvore", "outfit-completion", "recommendation", "umbert", "umbert-hf"),
        default_config="outfits",
        default_split="test",
        citations=(UMBERT_CITATION, POLYVORE_CITATION),
    ),
    "wumbert": CardKind(
        template="wumbert.md",
        task_type="outfit-completion",
        task_name="Outfit completion",
        pipeline_tag=None,
        tags=("fashion", "polyvore", "outfit-completion", "recommendation", "wumbert", "umbert-hf"),
        default_config="outfits",
        default_split="test",
        citations=(UMBERT_CITATION, POLYVORE_CITATION),
    ),
}
_SPLIT_PREFIXES = {"val_": "validation", "validation_": "validation", "eval_": "validation", "test_": "test"}


def template_dir() -> Path:
    """Folder of the card templates: `$UMBERT_HF_MODEL_CARDS`, `umbert_hf/model_cards` (installed as package
    data) or the repository's `model_cards/`."""
    candidates = [os.environ.get(TEMPLATE_DIR_ENV)] if os.environ.get(TEMPLATE_DIR_ENV) else []
    package = Path(__file__).resolve().parent
    candidates += [package / "model_cards", package.parents[1] / "model_cards"]
    for candidate in candidates:
        if Path(candidate, CARD_KINDS["umbert"].template).is_file():
            return Path(candidate)
    raise FileNotFoundError(
        f"No model card templates found in {[str(candidate) for candidate in candidates]}; set ${TEMPLATE_DIR_ENV}."
    )


def _split_and_metric(key: str, default_split: str) -> tuple[str, str]:
    for prefix, split in _SPLIT_PREFIXES.items():
        if key.startswith(prefix):
            return split, key[len(prefix) :]
    return default_split, key


def _dataset_config(metric: str, default_config: str) -> str:
    if "fitb" in metric:
        return "fitb"
    if "compatibility" in metric or metric == "auc":
        return "compatibility"
    return default_config


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not os.path.exists(name) and not name.startswith((".", "/"))


def _is_chance_key(key: str) -> bool:
    return key.endswith("_chance") or "_chance_" in key


def _chance_for(key: str, chance_levels: dict[str, float]) -> str:
    """Chance levels recorded for a metric, keyed `key`, `key_chance`, `key_<baseline>` or `key_chance_<baseline>`;
    the plain one first, then the named baselines."""
    plain, named = [], []
    for name, value in chance_levels.items():
        if name in (key, f"{key}_chance"):
            plain.append(f"{value:.4g}")
        elif name.startswith(key + "_"):
            baseline = name[len(key) + 1 :].removeprefix("chance_").replace("_", " ")
            named.append(f"{value:.4g} ({baseline})")
    return ", ".join(plain + named) if plain or named else "n/a"


def make_model_card(
    kind: str,
    *,
    model_name: str,
    dataset_name: str,
    metrics: dict[str, float],
    hyperparameters: dict,
    base_model: str | None = None,
    chance_levels: dict[str, float] | None = None,
    extra: dict | None = None,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """A model card with model-index results, training data and hyperparameters, usage, limitations and citations.

    Args:
        kind: `"fashion-resnet"`, `"ssim-autoencoder"`, `"umbert"` or `"wumbert"`.
        model_name: name shown in the card and the model index (also the id in the loading snippet unless
            `extra["repo_id"]` is given).
        dataset_name: Hub id or local path of the dataset the metrics were measured on.
        metrics: flat metrics, e.g. `{"val_accuracy": 0.93}` or `{"hit_rate@10": 0.2, "fitb_accuracy": 0.4}`. A
            `val_`/`test_` prefix gives the split (default: validation for encoders, test for umBERT); metrics
            with `fitb`/`compatibility` in their name are attributed to those dataset configs.
        hyperparameters: training settings, rendered as a table.
        base_model: Hub id (or local path, then only named in the text) of the model this one builds on, e.g. the
            image encoder that made umBERT's item embeddings.
        chance_levels: chance of each metric, keyed by the metric (`"hit_rate@10"`), `<metric>_chance`, or with a
            baseline name (`"val_accuracy_chance_uniform"`). `*_chance*` entries of `metrics` count as chance
            levels too (never as results).
        extra: additional template variables, e.g. `repo_id`, `embeddings`, `categories`, `notes`, and
            `eval_split` (or `split`): the split of metrics without a `val_`/`test_` prefix.
        template_path: a template to use instead of `model_cards/<kind>.md`.
    """
    if kind not in CARD_KINDS:
        raise ValueError(f"Unknown model card kind {kind!r}; expected one of {sorted(CARD_KINDS)}.")
    card_kind = CARD_KINDS[kind]
    extra = dict(extra or {})
    chance_levels = dict(chance_levels or {})
    default_split = extra.get("eval_split", extra.get("split", card_kind.default_split))

    eval_results, results = [], []
    chance_levels.update({key: value for key, value in metrics.items() if _is_chance_key(key)})
    for key, value in metrics.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or _is_chance_key(key):
            continue
        if key in ("epoch", "best_epoch", "global_step", "train_loss", "epochs_trained"):
            continue
        split, metric = _split_and_metric(key, default_split)
        config = _dataset_config(metric, card_kind.default_config)
        eval_results.append(
            EvalResult(
                task_type=card_kind.task_type,
                task_name=card_kind.task_name,
                dataset_type=dataset_name,
                dataset_name=dataset_name,
                dataset_config=config,
                dataset_split=split,
                metric_type=metric,
                metric_name=key,
                metric_value=float(value),
            )
        )
        results.append(
            {
                "name": key,
                "value": f"{float(value):.4f}",
                "chance": _chance_for(key, chance_levels),
                "split": split,
                "config": config,
            }
        )

    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        license="apache-2.0",
        tags=list(card_kind.tags),
        pipeline_tag=card_kind.pipeline_tag,
        base_model=base_model if base_model and _is_hub_id(base_model) else None,
        datasets=[dataset_name] if _is_hub_id(dataset_name) else None,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
    )
    path = Path(template_path) if template_path is not None else template_dir() / card_kind.template
    return ModelCard.from_template(
        card_data,
        template_path=str(path),
        model_name=model_name,
        model_id=extra.pop("repo_id", model_name),
        dataset_name=dataset_name,
        dataset_link=f"[{dataset_name}](https://huggingface.co/datasets/{dataset_name})"
        if _is_hub_id(dataset_name)
        else f"`{dataset_name}`",
        base_model=base_model,
        base_model_link=(
            f"[{base_model}](https://huggingface.co/{base_model})" if _is_hub_id(base_model) else f"`{base_model}`"
        )
        if base_model
        else None,
        results=results,
        hyperparameters={str(key): value for key, value in hyperparameters.items()},
        citations=list(card_kind.citations),
        **extra,
    )


__all__ = ["CARD_KINDS", "make_model_card", "template_dir"]
