"""Uploading a local folder (a trained model, a built dataset) to the Hugging Face Hub in one commit."""

import os
from collections.abc import Sequence

from huggingface_hub import CommitInfo, HfApi

from .files import TEMPORARY_PATTERNS


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload with umbert-hf",
    ignore_patterns: Sequence[str] = (),
) -> CommitInfo:
    """Create the repository `repo_id` if needed and upload `folder`; returns the commit info (a `str`, its URL).

    The hidden temporaries of unfinished writes (`files.TEMPORARY_PATTERNS`) are never uploaded;
    `ignore_patterns` (relative to `folder`, e.g. `"epoch_*"`) leaves out more. `private` applies only when the
    repository is created.
    """
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_url.repo_id,
        repo_type=repo_type,
        folder_path=str(folder),
        commit_message=commit_message,
        ignore_patterns=[*TEMPORARY_PATTERNS, *ignore_patterns],
    )


__all__ = ["push_folder_to_hub"]
