"""In-memory mock of the Hugging Face Hub HTTP protocol, for tests.

`MockHub` runs a standard-library `ThreadingHTTPServer` on ``127.0.0.1`` (random free port) and speaks enough of the
Hub protocol for the real `huggingface_hub` client, `transformers` (``from_pretrained`` / ``push_to_hub``) and
`datasets` (``load_dataset`` / ``push_to_hub``) to work against it. Everything lives in memory.

Implemented (``{t}`` is ``models``, ``datasets`` or ``spaces``; ``{repo}`` is ``namespace/name``):

* ``GET  /api/whoami-v2``, ``GET /api/agent-harnesses``
* ``POST /api/repos/create`` (409 when the repo exists), ``DELETE /api/repos/delete``, ``POST /api/repos/move``
* ``POST /api/validate-yaml``
* ``GET  /api/{t}/{repo}`` and ``/api/{t}/{repo}/revision/{rev}`` (``sha``, ``siblings``, ``cardData``, ``blobs``,
  ``expand``)
* ``POST /api/{t}/{repo}/preupload/{rev}``, ``POST /api/{t}/{repo}/commit/{rev}`` (NDJSON; ``create_pr``)
* ``GET  /api/{t}/{repo}/tree/{rev}[/{path}]`` (``recursive``, ``expand``, cursor pagination through ``Link``)
* ``POST /api/{t}/{repo}/paths-info/{rev}``, ``GET /api/{t}/{repo}/refs``, ``GET /api/{t}/{repo}/commits/{rev}``
* ``POST|DELETE /api/{t}/{repo}/branch/{branch}``, ``POST /api/{t}/{repo}/tag/{rev}``,
  ``DELETE /api/{t}/{repo}/tag/{tag}``, ``PUT /api/{t}/{repo}/settings``
* ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` and the upload/verify URLs it hands out (basic and multipart)
* ``HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}`` (``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``,
  ``X-Linked-Size``, ``Content-Length``, single ``Range`` -> 206 / 416)

404s carry Hub-style ``X-Error-Code`` headers (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and a JSON
``{"error": ...}`` body. Xet is not implemented: run clients with ``HF_HUB_DISABLE_XET=1``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

try:  # pyyaml is a dependency of the project, but keep the server importable without it
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

__all__ = ["MockHub", "HubRepo", "HubCommit", "HubFile", "RequestRecord", "DEFAULT_USER"]

DEFAULT_USER = "dummy-user"
REPO_TYPES = ("model", "dataset", "space")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*$", re.DOTALL | re.MULTILINE)

# Patterns tracked with LFS in the `.gitattributes` of a freshly created repo (a subset of what the Hub writes).
_LFS_PATTERNS = [
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lz4", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst",
    "*tfevents*", "*.jpg", "*.jpeg", "*.png", "*.webp", "*.gif", "*.mp3", "*.wav", "*.flac",
]  # fmt: skip
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS).encode()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob (what the Hub reports as `oid`/`blobId` and as ETag of non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


def parse_front_matter(text: str) -> tuple[dict | None, str | None]:
    """Return ``(metadata, error)`` of the YAML front matter of a repo card (``(None, None)`` when there is none)."""
    match = _FRONT_MATTER_RE.match(text)
    if match is None:
        return None, None
    if yaml is None:  # pragma: no cover
        return {}, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return None, f"Invalid YAML in README.md: {err}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return None, "YAML metadata in README.md must be a mapping"
    return data, None


def validate_card_metadata(data: dict, repo_type: str) -> list[str]:
    """A few of the Hub's server-side checks on card metadata. Returns error messages."""
    errors = []
    if repo_type == "dataset" and "configs" in data:
        configs = data["configs"]
        if not isinstance(configs, list):
            errors.append('"configs" must be a list')
        else:
            names = []
            for config in configs:
                if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
                    errors.append('"configs" items must be mappings with a string "config_name"')
                    continue
                names.append(config["config_name"])
                data_files = config.get("data_files")
                if data_files is not None and not isinstance(data_files, (str, list)):
                    errors.append(f'"data_files" of config "{config["config_name"]}" must be a string or a list')
                if isinstance(data_files, list):
                    for item in data_files:
                        if isinstance(item, dict) and not ("split" in item and "path" in item):
                            errors.append('"data_files" items must have "split" and "path"')
            if len(names) != len(set(names)):
                errors.append('"config_name" values must be unique')
    for key in ("tags", "language"):
        value = data.get(key)
        if value is not None and not isinstance(value, (str, list)):
            errors.append(f'"{key}" must be a string or a list of strings')
    if "license" in data and not isinstance(data["license"], str):
        errors.append('"license" must be a string')
    return errors


# --------------------------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubFile:
    """A file in a commit. `content` is set for regular files; LFS content lives in `HubRepo.lfs_objects`."""

    size: int
    oid: str  # git blob id (of the content, or of the LFS pointer)
    content: bytes | None = None
    lfs_sha256: str | None = None
    pointer_size: int | None = None

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None

    @classmethod
    def regular(cls, content: bytes) -> HubFile:
        return cls(size=len(content), oid=git_blob_sha1(content), content=content)

    @classmethod
    def lfs(cls, sha256: str, size: int) -> HubFile:
        pointer = lfs_pointer(sha256, size)
        return cls(size=size, oid=git_blob_sha1(pointer), lfs_sha256=sha256, pointer_size=len(pointer))


@dataclass
class HubCommit:
    oid: str
    parents: list[str]
    title: str
    message: str
    date: datetime
    files: dict[str, HubFile]
    author: str = DEFAULT_USER


@dataclass
class HubRepo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: datetime
    commits: dict[str, HubCommit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    gated: Any = False

    @property
    def url_path(self) -> str:
        return _URL_PREFIX[self.repo_type] + self.repo_id

    def resolve(self, revision: str) -> str | None:
        """Commit sha of a branch, tag, ``refs/pr/N``, ``refs/heads/x``, ``refs/tags/x`` or full commit sha."""
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision.startswith("refs/heads/"):
            return self.branches.get(revision[len("refs/heads/") :])
        if revision.startswith("refs/tags/"):
            return self.tags.get(revision[len("refs/tags/") :])
        match = re.fullmatch(r"refs/pr/(\d+)", revision)
        if match:
            return self.pull_requests.get(int(match.group(1)))
        if _SHA_RE.match(revision) and revision in self.commits:
            return revision
        return None

    def history(self, sha: str) -> list[HubCommit]:
        """First-parent history, newest first."""
        out = []
        current: str | None = sha
        while current is not None:
            commit = self.commits[current]
            out.append(commit)
            current = commit.parents[0] if commit.parents else None
        return out

    def read(self, path: str, revision: str = "main") -> bytes:
        sha = self.resolve(revision)
        if sha is None:
            raise KeyError(f"revision {revision!r} not found")
        entry = self.commits[sha].files[path]
        return entry.content if entry.content is not None else self.lfs_objects[entry.lfs_sha256]


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int
    headers: dict[str, str]


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, body=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.body = body


def _not_found_repo(repo_type: str, repo_id: str) -> HubError:
    return HubError(404, f"Repository Not Found: {repo_type} {repo_id}", "RepoNotFound")


def _not_found_revision(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


# --------------------------------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------------------------------


class MockHub:
    """In-memory Hub server. Use as a context manager or call `start()` / `stop()`.

    Args:
        user: name of the dummy user returned by ``/api/whoami-v2`` (and namespace of repos created without one).
        valid_tokens: accepted bearer tokens. ``None`` (default) accepts any token starting with ``hf_``.
        lfs_threshold: files strictly larger than this (bytes) must go through LFS (Hub: 10 MiB).
        multipart_threshold: LFS objects larger than this are uploaded with the multipart protocol (``None``: never).
        multipart_chunk_size: part size for multipart uploads.
        page_size: entries per page for tree listings (the Hub uses 1000; 50 with ``expand``).
    """

    def __init__(
        self,
        *,
        user: str = DEFAULT_USER,
        valid_tokens: list[str] | None = None,
        lfs_threshold: int = 10 * 1024 * 1024,
        multipart_threshold: int | None = None,
        multipart_chunk_size: int = 5 * 1024 * 1024,
        page_size: int = 1000,
        host: str = "127.0.0.1",
    ):
        self.user = user
        self.valid_tokens = valid_tokens
        self.lfs_threshold = lfs_threshold
        self.multipart_threshold = multipart_threshold
        self.multipart_chunk_size = multipart_chunk_size
        self.page_size = page_size
        self.host = host
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.requests: list[RequestRecord] = []
        self.unhandled: list[str] = []
        self._uploads: dict[str, dict] = {}
        self._counter = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("MockHub is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def start(self) -> MockHub:
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        server = ThreadingHTTPServer((self.host, 0), handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="MockHub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> MockHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every repo and recorded request (the server keeps running)."""
        with self.lock:
            self.repos.clear()
            self.requests.clear()
            self.unhandled.clear()
            self._uploads.clear()

    # ----------------------------------------------------------------------------------------------- direct helpers
    def repo_url(self, repo_id: str, repo_type: str = "model") -> str:
        return f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}"

    def get_repo(self, repo_id: str, repo_type: str = "model") -> HubRepo:
        with self.lock:
            try:
                return self.repos[(repo_type, repo_id)]
            except KeyError:
                raise KeyError(f"no {repo_type} repo {repo_id!r} on the mock Hub") from None

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> HubRepo:
        """Create a repo directly (no HTTP), with the initial ``.gitattributes`` commit like the Hub."""
        if repo_type not in REPO_TYPES:
            raise ValueError(f"invalid repo type {repo_type!r}")
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise ValueError(f"{repo_type} repo {repo_id!r} already exists")
            repo = HubRepo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
            sha = self._make_commit(
                repo, None, {".gitattributes": HubFile.regular(DEFAULT_GITATTRIBUTES)}, "initial commit", ""
            )
            repo.branches["main"] = sha
            self.repos[(repo_type, repo_id)] = repo
            return repo

    def add_files(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        repo_type: str = "model",
        revision: str = "main",
        message: str = "Add files",
        lfs: bool | None = None,
    ) -> str:
        """Commit files directly (no HTTP). ``lfs=None`` applies the same rule as the preupload endpoint."""
        with self.lock:
            repo = self.get_repo(repo_id, repo_type)
            head = repo.branches[revision]
            tree = dict(repo.commits[head].files)
            for path, data in files.items():
                as_lfs = (
                    lfs
                    if lfs is not None
                    else (len(data) > 0 and self._wants_lfs(repo, tree, path, len(data), data[:512]))
                )
                if as_lfs:
                    sha256 = hashlib.sha256(data).hexdigest()
                    repo.lfs_objects[sha256] = data
                    tree[path] = HubFile.lfs(sha256, len(data))
                else:
                    tree[path] = HubFile.regular(data)
            sha = self._make_commit(repo, head, tree, message, "")
            repo.branches[revision] = sha
            return sha

    def read_file(self, repo_id: str, path: str, *, repo_type: str = "model", revision: str = "main") -> bytes:
        with self.lock:
            return self.get_repo(repo_id, repo_type).read(path, revision)

    def list_files(self, repo_id: str, *, repo_type: str = "model", revision: str = "main") -> list[str]:
        with self.lock:
            repo = self.get_repo(repo_id, repo_type)
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(f"revision {revision!r} not found")
            return sorted(repo.commits[sha].files)

    def requests_matching(self, method: str | None = None, contains: str = "") -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    # ----------------------------------------------------------------------------------------------- internals
    def _make_commit(
        self, repo: HubRepo, parent: str | None, files: dict[str, HubFile], title: str, message: str
    ) -> str:
        digest = hashlib.sha1()
        digest.update(f"{parent}\n{title}\n{message}\n{next(self._counter)}\n{secrets.token_hex(8)}\n".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].oid}\n".encode())
        sha = digest.hexdigest()
        repo.commits[sha] = HubCommit(
            oid=sha, parents=[parent] if parent else [], title=title, message=message, date=_now(), files=files
        )
        return sha

    def _lfs_patterns(self, tree: dict[str, HubFile], repo: HubRepo) -> list[str]:
        entry = tree.get(".gitattributes")
        if entry is None:
            return []
        content = entry.content if entry.content is not None else repo.lfs_objects.get(entry.lfs_sha256, b"")
        patterns = []
        for line in content.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
                patterns.append(parts[0])
        return patterns

    def _wants_lfs(self, repo: HubRepo, tree: dict[str, HubFile], path: str, size: int, sample: bytes) -> bool:
        if size > self.lfs_threshold or b"\x00" in sample:
            return True
        basename = path.rsplit("/", 1)[-1]
        for pattern in self._lfs_patterns(tree, repo):
            pattern = pattern.lstrip("/")
            target = path if "/" in pattern else basename
            if fnmatch.fnmatchcase(target, pattern) or fnmatch.fnmatchcase(target, pattern.replace("**/", "")):
                return True
        return False

    def _check_token(self, token: str) -> bool:
        if self.valid_tokens is not None:
            return token in self.valid_tokens
        return token.startswith("hf_")


def _gitignore_match(patterns: list[str], path: str) -> bool:
    ignored = False
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
        pattern = pattern.strip("/")
        candidates = [path] if anchored else [path, *path.split("/")]
        prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/"))]
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates) or any(
            fnmatch.fnmatchcase(p if anchored else p.rsplit("/", 1)[-1], pattern) for p in prefixes
        ):
            ignored = not negate
    return ignored


class _Handler(BaseHTTPRequestHandler):
    hub: MockHub  # set on the bound subclass
    protocol_version = "HTTP/1.1"
    server_version = "MockHub/1.0"
    timeout = 120

    # ----------------------------------------------------------------------------------------------- plumbing
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        self.method = method
        self.response: tuple[int, bytes, dict] | None = None
        self.body = self._read_body() if method in ("POST", "PUT", "DELETE") else b""
        split = urlsplit(self.path)
        self.raw_segments = [s for s in split.path.split("/") if s != ""]
        self.query = parse_qs(split.query, keep_blank_values=True)
        try:
            self._route()  # builds `self.response` (under the hub lock)
        except HubError as err:
            self._send_error(err)
        except Exception as err:  # pragma: no cover - surfaced to the client as a 500
            self._send_error(HubError(500, f"MockHub internal error: {type(err).__name__}: {err}"))
        status, body, headers = self.response or (500, b"", {"Content-Length": "0"})
        with hub.lock:
            hub.requests.append(RequestRecord(method, self.path, status, dict(self.headers.items())))
        # Written outside the lock: a slow reader of a large body must not block other requests.
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, str(value))
            self.end_headers()
            if method != "HEAD" and body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str | None = None):
        headers = dict(headers or {})
        if content_type:
            headers.setdefault("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))
        self.response = (status, body, headers)

    def _json(self, data: Any, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers, "application/json; charset=utf-8")

    def _send_error(self, err: HubError) -> None:
        message = " ".join(err.message.encode("ascii", "replace").decode().split())[:300]
        headers = {"X-Error-Message": message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        body = err.body if err.body is not None else {"error": err.message}
        self._json(body, err.status, headers)

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise HubError(400, "Invalid JSON body") from None

    def _param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    # ----------------------------------------------------------------------------------------------- auth
    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not self.hub._check_token(token.strip()):
            raise HubError(401, "Invalid credentials in Authorization header")
        return token.strip()

    def _require_write(self) -> None:
        if self._token() is None:
            raise HubError(401, "You must be authenticated to perform this action (missing Authorization header)")

    def _repo(self, repo_type: str, repo_id: str, *, write: bool = False) -> HubRepo:
        token = self._token()
        if write and token is None:
            raise HubError(401, "You must be authenticated to perform this action (missing Authorization header)")
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and token is None):
            raise _not_found_repo(repo_type, repo_id)
        return repo

    # ----------------------------------------------------------------------------------------------- routing
    def _route(self) -> None:
        seg = self.raw_segments
        m = self.method
        with self.hub.lock:
            if seg[:1] == ["api"]:
                return self._route_api(seg[1:], m)
            if seg[:1] == ["__lfs__"]:
                return self._route_lfs_transfer(seg[1:], m)
            repo_type = "model"
            rest = seg
            if seg and seg[0] in ("datasets", "spaces"):
                repo_type, rest = _API_PLURAL[seg[0]], seg[1:]
            if len(rest) >= 4 and rest[2] == "resolve" and m in ("GET", "HEAD"):
                return self._resolve(repo_type, f"{rest[0]}/{rest[1]}", rest[3:])
            if len(rest) == 6 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
                if m == "POST":
                    return self._lfs_batch(repo_type, f"{rest[0]}/{rest[1][: -len('.git')]}")
        self._unhandled()

    def _unhandled(self) -> None:
        with self.hub.lock:
            self.hub.unhandled.append(f"{self.method} {self.path}")
        raise HubError(404, f"MockHub: no route for {self.method} {urlsplit(self.path).path}")

    def _route_api(self, seg: list[str], m: str) -> None:
        if seg == ["whoami-v2"] and m == "GET":
            return self._whoami()
        if seg == ["agent-harnesses"] and m == "GET":
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if seg == ["repos", "create"] and m == "POST":
            return self._create_repo()
        if seg == ["repos", "delete"] and m == "DELETE":
            return self._delete_repo()
        if seg == ["repos", "move"] and m == "POST":
            return self._move_repo()
        if seg == ["validate-yaml"] and m == "POST":
            return self._validate_yaml()
        if len(seg) >= 3 and seg[0] in _API_PLURAL:
            repo_type = _API_PLURAL[seg[0]]
            repo_id = f"{unquote(seg[1])}/{unquote(seg[2])}"
            action, args = (seg[3] if len(seg) > 3 else None), seg[4:]
            if action is None and m == "GET":
                return self._repo_info(repo_type, repo_id, "main")
            if action == "revision" and m == "GET" and args:
                return self._repo_info(repo_type, repo_id, self._revision_arg(args)[0])
            if action == "preupload" and m == "POST" and args:
                return self._preupload(repo_type, repo_id, self._revision_arg(args)[0])
            if action == "commit" and m == "POST" and args:
                return self._commit(repo_type, repo_id, self._revision_arg(args)[0])
            if action == "tree" and m == "GET" and args:
                revision, rest = self._revision_arg(args)
                return self._tree(repo_type, repo_id, revision, "/".join(unquote(s) for s in rest).strip("/"))
            if action == "paths-info" and m == "POST" and args:
                return self._paths_info(repo_type, repo_id, self._revision_arg(args)[0])
            if action == "refs" and m == "GET" and not args:
                return self._refs(repo_type, repo_id)
            if action == "commits" and m == "GET" and args:
                return self._commits(repo_type, repo_id, self._revision_arg(args)[0])
            if action == "branch" and args and m in ("POST", "DELETE"):
                return self._branch(repo_type, repo_id, unquote("/".join(args)), m)
            if action == "tag" and args and m in ("POST", "DELETE"):
                return self._tag(repo_type, repo_id, unquote("/".join(args)), m)
            if action == "settings" and m == "PUT" and not args:
                return self._settings(repo_type, repo_id)
            if action in ("xet-write-token", "xet-read-token"):
                raise HubError(501, "MockHub does not implement Xet storage: run the client with HF_HUB_DISABLE_XET=1")
            if action == "parquet" and repo_type == "dataset":
                self._repo(repo_type, repo_id)
                raise _not_found_revision("refs/convert/parquet")
        self._unhandled()

    @staticmethod
    def _revision_arg(args: list[str]) -> tuple[str, list[str]]:
        """Split the revision (one quoted segment, or unquoted ``refs/pr/N``-like) from the remaining segments."""
        first = unquote(args[0])
        if first == "refs" and len(args) >= 3:
            return "/".join(unquote(a) for a in args[:3]), args[3:]
        return first, args[1:]

    # ----------------------------------------------------------------------------------------------- users & repos
    def _whoami(self) -> None:
        token = self._token()
        if token is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        user = self.hub.user
        self._json(
            {
                "type": "user",
                "id": hashlib.md5(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user.replace("-", " ").title(),
                "email": f"{user}@example.com",
                "emailVerified": True,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "mock-token", "role": "write"}},
            }
        )

    def _create_repo(self) -> None:
        self._require_write()
        payload = self._json_body()
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            raise HubError(400, '"name" is required')
        name = payload["name"]
        namespace = payload.get("organization") or self.hub.user
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        for part in (namespace, name):
            if not _NAME_RE.match(part) or "--" in part or ".." in part:
                raise HubError(400, f"Invalid repo name: {namespace}/{name}")
        if repo_type == "space" and not payload.get("sdk"):
            raise HubError(400, "Space SDK is required")
        repo_id = f"{namespace}/{name}"
        url = self.hub.repo_url(repo_id, repo_type)
        if (repo_type, repo_id) in self.hub.repos:
            raise HubError(
                409,
                f"You already created this {repo_type} repo",
                body={"error": f"You already created this {repo_type} repo", "url": url},
            )
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = self.hub.create_repo(repo_id, repo_type, private=private)
        self._json(
            {
                "url": url,
                "name": repo_id,
                "id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "sha": repo.branches["main"],
            }
        )

    def _delete_repo(self) -> None:
        self._require_write()
        payload = self._json_body() or {}
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload.get('name')}"
        self._repo(repo_type, repo_id, write=True)
        del self.hub.repos[(repo_type, repo_id)]
        self._json({})

    def _move_repo(self) -> None:
        self._require_write()
        payload = self._json_body() or {}
        repo_type = payload.get("type") or "model"
        src, dst = payload.get("fromRepo"), payload.get("toRepo")
        repo = self._repo(repo_type, src, write=True)
        if not isinstance(dst, str) or dst.count("/") != 1:
            raise HubError(400, f"Invalid target repo id: {dst}")
        if (repo_type, dst) in self.hub.repos:
            raise HubError(409, f"Repository {dst} already exists")
        del self.hub.repos[(repo_type, src)]
        repo.repo_id = dst
        self.hub.repos[(repo_type, dst)] = repo
        self._json({})

    def _settings(self, repo_type: str, repo_id: str) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        payload = self._json_body() or {}
        if "private" in payload:
            repo.private = bool(payload["private"])
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        if "gated" in payload:
            repo.gated = payload["gated"]
        self._json({})

    def _validate_yaml(self) -> None:
        payload = self._json_body()
        if not isinstance(payload, dict) or not isinstance(payload.get("content"), str):
            raise HubError(400, '"content" is required', body={"errors": [{"message": '"content" is required'}]})
        data, error = parse_front_matter(payload["content"])
        errors = [error] if error else validate_card_metadata(data or {}, payload.get("repoType") or "model")
        if errors:
            raise HubError(400, errors[0], body={"errors": [{"message": e} for e in errors], "warnings": []})
        warnings = [] if data else [{"message": "empty or missing yaml metadata in repo card"}]
        self._json({"errors": [], "warnings": warnings})

    # ----------------------------------------------------------------------------------------------- read API
    def _commit_at(self, repo: HubRepo, revision: str) -> HubCommit:
        sha = repo.resolve(revision)
        if sha is None:
            raise _not_found_revision(revision)
        return repo.commits[sha]

    def _card_data(self, repo: HubRepo, commit: HubCommit) -> dict | None:
        entry = commit.files.get("README.md")
        if entry is None:
            return None
        content = entry.content if entry.content is not None else repo.lfs_objects.get(entry.lfs_sha256, b"")
        data, _ = parse_front_matter(content.decode("utf-8", "replace"))
        return data

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision)
        blobs = _truthy(self._param("blobs"))
        siblings = []
        for path in sorted(commit.files):
            entry = commit.files[path]
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.is_lfs:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.lfs_sha256, "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        card = self._card_data(repo, commit)
        info: dict[str, Any] = {
            "_id": hashlib.md5(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card.get("tags") or []) if card and isinstance(card.get("tags"), list) else [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if card is not None:
            info["cardData"] = card
        if repo_type == "model":
            info["modelId"] = repo_id
            if card and card.get("library_name"):
                info["library_name"] = card["library_name"]
            if card and card.get("pipeline_tag"):
                info["pipeline_tag"] = card["pipeline_tag"]
            config_entry = commit.files.get("config.json")
            if config_entry is not None and config_entry.content is not None:
                try:
                    config = json.loads(config_entry.content)
                    info["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
                except ValueError:
                    pass
        elif repo_type == "space":
            info["sdk"] = (card or {}).get("sdk", "gradio")
        expand = self.query.get("expand") or self.query.get("expand[]")
        if expand:
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
        self._json(info)

    def _entry_json(self, repo: HubRepo, commit: HubCommit, path: str, expand: bool) -> dict:
        entry = commit.files.get(path)
        if entry is not None:
            out: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
            if entry.is_lfs:
                out["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size, "pointerSize": entry.pointer_size}
            if expand:
                out["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
        else:
            prefix = path + "/"
            children = sorted((p, e.oid) for p, e in commit.files.items() if p.startswith(prefix))
            tree_oid = hashlib.sha1(repr(children).encode()).hexdigest()
            out = {"type": "directory", "oid": tree_oid, "size": 0, "path": path}
        if expand:
            last = self._last_commit(repo, commit, path)
            out["lastCommit"] = {"id": last.oid, "title": last.title, "date": _iso(last.date)}
        return out

    @staticmethod
    def _snapshot_of(commit: HubCommit, path: str):
        if path in commit.files:
            return commit.files[path].oid
        prefix = path + "/"
        return tuple(sorted((p, e.oid) for p, e in commit.files.items() if p.startswith(prefix)))

    def _last_commit(self, repo: HubRepo, commit: HubCommit, path: str) -> HubCommit:
        current = self._snapshot_of(commit, path)
        last = commit
        for older in repo.history(commit.oid)[1:]:
            if self._snapshot_of(older, path) != current:
                break
            last = older
        return last

    @staticmethod
    def _dirs(commit: HubCommit) -> set[str]:
        dirs = set()
        for path in commit.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return dirs

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision)
        recursive = _truthy(self._param("recursive"))
        expand = _truthy(self._param("expand"))
        dirs = self._dirs(commit)
        if path and path not in dirs:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        prefix = path + "/" if path else ""
        names = [p for p in list(commit.files) + sorted(dirs) if p.startswith(prefix) and p != path]
        if not recursive:
            names = [p for p in names if "/" not in p[len(prefix) :]]
        names.sort(key=lambda p: (p not in dirs, p))
        page_size = min(self.hub.page_size, 50) if expand else self.hub.page_size
        limit = self._param("limit")
        if limit and limit.isdigit():
            page_size = max(1, min(page_size, int(limit)))
        cursor = self._param("cursor") or "0"
        if not cursor.isdigit():
            raise HubError(400, "Invalid cursor")
        start = int(cursor)
        page = names[start : start + page_size]
        headers = {}
        if start + page_size < len(names):
            params = {k: v[-1] for k, v in self.query.items() if k != "cursor"}
            params["cursor"] = str(start + page_size)
            next_url = f"{self.hub.url}{urlsplit(self.path).path}?{urlencode(params)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._json([self._entry_json(repo, commit, p, expand) for p in page], headers=headers)

    def _form_or_json(self) -> dict[str, list]:
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            data = self._json_body() or {}
            return {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision)
        data = self._form_or_json()
        paths = [str(p).strip("/") for p in data.get("paths", [])]
        expand = any(_truthy(str(v)) for v in data.get("expand", []))
        dirs = self._dirs(commit)
        out = [
            self._entry_json(repo, commit, p, expand) for p in dict.fromkeys(paths) if p in commit.files or p in dirs
        ]
        self._json(out)

    def _refs(self, repo_type: str, repo_id: str) -> None:
        repo = self._repo(repo_type, repo_id)

        def ref(name: str, full: str, sha: str) -> dict:
            return {"name": name, "ref": full, "targetCommit": sha}

        out: dict[str, Any] = {
            "branches": [ref(n, f"refs/heads/{n}", s) for n, s in sorted(repo.branches.items())],
            "converts": [],
            "tags": [ref(n, f"refs/tags/{n}", s) for n, s in sorted(repo.tags.items())],
        }
        if _truthy(self._param("include_prs")):
            out["pullRequests"] = [
                ref(f"refs/pr/{n}", f"refs/pr/{n}", s) for n, s in sorted(repo.pull_requests.items())
            ]
        self._json(out)

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision)
        items = [
            {
                "id": c.oid,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": c.author, "avatar": None}],
                "date": _iso(c.date),
                "formatted": {"title": c.title, "message": c.message},
            }
            for c in repo.history(commit.oid)
        ]
        self._json(items)

    def _branch(self, repo_type: str, repo_id: str, branch: str, method: str) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        if method == "DELETE":
            if branch not in repo.branches:
                raise _not_found_revision(branch)
            if branch == "main":
                raise HubError(403, "Cannot delete the default branch")
            del repo.branches[branch]
            return self._json({})
        if not branch or branch.startswith("refs/") or not re.fullmatch(r"[A-Za-z0-9._/-]+", branch):
            raise HubError(400, f"Invalid branch name: {branch}")
        if branch in repo.branches:
            raise HubError(409, f"Branch {branch} already exists")
        payload = self._json_body() or {}
        start = payload.get("startingPoint") or "main"
        repo.branches[branch] = self._commit_at(repo, start).oid
        self._json({})

    def _tag(self, repo_type: str, repo_id: str, name: str, method: str) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        if method == "DELETE":
            if name not in repo.tags:
                raise _not_found_revision(name)
            del repo.tags[name]
            return self._json({})
        payload = self._json_body() or {}
        tag = payload.get("tag")
        if not isinstance(tag, str) or not tag:
            raise HubError(400, '"tag" is required')
        if tag in repo.tags:
            raise HubError(409, f"Tag {tag} already exists")
        repo.tags[tag] = self._commit_at(repo, name).oid
        self._json({})

    # ----------------------------------------------------------------------------------------------- write API
    def _writable_head(self, repo: HubRepo, revision: str) -> tuple[str, str | None]:
        """Return ``(ref kind/name, head sha)`` for a revision one can commit to."""
        if revision in repo.branches:
            return revision, repo.branches[revision]
        match = re.fullmatch(r"refs/pr/(\d+)", revision)
        if match and int(match.group(1)) in repo.pull_requests:
            return revision, repo.pull_requests[int(match.group(1))]
        if revision in repo.tags or repo.resolve(revision) is not None:
            raise HubError(400, f"Cannot commit to {revision}: not a branch")
        raise _not_found_revision(revision)

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        create_pr = _truthy(self._param("create_pr"))
        _, head = self._writable_head(repo, "main" if create_pr else revision)
        tree = repo.commits[head].files
        payload = self._json_body()
        if not isinstance(payload, dict) or not isinstance(payload.get("files"), list):
            raise HubError(400, '"files" must be a list')
        if len(payload["files"]) > 256:
            raise HubError(400, "Too many files in a single preupload call (max 256)")
        gitignore = payload.get("gitIgnore")
        if gitignore is None and ".gitignore" in tree and tree[".gitignore"].content is not None:
            gitignore = tree[".gitignore"].content.decode("utf-8", "replace")
        ignore_patterns = gitignore.splitlines() if isinstance(gitignore, str) else []
        out = []
        for item in payload["files"]:
            if not (isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("size"), int)):
                raise HubError(400, 'each file needs a string "path" and an integer "size"')
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=True)
            except ValueError:
                raise HubError(400, f"Invalid base64 sample for {item['path']}") from None
            path = item["path"]
            lfs = self.hub._wants_lfs(repo, tree, path, item["size"], sample)
            existing = tree.get(path)
            oid = None
            if existing is not None:
                oid = existing.lfs_sha256 if existing.is_lfs else existing.oid
            out.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": _gitignore_match(ignore_patterns, path),
                    "oid": oid,
                }
            )
        self._json({"files": out, "commitOid": head})

    @staticmethod
    def _check_path(path: Any) -> str:
        if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
            raise HubError(400, f"Invalid path: {path!r}")
        parts = path.split("/")
        if any(p in ("", ".", "..", ".git") for p in parts):
            raise HubError(400, f"Invalid path: {path!r}")
        return path

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        hub = self.hub
        repo = self._repo(repo_type, repo_id, write=True)
        create_pr = _truthy(self._param("create_pr"))
        ref, head = self._writable_head(repo, "main" if create_pr else revision)
        try:
            lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        except ValueError:
            raise HubError(400, "Invalid NDJSON payload") from None
        if not lines or lines[0].get("key") != "header" or not isinstance(lines[0].get("value"), dict):
            raise HubError(400, 'The first NDJSON line must be {"key": "header", ...}')
        header = lines[0]["value"]
        title = header.get("summary")
        if not isinstance(title, str) or not title.strip():
            raise HubError(400, "Commit summary is required")
        parent = header.get("parentCommit")
        if parent is not None and parent != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(repo.commits[head].files)
        touched_readme = False
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value")
            if not isinstance(value, dict):
                raise HubError(400, f"Invalid operation: {line}")
            if key == "file":
                path = self._check_path(value.get("path"))
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding for {path}")
                try:
                    content = base64.b64decode(value.get("content") or "", validate=True)
                except ValueError:
                    raise HubError(400, f"Invalid base64 content for {path}") from None
                if len(content) > hub.lfs_threshold:
                    raise HubError(400, f"Your push was rejected because {path} is larger than 10 MiB: use LFS")
                if b"\x00" in content[:512]:
                    raise HubError(400, f"Your push was rejected because {path} is a binary file: use LFS")
                tree[path] = HubFile.regular(content)
                touched_readme |= path == "README.md"
            elif key == "lfsFile":
                path = self._check_path(value.get("path"))
                oid = value.get("oid")
                if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _SHA256_RE.match(oid):
                    raise HubError(400, f"Invalid LFS oid for {path}")
                data = repo.lfs_objects.get(oid)
                if data is None:
                    raise HubError(422, f"Your push was rejected because the LFS object {oid} for {path} is missing")
                if value.get("size") is not None and value["size"] != len(data):
                    raise HubError(422, f"LFS object size mismatch for {path}: {value['size']} != {len(data)}")
                tree[path] = HubFile.lfs(oid, len(data))
                touched_readme |= path == "README.md"
            elif key == "deletedFile":
                path = self._check_path(value.get("path"))
                if path not in tree:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del tree[path]
            elif key == "deletedFolder":
                folder = str(value.get("path") or "").strip("/")
                matched = [p for p in tree if folder == "" or p.startswith(folder + "/")]
                if not matched:
                    raise HubError(404, f"A folder with this name doesn't exist: {folder}", "EntryNotFound")
                for p in matched:
                    del tree[p]
            else:
                raise HubError(400, f"Unknown operation key: {key!r}")
        if touched_readme:
            entry = tree.get("README.md")
            if entry is not None:
                content = entry.content if entry.content is not None else repo.lfs_objects[entry.lfs_sha256]
                data, error = parse_front_matter(content.decode("utf-8", "replace"))
                errors = [error] if error else validate_card_metadata(data or {}, repo_type)
                if errors:
                    raise HubError(400, "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))
        sha = hub._make_commit(repo, head, tree, title, header.get("description") or "")
        pr_url = None
        if create_pr:
            num = max([0, *repo.pull_requests]) + 1
            repo.pull_requests[num] = sha
            pr_url = f"{hub.repo_url(repo.repo_id, repo_type)}/discussions/{num}"
        elif ref.startswith("refs/pr/"):
            repo.pull_requests[int(ref.rsplit("/", 1)[1])] = sha
        else:
            repo.branches[ref] = sha
        self._json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{hub.repo_url(repo.repo_id, repo_type)}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }
        )

    # ----------------------------------------------------------------------------------------------- LFS
    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        hub = self.hub
        repo = self._repo(repo_type, repo_id, write=True)
        payload = self._json_body()
        if not isinstance(payload, dict) or not isinstance(payload.get("objects"), list):
            raise HubError(400, '"objects" must be a list')
        if payload.get("operation") != "upload":
            raise HubError(400, "MockHub only implements the LFS 'upload' operation")
        if payload.get("hash_algo", "sha256") != "sha256":
            raise HubError(400, "Only sha256 is supported")
        transfers = payload.get("transfers") or ["basic"]
        objects = []
        chosen = "basic"
        for obj in payload["objects"]:
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not _SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "Invalid oid or size"}})  # fmt: skip
                continue
            out: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            existing = repo.lfs_objects.get(oid)
            if existing is None or len(existing) != size:
                ticket = secrets.token_hex(16)
                hub._uploads[ticket] = {"repo": (repo_type, repo_id), "oid": oid, "size": size, "parts": {}}
                verify = {"href": f"{hub.url}/__lfs__/verify/{ticket}", "header": {}}
                use_multipart = (
                    hub.multipart_threshold is not None and size > hub.multipart_threshold and "multipart" in transfers
                )
                if use_multipart:
                    chosen = "multipart"
                    chunk = hub.multipart_chunk_size
                    n_parts = max(1, -(-size // chunk))
                    header = {"chunk_size": str(chunk)}
                    header.update({str(i): f"{hub.url}/__lfs__/part/{ticket}/{i}" for i in range(1, n_parts + 1)})
                    upload = {"href": f"{hub.url}/__lfs__/complete/{ticket}", "header": header}
                else:
                    upload = {"href": f"{hub.url}/__lfs__/upload/{ticket}", "header": {}}
                out["actions"] = {"upload": upload, "verify": verify}
            objects.append(out)
        body = {"transfer": chosen, "objects": objects, "hash_algo": "sha256"}
        self._send(200, json.dumps(body).encode(), None, "application/vnd.git-lfs+json")

    def _store_lfs(self, ticket_info: dict, data: bytes) -> None:
        oid, size = ticket_info["oid"], ticket_info["size"]
        if len(data) != size:
            raise HubError(400, f"LFS upload size mismatch: expected {size} bytes, got {len(data)}")
        actual = hashlib.sha256(data).hexdigest()
        if actual != oid:
            raise HubError(400, f"LFS upload sha256 mismatch: expected {oid}, got {actual}")
        repo = self.hub.repos.get(ticket_info["repo"])
        if repo is None:
            raise HubError(404, "Repository was deleted during the upload", "RepoNotFound")
        repo.lfs_objects[oid] = data

    def _route_lfs_transfer(self, seg: list[str], m: str) -> None:
        uploads = self.hub._uploads
        if len(seg) >= 2 and seg[1] in uploads:
            info = uploads[seg[1]]
            if seg[0] == "upload" and len(seg) == 2 and m == "PUT":
                self._store_lfs(info, self.body)
                return self._send(200, b"", {"ETag": f'"{hashlib.md5(self.body).hexdigest()}"'})
            if seg[0] == "part" and len(seg) == 3 and m == "PUT" and seg[2].isdigit():
                info["parts"][int(seg[2])] = self.body
                return self._send(200, b"", {"ETag": f'"{hashlib.md5(self.body).hexdigest()}"'})
            if seg[0] == "complete" and len(seg) == 2 and m == "POST":
                payload = self._json_body() or {}
                parts = payload.get("parts") or []
                if payload.get("oid") != info["oid"]:
                    raise HubError(400, "Multipart completion oid mismatch")
                expected = sorted(info["parts"])
                if [p.get("partNumber") for p in parts] != expected:
                    raise HubError(400, f"Multipart completion parts mismatch: {parts} vs uploaded {expected}")
                for part in parts:
                    want = f'"{hashlib.md5(info["parts"][part["partNumber"]]).hexdigest()}"'
                    if part.get("etag") not in (want, want.strip('"')):
                        raise HubError(400, f"Multipart etag mismatch for part {part['partNumber']}")
                self._store_lfs(info, b"".join(info["parts"][n] for n in expected))
                return self._json({})
            if seg[0] == "verify" and len(seg) == 2 and m == "POST":
                self._require_write()
                payload = self._json_body() or {}
                repo = self.hub.repos.get(info["repo"])
                data = repo.lfs_objects.get(info["oid"]) if repo else None
                if data is None or payload.get("oid") != info["oid"] or payload.get("size") != len(data):
                    raise HubError(404, "LFS object not found or size mismatch")
                uploads.pop(seg[1], None)
                return self._json({})
        self._unhandled()

    # ----------------------------------------------------------------------------------------------- resolve
    def _resolve(self, repo_type: str, repo_id: str, args: list[str]) -> None:
        repo = self._repo(repo_type, repo_id)
        revision, rest = self._revision_arg(args)
        path = "/".join(unquote(s) for s in rest)
        sha = repo.resolve(revision)
        if sha is None:
            raise _not_found_revision(revision)
        commit = repo.commits[sha]
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        data = entry.content if entry.content is not None else repo.lfs_objects[entry.lfs_sha256]
        headers = {
            "X-Repo-Commit": sha,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if entry.is_lfs:
            headers["ETag"] = f'"{entry.lfs_sha256}"'
            headers["X-Linked-Etag"] = f'"{entry.lfs_sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        else:
            headers["ETag"] = f'"{entry.oid}"'
        total = len(data)
        range_header = self.headers.get("Range")
        if range_header and self.method == "GET":
            span = _parse_range(range_header, total)
            if span == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{total}"
                raise HubError(416, "Range Not Satisfiable", headers=headers)
            if span is not None:
                start, end = span
                headers["Content-Range"] = f"bytes {start}-{end}/{total}"
                return self._send(206, data[start : end + 1], headers, "application/octet-stream")
        self._send(200, data, headers, "application/octet-stream")


def _parse_range(header: str, total: int):
    """Parse a single ``bytes=`` range. Returns ``(start, end)`` inclusive, ``None`` to ignore, or "unsatisfiable"."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None:
        return None  # multi-range or malformed: serve the full content, as allowed by RFC 9110
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return max(0, total - length), total - 1
    start = int(first)
    end = int(last) if last else total - 1
    if start >= total or end < start:
        return "unsatisfiable"
    return start, min(end, total - 1)
