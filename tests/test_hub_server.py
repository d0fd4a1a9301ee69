"""The mock Hub (`hub_server.MockHub`) against the real `huggingface_hub`, `transformers` and `datasets` clients."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import datasets
import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import transformers
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from support.hub_server import MockHub, git_blob_sha1

# Fixtures `mock_hub` / `hub_env`: provided by tests/conftest.py (`from support.hub_fixtures import *`).


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def _folder(tmp_path: Path) -> dict[str, bytes]:
    """Files of a small model folder: regular text files and LFS files (by pattern, by content and by size)."""
    files = {
        "config.json": json.dumps({"model_type": "toy", "architectures": ["Toy"]}).encode(),
        "sub/dir/notes.txt": b"hello outfit\n" * 50,
        "weights.safetensors": os.urandom(3000),  # LFS because of the default .gitattributes
        "blob.dat": b"\x00\x01binary" * 100,  # LFS because it is binary
        "big.txt": b"a" * (2 * 1024 * 1024 + 17),  # LFS because of its size (threshold lowered in the test)
    }
    for name, data in files.items():
        _write(tmp_path / "folder" / name, data)
    return files


# ----------------------------------------------------------------------------------------------------------------------
# Repos, uploads, downloads
# ----------------------------------------------------------------------------------------------------------------------


def test_create_repo_conflict_and_exist_ok(hub_env):
    api = HfApi()
    assert api.endpoint == hub_env.url
    assert api.whoami()["name"] == hub_env.user
    repo_id = hub_env.unique_repo_id("conflict")
    url = api.create_repo(repo_id)
    assert url.repo_id == repo_id and url.repo_type == "model" and url.endpoint == hub_env.url
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id)
    assert err.value.response.status_code == 409
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    # same name, other repo type: no conflict
    assert api.create_repo(repo_id, repo_type="dataset").repo_type == "dataset"
    # no namespace: created under the user
    name = hub_env.unique_repo_id("bare").split("/")[1]
    assert api.create_repo(name).repo_id == f"{hub_env.user}/{name}"
    # fresh repos hold the initial .gitattributes commit
    assert api.list_repo_files(repo_id) == [".gitattributes"]
    assert len(api.list_repo_commits(repo_id)) == 1


def test_upload_folder_regular_and_lfs_then_download(hub_env, tmp_path, monkeypatch):
    hub = hub_env.hub
    monkeypatch.setattr(hub, "lfs_threshold", 1024 * 1024)
    monkeypatch.setattr(hub, "multipart_threshold", 1024 * 1024)  # big.txt goes through multipart upload
    monkeypatch.setattr(hub, "multipart_chunk_size", 512 * 1024)
    files = _folder(tmp_path)
    api = HfApi()
    repo_id = hub_env.unique_repo_id("upload")
    api.create_repo(repo_id)
    n_requests = len(hub.requests)
    info = api.upload_folder(folder_path=tmp_path / "folder", repo_id=repo_id, commit_message="Add model")
    upload_requests = [f"{r.method} {r.path.split('?')[0]}" for r in hub.requests[n_requests:]]

    # Server side: what went through LFS, and how
    repo = hub.get_repo(repo_id)
    tree = repo.commits[info.oid].files
    assert repo.branches["main"] == info.oid
    assert {p for p, e in tree.items() if e.is_lfs} == {"weights.safetensors", "blob.dat", "big.txt"}
    for path, data in files.items():
        assert hub.read_file(repo_id, path) == data
    assert any(r.startswith("POST /api/models/") and "/preupload/main" in r for r in upload_requests)
    assert any(r.endswith(".git/info/lfs/objects/batch") for r in upload_requests)
    assert sum(r.startswith("PUT /__lfs__/upload/") for r in upload_requests) == 2
    assert sum(r.startswith("PUT /__lfs__/part/") for r in upload_requests) == 5  # ceil(2 MiB + 17 / 512 KiB)
    assert any(r.startswith("POST /__lfs__/complete/") for r in upload_requests)

    # Listings
    assert api.list_repo_files(repo_id) == sorted([".gitattributes", *files])
    model = api.model_info(repo_id, files_metadata=True)
    assert model.sha == info.oid
    assert model.config == {"architectures": ["Toy"], "model_type": "toy"}
    siblings = {s.rfilename: s for s in model.siblings}
    for path, data in files.items():
        assert siblings[path].size == len(data)
        if tree[path].is_lfs:
            assert siblings[path].lfs.sha256 == hashlib.sha256(data).hexdigest()
        else:
            assert siblings[path].lfs is None and siblings[path].blob_id == git_blob_sha1(data)
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(repo_id)}
    assert top == {
        "sub": "RepoFolder",
        ".gitattributes": "RepoFile",
        "big.txt": "RepoFile",
        "blob.dat": "RepoFile",
        "config.json": "RepoFile",
        "weights.safetensors": "RepoFile",
    }
    assert [e.path for e in api.list_repo_tree(repo_id, "sub", recursive=True)] == ["sub/dir", "sub/dir/notes.txt"]
    paths = api.get_paths_info(repo_id, ["sub", "weights.safetensors", "missing.txt"], expand=True)
    assert [p.path for p in paths] == ["sub", "weights.safetensors"]
    assert paths[1].lfs.size == 3000 and paths[1].last_commit.oid == info.oid

    # Downloads (cache), one by one and as a snapshot
    for path, data in files.items():
        assert Path(hf_hub_download(repo_id, path)).read_bytes() == data
    snapshot = Path(snapshot_download(repo_id))
    assert snapshot.name == info.oid
    for path, data in files.items():
        assert (snapshot / path).read_bytes() == data
    local = Path(snapshot_download(repo_id, local_dir=tmp_path / "local", allow_patterns=["*.json", "sub/*"]))
    assert (local / "config.json").read_bytes() == files["config.json"]
    assert (local / "sub/dir/notes.txt").exists() and not (local / "big.txt").exists()

    # Uploading the same folder again is a no-op (no new commit)
    again = api.upload_folder(folder_path=tmp_path / "folder", repo_id=repo_id)
    assert again.oid == info.oid and len(api.list_repo_commits(repo_id)) == 2


def test_resolve_headers_and_range_requests(hub_env, tmp_path):
    api = HfApi()
    repo_id = hub_env.unique_repo_id("range")
    api.create_repo(repo_id)
    text = bytes(range(65, 91)) * 40
    weights = os.urandom(5000)
    api.upload_file(path_or_fileobj=text, path_in_repo="a/text.txt", repo_id=repo_id)
    commit = api.upload_file(path_or_fileobj=weights, path_in_repo="w.safetensors", repo_id=repo_id)
    base = f"{hub_env.url}/{repo_id}/resolve/main"

    head = httpx2.head(f"{base}/a/text.txt")
    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == commit.oid
    assert head.headers["ETag"] == f'"{git_blob_sha1(text)}"'
    assert int(head.headers["Content-Length"]) == len(text) and head.content == b""
    head = httpx2.head(f"{base}/w.safetensors")
    sha256 = hashlib.sha256(weights).hexdigest()
    assert head.headers["X-Linked-Etag"] == f'"{sha256}"' and head.headers["ETag"] == f'"{sha256}"'
    assert head.headers["X-Linked-Size"] == "5000"

    ranged = httpx2.get(f"{base}/w.safetensors", headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == weights[100:200]
    assert ranged.headers["Content-Range"] == "bytes 100-199/5000"
    assert httpx2.get(f"{base}/w.safetensors", headers={"Range": "bytes=-10"}).content == weights[-10:]
    assert httpx2.get(f"{base}/w.safetensors", headers={"Range": "bytes=6000-"}).status_code == 416
    # quoted revision (commit sha) and datasets prefix
    assert httpx2.get(f"{hub_env.url}/{repo_id}/resolve/{commit.oid}/a/text.txt").content == text

    # the client's own resume path (Range: bytes=N-)
    buffer = io.BytesIO(text[:300])
    buffer.seek(300)
    http_get(f"{base}/a/text.txt", buffer, resume_size=300, expected_size=len(text))
    assert buffer.getvalue() == text
    # HfFileSystem block reads use Range too
    fs = HfFileSystem(endpoint=hub_env.url, token=hub_env.token)
    with fs.open(f"{repo_id}/w.safetensors", "rb", block_size=1024) as f:
        f.seek(4000)
        assert f.read(500) == weights[4000:4500]
    assert any("Range" in r.headers or "range" in r.headers for r in hub_env.hub.requests if r.method == "GET")


def test_hub_style_errors(hub_env, tmp_path):
    api = HfApi()
    missing = hub_env.unique_repo_id("missing")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(missing)
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info(missing)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(missing, "config.json")
    with pytest.raises(RepositoryNotFoundError):  # committing to a missing repo is a 404, not a silent create
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=missing)

    repo_id = hub_env.unique_repo_id("errors")
    api.create_repo(repo_id)
    with pytest.raises(RemoteEntryNotFoundError) as err:
        hf_hub_download(repo_id, "nope.json")
    assert isinstance(err.value, EntryNotFoundError)
    assert err.value.response.headers["X-Error-Code"] == "EntryNotFound"
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="v9")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        api.delete_file("nope.txt", repo_id=repo_id)

    raw = httpx2.get(f"{hub_env.url}/api/models/{missing}/tree/main")
    assert raw.status_code == 404 and raw.headers["X-Error-Code"] == "RepoNotFound"
    raw = httpx2.get(f"{hub_env.url}/{repo_id}/resolve/main/nope.txt")
    assert raw.headers["X-Error-Code"] == "EntryNotFound" and raw.headers["X-Repo-Commit"]
    assert "nope.txt" in raw.json()["error"]
    # writes need a token
    raw = httpx2.post(f"{hub_env.url}/api/repos/create", json={"name": "anon", "type": "model"})
    assert raw.status_code == 401
    # optimistic concurrency with parent_commit
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="f.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"2", path_in_repo="f.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"3", path_in_repo="f.txt", repo_id=repo_id, parent_commit=first.oid)
    assert err.value.response.status_code == 412


def test_lfs_protocol_is_strict(hub_env):
    auth = {"Authorization": f"Bearer {hub_env.token}"}
    api = HfApi()
    repo_id = hub_env.unique_repo_id("lfs")
    api.create_repo(repo_id)
    data = os.urandom(2048)
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx2.post(
        f"{hub_env.url}/{repo_id}.git/info/lfs/objects/batch",
        headers=auth,
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]},
    )
    assert batch.status_code == 200
    action = batch.json()["objects"][0]["actions"]["upload"]
    assert httpx2.put(action["href"], content=data[:-1] + b"!").status_code == 400  # sha256 mismatch
    assert httpx2.put(action["href"], content=data[:-1]).status_code == 400  # size mismatch
    # committing a pointer to an object that was never uploaded is rejected
    ndjson = "\n".join(
        json.dumps(line)
        for line in [
            {"key": "header", "value": {"summary": "bad", "description": ""}},
            {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)}},
        ]
    )
    commit_url = f"{hub_env.url}/api/models/{repo_id}/commit/main"
    headers = {**auth, "Content-Type": "application/x-ndjson"}
    assert httpx2.post(commit_url, headers=headers, content=ndjson).status_code == 422
    assert httpx2.put(action["href"], content=data).status_code == 200
    assert httpx2.post(commit_url, headers=headers, content=ndjson).status_code == 200
    assert hub_env.hub.read_file(repo_id, "w.bin") == data
    # regular (non-LFS) binary files are refused by the commit endpoint
    bad = [{"key": "header", "value": {"summary": "bin"}}, {"key": "file", "value": {"path": "x.bin", "content": "AAEC", "encoding": "base64"}}]  # fmt: skip
    resp = httpx2.post(commit_url, headers=headers, content="\n".join(map(json.dumps, bad)))
    assert resp.status_code == 400


def test_revisions_branches_tags_and_prs(hub_env):
    api = HfApi()
    repo_id = hub_env.unique_repo_id("revs")
    api.create_repo(repo_id)
    v1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=repo_id)
    api.create_tag(repo_id, tag="v1.0")
    api.create_branch(repo_id, branch="dev")
    api.create_branch(repo_id, branch="dev", exist_ok=True)
    v2 = api.create_commit(
        repo_id,
        operations=[CommitOperationAdd("g.txt", b"g"), CommitOperationDelete("f.txt")],
        commit_message="v2",
    )
    assert v1.oid != v2.oid
    assert api.list_repo_files(repo_id) == [".gitattributes", "g.txt"]
    assert api.list_repo_files(repo_id, revision="v1.0") == [".gitattributes", "f.txt"]
    assert api.list_repo_files(repo_id, revision="dev") == [".gitattributes", "f.txt"]
    assert Path(hf_hub_download(repo_id, "f.txt", revision=v1.oid)).read_bytes() == b"v1"
    assert api.model_info(repo_id, revision="v1.0").sha == v1.oid
    assert [c.title for c in api.list_repo_commits(repo_id)] == [
        "v2",
        "Upload f.txt with huggingface_hub",
        "initial commit",
    ]
    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": v2.oid, "dev": v1.oid}
    assert [t.name for t in refs.tags] == ["v1.0"]
    pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="pr.txt", repo_id=repo_id, create_pr=True)
    assert pr.pr_revision == "refs/pr/1"
    assert "pr.txt" not in api.list_repo_files(repo_id)
    assert Path(hf_hub_download(repo_id, "pr.txt", revision="refs/pr/1")).read_bytes() == b"pr"


def test_tree_pagination(hub_env, monkeypatch):
    monkeypatch.setattr(hub_env.hub, "page_size", 3)
    api = HfApi()
    repo_id = hub_env.unique_repo_id("pages")
    api.create_repo(repo_id)
    names = [f"d/f{i}.txt" for i in range(8)]
    api.create_commit(repo_id, operations=[CommitOperationAdd(n, n.encode()) for n in names], commit_message="many")
    assert sorted(api.list_repo_files(repo_id)) == sorted([".gitattributes", *names])
    assert len(hub_env.hub.requests_matching("GET", "cursor=")) >= 2


def test_yaml_validation(hub_env):
    api = HfApi()
    repo_id = hub_env.unique_repo_id("card")
    api.create_repo(repo_id, repo_type="dataset")
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_file(path_or_fileobj=b"---\nfoo: [unclosed\n---\n", path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")  # fmt: skip
    with pytest.raises(ValueError, match="config_name"):
        api.upload_file(path_or_fileobj=b"---\nconfigs:\n- data_files: x\n---\n", path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")  # fmt: skip
    card = b"---\nlicense: mit\ntags: [outfits]\n---\n# Card\n"
    api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
    info = api.dataset_info(repo_id)
    assert info.card_data.license == "mit" and info.tags == ["outfits"]


def test_private_repos_need_a_token(hub_env):
    api = HfApi()
    repo_id = hub_env.unique_repo_id("private")
    api.create_repo(repo_id, private=True)
    assert api.model_info(repo_id).private is True
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_id, token=False)


def test_fresh_process_blocks_imports(hub_env):
    code = """
        import json, os
        try:
            import umbert_hf  # noqa
            blocked = False
        except ModuleNotFoundError:
            blocked = True
        try:
            import json.decoder  # unrelated modules still import
            ok = True
        except ImportError:
            ok = False
        print(json.dumps({"blocked": blocked, "ok": ok, "endpoint": os.environ["HF_ENDPOINT"], "home": os.environ["HF_HOME"]}))
    """
    out = hub_env.run_json(code, block_imports=["umbert_hf"])
    assert out["blocked"] and out["ok"] and out["endpoint"] == hub_env.url
    assert out["home"] != str(hub_env.hf_home)  # fresh, empty cache by default
    from support.hub_fixtures import run_in_fresh_process

    with pytest.raises(AssertionError, match="exited with"):
        run_in_fresh_process("raise SystemExit(3)")


# ----------------------------------------------------------------------------------------------------------------------
# transformers and datasets end to end, loading in a fresh interpreter
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_transformers_push_to_hub_then_from_pretrained_in_fresh_process(hub_env):
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37, vocab_size=99
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    repo_id = hub_env.unique_repo_id("tiny-bert")
    model.push_to_hub(repo_id)
    repo = hub_env.hub.get_repo(repo_id)
    files = repo.commits[repo.branches["main"]].files
    assert files["model.safetensors"].is_lfs and not files["config.json"].is_lfs

    input_ids = [[2, 5, 7, 11, 13, 98]]
    with torch.no_grad():
        expected = model(torch.tensor(input_ids)).last_hidden_state
    code = f"""
        import json
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({repo_id!r}).eval()
        with torch.no_grad():
            out = model(torch.tensor({input_ids!r})).last_hidden_state
        print(json.dumps({{"cls": type(model).__name__, "out": out.tolist()}}))
    """
    result = hub_env.run_json(code, block_imports=["umbert_hf"])
    assert result["cls"] == "BertModel"
    torch.testing.assert_close(torch.tensor(result["out"]), expected, rtol=0, atol=1e-6)
    # and in this process, where transformers was imported before `hub_env` patched the Hub settings
    reloaded = transformers.AutoModel.from_pretrained(repo_id).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(torch.tensor(input_ids)).last_hidden_state, expected, rtol=0, atol=1e-6)
    assert str(hub_env.hf_home) in transformers.utils.cached_file(repo_id, "config.json")


@pytest.mark.slow
def test_datasets_upload_folder_and_push_to_hub_then_load_in_fresh_process(hub_env, tmp_path):
    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    train = {"outfit_id": [1, 2, 3], "items": [[10, 11], [12], [13, 14, 15]]}
    test = {"outfit_id": [4], "items": [[16, 17]]}
    pq.write_table(pa.table(train), folder / "data" / "train.parquet")
    pq.write_table(pa.table(test), folder / "data" / "test.parquet")
    _write(
        folder / "README.md",
        "---\nconfigs:\n- config_name: outfits\n  data_files:\n  - split: train\n    path: data/train.parquet\n"
        "  - split: test\n    path: data/test.parquet\n---\n# Outfits\n",
    )
    api = HfApi()
    repo_id = hub_env.unique_repo_id("outfits")
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset")
    assert (
        hub_env.hub.get_repo(repo_id, "dataset")
        .commits[api.dataset_info(repo_id).sha]
        .files["data/train.parquet"]
        .is_lfs
    )

    pushed_id = hub_env.unique_repo_id("pushed")
    datasets.Dataset.from_dict({"a": [1, 2, 3], "b": ["x", "y", "z"]}).push_to_hub(pushed_id)
    assert any(p.endswith(".parquet") for p in hub_env.hub.list_files(pushed_id, repo_type="dataset"))

    code = f"""
        import json
        import datasets
        ds = datasets.load_dataset({repo_id!r}, "outfits")
        pushed = datasets.load_dataset({pushed_id!r}, split="train")
        print(json.dumps({{
            "splits": sorted(ds),
            "train": ds["train"].to_dict(),
            "test": ds["test"].to_dict(),
            "pushed": pushed.to_dict(),
        }}))
    """
    out = hub_env.run_json(code, block_imports=["umbert_hf"])
    assert out["splits"] == ["test", "train"]
    assert out["train"] == train and out["test"] == test
    assert out["pushed"] == {"a": [1, 2, 3], "b": ["x", "y", "z"]}
    # in this process too (datasets was imported before `hub_env` patched its config)
    local = datasets.load_dataset(repo_id, "outfits", split="test")
    assert local.to_dict() == test
    assert not hub_env.hub.unhandled


def test_mock_hub_standalone_context_manager():
    with MockHub() as hub:
        assert hub.url.startswith("http://127.0.0.1:")
        hub.create_repo("someone/direct", repo_type="dataset")
        sha = hub.add_files("someone/direct", {"a.txt": b"a", "b.parquet": b"PAR1"}, repo_type="dataset")
        assert hub.get_repo("someone/direct", "dataset").commits[sha].files["b.parquet"].is_lfs
        resp = httpx2.get(f"{hub.url}/datasets/someone/direct/resolve/main/b.parquet")
        assert resp.content == b"PAR1" and resp.headers["X-Repo-Commit"] == sha
        url = hub.url
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url, timeout=2)


def test_repo_management(hub_env):
    api = HfApi()
    repo_id = hub_env.unique_repo_id("manage")
    api.create_repo(repo_id)
    assert api.repo_exists(repo_id) and not api.repo_exists(repo_id, repo_type="dataset")
    api.create_commit(
        repo_id,
        operations=[CommitOperationAdd("d/a.txt", b"a"), CommitOperationAdd("d/e/b.txt", b"b")],
        commit_message="add d",
    )
    assert api.file_exists(repo_id, "d/e/b.txt") and not api.file_exists(repo_id, "d/e/c.txt")
    assert api.revision_exists(repo_id, "main") and not api.revision_exists(repo_id, "nope")
    api.delete_folder("d/e", repo_id=repo_id)
    assert api.list_repo_files(repo_id) == [".gitattributes", "d/a.txt"]
    api.update_repo_settings(repo_id, private=True)
    assert api.model_info(repo_id).private is True
    new_id = hub_env.unique_repo_id("moved")
    api.move_repo(repo_id, new_id)
    assert not api.repo_exists(repo_id) and api.list_repo_files(new_id) == [".gitattributes", "d/a.txt"]
    api.delete_repo(new_id)
    assert not api.repo_exists(new_id)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(new_id)
    api.delete_repo(new_id, missing_ok=True)
