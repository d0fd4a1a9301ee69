"""`benchmarks/full_size.py` at a tiny size: every stage runs, and is measured, and the work folder is its own."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = [
    "synthesize",
    "build",
    "image encoder",
    "embeddings",
    "fine-tuning",
    "evaluate umBERT",
    "evaluate random",
    "evaluate context_mean",
    "complete",
    "app start-up",
]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("full_size", ROOT / "benchmarks" / "full_size.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_stage_is_measured_at_a_tiny_size(tmp_path, capsys):
    benchmark = load_benchmark()
    work = tmp_path / "work"
    result = benchmark.main(
        ["--num_items", "300", "--num_outfits", "200", "--image_encoder_steps", "2", "--work_dir", str(work)]
        + ["--output", str(tmp_path / "full_size.json")]
    )
    assert list(result["stages"]) == STAGES
    for name, record in result["stages"].items():
        assert record["seconds"] > 0 and record["peak_rss_mib"] > 0, name
        assert record["count"] > 0 and record["per_second"] > 0, name
    assert result["stages"]["build"]["disk_mib"] > 0 and result["stages"]["fine-tuning"]["disk_mib"] > 0
    assert result["stages"]["image encoder"]["steps"] >= 1 and result["stages"]["fine-tuning"]["steps"] >= 1
    finetune = result["stages"]["fine-tuning"]  # where its time went, from the run's metrics.json
    parts = ("validation_runtime", "final_evaluation_runtime", "baselines_runtime")
    assert all(finetune[name] > 0 for name in parts) and finetune["train_runtime"] < finetune["seconds"]
    evaluation = result["stages"]["evaluate umBERT"]  # every test outfit's items ranked among their categories
    assert (
        evaluation["ranked_pairs"] > evaluation["count"] > 0 and evaluation["ranked_pairs"] % evaluation["count"] == 0
    )
    estimate = result["gpu_estimate"]["stages"]
    assert estimate["fine-tuning"]["gflop"] > 0 and estimate["embeddings"]["gflop"] > 0
    assert all(estimate[name]["gpu_seconds"] > 0 for name in STAGES)
    table = capsys.readouterr().out
    assert all(f"| {name} |" in table for name in STAGES)
    assert not work.exists()  # removed without --keep
    assert (tmp_path / "full_size.json").is_file()


def test_a_work_folder_it_did_not_make_is_refused(tmp_path):
    benchmark = load_benchmark()
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not written by"):
        benchmark.main(["--num_items", "300", "--num_outfits", "200", "--work_dir", str(work)])
    assert (work / "notes.txt").read_text() == "keep me"
