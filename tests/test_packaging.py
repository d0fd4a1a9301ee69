"""A non-editable install ships every file the package reads at run time: the model card templates (`model_cards`)
and the `evaluate` metric module (`umbert_hf/evaluation/evaluate_metrics`)."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What setup.cfg builds the distribution from.
SOURCES = ("pyproject.toml", "setup.cfg", "README.md", "umbert_hf", "dataset_builder", "model_cards")
METRIC_FOLDER = Path("umbert_hf", "evaluation", "evaluate_metrics")
# Run by the new environment's interpreter, outside the checkout: where the installed package finds its files.
WHERE_FILES_ARE_READ = """
import json
from umbert_hf.evaluation.modelcard import make_model_card, template_dir
from umbert_hf.evaluation.evaluate_module import EVALUATE_METRIC_PATH
card = make_model_card("umbert", model_name="m", dataset_name="d", metrics={"mrr": 0.5}, hyperparameters={})
print(json.dumps({"template_dir": str(template_dir()), "metric": EVALUATE_METRIC_PATH, "card": str(card)}))
"""


def files_under(folder: Path) -> set[Path]:
    return {
        path.relative_to(folder) for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.slow
def test_a_non_editable_install_ships_the_card_templates_and_the_metric_module(tmp_path):
    # Build from a copy: a build writes build/ and *.egg-info beside setup.cfg.
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=False)  # empty: the package alone, its dependencies come from this venv
    python = environment / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # `--target`, not `--prefix`: pip with `--prefix` uninstalls the running environment's own (editable) umbert-hf.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        + ["--no-build-isolation", "--no-compile", "--target", str(site), str(source)],
        check=True,
        cwd=tmp_path,
        timeout=120,
    )

    templates = {path for path in files_under(ROOT / "model_cards") if path.suffix == ".md"}
    assert templates and templates <= files_under(site / "model_cards")
    metric_files = files_under(ROOT / METRIC_FOLDER)
    assert metric_files and metric_files <= files_under(site / METRIC_FOLDER)
    assert not (site / "__editable__.umbert_hf-0.1.0.pth").exists()

    # The installed package reads its own copies, from any working folder; PYTHONPATH lends it the dependencies
    # (torch, transformers, ...) of this venv, whose editable install of umbert_hf is not on that path.
    dependencies = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [str(python), "-c", WHERE_FILES_ARE_READ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": dependencies, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["template_dir"]) == site / "model_cards"
    assert Path(found["metric"]) == site / METRIC_FOLDER / "outfit_completion"
    assert "model-index" in found["card"]
