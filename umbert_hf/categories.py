"""The slot categories of an outfit, in column order: one definition for the models, the item encoders and the data."""

DEFAULT_CATEGORIES = ("shoes", "tops", "accessories", "bottoms")

__all__ = ["DEFAULT_CATEGORIES"]
