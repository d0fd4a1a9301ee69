"""Pytest fixtures and helpers to run the real Hugging Face clients against `hub_server.MockHub`.

Use from ``tests/conftest.py`` with ``from support.hub_fixtures import *``. It exports:

* ``mock_hub`` (session-scoped fixture): a running `MockHub`. State is shared by the whole session, so use unique
  repo names (``hub_env.unique_repo_id(...)``) or call ``mock_hub.reset()``.
* ``hub_env`` (function-scoped fixture): points this process at the mock Hub for the duration of one test (environment
  variables *and* the module-level constants that `huggingface_hub`, `datasets` and `transformers` read at import time)
  and returns a `HubEnv` with the URL, the token, a ready `HfApi` and a helper to run code in a fresh interpreter.
* ``hub_env_vars(url, hf_home)``: the environment variables a (sub)process needs to talk to the mock Hub.
* ``run_in_fresh_process(code, env, block_imports=...)``: run Python code in a new interpreter, optionally making some
  top-level packages (e.g. ``umbert_hf``) impossible to import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.hub_server import MockHub

__all__ = [
    "DUMMY_TOKEN",
    "HubEnv",
    "hub_env",
    "hub_env_vars",
    "mock_hub",
    "run_in_fresh_process",
    "run_json_in_fresh_process",
]

DUMMY_TOKEN = "hf_dummy_token_for_mock_hub_tests"

# Variables that would redirect caches/tokens away from HF_HOME, or force offline mode: removed from the environment.
_SCRUBBED_VARS = (
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HF_TOKEN_PATH",
    "HF_XET_CACHE",
    "HF_DATASETS_CACHE",
    "HF_MODULES_CACHE",
    "HF_DATASETS_DOWNLOADED_DATASETS_PATH",
    "HF_DATASETS_EXTRACTED_DATASETS_PATH",
    "TRANSFORMERS_CACHE",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "HUGGINGFACE_CO_STAGING",
    "XDG_CACHE_HOME",
)


def hub_env_vars(url: str, hf_home: str | os.PathLike, token: str = DUMMY_TOKEN) -> dict[str, str]:
    """Environment variables that make `huggingface_hub`/`transformers`/`datasets` talk to the mock Hub."""
    return {
        "HF_ENDPOINT": url,
        "HF_TOKEN": token,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "HF_HUB_DISABLE_SYMLINKS_WARNING": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


# Prelude run before user code in a fresh interpreter: blocks the requested top-level packages.
_PRELUDE = """\
import sys as _sys

class _BlockedImportFinder:
    blocked = {blocked!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".", 1)[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked for this test)", name=name)
        return None

if _BlockedImportFinder.blocked:
    for _name in list(_sys.modules):
        if _name.split(".", 1)[0] in _BlockedImportFinder.blocked:
            del _sys.modules[_name]
    _sys.meta_path.insert(0, _BlockedImportFinder())
del _sys
"""


def run_in_fresh_process(
    code: str,
    env: Mapping[str, str] | None = None,
    *,
    block_imports: Iterable[str] = (),
    cwd: str | os.PathLike | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``code`` in a new Python interpreter and return the `CompletedProcess` (text stdout/stderr).

    * ``env``: variables added on top of a copy of ``os.environ`` (e.g. ``hub_env.env``); a value of ``None`` removes
      the variable.
    * ``block_imports``: top-level package names (``"umbert_hf"``) that raise `ModuleNotFoundError` when imported
      in the child, even if installed (editable or not) or present in the working directory.
    * ``cwd``: working directory; defaults to a new empty temporary directory, so the repository root is not on
      ``sys.path``. The script itself also lives in a temporary directory.
    * ``check``: raise `AssertionError` with the child's output if it exits with a non-zero status.
    """
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = str(value)
    script = _PRELUDE.format(blocked=sorted(set(block_imports))) + "\n" + textwrap.dedent(code)
    with tempfile.TemporaryDirectory(prefix="fresh-proc-") as tmp:
        script_path = Path(tmp) / "fresh_process_main.py"
        script_path.write_text(script, encoding="utf-8")
        workdir = Path(cwd) if cwd is not None else Path(tmp) / "cwd"
        workdir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, str(script_path)],
            env=full_env,
            cwd=str(workdir),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"fresh process exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-8000:]}"
            f"\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc


def run_json_in_fresh_process(code: str, env: Mapping[str, str] | None = None, **kwargs) -> Any:
    """Like `run_in_fresh_process`, but parses the last stdout line as JSON (the code must ``print(json.dumps(...))``)."""
    proc = run_in_fresh_process(code, env, **kwargs)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"fresh process printed nothing\n--- stderr ---\n{proc.stderr[-8000:]}")
    return json.loads(lines[-1])


@dataclass
class HubEnv:
    """What `hub_env` gives a test."""

    hub: MockHub
    url: str
    token: str
    hf_home: Path
    env: dict[str, str]  # variables to pass to a subprocess so it uses the mock Hub (with this test's HF_HOME)
    _tmp: Path = field(repr=False)

    @property
    def user(self) -> str:
        return self.hub.user

    @property
    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=self.token)

    def unique_repo_id(self, name: str = "repo") -> str:
        return f"{self.hub.user}/{name}-{uuid.uuid4().hex[:10]}"

    def fresh_env(self, share_cache: bool = False) -> dict[str, str]:
        """Subprocess environment; by default with a new empty HF_HOME so everything is downloaded again."""
        if share_cache:
            return dict(self.env)
        home = Path(tempfile.mkdtemp(prefix="hf_home_", dir=self._tmp))
        return {**self.env, "HF_HOME": str(home)}

    def run(self, code: str, *, block_imports: Iterable[str] = (), share_cache: bool = False, **kwargs):
        """`run_in_fresh_process` with this mock Hub's environment (fresh HF_HOME unless ``share_cache``)."""
        return run_in_fresh_process(code, self.fresh_env(share_cache), block_imports=block_imports, **kwargs)

    def run_json(self, code: str, *, block_imports: Iterable[str] = (), share_cache: bool = False, **kwargs):
        return run_json_in_fresh_process(code, self.fresh_env(share_cache), block_imports=block_imports, **kwargs)


@pytest.fixture(scope="session")
def mock_hub() -> Iterator[MockHub]:
    """A `MockHub` running for the whole test session."""
    with MockHub() as hub:
        yield hub


def _patch_loaded_modules(monkeypatch: pytest.MonkeyPatch, url: str, hf_home: Path) -> None:
    """Patch the constants that the HF libraries computed from the environment when they were imported."""
    hub_cache = str(hf_home / "hub")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants, hf_api

        values = {
            "ENDPOINT": url,
            "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_XET": True,
            "HF_HUB_DISABLE_TELEMETRY": True,
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
            "HF_HOME": str(hf_home),
            "HUGGINGFACE_HUB_CACHE": hub_cache,
            "HF_HUB_CACHE": hub_cache,
            "HUGGINGFACE_ASSETS_CACHE": str(hf_home / "assets"),
            "HF_ASSETS_CACHE": str(hf_home / "assets"),
            "HF_TOKEN_PATH": str(hf_home / "token"),
            "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
            "HF_XET_CACHE": str(hf_home / "xet"),
            "CHECK_FOR_UPDATE_DONE_PATH": str(hf_home / ".check_for_update_done"),
            "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
        }
        for name, value in values.items():
            if hasattr(constants, name):
                monkeypatch.setattr(constants, name, value)
        monkeypatch.setattr(hf_api.api, "endpoint", url)
    if "datasets" in sys.modules:
        import datasets.config as dconfig

        values = {
            "HF_ENDPOINT": url,
            "HUB_DATASETS_URL": url + "/datasets/{repo_id}/resolve/{revision}/{path}",
            "HF_HUB_OFFLINE": False,
            "HF_DATASETS_OFFLINE": False,
            "HF_UPDATE_DOWNLOAD_COUNTS": False,
            "HF_CACHE_HOME": str(hf_home),
            "HF_DATASETS_CACHE": hf_home / "datasets",
            "HF_MODULES_CACHE": hf_home / "modules",
            "DOWNLOADED_DATASETS_PATH": hf_home / "datasets" / "downloads",
            "EXTRACTED_DATASETS_PATH": hf_home / "datasets" / "downloads" / "extracted",
        }
        for name, value in values.items():
            if hasattr(dconfig, name):
                monkeypatch.setattr(dconfig, name, value)
    if "transformers" in sys.modules:
        for module_name in ("transformers.utils.hub", "transformers.dynamic_module_utils", "transformers.utils"):
            module = sys.modules.get(module_name)
            if module is not None and hasattr(module, "HF_MODULES_CACHE"):
                monkeypatch.setattr(module, "HF_MODULES_CACHE", str(hf_home / "modules"))
        hub_module = sys.modules.get("transformers.utils.hub")
        if hub_module is not None and hasattr(hub_module, "_hf_api"):
            monkeypatch.setattr(hub_module, "_hf_api", None)  # cached HfApi keeps the endpoint it was created with


@pytest.fixture
def hub_env(mock_hub: MockHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubEnv:
    """Point this process (env vars + already-imported HF modules) at the session's mock Hub for one test."""
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()
    env = hub_env_vars(mock_hub.url, hf_home)
    for name in _SCRUBBED_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _patch_loaded_modules(monkeypatch, mock_hub.url, hf_home)
    return HubEnv(hub=mock_hub, url=mock_hub.url, token=DUMMY_TOKEN, hf_home=hf_home, env=env, _tmp=tmp_path)
