"""Evaluation: outfit-completion metrics in torch, and the thin `evaluate` module around them."""
