"""Pre-training, fine-tuning and evaluation of umBERT/WumBERT: the logic behind the thin `training_scripts/`.

Data are outfits as rows of the catalogue (the embeddings table restricted to the slot categories); umBERT looks the
rows up in its fixed catalogue embeddings, WumBERT takes them as `input_ids` into its trainable table.
"""

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import AutoConfig, AutoModel

from ..configuration_umbert import CONTRASTIVE_NEGATIVES, DISTANCES, LOSS_TYPES, UmBertConfig, WumBertConfig
from ..data.embeddings import EmbeddingsTable, read_embeddings_metadata, recorded_image_encoder_folder
from ..data.image_processing import is_pretrained_image_encoder_name
from ..data.model_image_encoder import IMAGE_ENCODER_FOLDER
from ..data.outfit_data import (
    OutfitData,
    RowsDataset,
    dataset_has_config,
    dataset_slots,
    load_dataset_config,
    load_outfit_data,
    read_catalogue,
)
from ..evaluation.metrics import (
    INDEX_RECALL_K,
    VALIDATION_PREFIX,
    OutfitEvaluator,
    Predictor,
    accuracy_metrics,
    add_prefix,
    chance_levels_by_metric,
    compatibility_from_ranks,
    compatibility_metrics,
    context_mean_predictor,
    greater_is_better,
    hit_rate_metrics,
    matching_rows,
    model_predictor,
    random_predictor,
    without_chance_levels,
)
from ..faiss_index import FaissCategoryIndex, build_index
from ..masking import expand_fill_in_the_blank
from ..modeling_umbert import UmBertModel, UmBertPreTrainedModel, WumBertModel
from ..retrieval import CategoryIndex
from ..utils.logging import get_logger
from ..utils.paths import first_line, is_local_path, shareable_metadata, shareable_name
from .arguments import check_run_output_dir, check_training_args
from .loop import (
    finish_run,
    fit,
    make_accelerator,
    make_dataloader,
    prepare_for_training,
)

logger = get_logger(__name__)

OBJECTIVES = ("reconstruction", "fill_in_the_blank")
# Defaults of the scripts, chosen on the MANGO validation split (see the README's "Results on real outfits").
MODEL_DEFAULTS = {
    "hidden_size": 256,
    "contrastive_negatives": "catalogue",
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "hidden_dropout_prob": 0.1,
    "distance": "euclidean",
    "contrastive_temperature": 0.05,
}
PRETRAIN_DEFAULTS = {"num_train_epochs": 5, "per_device_train_batch_size": 64, "learning_rate": 3e-4, "patience": 3}
FINETUNE_DEFAULTS = {"num_train_epochs": 10, "per_device_train_batch_size": 64, "learning_rate": 1e-3, "patience": 3}


def add_model_args(parser: argparse.ArgumentParser) -> list[str]:
    """Model hyperparameters of a new umBERT/WumBERT: `MODEL_DEFAULTS`, chosen on the MANGO validation split.

    Returns the destinations of the flags, so a script can refuse them where no new model is built.

    The original umBERT had 6 layers and 8 heads; on real outfits (a few thousand) that size overfits at once.
    """
    group = parser.add_argument_group("model")
    group.add_argument("--model_type", choices=["umbert", "wumbert"], default="umbert")
    group.add_argument(
        "--hidden_size",
        type=int,
        default=MODEL_DEFAULTS["hidden_size"],
        help="Encoder width; wider item embeddings are projected to it by a learned layer (0: the embedding size, "
        "no projection, as the original).",
    )
    group.add_argument("--num_hidden_layers", type=int, default=MODEL_DEFAULTS["num_hidden_layers"])
    group.add_argument("--num_attention_heads", type=int, default=MODEL_DEFAULTS["num_attention_heads"])
    group.add_argument("--intermediate_size", type=int, default=None, help="Feed-forward size (default 4 x hidden).")
    group.add_argument("--hidden_dropout_prob", type=float, default=MODEL_DEFAULTS["hidden_dropout_prob"])
    group.add_argument("--use_category_embeddings", action="store_true")
    group.add_argument("--loss_type", choices=LOSS_TYPES, default="contrastive")
    group.add_argument(
        "--contrastive_negatives",
        choices=CONTRASTIVE_NEGATIVES,
        default=MODEL_DEFAULTS["contrastive_negatives"],
        help="Negatives of the contrastive loss: the batch's items of the blank's category, or all the catalogue's.",
    )
    group.add_argument(
        "--max_catalogue_negatives",
        type=int,
        default=UmBertConfig.max_catalogue_negatives,
        help="With catalogue negatives, a category of more items is represented at each step by this many drawn at "
        "random (the loss corrected to estimate the full one), so a step costs the same on any catalogue "
        "(default 4096; MANGO's categories are all smaller, so scored whole).",
    )
    group.add_argument("--distance", choices=DISTANCES, default=MODEL_DEFAULTS["distance"])
    group.add_argument(
        "--contrastive_temperature",
        type=float,
        default=MODEL_DEFAULTS["contrastive_temperature"],
        help="Initial InfoNCE temperature (learned).",
    )
    return [action.dest for action in group._group_actions]


def add_data_args(parser: argparse.ArgumentParser, embeddings_required: bool) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset", type=str, required=True, help="Dataset folder or Hub repo built by dataset_builder."
    )
    group.add_argument(
        "--embeddings",
        type=str,
        required=embeddings_required,
        default=None,
        help="Embeddings table (parquet) from compute_embeddings.py or your own.",
    )
    group.add_argument("--metric_for_best_model", type=str, default=None, help="Validation metric for early stopping.")
    group.add_argument(
        "--item_embeddings_learning_rate",
        type=float,
        default=None,
        help="WumBERT: learning rate of the item table (default: --learning_rate; 0 freezes it).",
    )


def catalogue_of_model(model: UmBertPreTrainedModel) -> EmbeddingsTable:
    """The catalogue stored in a model, as an embeddings table (ids, categories, embeddings)."""
    if not isinstance(model, UmBertPreTrainedModel):  # e.g. an image encoder: it has no catalogue
        raise ValueError(f"{model.name_or_path!r} holds a {model.config.model_type!r} model, not umBERT or WumBERT.")
    categories = [model.config.categories[index] for index in model.catalogue_categories.tolist()]
    return EmbeddingsTable(
        list(model.catalogue_item_id_list),
        categories,
        model.get_catalogue_embeddings().detach().cpu().float(),
        dict(model.config.embedding_metadata or {}),
        source=f"the catalogue of model {model.name_or_path!r}" if model.name_or_path else "the model's catalogue",
    )


def _encoder_name(value: Any) -> str | None:
    """An encoder recorded in embeddings metadata: a folder or Hub id, or a dict with its `name`."""
    return value.get("name") if isinstance(value, dict) else value


def encoder_hidden_size(hidden_size: int, embedding_dim: int) -> int:
    """The encoder width of a new model: `--hidden_size`, never wider than the item embeddings (0: their size)."""
    return min(hidden_size, embedding_dim) if hidden_size > 0 else embedding_dim


def model_config_kwargs(args: argparse.Namespace, embedding_dim: int) -> dict[str, Any]:
    """The config fields that the model flags (`add_model_args`) set, for item embeddings of `embedding_dim`."""
    return {
        "hidden_size": encoder_hidden_size(args.hidden_size, embedding_dim),
        "embedding_size": embedding_dim,
        "num_hidden_layers": args.num_hidden_layers,
        "num_attention_heads": args.num_attention_heads,
        "intermediate_size": args.intermediate_size,
        "hidden_dropout_prob": args.hidden_dropout_prob,
        "use_category_embeddings": args.use_category_embeddings,
        "loss_type": args.loss_type,
        "contrastive_negatives": args.contrastive_negatives,
        "max_catalogue_negatives": args.max_catalogue_negatives,
        "distance": args.distance,
        "contrastive_temperature": args.contrastive_temperature,
    }


def check_model_args(args: argparse.Namespace) -> None:
    """Refuse bad model flags before any data is read: `ValueError` naming the flag or config field.

    The config's validation is the one check of the values; the item embeddings' size is not known yet, so it runs on
    a stand-in size that `--hidden_size` (or, at 0, the head count) divides.
    """
    if args.hidden_size < 0:
        raise ValueError(f"--hidden_size must be 0 (the item embeddings' size) or positive, got {args.hidden_size}.")
    stand_in = args.hidden_size if args.hidden_size > 0 else 8 * max(1, args.num_attention_heads)
    UmBertConfig(**model_config_kwargs(args, stand_in))


def new_model(args: argparse.Namespace, catalogue: EmbeddingsTable, slots: list[str]) -> UmBertPreTrainedModel:
    """A fresh umBERT or WumBERT sized to the embeddings, with the catalogue set.

    The config records no path of this machine (`shareable_metadata`): a local image encoder is recorded as
    `"image_encoder"`, the sub-folder that `save_image_encoder_with_model` fills when the model is saved (meanwhile
    photos are embedded from the encoder's folder), and a Hub encoder by its id.
    """
    metadata = dict(catalogue.metadata)
    recorded = _encoder_name(metadata.get("image_encoder"))
    image_encoder, encoder_folder = recorded, None
    if recorded and is_pretrained_image_encoder_name(recorded) and "image" in (metadata.get("parts") or []):
        # A wheel-shipped backbone: saved with the model like a local encoder, so it loads without the wheel.
        if not metadata.get("projection"):
            image_encoder, encoder_folder = IMAGE_ENCODER_FOLDER, recorded
    elif recorded and is_local_path(recorded):
        image_encoder = None  # a base name would read as a Hub id
        if "image" in (metadata.get("parts") or []) and not metadata.get("projection"):
            if os.path.isdir(recorded):
                image_encoder, encoder_folder = IMAGE_ENCODER_FOLDER, os.path.abspath(recorded)
            else:
                logger.warning(
                    f"The image encoder of the embeddings, {recorded}, is gone: it cannot be saved with the model, "
                    "which will not embed photos."
                )
    config_kwargs = {
        "categories": list(slots),
        **model_config_kwargs(args, catalogue.embedding_dim),
        "image_encoder": image_encoder,
        "text_encoder": shareable_name(_encoder_name(metadata.get("text_encoder"))),
        "embedding_metadata": shareable_metadata(metadata) or None,
    }
    if args.model_type == "wumbert":
        model = WumBertModel.from_item_embeddings(
            catalogue.item_ids, catalogue.embeddings, catalogue.categories, WumBertConfig(**config_kwargs)
        )
    else:
        model = UmBertModel(UmBertConfig(**config_kwargs))
        model.set_catalogue(catalogue.item_ids, catalogue.embeddings, catalogue.categories)
    # The encoder folder is the one this machine's extraction ran (with its `--trust_remote_code`, if any).
    model.set_image_encoder_source(encoder_folder, bool(metadata.get("image_encoder_trust_remote_code")))
    return model


def save_image_encoder_with_model(model: UmBertPreTrainedModel, output_dir: str | os.PathLike) -> None:
    """Save the model's image encoder in `output_dir/image_encoder/` and leave no local path in its config.

    Run before `save_pretrained`. An encoder that cannot be loaded any more (a warning) is not recorded: the config
    would otherwise name a folder of this machine.
    """
    try:
        model.save_image_encoder(output_dir)
    except ValueError as error:
        logger.warning(f"The image encoder is not saved with the model, which will not embed photos: {error}")
        if model.config.image_encoder and os.path.isabs(model.config.image_encoder):
            model.config.image_encoder = None
    if model.config.embedding_metadata:
        model.config.embedding_metadata = shareable_metadata(model.config.embedding_metadata)
    model.config.text_encoder = shareable_name(model.config.text_encoder)


def training_step_for(
    objective: str, model: UmBertPreTrainedModel
) -> Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]:
    """The loss of one batch of outfit rows: reconstruction of the whole outfit, or the fill-in-the-blank expansion.

    umBERT gets embeddings from its catalogue; WumBERT gets the rows as `input_ids`, so its table trains under DDP.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"Unknown objective {objective!r}; expected one of {OBJECTIVES}.")
    uses_ids = isinstance(model, WumBertModel)
    catalogue_embeddings = None if uses_ids else model.get_catalogue_embeddings()

    def step(wrapped_model: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
        masked_positions = None
        if objective == "fill_in_the_blank":
            rows, masked_positions = expand_fill_in_the_blank(rows)  # (batch * slots, slots)
        if uses_ids:
            return wrapped_model(input_ids=rows, masked_positions=masked_positions, labels=rows).loss
        embeds = catalogue_embeddings[rows]  # (batch, slots, embedding)
        return wrapped_model(inputs_embeds=embeds, masked_positions=masked_positions, labels=rows).loss

    return step


def _gather_per_example(
    accelerator: Accelerator,
    num_examples: int,
    batch_size: int,
    compute: Callable[[torch.Tensor], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Run `compute(example_indices)` on each process's share and gather, counting every example exactly once."""
    if num_examples == 0:
        return {}
    loader = accelerator.prepare_data_loader(
        torch.utils.data.DataLoader(torch.arange(num_examples), batch_size=batch_size, shuffle=False)
    )
    outputs: dict[str, list[torch.Tensor]] = {}
    for indices in loader:
        gathered = accelerator.gather_for_metrics(compute(indices.to(accelerator.device)))
        for name, value in gathered.items():
            outputs.setdefault(name, []).append(value.cpu())
    return {name: torch.cat(values) for name, values in outputs.items()}


def evaluate_split(
    accelerator: Accelerator,
    predict: Predictor,
    data: OutfitData,
    split: str,
    catalogue_embeddings: torch.Tensor,
    distance: str,
    batch_size: int,
    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    search_index: CategoryIndex | None = None,
) -> dict[str, float]:
    """Every metric of the shared contract (with chance levels) on one split, distributed over processes; with an
    approximate `search_index` over the catalogue rows, also `index_recall@10` (`metrics.index_recall`)."""
    device = accelerator.device
    evaluator = OutfitEvaluator(
        catalogue_embeddings.to(device), data.catalogue_categories.to(device), distance, search_index=search_index
    )
    metrics: dict[str, float] = {}
    ranked: dict[str, torch.Tensor] = {}  # the fill-in-the-blank quantities of the split's outfits, by outfit
    with torch.no_grad(), accelerator.autocast():
        if split in data.outfits and len(data.outfits[split].rows):
            rows = data.outfits[split].rows.to(device)
            num_slots = rows.shape[1]

            def outfit_quantities(indices: torch.Tensor) -> dict[str, torch.Tensor]:
                fitb = evaluator.retrieval_ranks(predict, rows[indices])
                reconstruction = evaluator.reconstruction(predict, rows[indices])
                quantities = {
                    "ranks": fitb["ranks"].view(-1, num_slots),
                    "ties": fitb["ties"].view(-1, num_slots),
                    "sizes": fitb["category_sizes"].view(-1, num_slots),
                    "similarities": fitb["similarities"].view(-1, num_slots),
                    "reconstruction_correct": reconstruction["correct"].view(-1, num_slots),
                    "reconstruction_chance": reconstruction["chance"].view(-1, num_slots),
                }
                if "index_recall" in fitb:
                    quantities["index_recall"] = fitb["index_recall"].view(-1, num_slots)
                if loss_fn is not None:
                    loss = loss_fn(rows[indices]).float()
                    quantities["loss"] = loss.expand(indices.shape[0])  # the batch mean, once per outfit
                return quantities

            out = _gather_per_example(accelerator, rows.shape[0], batch_size, outfit_quantities)
            ranked = {"rows": rows.cpu(), **{name: out[name] for name in ("ranks", "ties", "sizes", "similarities")}}
            metrics.update(hit_rate_metrics(out["ranks"].flatten(), out["sizes"].flatten(), ties=out["ties"].flatten()))
            metrics.update(
                accuracy_metrics(
                    out["reconstruction_correct"].flatten(),
                    out["reconstruction_chance"].flatten(),
                    "reconstruction_accuracy",
                )
            )
            if "loss" in out:
                metrics["loss"] = out["loss"].mean().item()
            if "index_recall" in out:
                metrics[f"index_recall@{INDEX_RECALL_K}"] = out["index_recall"].mean().item()
        if split in data.fitb and len(data.fitb[split].labels):
            questions = data.fitb[split]
            tensors = [
                t.to(device) for t in (questions.outfit_rows, questions.blanks, questions.candidates, questions.labels)
            ]
            out = _gather_per_example(
                accelerator,
                len(questions.labels),
                batch_size,
                lambda indices: evaluator.multiple_choice(predict, *(tensor[indices] for tensor in tensors)),
            )
            metrics.update(accuracy_metrics(out["correct"], out["chance"], "fitb_accuracy"))
        if split in data.compatibility and len(data.compatibility[split].labels):
            compatibility = data.compatibility[split]
            scores = compatibility_scores(accelerator, evaluator, predict, compatibility.rows, ranked, batch_size)
            metrics.update(compatibility_metrics(scores["scores"], compatibility.labels, scores["rank_scores"]))
    return metrics


def compatibility_scores(
    accelerator: Accelerator,
    evaluator: OutfitEvaluator,
    predict: Predictor,
    rows: torch.Tensor,
    ranked: dict[str, torch.Tensor],
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """`OutfitEvaluator.compatibility` of every outfit of `rows` (on the CPU, in order), distributed over processes.

    The positives of a `compatibility` split are the split's outfits, which `ranked` (the fill-in-the-blank ranks
    and scores of the split's outfits, by outfit) already holds: an outfit found there is scored from them, and only
    the others (the negatives) are ranked, which saves a quarter of a test evaluation on a large catalogue.
    """
    reuse = matching_rows(rows, ranked["rows"]) if ranked else torch.full((rows.shape[0],), -1, dtype=torch.long)
    known, unknown = torch.nonzero(reuse >= 0).flatten(), torch.nonzero(reuse < 0).flatten()
    todo = rows[unknown].to(accelerator.device)
    computed = _gather_per_example(
        accelerator, len(todo), batch_size, lambda indices: evaluator.compatibility(predict, todo[indices])
    )
    result = {name: torch.empty(rows.shape[0], dtype=torch.double) for name in ("scores", "rank_scores")}
    if len(known):
        sources = reuse[known]
        from_ranks = compatibility_from_ranks(
            *(ranked[name][sources].flatten() for name in ("similarities", "ranks", "ties", "sizes")), rows.shape[1]
        )
        for name, values in from_ranks.items():
            result[name][known] = values.double()
    for name, values in computed.items():
        result[name][unknown] = values.double()
    return result


def evaluate_model(
    accelerator: Accelerator,
    model: torch.nn.Module,
    data: OutfitData,
    split: str,
    batch_size: int,
    objective: str | None = None,
) -> dict[str, float]:
    """Evaluate an umBERT/WumBERT on a split; with `objective`, also its loss (`loss`)."""
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    loss_fn = None
    if objective is not None:
        step = training_step_for(objective, unwrapped)
        loss_fn = lambda rows: step(unwrapped, rows)  # noqa: E731
    try:
        return evaluate_split(
            accelerator,
            model_predictor(unwrapped),
            data,
            split,
            unwrapped.get_catalogue_embeddings().detach(),
            unwrapped.config.distance,
            batch_size,
            loss_fn=loss_fn,
            search_index=_approximate(unwrapped.catalogue_index())
            if unwrapped.config.search_index != "exact"
            else None,
        )
    finally:
        unwrapped.train(was_training)


def _approximate(index: CategoryIndex) -> CategoryIndex | None:
    """`index` when it searches on FAISS (so `index_recall@10` is worth reporting), else None."""
    return index if isinstance(index, FaissCategoryIndex) else None


def index_flag_error(index: str | None, error: ValueError) -> ValueError:
    """A bad `--index` / `--index_parameters` as one line naming the flag."""
    return ValueError(f"--index {index!r}: {first_line(error)}")


def apply_index_flags(model: UmBertPreTrainedModel, index: str | None, parameters: str | None) -> None:
    """`model.set_search_index` from the `--index` / `--index_parameters` flags (None: as the model was saved)."""
    if index is None and parameters is None:
        return
    try:
        model.set_search_index(index or model.config.search_index, parameters)
    except ValueError as error:
        raise index_flag_error(index, error) from None


def evaluate_baseline(
    accelerator: Accelerator,
    baseline: str,
    data: OutfitData,
    split: str,
    batch_size: int,
    distance: str,
    seed: int,
    search_index: CategoryIndex | None = None,
) -> dict[str, float]:
    """Score the same metrics for `random` guessing or the `context_mean` predictor, on the catalogue embeddings
    (with an approximate `search_index` over them, also its `index_recall@10`)."""
    embeddings = data.catalogue.embeddings.to(accelerator.device)
    if baseline == "random":
        predict = random_predictor(embeddings, seed=seed + accelerator.process_index)
    elif baseline == "context_mean":
        predict = context_mean_predictor()
    else:
        raise ValueError(f"Unknown baseline {baseline!r}; expected 'random' or 'context_mean'.")
    return evaluate_split(
        accelerator, predict, data, split, embeddings, distance, batch_size, search_index=_approximate(search_index)
    )


def format_comparison(columns: dict[str, dict[str, float]]) -> str:
    """A text table: one row per metric, one column per model or baseline, plus chance."""
    first = next(iter(columns.values()))
    names, chance = list(without_chance_levels(first)), chance_levels_by_metric(first)
    header = f"{'metric':26s}" + "".join(f"{label:>16s}" for label in columns) + f"{'chance':>12s}"
    lines = [header, "-" * len(header)]
    for name in names:
        values = "".join(f"{column.get(name, float('nan')):16.4f}" for column in columns.values())
        lines.append(f"{name:26s}{values}{chance.get(name, float('nan')):12.4f}")
    return "\n".join(lines)


def train_outfit_model(args: argparse.Namespace, objective: str) -> dict[str, Any]:
    """One training phase end to end: data, model, `fit`, test metrics with baselines, save, card and push.

    `objective` is `"reconstruction"` (pre-training; a new model unless `args.model_name_or_path`) or
    `"fill_in_the_blank"` (fine-tuning). Returns the metrics written to `metrics.json`.
    """
    check_training_args(args)
    if not getattr(args, "model_name_or_path", None):
        check_model_args(args)
    # The image encoder that made the embeddings is an input too: no run writes into it.
    encoder = recorded_image_encoder_folder(read_embeddings_metadata(args.embeddings) if args.embeddings else {})
    check_run_output_dir(args.output_dir, {"image_encoder (of --embeddings)": encoder})
    accelerator = make_accelerator(args)
    with accelerator.main_process_first():
        if getattr(args, "model_name_or_path", None):
            # The config first: an image encoder (fashion-resnet, ssim-autoencoder) has no slots or catalogue.
            config = AutoConfig.from_pretrained(args.model_name_or_path)
            if config.model_type not in (UmBertConfig.model_type, WumBertConfig.model_type):
                raise ValueError(
                    f"--model_name_or_path {args.model_name_or_path} holds a {config.model_type!r} model, "
                    "not umBERT or WumBERT."
                )
            model = AutoModel.from_pretrained(args.model_name_or_path, config=config)
            slots = list(model.config.categories)
            catalogue = catalogue_of_model(model)
            wumbert = isinstance(model, WumBertModel)
        else:
            slots = dataset_slots(args.dataset)
            catalogue = read_catalogue(args.embeddings, slots)
            model, wumbert = None, args.model_type == "wumbert"
        train_config = "outfits"
        if objective == "fill_in_the_blank" and wumbert:
            if dataset_has_config(args.dataset, "outfits_augmented"):
                train_config = "outfits_augmented"
        # The data before a new model: it checks the embeddings against the dataset and names the item at fault.
        data = load_outfit_data(args.dataset, catalogue, slots, train_config=train_config)
        if model is None:
            model = new_model(args, catalogue, slots)
    logger.info(f"Training on {len(data.outfits['train'].rows)} outfits from config {train_config!r}")

    train_dataloader = make_dataloader(
        RowsDataset(data.outfits["train"].rows),
        args.per_device_train_batch_size,
        shuffle=True,
        seed=args.seed,
        drop_last=True,
    )
    model, optimizer, train_dataloader, lr_scheduler = prepare_for_training(accelerator, model, train_dataloader, args)
    unwrapped = accelerator.unwrap_model(model)
    metric_name = args.metric_for_best_model or ("loss" if objective == "reconstruction" else "mrr")
    eval_batch = args.per_device_eval_batch_size
    runtimes = {"validation_runtime": 0.0}

    def validate(wrapped: torch.nn.Module) -> dict[str, float]:
        start = time.perf_counter()
        try:
            return evaluate_model(accelerator, wrapped, data, "validation", eval_batch, objective)
        finally:
            runtimes["validation_runtime"] += time.perf_counter() - start

    start = time.perf_counter()
    result = fit(
        accelerator,
        model,
        optimizer,
        lr_scheduler,
        train_dataloader,
        training_step=training_step_for(objective, unwrapped),
        evaluate=validate,
        metric_name=metric_name,
        greater_is_better=greater_is_better(metric_name),
        args=args,
    )
    runtimes["train_runtime"] = time.perf_counter() - start

    final_split = "test" if "test" in data.outfits else "validation"
    start = time.perf_counter()
    final = evaluate_model(accelerator, model, data, final_split, eval_batch)
    runtimes["final_evaluation_runtime"] = time.perf_counter() - start
    start = time.perf_counter()
    baselines = {
        name: evaluate_baseline(accelerator, name, data, final_split, eval_batch, unwrapped.config.distance, args.seed)
        for name in ("random", "context_mean")
    }
    runtimes["baselines_runtime"] = time.perf_counter() - start
    if accelerator.is_main_process:
        print(f"\n{unwrapped.config.model_type} ({objective}) on {final_split}:")
        print(format_comparison({unwrapped.config.model_type: final, **baselines}))
    metrics: dict[str, Any] = {
        **add_prefix({k: v for k, v in result.best_metrics.items() if k != "epoch"}, VALIDATION_PREFIX),
        **add_prefix(final, f"{final_split}_"),
        **{
            f"{final_split}_{name}_{key}": value
            for name, values in baselines.items()
            for key, value in without_chance_levels(values).items()
        },
        "best_epoch": result.best_epoch,
        "epochs_trained": len(result.history),
        "stopped_early": result.stopped_early,
        "global_step": result.global_step,
        "objective": objective,
        "train_config": train_config,
        **data.skipped_counts(),
        # Wall times in seconds of this process (not reproducible, unlike every figure above): `train_runtime`
        # covers `fit`, its validation runs (`validation_runtime`) and checkpoints included, as the `Trainer`'s does.
        **{name: round(seconds, 3) for name, seconds in runtimes.items()},
    }
    if accelerator.is_main_process:
        save_image_encoder_with_model(unwrapped, args.output_dir)
    finish_run(
        accelerator,
        model,
        args,
        metrics=metrics,
        card_metrics=without_chance_levels(final),
        chance_levels=chance_levels_by_metric(final),
        card_extra={"split": final_split, "baselines": baselines, "objective": objective},
    )
    return metrics


def run_evaluation(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate a saved model, or a baseline on an embeddings table, on one split; returns the metrics.

    Raises `ValueError` when the dataset has no such split (listing its splits), before any model is loaded: a
    misspelt split would otherwise give an empty result that looks like a successful evaluation.
    """
    splits = list(load_dataset_config(args.dataset, "outfits"))
    if args.split not in splits:
        raise ValueError(f"--split {args.split!r}: the dataset {str(args.dataset)!r} has the splits {splits}.")
    accelerator = Accelerator(mixed_precision=getattr(args, "mixed_precision", "no"))
    set_seed(args.seed)
    model = None
    if args.model_name_or_path:
        try:
            model = AutoModel.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
        except (OSError, ValueError) as error:
            where = "folder" if os.path.isdir(args.model_name_or_path) else "model folder or Hub repo id"
            raise ValueError(
                f"--model_name_or_path {args.model_name_or_path!r}: cannot load a {where}: {first_line(error)}"
            ) from error
        if not isinstance(model, UmBertPreTrainedModel):
            raise ValueError(
                f"--model_name_or_path {args.model_name_or_path!r} holds a {model.config.model_type!r} model, "
                "not umBERT or WumBERT."
            )
        slots = list(model.config.categories)
        if args.embeddings and isinstance(model, UmBertModel):
            table = read_catalogue(args.embeddings, slots)
            model.set_catalogue(table.item_ids, table.embeddings, table.categories)
        catalogue = catalogue_of_model(model)
        distance = model.config.distance
    else:
        slots = dataset_slots(args.dataset)
        catalogue = read_catalogue(args.embeddings, slots)
        distance = args.distance
    data = load_outfit_data(args.dataset, catalogue, slots, splits=(args.split,))
    search_index = getattr(args, "index", None)
    search_index_parameters = getattr(args, "index_parameters", None)
    if model is not None:
        apply_index_flags(model, search_index, search_index_parameters)
        model = accelerator.prepare_model(model, evaluation_mode=True)
        metrics = evaluate_model(accelerator, model, data, args.split, args.per_device_eval_batch_size)
        name = args.model_name_or_path
    else:
        try:  # the index is checked (and built) before the baseline runs
            index = build_index(
                data.catalogue.embeddings.to(accelerator.device),
                data.catalogue_categories.to(accelerator.device),
                distance,
                index=search_index or "exact",
                parameters=search_index_parameters,
            )
        except ValueError as error:
            raise index_flag_error(search_index, error) from None
        metrics = evaluate_baseline(
            accelerator,
            args.baseline,
            data,
            args.split,
            args.per_device_eval_batch_size,
            distance,
            args.seed,
            search_index=index,
        )
        name = f"baseline:{args.baseline}"
    return {"model": str(name), "split": args.split, "distance": distance, **metrics, **data.skipped_counts()}


__all__ = [
    "FINETUNE_DEFAULTS",
    "MODEL_DEFAULTS",
    "OBJECTIVES",
    "PRETRAIN_DEFAULTS",
    "add_data_args",
    "apply_index_flags",
    "add_model_args",
    "catalogue_of_model",
    "check_model_args",
    "encoder_hidden_size",
    "model_config_kwargs",
    "evaluate_baseline",
    "evaluate_model",
    "evaluate_split",
    "new_model",
    "save_image_encoder_with_model",
    "training_step_for",
]
