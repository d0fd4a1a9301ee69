"""Tiny umBERT/WumBERT configs, catalogues and inputs shared by the tests (ModelTester style)."""

import torch

from umbert_hf import UmBertConfig, UmBertModel, WumBertModel


class UmBertModelTester:
    """Builds a tiny config, a random catalogue and inputs: batch 13, hidden 32, 2 layers, 4 heads."""

    batch_size = 13
    hidden_size = 32
    num_hidden_layers = 2
    num_attention_heads = 4
    items_per_category = 10

    def __init__(self, seed: int = 0, **config_overrides):
        self.generator = torch.Generator().manual_seed(seed)
        self.config_kwargs = {
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "hidden_dropout_prob": 0.0,
            **config_overrides,
        }
        self.config = UmBertConfig(**self.config_kwargs)
        self.categories = self.config.categories
        num_items = self.items_per_category * len(self.categories)
        self.item_ids = [str(100000 + index) for index in range(num_items)]
        self.item_categories = [self.categories[index % len(self.categories)] for index in range(num_items)]
        self.embedding_size = self.config.embedding_size
        self.item_embeddings = torch.randn(num_items, self.embedding_size, generator=self.generator)

    def rows_of(self, category: str) -> list[int]:
        return [row for row, name in enumerate(self.item_categories) if name == category]

    def outfit_rows(self, batch_size: int | None = None) -> torch.Tensor:
        """(batch, slots) catalogue rows, one item of the slot's category per slot."""
        batch_size = batch_size or self.batch_size
        columns = []
        for category in self.categories:
            rows = torch.tensor(self.rows_of(category))
            columns.append(rows[torch.randint(len(rows), (batch_size,), generator=self.generator)])
        return torch.stack(columns, dim=1)

    def umbert(self) -> UmBertModel:
        torch.manual_seed(0)
        model = UmBertModel(self.config)
        model.set_catalogue(self.item_ids, self.item_embeddings, self.item_categories)
        return model.eval()

    def wumbert(self) -> WumBertModel:
        torch.manual_seed(0)
        model = WumBertModel.from_item_embeddings(
            self.item_ids, self.item_embeddings, self.item_categories, **self.config_kwargs
        )
        return model.eval()

    def outfit_dict(self, rows: list[int], blank: int) -> dict[str, str | None]:
        return {
            category: (None if position == blank else self.item_ids[row])
            for position, (category, row) in enumerate(zip(self.categories, rows))
        }


def strings_in(value) -> list[str]:
    """Every string inside a JSON-like value (config, metadata): to check that no local path was saved."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings_in(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return []
