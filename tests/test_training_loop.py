"""`fit` and its guards on tiny in-memory runs: history, best epoch and early stopping, divergence, damaged or foreign
checkpoints, output folders that would overwrite an input, and the one-line errors of the training scripts."""

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from support.umbert_testing import UmBertModelTester

from umbert_hf.training.arguments import add_training_args, check_run_output_dir, check_training_args
from umbert_hf.training.loop import FitResult, TrainingDivergedError, fit, make_dataloader, prepare_for_training
from umbert_hf.training.outfit import training_step_for
from umbert_hf.utils.paths import check_output, run_command

SCRIPTS = Path(__file__).resolve().parents[1] / "training_scripts"
NUM_POINTS, BATCH_SIZE = 32, 8  # 4 optimizer steps per epoch


def training_args(output_dir: Path, *extra, **inputs) -> argparse.Namespace:
    """The shared flags as a script parses them (2 epochs of batches of 8), plus input flags like `dataset`."""
    parser = argparse.ArgumentParser()
    add_training_args(parser)
    argv = ["--output_dir", str(output_dir), "--num_train_epochs", "2", "--seed", "0"]
    args = parser.parse_args([*argv, "--per_device_train_batch_size", str(BATCH_SIZE), *map(str, extra)])
    for name, value in inputs.items():
        setattr(args, name, value)
    return args


def regression_fit(
    args: argparse.Namespace, *, features: int = 3, evaluate=None, training_step=None, greater_is_better: bool = False
):
    """`fit` of a `Linear(features, 1)` on 32 points on the CPU; returns (result, unwrapped model)."""
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=args.gradient_accumulation_steps)
    set_seed(args.seed)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(NUM_POINTS, features, generator=generator)
    targets = inputs @ torch.linspace(-2.0, 2.0, features)
    model = torch.nn.Linear(features, 1)
    train_dataloader = make_dataloader(
        torch.utils.data.TensorDataset(inputs, targets), BATCH_SIZE, shuffle=True, seed=args.seed
    )
    model, optimizer, train_dataloader, lr_scheduler = prepare_for_training(accelerator, model, train_dataloader, args)

    def mse(wrapped: torch.nn.Module, batch) -> torch.Tensor:
        return torch.nn.functional.mse_loss(wrapped(batch[0]).squeeze(-1), batch[1])

    @torch.no_grad()
    def validation_loss(wrapped: torch.nn.Module) -> dict[str, float]:
        return {"loss": mse(wrapped, (inputs, targets)).item()}

    result = fit(
        accelerator,
        model,
        optimizer,
        lr_scheduler,
        train_dataloader,
        training_step=training_step or mse,
        evaluate=evaluate or validation_loss,
        metric_name="loss",
        greater_is_better=greater_is_better,
        args=args,
    )
    return result, accelerator.unwrap_model(model)


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message, message
    return message


def scripted(values: list[float]):
    """An `evaluate` that reports `values[epoch - 1]` as the loss and keeps each epoch's weights."""
    weights_by_epoch = []

    def evaluate(model):
        weights_by_epoch.append(model.weight.detach().clone())
        return {"loss": values[len(weights_by_epoch) - 1]}

    return evaluate, weights_by_epoch


# --- The loop: history, best epoch, early stopping -------------------------------------------------------------


def test_fit_logs_one_entry_per_epoch_and_lowers_the_training_loss(tmp_path):
    batch_losses = []

    def mse(model, batch):
        loss = torch.nn.functional.mse_loss(model(batch[0]).squeeze(-1), batch[1])
        batch_losses.append(loss.item())
        return loss

    args = training_args(tmp_path / "out", "--num_train_epochs", "3", "--learning_rate", "0.05")
    result, _ = regression_fit(args, training_step=mse)
    assert [entry["epoch"] for entry in result.history] == [1, 2, 3] and result.global_step == 12
    assert all(set(entry) == {"epoch", "train_loss", "loss"} for entry in result.history)
    for epoch, entry in enumerate(result.history):  # the mean of that epoch's batch losses
        assert entry["train_loss"] == pytest.approx(sum(batch_losses[4 * epoch : 4 * epoch + 4]) / 4)
    train_losses = [entry["train_loss"] for entry in result.history]
    assert train_losses == sorted(train_losses, reverse=True) and train_losses[-1] < 0.8 * train_losses[0]
    assert json.loads((tmp_path / "out" / "history.json").read_text()) == result.history
    assert (tmp_path / "out" / "training_curves.png").stat().st_size > 0


@pytest.mark.parametrize(("greater_is_better", "expected_best"), [(False, 1), (True, 2)])
def test_fit_loads_back_the_weights_of_the_best_epoch(tmp_path, greater_is_better, expected_best):
    values = [0.2, 0.5, 0.4]
    evaluate, weights_by_epoch = scripted(values)
    args = training_args(tmp_path / "out", "--num_train_epochs", "3", "--patience", "0")
    result, model = regression_fit(args, evaluate=evaluate, greater_is_better=greater_is_better)
    assert (result.best_epoch, result.best_metric) == (expected_best, values[expected_best - 1])
    assert result.best_metrics == result.history[expected_best - 1] and len(result.history) == 3
    assert torch.equal(model.weight, weights_by_epoch[expected_best - 1])
    assert not torch.equal(model.weight, weights_by_epoch[-1])


@pytest.mark.parametrize(
    ("values", "patience", "epochs_run", "best_epoch"),
    [
        ([1.0, 2.0, 3.0, 0.5, 0.4, 0.3], 2, 3, 1),  # two epochs without improvement: stop
        ([1.0, 2.0, 0.5, 3.0, 4.0, 0.1], 2, 5, 3),  # an improvement resets the count
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0, 6, 1),  # 0: never stop early
    ],
)
def test_fit_stops_after_patience_epochs_without_improvement(tmp_path, values, patience, epochs_run, best_epoch):
    evaluate, _ = scripted(values)
    args = training_args(tmp_path / "out", "--num_train_epochs", "6", "--patience", patience)
    result, _ = regression_fit(args, evaluate=evaluate)
    assert len(result.history) == epochs_run and result.global_step == 4 * epochs_run
    assert result.stopped_early == (epochs_run < 6) and result.best_epoch == best_epoch


def test_resuming_a_run_that_stopped_early_trains_no_further(tmp_path):
    evaluate, _ = scripted([1.0, 2.0, 3.0])
    args = training_args(
        tmp_path / "out", "--num_train_epochs", "6", "--patience", "2", "--checkpointing_steps", "epoch"
    )
    stopped, model = regression_fit(args, evaluate=evaluate)
    args = training_args(tmp_path / "again", "--num_train_epochs", "6", "--patience", "2")
    args.resume_from_checkpoint = str(tmp_path / "out" / "epoch_3")
    resumed, resumed_model = regression_fit(args, evaluate=lambda model: pytest.fail("evaluated after the stop"))
    assert resumed == stopped and resumed.stopped_early and resumed.global_step == 12
    assert torch.equal(resumed_model.weight, model.weight)


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    args = training_args(tmp_path / "out", "--gradient_accumulation_steps", "2")
    result, _ = regression_fit(args)
    assert result.global_step == 4 and len(result.history) == 2  # 4 batches per epoch, 2 per optimizer step


def test_max_train_steps_ends_the_run_within_an_epoch_which_is_evaluated(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(Accelerator, "log", lambda self, values, step=None, **kwargs: logged.append((step, values)))
    calls = []
    args = training_args(tmp_path / "out", "--num_train_epochs", "3", "--max_train_steps", "6")
    result, _ = regression_fit(args, training_step=recording_mse(calls))
    assert result.global_step == 6 and len(calls) == 6  # 4 steps of epoch 1, then 2 of epoch 2
    assert [entry["epoch"] for entry in result.history] == [1, 2]
    rates = [values["train/learning_rate"] for _, values in logged if "train/learning_rate" in values]
    assert len(rates) == 6 and rates[-1] == pytest.approx(0.0)  # the linear schedule spans the 6 steps


def test_max_train_steps_beyond_the_epochs_changes_nothing(tmp_path):
    bounded, _ = regression_fit(training_args(tmp_path / "bounded", "--max_train_steps", "100"))
    plain, _ = regression_fit(training_args(tmp_path / "plain"))
    assert bounded.global_step == plain.global_step == 8 and bounded.history == plain.history


@pytest.mark.parametrize("checkpoint", ["step_6", "epoch_2"])
def test_resuming_a_run_at_its_max_train_steps_trains_no_further(tmp_path, checkpoint):
    """From its last step (saved before the epoch's evaluation, which the resumed run then makes) or its last epoch."""
    flags = ["--max_train_steps", "6", "--num_train_epochs", "3"]
    every = "2" if checkpoint.startswith("step") else "epoch"
    stopped, model = regression_fit(training_args(tmp_path / "out", *flags, "--checkpointing_steps", every))
    args = training_args(tmp_path / "again", *flags, "--resume_from_checkpoint", tmp_path / "out" / checkpoint)
    resumed, resumed_model = regression_fit(args, training_step=lambda model, batch: pytest.fail("trained"))
    assert resumed == stopped and torch.equal(resumed_model.weight, model.weight)


def test_an_evaluate_without_the_monitored_metric_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"evaluate\(\) returned \['accuracy'\], without the monitored metric 'loss'"):
        regression_fit(training_args(tmp_path / "out"), evaluate=lambda model: {"accuracy": 1.0})


# --- 1. Divergence ---------------------------------------------------------------------------------------------


def test_a_diverging_umbert_stops_at_its_first_nan_loss_and_saves_nothing(tmp_path):
    """The issue's run: umBERT at --learning_rate 1e8 turns every weight into NaN after one step."""
    args = training_args(tmp_path / "out", "--learning_rate", "1e8")
    tester = UmBertModelTester()
    model = tester.umbert().train()
    rows = tester.outfit_rows(NUM_POINTS)
    accelerator = Accelerator(cpu=True)
    train_dataloader = make_dataloader(rows, BATCH_SIZE, shuffle=True, seed=0)
    model, optimizer, train_dataloader, lr_scheduler = prepare_for_training(accelerator, model, train_dataloader, args)
    step = training_step_for("reconstruction", accelerator.unwrap_model(model))
    with pytest.raises(
        TrainingDivergedError, match=r"at epoch 1, optimizer step \d+: the training loss is nan"
    ) as info:
        fit(
            accelerator,
            model,
            optimizer,
            lr_scheduler,
            train_dataloader,
            training_step=step,
            evaluate=lambda wrapped: {"loss": step(wrapped, rows).item()},
            metric_name="loss",
            greater_is_better=False,
            args=args,
        )
    assert isinstance(info.value, ValueError) and "lower --learning_rate (this run: 1e+08)" in one_line(info.value)
    assert not (tmp_path / "out" / "history.json").exists()


def test_the_first_non_finite_loss_is_named_by_epoch_and_optimizer_step(tmp_path):
    calls = []

    def loss_that_turns_inf_at_the_sixth_batch(model, batch):
        calls.append(1)
        loss = torch.nn.functional.mse_loss(model(batch[0]).squeeze(-1), batch[1])
        return loss * math.inf if len(calls) == 6 else loss

    with pytest.raises(TrainingDivergedError, match="at epoch 2, optimizer step 6: the training loss is inf"):
        regression_fit(training_args(tmp_path / "out"), training_step=loss_that_turns_inf_at_the_sixth_batch)
    assert len(calls) == 6  # stopped at once


@pytest.mark.parametrize(("values", "expected_best"), [([math.nan, 5.0, 7.0], 2), ([-math.inf, 3.0, 2.0], 3)])
def test_a_non_finite_validation_metric_is_never_the_best(tmp_path, values, expected_best):
    evaluate, weights_by_epoch = scripted(values)
    result, model = regression_fit(training_args(tmp_path / "out", "--num_train_epochs", "3"), evaluate=evaluate)
    assert (result.best_epoch, result.best_metric) == (expected_best, values[expected_best - 1])
    assert torch.equal(model.weight, weights_by_epoch[expected_best - 1])


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_validation_metric_never_finite_fails_instead_of_keeping_the_last_weights(tmp_path, value):
    with pytest.raises(TrainingDivergedError, match=f"validation loss was {value} in all 2 epochs") as info:
        regression_fit(training_args(tmp_path / "out"), evaluate=lambda model: {"loss": value})
    assert "--learning_rate" in one_line(info.value)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("learning_rate", "nan"),
        ("learning_rate", "inf"),
        ("weight_decay", "nan"),
        ("max_grad_norm", "nan"),
        ("num_warmup_steps", "-1"),
        ("checkpointing_steps", "0"),
        ("max_train_steps", "0"),
    ],
)
def test_non_finite_or_out_of_range_numbers_are_refused_naming_the_flag(tmp_path, flag, value):
    with pytest.raises(ValueError, match=f"^--{flag} must be") as info:
        check_training_args(training_args(tmp_path / "out", f"--{flag}={value}"))
    one_line(info.value)


@pytest.fixture
def unreadable_inputs(tmp_path, monkeypatch):
    """A --dataset folder and an --embeddings file that fail if read; every read of data is recorded in the list."""
    import builtins

    import datasets
    import pyarrow.parquet as pq

    dataset, embeddings = tmp_path / "ds", tmp_path / "emb.parquet"
    (dataset / "outfits").mkdir(parents=True)
    (dataset / "README.md").write_text("---\nconfigs: [not, a, card\n")
    (dataset / "outfits" / "train-00000-of-00001.parquet").write_bytes(b"not parquet")
    embeddings.write_bytes(b"not parquet")
    reads = []

    def recording(name):
        def read(*args, **kwargs):
            reads.append(name)
            raise AssertionError(f"{name} read data before the flags were checked")

        return read

    for module, name in ((datasets, "load_dataset"), (datasets, "load_from_disk"), (pq, "read_table")):
        monkeypatch.setattr(module, name, recording(name))
    real_open = builtins.open

    def watched_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and str(tmp_path) in os.fspath(file):
            reads.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watched_open)
    return dataset, embeddings, reads


@pytest.mark.parametrize("script", ["pretrain", "finetune", "train_image_encoder"])
@pytest.mark.parametrize(
    ("flag", "value"), [("learning_rate", "nan"), ("weight_decay", "-1"), ("report_to", "tensorbored")]
)
def test_bad_numbers_and_trackers_are_refused_before_any_data_is_read(
    unreadable_inputs, tmp_path, capsys, script, flag, value
):
    dataset, embeddings, reads = unreadable_inputs
    argv = ["--dataset", str(dataset), "--output_dir", str(tmp_path / "out"), f"--{flag}={value}"]
    argv += ["--encoder", "resnet"] if script == "train_image_encoder" else ["--embeddings", str(embeddings)]
    assert run_command(load_script(script).main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --{flag} ") and value in err and err.count("\n") == 1, err
    assert reads == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", ["pretrain", "finetune"])
@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("hidden_dropout_prob", "nan"),
        ("hidden_dropout_prob", "2"),
        ("contrastive_temperature", "nan"),
        ("contrastive_temperature", "-1"),
        ("hidden_size", "-1"),
        ("num_attention_heads", "3"),
    ],
)
def test_bad_model_flags_are_refused_before_any_data_is_read(unreadable_inputs, tmp_path, capsys, script, flag, value):
    dataset, embeddings, reads = unreadable_inputs
    argv = ["--dataset", str(dataset), "--output_dir", str(tmp_path / "out"), "--embeddings", str(embeddings)]
    assert run_command(load_script(script).main, [*argv, f"--{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and flag in err and err.count("\n") == 1, err
    assert reads == [] and not (tmp_path / "out").exists()


# --- 2. Checkpoints --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 2-epoch run checkpointing every 2 steps: (output folder, result, final weights)."""
    output = tmp_path_factory.mktemp("fit") / "full"
    result, model = regression_fit(training_args(output, "--checkpointing_steps", "2"))
    return output, result, {name: tensor.clone() for name, tensor in model.state_dict().items()}


def damaged_copy(uninterrupted, tmp_path: Path) -> Path:
    """A copy of the mid-epoch-2 checkpoint `step_6` (it holds the best weights of epoch 1)."""
    return Path(shutil.copytree(uninterrupted[0] / "step_6", tmp_path / "step_6"))


def resume(tmp_path: Path, checkpoint: Path, features: int = 3):
    return regression_fit(
        training_args(tmp_path / "resumed", "--checkpointing_steps", "2", "--resume_from_checkpoint", checkpoint),
        features=features,
    )


def test_an_intact_checkpoint_resumes_to_the_uninterrupted_result(uninterrupted, tmp_path):
    result, model = resume(tmp_path, damaged_copy(uninterrupted, tmp_path))
    assert isinstance(result, FitResult) and result.history == uninterrupted[1].history
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in uninterrupted[2].items())


def recording_mse(calls: list):
    """The regression loss, recording each call's batch inputs and a draw from the global RNG (as dropout would)."""

    def mse(model, batch):
        calls.append((batch[0].clone(), torch.rand(1).item()))
        return torch.nn.functional.mse_loss(model(batch[0]).squeeze(-1), batch[1])

    return mse


def test_a_resumed_run_trains_only_the_steps_after_the_checkpoint(tmp_path, monkeypatch):
    """What a seeded restart from step 0 cannot give: only steps 7 and 8, with their batches, RNG draws and rates."""
    logged = []
    monkeypatch.setattr(Accelerator, "log", lambda self, values, step=None, **kwargs: logged.append((step, values)))
    full_calls, resumed_calls = [], []
    regression_fit(
        training_args(tmp_path / "full", "--checkpointing_steps", "2"), training_step=recording_mse(full_calls)
    )
    full_rates = {step: values["train/learning_rate"] for step, values in logged if "train/learning_rate" in values}
    logged.clear()
    args = training_args(tmp_path / "resumed", "--resume_from_checkpoint", tmp_path / "full" / "step_6")
    result, _ = regression_fit(args, training_step=recording_mse(resumed_calls))
    assert len(full_calls) == 8 and len(resumed_calls) == 2 and result.global_step == 8
    for (batch, draw), (full_batch, full_draw) in zip(resumed_calls, full_calls[6:]):
        assert torch.equal(batch, full_batch) and draw == full_draw
    assert {step: values["train/learning_rate"] for step, values in logged if "train/learning_rate" in values} == {
        7: full_rates[7],
        8: full_rates[8],
    }
    assert len(set(full_rates.values())) == 8  # a decaying rate: step 7's is not step 1's


def test_a_truncated_rng_state_is_refused_instead_of_resuming_without_it(uninterrupted, tmp_path):
    checkpoint = damaged_copy(uninterrupted, tmp_path)
    rng_file = checkpoint / "random_states_0.pkl"
    rng_file.write_bytes(rng_file.read_bytes()[: rng_file.stat().st_size // 2])
    with pytest.raises(ValueError, match="is incomplete or corrupt: random_states_0.pkl") as info:
        resume(tmp_path, checkpoint)
    assert str(checkpoint) in one_line(info.value)


def truncate_tail(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-8])


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("model.safetensors", lambda path: path.write_bytes(path.read_bytes()[:40])),
        ("model.safetensors", truncate_tail),
        ("best_weights.safetensors", truncate_tail),
        ("optimizer.bin", lambda path: path.write_bytes(path.read_bytes()[:100])),
        ("optimizer.bin", Path.unlink),
        ("scheduler.bin", lambda path: path.write_bytes(b"")),
        ("trainer_state.json", lambda path: path.write_text('{"epoch": 1,')),
    ],
)
def test_a_damaged_checkpoint_gives_one_line_naming_the_folder_and_file(uninterrupted, tmp_path, name, damage):
    checkpoint = damaged_copy(uninterrupted, tmp_path)
    damage(checkpoint / name)
    with pytest.raises(ValueError, match=f"is incomplete or corrupt: {name} ") as info:
        resume(tmp_path, checkpoint)
    assert f"checkpoint {str(checkpoint)!r}" in one_line(info.value)


def test_a_checkpoint_of_another_model_shape_is_refused(uninterrupted, tmp_path):
    checkpoint = damaged_copy(uninterrupted, tmp_path)
    with pytest.raises(ValueError, match=r"was written for another model: its model.safetensors holds 'weight'") as e:
        resume(tmp_path, checkpoint, features=4)
    assert str(checkpoint) in one_line(e.value) and "[1, 3]" in str(e.value) and "[1, 4]" in str(e.value)


def test_a_missing_checkpoint_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"checkpoint {str(tmp_path / 'step_9')!r} does not exist"):
        resume(tmp_path, tmp_path / "step_9")


# --- 3. and 4. Output folders ----------------------------------------------------------------------------------


def test_an_output_dir_that_is_a_file_is_refused_naming_the_flag(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="^--output_dir .*notes.txt' is a file, not a folder"):
        check_training_args(training_args(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="^--output_dir .* cannot be created: .*notes.txt' is a file"):
        check_training_args(training_args(tmp_path / "notes.txt" / "model"))


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A dataset folder, an embeddings table in its own folder and a model folder; the working folder is tmp_path."""
    for folder in ("ds", "emb", "model"):
        (tmp_path / folder).mkdir()
    (tmp_path / "ds" / "README.md").write_text("configs")
    (tmp_path / "emb" / "e.parquet").write_bytes(b"PAR1")
    monkeypatch.chdir(tmp_path)
    return {"dataset": "ds", "embeddings": "emb/e.parquet", "model_name_or_path": "model"}


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("ds", "--output_dir 'ds' is the input --dataset 'ds'"),
        ("emb/../ds", "is the input --dataset"),
        ("ds/model", "--output_dir 'ds/model' is inside the input --dataset 'ds'"),
        (".", "--output_dir '.' contains the input --dataset 'ds'"),
        ("emb", "--output_dir 'emb' contains the input --embeddings 'emb/e.parquet'"),
        ("model/finetuned", "is inside the input --model_name_or_path 'model'"),
    ],
)
def test_an_output_dir_overlapping_an_input_is_refused(inputs, output, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        check_training_args(training_args(output, **inputs))
    one_line(info.value)
    with pytest.raises(ValueError, match="nothing is written into, over or around an input"):
        check_run_output_dir(output, inputs)
    assert Path("ds/README.md").read_text() == "configs"


@pytest.mark.parametrize("output", ["out", "emb_out", "model_finetuned"])
def test_an_output_dir_beside_the_inputs_or_with_hub_ids_is_accepted(inputs, output):
    check_training_args(training_args(output, **inputs))
    check_training_args(training_args("hub_out", dataset="org/ds", embeddings="e.parquet", model_name_or_path=None))


# --- 5. One-line errors from the scripts -------------------------------------------------------------------------


def raising(error: BaseException):
    def main(argv):
        raise error

    return main


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            ValueError("--patience must be 0 or more, got -1.\nmore detail"),
            "error: --patience must be 0 or more, got -1.",
        ),
        (TrainingDivergedError("Training diverged at epoch 1"), "error: Training diverged at epoch 1"),
        (FileNotFoundError(2, "No such file or directory", "e.parquet"), "No such file or directory: 'e.parquet'"),
        (OSError("m is not a local folder and is not a valid model identifier"), "error: m is not a local folder"),
    ],
)
def test_run_command_turns_user_errors_into_one_line_and_exit_status_2(capsys, error, line):
    assert run_command(raising(error), []) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and line in captured.err and len(captured.err.splitlines()) == 1
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("error", [KeyError("tops"), TypeError("unsupported operand"), RuntimeError("CUDA error")])
def test_run_command_lets_bugs_raise(error):
    with pytest.raises(type(error)):
        run_command(raising(error), [])


def test_run_command_passes_argv_and_returns_0():
    seen = []
    assert run_command(seen.append, ["--x"]) == 0 and seen == [["--x"]]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pretrain_reports_divergence_and_its_own_dataset_as_output_in_one_line(outfit_dataset, tmp_path, capsys):
    dataset, embeddings = outfit_dataset
    main = load_script("pretrain").main
    common = ["--dataset", str(dataset), "--embeddings", str(embeddings), "--num_hidden_layers", "1"]
    common += ["--num_attention_heads", "2", "--num_train_epochs", "1", "--per_device_train_batch_size", "32"]
    readme = (dataset / "README.md").read_text()
    assert run_command(main, [*common, "--output_dir", str(dataset)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --output_dir {str(dataset)!r} is the input --dataset")
    assert (dataset / "README.md").read_text() == readme
    assert run_command(main, [*common, "--output_dir", str(tmp_path / "out"), "--learning_rate", "1e8"]) == 2
    err = capsys.readouterr().err  # the closed progress bar, then the error
    assert err.splitlines()[-1].startswith("error: Training diverged at epoch 1, optimizer step")
    assert "Traceback" not in err and err.count("error:") == 1 and err.endswith(".\n")
    assert not (tmp_path / "out" / "metrics.json").exists() and not (tmp_path / "out" / "model.safetensors").exists()


def test_output_files_inside_an_input_are_refused(tmp_path):
    dataset = tmp_path / "ds"
    (dataset / "catalogue").mkdir(parents=True)
    (dataset / "README.md").write_text("card")
    for output in (dataset / "README.md", dataset / "emb.parquet", dataset / "catalogue" / "train.parquet"):
        with pytest.raises(ValueError, match="is inside the input --dataset"):
            check_output(output, {"dataset": str(dataset)}, flag="--output", kind="file")
    check_output(tmp_path / "emb.parquet", {"dataset": str(dataset), "embeddings": None}, kind="file")  # beside it


def test_write_json_leaves_no_temporary_file_when_the_target_is_a_folder(tmp_path):
    from umbert_hf.utils.files import write_json

    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(OSError):
        write_json(tmp_path / "metrics.json", {"a": 1})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]


def test_a_user_folder_is_never_an_output_dir_but_an_earlier_run_is(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    # Files named as a run's are still the user's: only the marker a run writes first makes a folder a run's.
    for name in ("config.json", "history.json", "metrics.json", "step_10", "runs"):
        (mine / name).write_text('{"theme": 1}')
        with pytest.raises(ValueError, match="was not written by a training run .it holds no .umbert_run"):
            check_run_output_dir(mine, {})
    earlier = tmp_path / "run"
    earlier.mkdir()
    (earlier / ".umbert_run").touch()
    (earlier / "README.md").write_text("the card of that run")
    check_run_output_dir(earlier, {})
    check_run_output_dir(tmp_path / "new", {})
