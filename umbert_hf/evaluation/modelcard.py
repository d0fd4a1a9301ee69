"""Model cards of the five models (fashion-resnet, fashion-efficientnet, ssim-autoencoder, umbert, wumbert) from the templates in
`model_cards/`, with model-index evaluation results beside their baselines and chance levels, training data and
hyperparameters. A card never names a path of the machine that wrote it: a local dataset is named by its dataset
card, a local folder by its base name.
"""

import importlib.resources
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData, metadata_load
from transformers.utils import logging

from ..evaluation.metrics import SPLIT_PREFIXES, is_chance_level, split_and_metric, without_chance_levels
from ..utils.paths import is_local_path, shareable_name

logger = logging.get_logger(__name__)

TEMPLATE_DIR_ENV = "UMBERT_HF_MODEL_CARDS"
# The templates are the `model_cards` package (the repository's top-level `model_cards/` folder, installed beside
# `umbert_hf`).
TEMPLATE_PACKAGE = "model_cards"
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
EFFICIENTNET_CITATION = """@inproceedings{tan2019efficientnet,
  title     = {EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks},
  author    = {Tan, Mingxing and Le, Quoc},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2019}
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
    "fashion-efficientnet": CardKind(
        template="fashion-efficientnet.md",
        task_type="image-classification",
        task_name="Item category classification",
        pipeline_tag="image-feature-extraction",
        tags=("fashion", "efficientnet", "imagenet", "image-feature-extraction", "umbert-hf"),
        default_config="catalogue",
        default_split="validation",
        citations=(EFFICIENTNET_CITATION, POLYVORE_CITATION, UMBERT_CITATION),
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


def template_dir() -> Path:
    """Folder of the card templates: `$UMBERT_HF_MODEL_CARDS` when set, else the installed `model_cards` package
    (`importlib.resources`; a wheel ships it beside `umbert_hf`), else the `model_cards/` folder of the source
    checkout that holds this package (an editable install made before `model_cards` was a package)."""
    candidates = [Path(os.environ[TEMPLATE_DIR_ENV])] if os.environ.get(TEMPLATE_DIR_ENV) else []
    try:
        candidates.append(Path(str(importlib.resources.files(TEMPLATE_PACKAGE))))
    except ModuleNotFoundError:
        pass
    candidates.append(Path(__file__).resolve().parents[2] / TEMPLATE_PACKAGE)
    for candidate in candidates:
        if (candidate / CARD_KINDS["umbert"].template).is_file():
            return candidate
    raise FileNotFoundError(
        f"No model card templates found in {[str(candidate) for candidate in candidates]}; set ${TEMPLATE_DIR_ENV}."
    )


# The baselines `train_outfit_model` scores beside the model (`metrics.json`: `test_random_mrr`, `test_context_mean_mrr`).
BASELINES = ("random", "context_mean")
# Numbers of a metrics file that are no evaluation results (with or without a split prefix).
NOT_RESULTS = ("epoch", "best_epoch", "global_step", "train_loss", "epochs_trained")
NOT_RESULT_PREFIXES = ("skipped_", "num_")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class DatasetReference:
    """How a card names the dataset a model was trained on: a Hub id as is, a local dataset by the name of its
    dataset card (or its folder's base name), never by a path of this machine."""

    name: str
    hub_id: str | None = None
    local_folder: str | None = None

    @property
    def link(self) -> str:
        if self.hub_id:
            return f"[{self.hub_id}](https://huggingface.co/datasets/{self.hub_id})"
        return f"**{self.name}**" if self.local_folder and self.name != self.local_folder else f"`{self.name}`"

    @property
    def note(self) -> str | None:
        """The card's sentence on a local dataset: figures on it cannot be checked against a Hub repository."""
        if not self.local_folder:
            return None
        return f"The dataset was a local folder (`{self.local_folder}`), not a Hub repository."


def dataset_reference(dataset: str | os.PathLike) -> DatasetReference:
    """The card's name of `--dataset`: an existing local folder is named by the `pretty_name` of its dataset card
    (`dataset_builder` writes one) or else its base name; a Hub id (`owner/name`, not a local path) is kept; any other
    name is shown as given."""
    dataset = os.fspath(dataset)
    if os.path.exists(dataset):
        folder = os.path.basename(os.path.normpath(os.path.abspath(dataset)))
        return DatasetReference(name=_dataset_card_name(dataset) or folder, local_folder=folder)
    if _is_hub_id(dataset):
        return DatasetReference(name=dataset, hub_id=dataset)
    return DatasetReference(name=dataset)


def _dataset_card_name(folder: str) -> str | None:
    """The `pretty_name` of a local dataset's README.md, if it has one that reads."""
    card = Path(folder, "README.md")
    if not card.is_file():
        return None
    try:
        name = (metadata_load(card) or {}).get("pretty_name")
    except (OSError, ValueError, yaml.YAMLError):  # a card whose YAML does not parse names nothing
        return None
    return name.strip() if isinstance(name, str) and name.strip() else None


def _shareable(value: Any) -> Any:
    """`value` with every local path (absolute, or existing here) reduced to its base name, nested values included."""
    if isinstance(value, str):
        return shareable_name(value) if value and is_local_path(value) else value
    if isinstance(value, dict):
        return {key: _shareable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shareable(item) for item in value]
    return value


def _baseline_result(key: str) -> tuple[str, str] | None:
    """`(baseline, key of the model's result)` of a baseline's result such as `test_random_mrr`, else None."""
    prefix = next((prefix for prefix in SPLIT_PREFIXES if key.startswith(prefix)), "")
    rest = key[len(prefix) :]
    for baseline in BASELINES:
        if rest.startswith(f"{baseline}_"):
            return baseline, prefix + rest[len(baseline) + 1 :]
    return None


def _is_result(key: str, value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or is_chance_level(key):
        return False
    metric = split_and_metric(key, "")[1]
    return metric not in NOT_RESULTS and not metric.startswith(NOT_RESULT_PREFIXES)


def _dataset_config(metric: str, default_config: str) -> str:
    if "fitb" in metric:
        return "fitb"
    if "compatibility" in metric or metric == "auc":
        return "compatibility"
    return default_config


def _is_hub_id(name: str | None) -> bool:
    """A Hub repo id: `owner/name`, and no local path."""
    return bool(name) and HUB_ID.fullmatch(name) is not None and not os.path.exists(name)


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
        kind: `"fashion-resnet"`, `"fashion-efficientnet"`, `"ssim-autoencoder"`, `"umbert"` or `"wumbert"`.
        model_name: name shown in the card and the model index (also the id in the loading snippet unless
            `extra["repo_id"]` is given).
        dataset_name: Hub id or local folder of the dataset the metrics were measured on; a local folder is named by
            its dataset card or base name (see `dataset_reference`), never by its path.
        metrics: flat metrics, e.g. `{"val_accuracy": 0.93}` or `{"hit_rate@10": 0.2, "fitb_accuracy": 0.4}`, or a
            whole `metrics.json`. A `val_`/`test_` prefix gives the split (default: validation for encoders, test for
            umBERT); metrics with `fitb`/`compatibility` in their name are attributed to those dataset configs.
            Baseline results (`test_random_mrr`, `test_context_mean_mrr`) go beside the model's (`test_mrr`), and
            counts (`best_epoch`, `skipped_*`, ...) are left out.
        hyperparameters: training settings, rendered as a table (local paths by their base name).
        base_model: Hub id (or local path, then only named in the text, by its base name) of the model this one
            builds on, e.g. the image encoder that made umBERT's item embeddings.
        chance_levels: chance of each metric, keyed by the metric (`"hit_rate@10"`), `<metric>_chance`, or with a
            baseline name (`"val_accuracy_chance_uniform"`). `*_chance*` entries of `metrics` count as chance
            levels too (never as results).
        extra: additional template variables, e.g. `repo_id`, `embeddings`, `categories`, `notes`, `eval_split` (or
            `split`): the split of metrics without a `val_`/`test_` prefix, and `baselines`: `{baseline: metrics}`
            keyed as `metrics` (e.g. `{"random": {"mrr": 0.05}, "context_mean": {"mrr": 0.2}}`).
        template_path: a template to use instead of `<kind>.md` of `template_dir()`.
    """
    if kind not in CARD_KINDS:
        raise ValueError(f"Unknown model card kind {kind!r}; expected one of {sorted(CARD_KINDS)}.")
    card_kind = CARD_KINDS[kind]
    extra = dict(extra or {})
    chance_levels = dict(chance_levels or {})
    default_split = extra.get("eval_split", extra.get("split", card_kind.default_split))
    dataset = dataset_reference(dataset_name)
    base_model = _shareable(base_model)

    baselines = {name: without_chance_levels(values) for name, values in (extra.pop("baselines", None) or {}).items()}
    for key, value in metrics.items():
        baseline_result = _baseline_result(key)
        if baseline_result is not None and _is_result(key, value):
            baselines.setdefault(baseline_result[0], {})[baseline_result[1]] = value
    baseline_names = [name for name in BASELINES if name in baselines] + sorted(set(baselines) - set(BASELINES))

    eval_results, results = [], []
    chance_levels.update({key: value for key, value in metrics.items() if is_chance_level(key)})
    for key, value in metrics.items():
        if not _is_result(key, value) or _baseline_result(key) is not None:
            continue
        split, metric = split_and_metric(key, default_split)
        config = _dataset_config(metric, card_kind.default_config)
        eval_results.append(
            EvalResult(
                task_type=card_kind.task_type,
                task_name=card_kind.task_name,
                dataset_type=dataset.hub_id or dataset.name,
                dataset_name=dataset.name,
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
                "baselines": [_format_value(baselines[name].get(key)) for name in baseline_names],
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
        base_model=base_model if _is_hub_id(base_model) else None,
        datasets=[dataset.hub_id] if dataset.hub_id else None,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
    )
    path = Path(template_path) if template_path is not None else template_dir() / card_kind.template
    return ModelCard.from_template(
        card_data,
        template_path=str(path),
        model_name=model_name,
        model_id=_shareable(extra.pop("repo_id", model_name)),
        dataset_name=dataset.name,
        dataset_link=dataset.link,
        dataset_note=dataset.note,
        base_model=base_model,
        base_model_link=(
            f"[{base_model}](https://huggingface.co/{base_model})" if _is_hub_id(base_model) else f"`{base_model}`"
        )
        if base_model
        else None,
        results=results,
        baseline_columns=[name.replace("_", " ").capitalize() for name in baseline_names],
        hyperparameters={str(key): _shareable(value) for key, value in hyperparameters.items()},
        citations=list(card_kind.citations),
        **extra,
    )


def _format_value(value: Any) -> str:
    return f"{float(value):.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


__all__ = ["BASELINES", "CARD_KINDS", "DatasetReference", "dataset_reference", "make_model_card", "template_dir"]
