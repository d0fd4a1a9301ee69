"""Training: the Accelerate loop, the outfit (umBERT/WumBERT) and image-encoder phases, hyperparameter search."""
