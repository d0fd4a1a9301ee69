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
