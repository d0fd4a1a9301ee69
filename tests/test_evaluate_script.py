"""`training_scripts/evaluate.py`: files only under folders the user names, and one-line errors for bad input."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
from support.umbert_testing import UmBertModelTester

from umbert_hf.utils.paths import run_command

SCRIPT = Path(__file__).resolve().parents[1] / "training_scripts" / "evaluate.py"


@pytest.fixture(scope="module")
def evaluate():
    spec = importlib.util.spec_from_file_location("evaluate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def files_under(folder) -> set[str]:
    return {os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names}


def run_failing(evaluate, capsys, argv: list[str]) -> str:
    """Run the script as `python evaluate.py` does (`run_command`): exit code 2 and one `error:` line."""
    assert run_command(evaluate.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def test_a_baseline_without_output_file_only_prints(evaluate, outfit_dataset, workdir, capsys):
    dataset, embeddings = outfit_dataset
    before = files_under(dataset.parent)
    argv = ["--baseline", "random", "--dataset", str(dataset), "--embeddings", str(embeddings), "--split", "validation"]
    metrics = evaluate.main(argv)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == metrics
    assert metrics["model"] == "baseline:random" and metrics["split"] == "validation"
    assert os.listdir(workdir) == []  # no baseline_random_validation.json in the working folder
    assert files_under(dataset.parent) == before


def test_a_model_folder_gets_eval_split_json_and_a_hub_id_no_file(evaluate, outfit_dataset, workdir, tmp_path, capsys):
    dataset, embeddings = outfit_dataset
    model = tmp_path / "model"
    UmBertModelTester().umbert().save_pretrained(model)
    metrics = evaluate.main(
        ["--model_name_or_path", str(model), "--dataset", str(dataset), "--embeddings", str(embeddings)]
    )
    assert json.loads((model / "eval_test.json").read_text()) == metrics
    assert os.listdir(workdir) == []
    assert evaluate.parse_args(["--model_name_or_path", "user/umbert", "--dataset", "d"]).output_file is None
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--help"])
    assert "no file" in capsys.readouterr().out


def test_an_unknown_split_is_an_error_listing_the_splits(evaluate, outfit_dataset, workdir, capsys):
    dataset, embeddings = outfit_dataset
    argv = ["--baseline", "random", "--dataset", str(dataset), "--embeddings", str(embeddings), "--split", "tset"]
    err = run_failing(evaluate, capsys, argv)
    assert "--split 'tset'" in err and "'test'" in err and "'validation'" in err
    assert os.listdir(workdir) == []


def test_bad_inputs_give_one_line_errors(evaluate, outfit_dataset, workdir, tmp_path, capsys):
    dataset, embeddings = outfit_dataset
    (tmp_path / "bad.parquet").write_text("not parquet")
    baseline = ["--baseline", "context_mean", "--dataset"]
    assert str(tmp_path / "missing") in run_failing(
        evaluate, capsys, [*baseline, str(tmp_path / "missing"), "--embeddings", str(embeddings)]
    )
    assert "bad.parquet" in run_failing(
        evaluate, capsys, [*baseline, str(dataset), "--embeddings", str(tmp_path / "bad.parquet")]
    )
    assert "missing.parquet" in run_failing(
        evaluate, capsys, [*baseline, str(dataset), "--embeddings", str(tmp_path / "missing.parquet")]
    )
    assert "--model_name_or_path" in run_failing(
        evaluate, capsys, ["--model_name_or_path", str(tmp_path / "no_model"), "--dataset", str(dataset)]
    )
    assert os.listdir(workdir) == []


def test_an_image_encoder_folder_is_refused_in_one_line(evaluate, outfit_dataset, workdir, tmp_path, capsys):
    from umbert_hf import FashionResNetConfig, FashionResNetModel

    dataset, _ = outfit_dataset
    encoder = tmp_path / "encoder"
    FashionResNetModel(FashionResNetConfig(embedding_dim=8, image_size=32)).save_pretrained(encoder)
    err = run_failing(evaluate, capsys, ["--model_name_or_path", str(encoder), "--dataset", str(dataset)])
    assert "holds a 'fashion-resnet' model, not umBERT or WumBERT" in err


def test_an_output_file_inside_the_dataset_or_the_embeddings_is_refused(evaluate, workdir, tmp_path, capsys):
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "README.md").write_text("card")
    (tmp_path / "e.parquet").write_bytes(b"PAR1")
    baseline = ["--baseline", "random", "--dataset", str(dataset), "--embeddings", str(tmp_path / "e.parquet")]
    for output, flag in ((dataset / "eval.json", "--dataset"), (tmp_path / "e.parquet", "--embeddings")):
        assert run_command(evaluate.main, [*baseline, "--output_file", str(output)]) == 2
        err = capsys.readouterr().err
        assert f"the input {flag}" in err and err.startswith("error: ") and err.count("\n") == 1
    assert sorted(os.listdir(dataset)) == ["README.md"] and os.listdir(workdir) == []
    assert (tmp_path / "e.parquet").read_bytes() == b"PAR1"


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss is not installed")
def test_an_index_adds_its_recall_and_leaves_the_metrics_exact(evaluate, outfit_dataset, workdir, capsys):
    dataset, embeddings = outfit_dataset
    argv = ["--baseline", "context_mean", "--dataset", str(dataset), "--embeddings", str(embeddings)]
    exact = evaluate.main(argv)
    flat = evaluate.main([*argv, "--index", "Flat"])
    assert "index_recall@10" not in exact and flat.pop("index_recall@10") == 1.0
    assert flat == exact
    capsys.readouterr()
    error = run_failing(evaluate, capsys, [*argv, "--index", "Bogus12"])
    assert "--index 'Bogus12'" in error and "factory string" in error
