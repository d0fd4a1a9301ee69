"""Hyperparameter search: seeded random search and TPE end to end on tiny trials, resumption, bookkeeping."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from umbert_hf.commands import hparam_search
from umbert_hf.commands.hparam_search import (
    BEST_PARAMS_JSON,
    RESULTS_CSV,
    RESULTS_JSON,
    SEARCH_SPACE,
    Choice,
    RandomSuggester,
    constrain_space,
    override_space,
    phase_argv,
    sample_params,
)

ROOT = Path(__file__).resolve().parents[1]
TINY_SPACE = '{"num_hidden_layers": [1], "num_attention_heads": [1, 2]}'
SEED = 5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread than on cores shared with other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "training_scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def search_argv(outfit_dataset, output_dir, *extra: str) -> list[str]:
    dataset, embeddings = outfit_dataset
    return [
        "--dataset",
        str(dataset),
        "--embeddings",
        str(embeddings),
        "--output_dir",
        str(output_dir),
        "--seed",
        str(SEED),
        "--num_train_epochs_pretrain",
        "1",
        "--num_train_epochs_finetune",
        "1",
        "--per_device_train_batch_size",
        "32",
        "--per_device_eval_batch_size",
        "128",
        "--space",
        TINY_SPACE,
        *extra,
    ]


def read_results(output_dir: Path) -> tuple[list[dict], list[dict], dict]:
    with open(output_dir / RESULTS_CSV, newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    rows = json.loads((output_dir / RESULTS_JSON).read_text())
    best = json.loads((output_dir / BEST_PARAMS_JSON).read_text())
    return csv_rows, rows, best


def assert_best_matches(rows: list[dict], best: dict, param_names: list[str]) -> None:
    best_row = max((row for row in rows if row["status"] == "complete"), key=lambda row: row["objective"])
    assert best["trial"] == best_row["trial"]
    assert best["objective"] == best_row["objective"]
    assert best["params"] == {name: best_row[name] for name in param_names}


@pytest.fixture(scope="module")
def random_search(outfit_dataset, tmp_path_factory):
    """A 2-trial random search run as an interrupted 1-trial search, then resumed (in process, tiny models)."""
    script = load_script("hparam_search")
    output_dir = tmp_path_factory.mktemp("random_search") / "search"
    script.main(search_argv(outfit_dataset, output_dir, "--sampler", "random", "--n_trials", "1"))
    first_rows = json.loads((output_dir / RESULTS_JSON).read_text())
    result = script.main(search_argv(outfit_dataset, output_dir, "--sampler", "random", "--n_trials", "2", "--resume"))
    return output_dir, first_rows, result


@pytest.mark.slow
def test_random_search_writes_results_table_and_best_params(random_search):
    output_dir, _, result = random_search
    csv_rows, rows, best = read_results(output_dir)
    assert len(csv_rows) == len(rows) == 2
    assert [row["trial"] for row in rows] == [0, 1]
    param_names = [parameter.name for parameter in SEARCH_SPACE]
    for row, csv_row in zip(rows, csv_rows):
        assert row["status"] == "complete", row.get("error")
        assert 0 < row["objective"] <= 1 and row["duration_s"] > 0
        assert float(csv_row["objective"]) == pytest.approx(row["objective"])
        assert set(param_names) <= row.keys() and set(param_names) <= csv_row.keys()
        assert row["num_hidden_layers"] == 1 and row["num_attention_heads"] in (1, 2)
        for phase in ("pretrain", "finetune"):
            assert (Path(row["output_dir"]) / phase / "metrics.json").exists()
        finetune_metrics = json.loads((Path(row["output_dir"]) / "finetune" / "metrics.json").read_text())
        assert finetune_metrics["val_mrr"] == pytest.approx(row["objective"])
        assert finetune_metrics["objective"] == "fill_in_the_blank"
    assert_best_matches(rows, best, param_names)
    assert best["metric"] == "val_mrr" and best["direction"] == "maximize"
    assert result["best"]["trial"] == best["trial"]


@pytest.mark.slow
def test_trials_use_their_params(random_search):
    output_dir, _, _ = random_search
    for row in json.loads((output_dir / RESULTS_JSON).read_text()):
        pretrain = json.loads((Path(row["output_dir"]) / "pretrain" / "config.json").read_text())
        assert pretrain["num_hidden_layers"] == row["num_hidden_layers"]
        assert pretrain["num_attention_heads"] == row["num_attention_heads"]
        assert pretrain["hidden_dropout_prob"] == pytest.approx(row["hidden_dropout_prob"])


@pytest.mark.slow
def test_only_the_best_trial_keeps_its_weights(random_search):
    output_dir, _, _ = random_search
    best = json.loads((output_dir / BEST_PARAMS_JSON).read_text())["trial"]
    for trial in (0, 1):
        for phase in ("pretrain", "finetune"):
            folder = output_dir / f"trial_{trial}" / phase
            assert (folder / "model.safetensors").exists() == (trial == best)
            assert (folder / "metrics.json").exists() and (folder / "config.json").exists()


@pytest.mark.slow
def test_random_params_are_seeded_and_resume_continues_the_sequence(random_search):
    output_dir, first_rows, _ = random_search
    rows = json.loads((output_dir / RESULTS_JSON).read_text())
    assert rows[0] == first_rows[0]  # the recorded trial was kept, not rerun
    space = override_space(SEARCH_SPACE, json.loads(TINY_SPACE))
    for row in rows:
        expected = sample_params(space, RandomSuggester(SEED, row["trial"]))
        assert {name: row[name] for name in expected} == expected
    # Same seed, same draws; another seed, other draws.
    assert sample_params(SEARCH_SPACE, RandomSuggester(1, 0)) == sample_params(SEARCH_SPACE, RandomSuggester(1, 0))
    draws = {json.dumps(sample_params(SEARCH_SPACE, RandomSuggester(seed, 0))) for seed in range(5)}
    assert len(draws) == 5


@pytest.mark.slow
def test_tpe_search(outfit_dataset, tmp_path):  # optuna is in the `test` extra: this runs in CI
    script = load_script("hparam_search")
    output_dir = tmp_path / "tpe"
    script.main(search_argv(outfit_dataset, output_dir, "--sampler", "tpe", "--n_trials", "2", "--keep_models", "all"))
    csv_rows, rows, best = read_results(output_dir)
    assert len(csv_rows) == len(rows) == 2
    assert all(row["status"] == "complete" for row in rows)
    assert_best_matches(rows, best, [parameter.name for parameter in SEARCH_SPACE])
    assert all((Path(row["output_dir"]) / "finetune" / "model.safetensors").exists() for row in rows)


def test_tpe_without_optuna_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna":
            raise ImportError("No module named 'optuna'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    with pytest.raises(ImportError, match=r"umbert-hf\[search\]"):
        hparam_search._OptunaStudy(SEARCH_SPACE, seed=0, direction="maximize")


def test_heads_that_do_not_divide_the_hidden_size_are_skipped():
    space = constrain_space(SEARCH_SPACE, hidden_size=36)
    heads = next(parameter for parameter in space if parameter.name == "num_attention_heads")
    assert heads.choices == (1, 2, 4)
    with pytest.raises(ValueError, match="divides the hidden size"):
        constrain_space(override_space(SEARCH_SPACE, {"num_attention_heads": [7]}), hidden_size=32)


def test_space_overrides_are_checked():
    space = override_space(SEARCH_SPACE, {"num_hidden_layers": [1, 2], "weight_decay": [0, 0.1]})
    by_name = {parameter.name: parameter for parameter in space}
    assert by_name["num_hidden_layers"].choices == (1, 2)
    assert (by_name["weight_decay"].low, by_name["weight_decay"].high) == (0.0, 0.1)
    with pytest.raises(ValueError, match="Unknown hyperparameter"):
        override_space(SEARCH_SPACE, {"layers": [1]})
    with pytest.raises(ValueError, match="low <= high"):
        override_space(SEARCH_SPACE, {"hidden_dropout_prob": [0.3, 0.1]})


def test_phase_flags_are_those_of_the_training_scripts(tmp_path):
    """The argv of each phase parses with the real pretrain.py / finetune.py and carries the trial's params."""
    args = load_script("hparam_search").parse_args(
        ["--dataset", "D", "--embeddings", "E.parquet", "--output_dir", str(tmp_path), "--model_type", "wumbert"]
    )
    params = sample_params(SEARCH_SPACE, RandomSuggester(0, 3))
    trial_dir = tmp_path / "trial_3"
    pretrain = load_script("pretrain").parse_args(phase_argv(args, SEARCH_SPACE, params, "pretrain", trial_dir))
    finetune = load_script("finetune").parse_args(phase_argv(args, SEARCH_SPACE, params, "finetune", trial_dir))
    assert pretrain.learning_rate == params["pretrain_learning_rate"]
    assert finetune.learning_rate == params["finetune_learning_rate"]
    assert (pretrain.num_hidden_layers, pretrain.num_attention_heads) == (
        params["num_hidden_layers"],
        params["num_attention_heads"],
    )
    assert pretrain.hidden_dropout_prob == pytest.approx(params["hidden_dropout_prob"])
    for namespace in (pretrain, finetune):
        assert namespace.weight_decay == pytest.approx(params["weight_decay"])
        assert namespace.optimizer == params["optimizer"] and namespace.seed == args.seed
    assert pretrain.model_type == "wumbert" and pretrain.output_dir == str(trial_dir / "pretrain")
    assert finetune.model_name_or_path == str(trial_dir / "pretrain")
    assert finetune.output_dir == str(trial_dir / "finetune") and finetune.metric_for_best_model == "mrr"
    assert (pretrain.num_train_epochs, finetune.num_train_epochs) == (10, 20)
    assert finetune.per_device_train_batch_size == params["finetune_batch_size"]


def test_without_pretraining_the_finetuning_run_builds_the_model(tmp_path):
    """--num_train_epochs_pretrain 0: one phase, a new model on the embeddings with the trial's shape."""
    args = load_script("hparam_search").parse_args(
        [
            "--dataset",
            "D",
            "--embeddings",
            "E.parquet",
            "--output_dir",
            str(tmp_path),
            "--num_train_epochs_pretrain",
            "0",
        ]
    )
    params = sample_params(SEARCH_SPACE, RandomSuggester(0, 5))
    finetune = load_script("finetune").parse_args(
        phase_argv(args, SEARCH_SPACE, params, "finetune", tmp_path / "trial_5")
    )
    assert finetune.model_name_or_path is None and finetune.embeddings == "E.parquet"
    assert finetune.learning_rate == params["finetune_learning_rate"]
    assert finetune.num_hidden_layers == params["num_hidden_layers"]
    assert finetune.contrastive_temperature == params["contrastive_temperature"]


class FakeTrials:
    """Stands in for `run_trial`: objectives from a list (None: the trial raises), weights written like a real run."""

    def __init__(self, objectives):
        self.objectives = list(objectives)

    def __call__(self, args, space, params, number):
        for phase in ("pretrain", "finetune"):
            folder = Path(args.output_dir, f"trial_{number}", phase)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.safetensors").write_bytes(b"weights")
            (folder / "metrics.json").write_text("{}")
        value = self.objectives[number]
        if value is None:
            raise RuntimeError("CUDA out of memory (simulated)")
        return {"val_mrr": value, "val_loss": 1 - value, "pretrain_val_loss": 2.0}


def test_failed_trials_are_recorded_and_the_search_goes_on(outfit_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(hparam_search, "run_trial", FakeTrials([0.2, None, 0.5, float("nan")]))
    args = load_script("hparam_search").parse_args(
        search_argv(outfit_dataset, tmp_path, "--sampler", "random", "--n_trials", "4")
    )
    result = hparam_search.run_search(args)
    csv_rows, rows, best = read_results(tmp_path)
    assert [row["status"] for row in rows] == ["complete", "failed", "complete", "failed"]
    assert "out of memory" in rows[1]["error"] and "NaN" in rows[3]["error"]
    assert csv_rows[1]["objective"] == "" and rows[1]["objective"] is None
    assert best["trial"] == 2 == result["best"]["trial"] and best["objective"] == 0.5
    weights = sorted(path.relative_to(tmp_path).parts[0] for path in tmp_path.rglob("model.safetensors"))
    assert weights == ["trial_2", "trial_2"]


def test_a_search_where_every_trial_failed_is_an_error(outfit_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(hparam_search, "run_trial", FakeTrials([None, None]))
    args = load_script("hparam_search").parse_args(
        search_argv(outfit_dataset, tmp_path, "--sampler", "random", "--n_trials", "2")
    )
    with pytest.raises(ValueError, match="No trial completed.*out of memory"):
        hparam_search.run_search(args)
    assert not (tmp_path / BEST_PARAMS_JSON).exists()


def test_a_search_into_its_own_dataset_is_refused(outfit_dataset, capsys):
    dataset, embeddings = outfit_dataset
    with pytest.raises(ValueError, match="is the input --dataset"):
        load_script("hparam_search").parse_args(
            ["--dataset", str(dataset), "--embeddings", str(embeddings), "--output_dir", str(dataset)]
        )


def test_losses_are_minimised(outfit_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(hparam_search, "run_trial", FakeTrials([0.2, 0.5]))
    args = load_script("hparam_search").parse_args(
        search_argv(outfit_dataset, tmp_path, "--sampler", "random", "--n_trials", "2", "--metric", "val_loss")
    )
    hparam_search.run_search(args)
    best = json.loads((tmp_path / BEST_PARAMS_JSON).read_text())
    assert best["direction"] == "minimize" and best["trial"] == 1 and best["objective"] == pytest.approx(0.5)


def test_unknown_metric_stops_the_search(outfit_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(hparam_search, "run_trial", FakeTrials([0.2, 0.5]))
    args = load_script("hparam_search").parse_args(
        search_argv(outfit_dataset, tmp_path, "--sampler", "random", "--n_trials", "2", "--metric", "val_nope")
    )
    with pytest.raises(ValueError, match="val_mrr"):
        hparam_search.run_search(args)
    rows = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert len(rows) == 1 and rows[0]["status"] == "failed"


def test_existing_search_needs_resume(outfit_dataset, tmp_path):
    (tmp_path / RESULTS_JSON).write_text("[]")
    with pytest.raises(ValueError, match="was not written by a hyperparameter search"):
        load_script("hparam_search").parse_args(search_argv(outfit_dataset, tmp_path))
    (tmp_path / ".umbert_hparam_search").touch()
    with pytest.raises(ValueError, match="holds a search already"):
        load_script("hparam_search").parse_args(search_argv(outfit_dataset, tmp_path))


def test_search_space_is_the_original_one():
    by_name = {parameter.name: parameter for parameter in SEARCH_SPACE}
    assert by_name["pretrain_learning_rate"].choices == by_name["finetune_learning_rate"].choices == (1e-5, 1e-4, 1e-3)
    assert by_name["num_hidden_layers"].choices == (3, 6, 9, 12)
    assert by_name["num_attention_heads"].choices == (1, 2, 4, 8)
    assert (by_name["hidden_dropout_prob"].low, by_name["hidden_dropout_prob"].high) == (0.0, 0.2)
    assert (by_name["weight_decay"].low, by_name["weight_decay"].high) == (0.0, 0.01)
    assert isinstance(by_name["optimizer"], Choice) and set(by_name["optimizer"].choices) == {"adam", "adamw"}
