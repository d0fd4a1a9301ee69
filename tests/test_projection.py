"""PCA projection of embeddings tables."""

import pytest
import torch

from umbert_hf.data.projection import pca_projection, project


def test_pca_keeps_the_top_variance_directions_deterministically():
    generator = torch.Generator().manual_seed(0)
    # Variance concentrated in 3 known directions of a 10-d space, plus small noise.
    basis = torch.linalg.qr(torch.randn(10, 10, generator=generator))[0]
    scales = torch.tensor([10.0, 5.0, 2.0] + [0.01] * 7)
    data = (torch.randn(500, 10, generator=generator) * scales) @ basis.T + 3.0
    mean, components = pca_projection(data, 3)
    projected = project(data, mean, components)
    assert projected.shape == (500, 3)
    assert torch.allclose(components.T @ components, torch.eye(3), atol=1e-5)
    # The top directions span the known ones, in order of variance.
    for index in range(3):
        assert abs(torch.dot(components[:, index], basis[:, index])) > 0.999
    variances = projected.var(dim=0)
    assert variances[0] > variances[1] > variances[2]
    again_mean, again_components = pca_projection(data.clone(), 3)
    assert torch.equal(again_components, components) and torch.equal(again_mean, mean)


def test_pca_rejects_bad_dimensions():
    with pytest.raises(ValueError, match="output_dim"):
        pca_projection(torch.randn(5, 4), 6)
    with pytest.raises(ValueError, match="must be \\(items, dim\\)"):
        pca_projection(torch.randn(5), 1)


def test_compute_embeddings_output_dim_projects_and_records_it(tmp_path):
    from umbert_hf.data.embeddings import EmbeddingsTable, read_embeddings_table
    from umbert_hf.data.projection import project_table

    table = EmbeddingsTable(
        [str(i) for i in range(20)],
        ["tops"] * 20,
        torch.randn(20, 12, generator=torch.Generator().manual_seed(1)),
        {"parts": ["image", "text"]},
    )
    projected = project_table(table, 4)
    projected.save(tmp_path / "table.parquet")
    loaded = read_embeddings_table(tmp_path / "table.parquet")
    assert loaded.embeddings.shape == (20, 4)
    assert loaded.metadata["projection"] == {"method": "pca", "input_dim": 12, "output_dim": 4}
    assert loaded.metadata["parts"] == ["image", "text"]
