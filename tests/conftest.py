"""Test-wide settings: offline Hub, deterministic CPU threads, and shared fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from support.hub_fixtures import *  # noqa: F403
from support.outfit_fixtures import outfit_dataset, pretrained_umbert  # noqa: F401
