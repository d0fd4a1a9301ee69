"""A reduced run of the one-command demo: every step, the picture, the metrics, and reuse on a second run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from umbert_hf.apps.rendering import layout

SMALL = [
    "--num_items",
    "300",
    "--num_outfits",
    "400",
    "--image_size",
    "32",
    "--encoder_epochs",
    "1",
    "--pretrain_epochs",
    "1",
    "--finetune_epochs",
    "1",
    "--num_hidden_layers",
    "1",
    "--num_examples",
    "2",
]


def run_demo(output_dir: Path) -> str:
    """The demo as a user runs it, from a folder outside the checkout: it needs only the installed package."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("FORCE", None)
    result = subprocess.run(
        [sys.executable, "-m", "umbert_hf.apps.demo", "--output_dir", str(output_dir), *SMALL],
        capture_output=True,
        text=True,
        env=env,
        cwd=output_dir.parent,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_reduced_demo_pipeline(tmp_path):
    output = tmp_path / "demo"
    printed = run_demo(output)
    for name in ("raw", "dataset", "image_encoder", "embeddings.parquet", "umbert_pretrained", "umbert", "eval"):
        assert (output / name).exists(), name
    for name in ("config.json", "model.safetensors", "README.md", "metrics.json", "training_curves.png"):
        assert (output / "umbert" / name).exists(), name
    results = {
        name: json.loads((output / "eval" / f"{name}_test.json").read_text())
        for name in ("umbert", "random", "context_mean")
    }
    assert results["random"]["model"] == "baseline:random"
    assert "fitb_accuracy_chance" in results["umbert"]
    picture = Image.open(output / "outfit_completion.png")
    assert picture.size == layout(num_slots=4, num_suggestions=5, num_rows=2)
    assert "fitb_accuracy" in printed and "chance" in printed
    # The steps are the scripts' own `main`s: the table records its dataset as compute_embeddings.py does, and the
    # model card names the flags that finetune.py's parser gives.
    from umbert_hf.data.embeddings import read_embeddings_table

    assert read_embeddings_table(output / "embeddings.parquet").metadata["dataset"] == str(output / "dataset")
    card = (output / "umbert" / "README.md").read_text()
    assert "per_device_train_batch_size" in card and "model_name_or_path" in card
    again = run_demo(output)
    assert again.count("reusing") == 9


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--num_items", "-5"], "--num_items must be at least 1"), (["--image_size", "0"], "--image_size must be")],
)
def test_bad_demo_flags_fail_before_any_step(tmp_path, argv, message, capsys):
    from umbert_hf.apps.demo import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--output_dir", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_demo_output_dir_that_is_a_file_is_refused(tmp_path, capsys):
    from umbert_hf.apps.demo import parse_args

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        parse_args(["--output_dir", str(tmp_path / "notes.txt")])


def test_a_failing_step_ends_the_demo_after_its_error_line(tmp_path, capsys):
    from umbert_hf.apps.demo import Pipeline, as_script, parse_args

    pipeline = Pipeline(parse_args(["--output_dir", str(tmp_path / "out")]))

    def missing_dataset():
        raise ValueError("--dataset 'nope' does not exist.")

    with pytest.raises(SystemExit, match=r"step 'train image encoder' failed \(exit code 2\)"):
        step = as_script(lambda argv: missing_dataset(), [])
        pipeline.step("train image encoder", tmp_path / "out" / "image_encoder", step, [])
    assert "error: --dataset 'nope' does not exist." in capsys.readouterr().err


def test_steps_run_on_the_cpu_like_accelerate_launch_cpu(monkeypatch):
    from umbert_hf.apps.demo import step_environment

    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    with step_environment():
        assert os.environ["ACCELERATE_USE_CPU"] == "true" and os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert "ACCELERATE_USE_CPU" not in os.environ and os.environ["TOKENIZERS_PARALLELISM"] == "true"
