"""Pre-training, fine-tuning and evaluation scripts: outputs, resumption after a kill, DDP, baselines."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoModel

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "training_scripts"
TINY_MODEL = ["--num_hidden_layers", "1", "--num_attention_heads", "2", "--hidden_dropout_prob", "0.1"]
FAST = ["--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64", "--seed", "7"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the DDP rendezvous (the default 29500 may be taken)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_command(
    script: str, *args: str, launcher: list[str] | None = None, timeout: int = 600, extra_env: dict | None = None
):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(extra_env or {})}
    command = (launcher or [sys.executable]) + [str(SCRIPTS / script), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def close(a: dict, b: dict, keys, tolerance=1e-5):
    for key in keys:
        assert a[key] == pytest.approx(b[key], abs=tolerance), key


@pytest.fixture(scope="module")
def pretrained(pretrained_umbert):
    """`pretrain.py` run with TINY_MODEL and FAST for 2 epochs (the session's `pretrained_umbert`, shared)."""
    return pretrained_umbert


@pytest.mark.slow
def test_pretrain_writes_model_metrics_curves_and_card(pretrained, outfit_dataset):
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.json",
        "history.json",
        "training_curves.png",
        "README.md",
    ):
        assert (pretrained / name).exists(), name
    metrics = json.loads((pretrained / "metrics.json").read_text())
    for key in (
        "val_loss",
        "test_hit_rate@10",
        "test_hit_rate@10_chance",
        "test_fitb_accuracy",
        "test_mrr",
        "test_compatibility_auc",
        "test_context_mean_fitb_accuracy",
        "test_random_hit_rate@10",
    ):
        assert key in metrics, key
    assert metrics["test_fitb_accuracy_chance"] == pytest.approx(0.25)
    history = json.loads((pretrained / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]
    model = AutoModel.from_pretrained(pretrained)
    assert model.config.loss_type == "contrastive" and model.config.num_hidden_layers == 1
    import datasets

    outfit = datasets.load_dataset(str(outfit_dataset[0]), "outfits")["test"][0]
    query = {slot: outfit[slot] for slot in model.config.categories}
    query["tops"] = None
    suggestions = model.complete([query], top_k=5)[0]
    assert len(suggestions) == 5 and all(isinstance(entry["item_id"], str) for entry in suggestions)


@pytest.mark.slow
def test_finetune_beats_both_baselines(pretrained, outfit_dataset, tmp_path):
    dataset, _ = outfit_dataset
    output = tmp_path / "finetuned"
    run_command(
        "finetune.py",
        "--model_name_or_path",
        pretrained,
        "--dataset",
        dataset,
        "--output_dir",
        output,
        "--num_train_epochs",
        "12",
        "--learning_rate",
        "2e-3",
        *FAST,
    )
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["objective"] == "fill_in_the_blank"
    runtimes = [metrics[name] for name in ("validation_runtime", "final_evaluation_runtime", "baselines_runtime")]
    assert all(seconds > 0 for seconds in runtimes) and metrics["train_runtime"] > metrics["validation_runtime"]
    for metric in ("fitb_accuracy", "hit_rate@10"):
        model_value = metrics[f"test_{metric}"]
        assert model_value > metrics[f"test_random_{metric}"], metric
        assert model_value > metrics[f"test_context_mean_{metric}"], metric


@pytest.mark.slow
def test_evaluate_script_prints_json_matching_the_training_metrics(pretrained, outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    result = run_command(
        "evaluate.py", "--model_name_or_path", pretrained, "--dataset", dataset, "--output_file", tmp_path / "eval.json"
    )
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed == json.loads((tmp_path / "eval.json").read_text())
    trained = json.loads((pretrained / "metrics.json").read_text())
    close(
        printed,
        {key[len("test_") :]: value for key, value in trained.items() if key.startswith("test_")},
        ["hit_rate@1", "hit_rate@10", "mrr", "fitb_accuracy", "compatibility_auc", "reconstruction_accuracy"],
    )
    baseline = run_command(
        "evaluate.py",
        "--baseline",
        "random",
        "--dataset",
        dataset,
        "--embeddings",
        embeddings,
        "--output_file",
        tmp_path / "random.json",
    )
    random_metrics = json.loads(baseline.stdout.strip().splitlines()[-1])
    assert random_metrics["model"] == "baseline:random"
    # Seeded (--seed 42): 16 of the 77 test questions. A band |fitb - 0.25| < 0.1 is 2 standard errors of 77
    # one-in-four guesses, too wide to tell a broken baseline; the chance level itself is tested in test_evaluate_metric.
    assert random_metrics["skipped_fitb_test"] == 0 and random_metrics["fitb_accuracy"] == pytest.approx(16 / 77)
    assert random_metrics["compatibility_auc_chance"] == 0.5


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_final_metrics(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    common = [
        "--dataset",
        dataset,
        "--embeddings",
        embeddings,
        "--num_train_epochs",
        "3",
        *TINY_MODEL,
        *FAST,
        "--checkpointing_steps",
        "3",
    ]
    run_command("pretrain.py", *common, "--output_dir", tmp_path / "full")
    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "pretrain.py"), *map(str, common), "--output_dir", str(interrupted)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (interrupted / "step_6").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoints = sorted(interrupted.glob("step_*"), key=lambda path: int(path.name.split("_")[1]))
    assert checkpoints, "no checkpoint was written before the kill"
    flags = json.loads((checkpoints[-1] / "run_flags.json").read_text())  # what a resumed run must repeat
    assert flags["embeddings"] == "embeddings.parquet" and "output_dir" not in flags and flags["num_train_epochs"] == 3
    # A resumed process saves only the checkpoints after its own; one restarted from step 0 would rewrite these.
    written = {path.name: (path / "trainer_state.json").stat().st_mtime_ns for path in checkpoints}
    run_command("pretrain.py", *common, "--output_dir", interrupted, "--resume_from_checkpoint", checkpoints[-1])
    assert {name: (interrupted / name / "trainer_state.json").stat().st_mtime_ns for name in written} == written
    assert sorted(path.name for path in interrupted.glob("step_*")) == sorted(
        path.name for path in (tmp_path / "full").glob("step_*")
    )
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    resumed = json.loads((interrupted / "metrics.json").read_text())
    assert {key: full[key] for key in full if key.startswith(("val_", "test_"))} == {
        key: resumed[key] for key in resumed if key.startswith(("val_", "test_"))
    }
    assert full["global_step"] == resumed["global_step"]


@pytest.mark.slow
def test_two_process_ddp_metrics_equal_single_process_evaluation(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    output = tmp_path / "ddp"
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
    ]
    run_command(
        "pretrain.py",
        "--dataset",
        dataset,
        "--embeddings",
        embeddings,
        "--output_dir",
        output,
        "--num_train_epochs",
        "1",
        *TINY_MODEL,
        *FAST,
        launcher=launcher,
        extra_env={"ACCELERATE_USE_CPU": "1"},
    )
    trained = json.loads((output / "metrics.json").read_text())
    single = run_command(
        "evaluate.py", "--model_name_or_path", output, "--dataset", dataset, "--output_file", tmp_path / "single.json"
    )
    evaluated = json.loads(single.stdout.strip().splitlines()[-1])
    close(
        evaluated,
        {key[len("test_") :]: value for key, value in trained.items() if key.startswith("test_")},
        ["hit_rate@1", "hit_rate@10", "hit_rate@50", "mrr", "fitb_accuracy", "compatibility_auc"],
    )


@pytest.mark.slow
def test_bad_arguments_fail_clearly(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "pretrain.py"),
            "--dataset",
            str(dataset),
            "--embeddings",
            str(embeddings),
            "--output_dir",
            str(tmp_path / "x"),
            "--resume_from_checkpoint",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0 and "is not a checkpoint folder" in result.stderr


@pytest.mark.slow
def test_finetune_from_scratch_on_embeddings_beats_both_baselines(outfit_dataset, tmp_path):
    """The default recipe on real outfits: no pre-training, a new model built on --embeddings."""
    dataset, embeddings = outfit_dataset
    output = tmp_path / "scratch"
    run_command(
        "finetune.py",
        "--embeddings",
        embeddings,
        "--dataset",
        dataset,
        "--output_dir",
        output,
        "--num_train_epochs",
        "12",
        "--learning_rate",
        "2e-3",
        *TINY_MODEL,
        *FAST,
    )
    metrics = json.loads((output / "metrics.json").read_text())
    config = json.loads((output / "config.json").read_text())
    assert (config["num_hidden_layers"], config["num_attention_heads"]) == (1, 2)
    for metric in ("fitb_accuracy", "hit_rate@10"):
        assert metrics[f"test_{metric}"] > metrics[f"test_context_mean_{metric}"], metric
        assert metrics[f"test_{metric}"] > metrics[f"test_random_{metric}"], metric


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give exactly one of --model_name_or_path"),
        (["--model_name_or_path", "m", "--embeddings", "e.parquet"], "give exactly one of --model_name_or_path"),
        (["--model_name_or_path", "m", "--num_hidden_layers", "3"], "--num_hidden_layers shapes a new model"),
    ],
)
def test_finetune_refuses_ambiguous_model_sources(extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script("finetune").parse_args(["--dataset", "d", "--output_dir", "o", *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_script_defaults_are_the_ones_chosen_on_real_outfits():
    args = load_script("finetune").parse_args(["--dataset", "d", "--output_dir", "o", "--embeddings", "e"])
    assert (args.num_hidden_layers, args.num_attention_heads, args.distance) == (2, 4, "euclidean")
    assert (args.learning_rate, args.per_device_train_batch_size, args.contrastive_temperature) == (1e-3, 64, 0.05)
    assert (args.hidden_size, args.contrastive_negatives) == (256, "catalogue")
