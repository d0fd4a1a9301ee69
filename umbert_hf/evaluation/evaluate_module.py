"""Where the `evaluate` metric module of umbert-hf lives, and a shortcut to load it offline."""

from pathlib import Path

# A folder holding `outfit_completion.py`: `evaluate.load(EVALUATE_METRIC_PATH, "retrieval" | "fitb" | "compatibility")`.
EVALUATE_METRIC_PATH = str(Path(__file__).resolve().parent / "evaluate_metrics" / "outfit_completion")
EVALUATE_METRIC_CONFIGS = ("retrieval", "fitb", "compatibility")


def load_outfit_metric(config_name: str, **kwargs):
    """`evaluate.load` of the local outfit-completion metric (no network needed); kwargs go to `evaluate.load`."""
    import evaluate

    if config_name not in EVALUATE_METRIC_CONFIGS:
        raise ValueError(f"Unknown metric configuration {config_name!r}; expected one of {EVALUATE_METRIC_CONFIGS}.")
    return evaluate.load(EVALUATE_METRIC_PATH, config_name, **kwargs)


__all__ = ["EVALUATE_METRIC_CONFIGS", "EVALUATE_METRIC_PATH", "load_outfit_metric"]
