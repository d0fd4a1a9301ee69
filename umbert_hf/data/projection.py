"""PCA projection of an embeddings table to fewer dimensions (e.g. image + MiniLM text parts, 512 -> 128).

Concatenated image and text embeddings are wide; umBERT's cost grows with the square of its hidden size, so the
catalogue is projected onto its top principal components once, deterministically, before training.
"""

import torch

from .embeddings import EmbeddingsTable


def pca_projection(embeddings: torch.Tensor, output_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (dim, output_dim) principal directions of `embeddings`, signs fixed so the result is reproducible."""
    if embeddings.dim() != 2:
        raise ValueError(f"`embeddings` must be (items, dim), got shape {tuple(embeddings.shape)}.")
    if not 0 < output_dim <= min(embeddings.shape):
        raise ValueError(
            f"`output_dim` must be in [1, {min(embeddings.shape)}] for {tuple(embeddings.shape)} embeddings, "
            f"got {output_dim}."
        )
    data = embeddings.double()
    mean = data.mean(dim=0)
    _, _, right = torch.linalg.svd(data - mean, full_matrices=False)
    components = right[:output_dim].T  # (dim, output_dim)
    # An SVD's signs are arbitrary: make each direction's largest coordinate positive.
    signs = torch.sign(components.gather(0, components.abs().argmax(dim=0, keepdim=True)))
    return mean.float(), (components * signs).float()


def project(embeddings: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """(items, output_dim) coordinates of `embeddings` on the principal directions."""
    return (embeddings - mean) @ components


def project_table(table, output_dim: int):
    """A copy of an `EmbeddingsTable` projected on its top `output_dim` principal components (recorded in metadata)."""
    mean, components = pca_projection(table.embeddings, output_dim)
    metadata = {
        **table.metadata,
        "projection": {"method": "pca", "input_dim": table.embedding_dim, "output_dim": output_dim},
        "embedding_dim": output_dim,
    }
    return EmbeddingsTable(
        list(table.item_ids), list(table.categories), project(table.embeddings, mean, components), metadata
    )


__all__ = ["pca_projection", "project", "project_table"]
