"""`--report_to`: the trackers log a run's training loss, learning rate and validation metrics at its optimizer steps,
into `<output_dir>/runs/`; a resumed run continues the steps; `--push_to_hub` uploads the TensorBoard logs."""

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from umbert_hf.training import arguments
from umbert_hf.training.arguments import add_training_args, check_training_args, report_to_trackers
from umbert_hf.training.loop import fit, make_accelerator, make_dataloader, prepare_for_training

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SCRIPTS = Path(__file__).resolve().parents[1] / "training_scripts"
TINY_MODEL = ["--num_hidden_layers", "1", "--num_attention_heads", "2", "--per_device_train_batch_size", "64"]
PRETRAIN_LEARNING_RATE = 3e-4  # pretrain.py's default


def pretrain(outfit_dataset, output_dir: Path, *flags: str) -> dict:
    """`training_scripts/pretrain.py` run in this process (tiny model); returns its metrics."""
    spec = importlib.util.spec_from_file_location("script_pretrain", SCRIPTS / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dataset, embeddings = outfit_dataset
    argv = ["--dataset", str(dataset), "--embeddings", str(embeddings), "--output_dir", str(output_dir)]
    return module.main([*argv, *TINY_MODEL, *flags])


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a TensorBoard run folder: `{tag: [(step, value), ...]}`."""
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


@pytest.fixture(scope="module")
def tracked_run(outfit_dataset, tmp_path_factory):
    """A 2-epoch pre-training run with `--report_to tensorboard` and a checkpoint after each epoch."""
    output = tmp_path_factory.mktemp("tracked") / "model"
    flags = ["--num_train_epochs", "2", "--report_to", "tensorboard", "--checkpointing_steps", "epoch"]
    metrics = pretrain(outfit_dataset, output, *flags)
    return output, metrics


@pytest.mark.slow
def test_tensorboard_logs_step_loss_learning_rate_and_validation_metrics(tracked_run):
    output, metrics = tracked_run
    logged = scalars(output / "runs" / "model")  # the project is the output folder's name
    steps = metrics["global_step"]
    assert steps >= 4 and steps % 2 == 0  # two epochs of the same number of batches
    assert {"train/loss", "train/learning_rate", "train/epoch", "train/epoch_loss", "val/loss", "val/mrr"} <= set(
        logged
    )
    assert "val/fitb_accuracy" in logged and "val/fitb_accuracy_chance" in logged

    assert [step for step, _ in logged["train/loss"]] == list(range(1, steps + 1))
    assert all(0 < value < 100 for _, value in logged["train/loss"])
    # The linear schedule without warm-up, after each optimizer step.
    assert logged["train/learning_rate"] == [
        (step, pytest.approx(PRETRAIN_LEARNING_RATE * (steps - step) / steps, abs=1e-9)) for step in range(1, steps + 1)
    ]
    history = yaml.safe_load((output / "history.json").read_text())  # JSON is YAML
    epoch_ends = [steps // 2, steps]
    assert logged["train/epoch"] == [(epoch_ends[0], 1.0), (epoch_ends[1], 2.0)]
    for tag, key in (("val/mrr", "mrr"), ("val/loss", "loss"), ("train/epoch_loss", "train_loss")):
        assert logged[tag] == [(step, pytest.approx(entry[key], rel=1e-6)) for step, entry in zip(epoch_ends, history)]


@pytest.mark.slow
def test_the_tracked_hyperparameters_hold_no_token_and_no_path(tracked_run):
    output, _ = tracked_run
    (hparams_file,) = (output / "runs" / "model").glob("*/hparams.yml")
    text = hparams_file.read_text()
    hparams = yaml.safe_load(text)
    assert hparams["learning_rate"] == PRETRAIN_LEARNING_RATE and hparams["report_to"] == "tensorboard"
    assert hparams["num_hidden_layers"] == 1 and hparams["dataset"] == "dataset"  # a local folder by its name
    assert not {"hub_token", "output_dir", "push_to_hub", "resume_from_checkpoint"} & set(hparams)
    assert str(output.parent.parent) not in text


@pytest.mark.slow
def test_a_resumed_run_logs_the_steps_after_its_checkpoint(tracked_run, outfit_dataset, tmp_path):
    output, metrics = tracked_run
    steps = metrics["global_step"]
    resumed = tmp_path / "resumed"
    pretrain(
        outfit_dataset,
        resumed,
        *["--num_train_epochs", "2", "--report_to", "tensorboard"],
        *["--resume_from_checkpoint", str(output / "epoch_1")],
    )
    logged, uninterrupted = scalars(resumed / "runs" / "resumed"), scalars(output / "runs" / "model")
    assert [step for step, _ in logged["train/loss"]] == list(range(steps // 2 + 1, steps + 1))
    for tag in ("train/loss", "train/learning_rate"):  # the same steps as the run that was not interrupted
        assert logged[tag] == [
            (step, pytest.approx(value, abs=1e-5)) for step, value in uninterrupted[tag][steps // 2 :]
        ]
    assert logged["val/mrr"] == [(steps, pytest.approx(uninterrupted["val/mrr"][-1][1], abs=1e-5))]


@pytest.mark.slow
def test_push_to_hub_uploads_the_tensorboard_logs_but_no_checkpoint(hub_env, outfit_dataset, tmp_path):
    repo_id = hub_env.unique_repo_id("tracked")
    flags = ["--num_train_epochs", "1", "--report_to", "tensorboard", "--checkpointing_steps", "epoch"]
    pretrain(outfit_dataset, tmp_path / "pushed", *flags, "--push_to_hub", "--hub_model_id", repo_id)
    files = hub_env.api.list_repo_files(repo_id)
    assert any(name.startswith("runs/pushed/events.out.tfevents.") for name in files), files
    assert "README.md" in files and not any(name.startswith(("epoch_", "step_")) for name in files)


def regression_args(output_dir: Path, report_to: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_training_args(parser)
    return parser.parse_args(
        ["--output_dir", str(output_dir), "--num_train_epochs", "2", "--per_device_train_batch_size", "8"]
        + ["--report_to", report_to]
    )


@pytest.mark.parametrize("report_to", ["none", "tensorboard", "all"])
def test_fit_writes_tracker_logs_only_when_asked(tmp_path, report_to):
    """A `Linear` fitted on 32 points through `make_accelerator` and `fit`: 4 optimizer steps per epoch."""
    args = regression_args(tmp_path / "out", report_to)
    check_training_args(args)
    accelerator = make_accelerator(args)
    inputs = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    dataset = torch.utils.data.TensorDataset(inputs, inputs.sum(dim=1))
    model = torch.nn.Linear(3, 1)
    model, optimizer, dataloader, scheduler = prepare_for_training(
        accelerator, model, make_dataloader(dataset, 8, shuffle=True, seed=0), args
    )

    def mse(wrapped, batch):
        return torch.nn.functional.mse_loss(wrapped(batch[0]).squeeze(-1), batch[1])

    fit(
        accelerator,
        model,
        optimizer,
        scheduler,
        dataloader,
        training_step=mse,
        evaluate=lambda wrapped: {"loss": mse(wrapped, (inputs, inputs.sum(dim=1))).item()},
        metric_name="loss",
        greater_is_better=False,
        args=args,
    )
    accelerator.end_training()
    if report_to == "none":
        assert not (tmp_path / "out" / "runs").exists()
    else:  # `all` is every tracker installed: tensorboard here
        logged = scalars(tmp_path / "out" / "runs" / "out")
        assert [step for step, _ in logged["train/loss"]] == list(range(1, 9))
        assert [step for step, _ in logged["val/loss"]] == [4, 8]


def test_report_to_is_checked_before_any_data_is_read(tmp_path, monkeypatch):
    assert report_to_trackers("none") is None and report_to_trackers("") is None
    assert report_to_trackers("tensorboard") == ["tensorboard"] and report_to_trackers("all") == ["all"]
    with pytest.raises(ValueError, match="unknown tracker 'tensorbored'"):
        check_training_args(regression_args(tmp_path / "out", "tensorbored"))
    with pytest.raises(ValueError, match="unknown tracker 'none'"):  # `none` with a tracker is a contradiction
        report_to_trackers("none,tensorboard")
    monkeypatch.setattr(arguments, "get_available_trackers", lambda: [])
    with pytest.raises(
        ValueError, match=r"the tensorboard package is not installed \(pip install 'umbert-hf\[tensorboard\]'\)"
    ):
        report_to_trackers("tensorboard")
    assert report_to_trackers("all") == ["all"]  # logs nothing, with a warning
