"""Session fixtures: a small synthetic Polyvore dataset (built once) and an embeddings table made from its titles.

The table embeds each title as the mean of fixed random word vectors, so item attributes named in titles (colour,
pattern, formality) are visible to umBERT without training an image encoder in every test.
"""

import hashlib

import pytest
import torch

from umbert_hf.data.embeddings import write_embeddings_table

EMBEDDING_DIM = 32


def title_embeddings(titles: list[str], dim: int = EMBEDDING_DIM, seed: int = 0) -> torch.Tensor:
    """Mean of per-word random vectors (seeded by the word), plus a little per-item noise."""
    vectors = {}

    def word_vector(word: str) -> torch.Tensor:
        if word not in vectors:
            word_seed = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
            vectors[word] = torch.randn(dim, generator=torch.Generator().manual_seed(word_seed))
        return vectors[word]

    generator = torch.Generator().manual_seed(seed)
    rows = [torch.stack([word_vector(word) for word in title.lower().split()]).mean(0) for title in titles]
    return torch.stack(rows) + 0.3 * torch.randn(len(rows), dim, generator=generator)


@pytest.fixture(scope="session")
def outfit_dataset(tmp_path_factory):
    """(dataset folder, embeddings parquet) of a small synthetic Polyvore build without images."""
    import datasets

    from dataset_builder import build_dataset, synthesize_polyvore

    root = tmp_path_factory.mktemp("outfits")
    synthesize_polyvore(root / "raw", num_items=400, num_outfits=500, seed=0, with_images=False)
    build_dataset(root / "raw", root / "dataset", with_images=False)
    catalogue = datasets.load_dataset(str(root / "dataset"), "catalogue")["train"]
    embeddings = title_embeddings(catalogue["title"])
    table = root / "embeddings.parquet"
    write_embeddings_table(table, catalogue["item_id"], catalogue["category"], embeddings, {"text_encoder": "bow-hash"})
    return root / "dataset", table


# The tiny umBERT that `pretrained_umbert` trains: 1 layer, 2 heads, 2 epochs (the flags of test_training_scripts.py).
PRETRAIN_FLAGS = ["--num_train_epochs", "2", "--num_hidden_layers", "1", "--num_attention_heads", "2"]
PRETRAIN_FLAGS += ["--hidden_dropout_prob", "0.1", "--per_device_train_batch_size", "32"]
PRETRAIN_FLAGS += ["--per_device_eval_batch_size", "64", "--seed", "7"]


@pytest.fixture(scope="session")
def pretrained_umbert(outfit_dataset, tmp_path_factory):
    """The folder of a tiny umBERT pre-trained by `training_scripts/pretrain.py` (a fresh process, as a user runs it)
    on `outfit_dataset`, once per session: shared by the tests of the scripts' outputs, evaluation and model card."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    dataset, embeddings = outfit_dataset
    output = tmp_path_factory.mktemp("pretrain") / "model"
    script = Path(__file__).resolve().parents[2] / "training_scripts" / "pretrain.py"
    argv = ["--dataset", str(dataset), "--embeddings", str(embeddings), "--output_dir", str(output), *PRETRAIN_FLAGS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=script.parents[1],
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return output
