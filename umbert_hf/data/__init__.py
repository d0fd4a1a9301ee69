"""Data: item embedding tables, outfit datasets, image processing, embedding extraction, projection and augmentation."""
