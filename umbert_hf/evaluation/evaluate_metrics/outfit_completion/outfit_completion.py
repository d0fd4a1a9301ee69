"""`evaluate` wrapper of the umbert-hf outfit-completion metrics (hit rate@k and MRR, FITB accuracy, compatibility AUC).

    import evaluate
    from umbert_hf.evaluation.evaluate_module import EVALUATE_METRIC_PATH

    metric = evaluate.load(EVALUATE_METRIC_PATH, "retrieval")
    metric.compute(ranks=[1, 3, 12], category_sizes=[100, 100, 80])

The numbers come from `umbert_hf.evaluation.metrics` (the one implementation the training scripts use); this file only adapts
inputs. `evaluate` copies it into its modules cache before importing it, so the package is imported by absolute name.
"""

import datasets
import evaluate
import numpy as np
import torch

from umbert_hf.evaluation.metrics import HIT_RATE_KS, accuracy_metrics, compatibility_metrics, hit_rate_metrics

_DESCRIPTION = """\
Outfit-completion metrics of umBERT/WumBERT, each with its chance level:
- `retrieval`: hit rate@k (k = 1, 10, 50) and mean reciprocal rank of the true item among the catalogue items of the
  blank's category, from 1-based ranks;
- `fitb`: fill-in-the-blank accuracy (the chosen candidate is the labelled one);
- `compatibility`: ROC AUC of outfit compatibility scores against 0/1 labels (average ranks for ties).
"""

_KWARGS_DESCRIPTION = """
Args (by configuration):
    retrieval:
        ranks (`list[int]`): 1-based rank of the true item for each query (1 + the number of items scored better).
        ties (`list[int]`, optional, a `compute` argument): items scored exactly as well as the true item; the
            metrics are then expectations under random tie-breaking (see `umbert_hf.retrieval.rank_of_targets`).
        category_sizes (`list[int]`): number of items each query was ranked among (for the chance levels).
        ks (`list[int]`, optional): cut-offs of the hit rate, default (1, 10, 50).
    fitb:
        predictions (`list[int]`): index of the chosen candidate for each question.
        references (`list[int]`): index of the right candidate.
        num_candidates (`int`, optional): candidates per question, default 4 (chance = 1 / num_candidates).
    compatibility:
        predictions (`list[float]`): compatibility score of each outfit (higher: more compatible).
        references (`list[int]`): 1 for a compatible outfit, 0 otherwise.
Returns:
    retrieval: `hit_rate@k`, `hit_rate@k_chance` for each k, `mrr`, `mrr_chance`.
    fitb: `fitb_accuracy`, `fitb_accuracy_chance`.
    compatibility: `compatibility_auc` (NaN when a class is absent), `compatibility_auc_chance`.
Examples:
    >>> metric = evaluate.load(EVALUATE_METRIC_PATH, "fitb")
    >>> metric.compute(predictions=[0, 2, 1, 3], references=[0, 2, 0, 0])
    {'fitb_accuracy': 0.5, 'fitb_accuracy_chance': 0.25}
"""

# The metrics are standard (hit rate@k, MRR, accuracy, ROC AUC); cite the umBERT work you compare against.
_CITATION = ""

_FEATURES = {
    "retrieval": datasets.Features({"ranks": datasets.Value("int64"), "category_sizes": datasets.Value("int64")}),
    "fitb": datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
    "compatibility": datasets.Features(
        {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
    ),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OutfitCompletion(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _FEATURES:
            raise ValueError(
                f"Unknown configuration {self.config_name!r} of the outfit_completion metric; "
                f"use one of {sorted(_FEATURES)}, e.g. evaluate.load(path, 'retrieval')."
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES[self.config_name],
            format="numpy",
        )

    def _compute(
        self,
        predictions=None,
        references=None,
        ranks=None,
        category_sizes=None,
        ties=None,
        ks=HIT_RATE_KS,
        num_candidates: int = 4,
    ) -> dict[str, float]:
        if self.config_name == "retrieval":
            ranks, sizes = _tensor(ranks), _tensor(category_sizes)
            tied = None if ties is None else _tensor(ties)
            last = ranks if tied is None else ranks + tied
            if (ranks < 1).any() or (last > sizes).any():
                raise ValueError("Every rank (plus its ties) must be between 1 and its category size (1-based).")
            return hit_rate_metrics(ranks, sizes, ks=tuple(ks), ties=tied)
        if self.config_name == "fitb":
            if num_candidates < 1:
                raise ValueError(f"num_candidates must be at least 1, got {num_candidates}.")
            correct = _tensor(predictions) == _tensor(references)
            chance = torch.full(correct.shape, 1.0 / num_candidates, dtype=torch.double)
            return accuracy_metrics(correct, chance, "fitb_accuracy")
        labels = _tensor(references)
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("compatibility references must be 0 or 1.")
        return compatibility_metrics(_tensor(predictions), labels)


def _tensor(values) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values))
