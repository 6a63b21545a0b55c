"""Stand-ins for the Hugging Face Hub in the tests: a local Hub cache built by hand, and a small Hub HTTP API.

``cache_repo`` lays a repo out as huggingface_hub's cache does (``models--owner--name/{blobs, refs/<revision>,
snapshots/<commit>/<file>}``, each snapshot file a relative link to its blob), written here from that layout's
description, not by huggingface_hub, so that reading it back tests huggingface_hub's reading and ours.

``FakeHub`` answers the few Hub API calls that creating a repo, committing files, listing them and downloading
them make, on 127.0.0.1 in a thread; point huggingface_hub at it with ``endpoint=`` or ``HF_ENDPOINT``. It keeps
every commit in memory and records every request, so a test can see what was sent and that nothing else was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's content: sha1 of ``blob <size>\\0`` and the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def refuse_connections(monkeypatch: Any) -> list[object]:
    """Refuse every outgoing connection, recording where each tried to go (the list a test checks stays empty)."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def cache_repo(
    cache: Path, repo_id: str, files: Mapping[str, bytes], *, revision: str = "main", commit: str | None = None
) -> Path:
    """Put ``files`` into ``cache`` as huggingface_hub lays out one downloaded commit of a model repo; returns the
    snapshot folder. The commit id is made up (any 40 hex digits do); blobs are named by their content's sha256."""
    commit = commit or hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snapshot


@dataclass
class FakeRepo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit id -> {path: bytes}
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit id
    private: bool = False
    sizes: dict[str, int] = field(default_factory=dict)  # sizes paths-info reports instead of the real ones

    def commit_of(self, revision: str) -> str | None:
        return self.refs.get(revision) or (revision if revision in self.commits else None)


@dataclass
class FakeHub:
    """The Hub API in memory. ``fail`` maps a URL-path prefix to the status its requests get (401, 500, …)."""

    repos: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    authorizations: list[str] = field(default_factory=list)  # the Authorization header of every request ("" if none)
    fail: dict[str, int] = field(default_factory=dict)
    cards: list[str] = field(default_factory=list)  # the README texts sent to /api/validate-yaml
    url: str = ""

    def add_commit(self, repo_id: str, files: Mapping[str, bytes], branch: str = "main") -> str:
        repo = self.repos.setdefault(repo_id, FakeRepo())
        parent = repo.commits.get(repo.refs.get(branch, ""), {})
        tree = {**parent, **files}
        commit = hashlib.sha1(repr((branch, sorted(tree.items()), len(repo.commits))).encode()).hexdigest()
        repo.commits[commit] = tree
        repo.refs[branch] = commit
        return commit

    def paths(self, *prefixes: str) -> list[str]:
        """The request paths that start with one of ``prefixes``."""
        return [path for _, path in self.requests if path.startswith(prefixes)]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: object, headers: Mapping[str, str] | None = None) -> None:
            self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _not_found(self, code: str) -> None:
            self._json(404, {"error": code}, {"X-Error-Code": code, "X-Error-Message": code})

        def _body(self) -> bytes:
            return self.body

        def _route(self) -> None:
            self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # read first: keep-alive
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path))
            hub.authorizations.append(self.headers.get("Authorization") or "")
            for prefix, status in hub.fail.items():
                if path.startswith(prefix):
                    return self._json(status, {"error": f"status {status}"})
            if path == "/api/repos/create" and self.command == "POST":
                body = json.loads(self._body() or b"{}")
                repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
                repo = hub.repos.setdefault(repo_id, FakeRepo(private=bool(body.get("private"))))
                if not repo.refs:
                    hub.add_commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs\n"})
                return self._json(200, {"url": f"{hub.url}/{repo_id}"})
            if path == "/api/validate-yaml" and self.command == "POST":
                hub.cards.append(json.loads(self._body())["content"])
                return self._json(200, {"warnings": [], "errors": []})
            if path.startswith("/api/models/"):
                return self._api(path.removeprefix("/api/models/"))
            parts = path.lstrip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            self._not_found("EntryNotFound")

        def _api(self, rest: str) -> None:
            owner, name, *tail = rest.split("/")
            repo = hub.repos.get(f"{owner}/{name}")
            if repo is None:
                return self._not_found("RepoNotFound")
            action, revision = (tail[0], "/".join(tail[1:])) if tail else ("revision", "main")
            if action == "branch" and self.command == "POST":
                repo.refs.setdefault(revision, repo.refs["main"])
                return self._json(200, {})
            if action == "preupload":
                files = json.loads(self._body())["files"]
                answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                return self._json(200, {"files": answer})
            if action == "commit":
                lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
                added = {
                    item["value"]["path"]: base64.b64decode(item["value"]["content"])
                    for item in lines
                    if item["key"] == "file"
                }
                commit = hub.add_commit(f"{owner}/{name}", added, revision)
                return self._json(200, {"commitUrl": f"{hub.url}/{owner}/{name}/commit/{commit}", "commitOid": commit})
            commit = repo.commit_of(revision)
            if commit is None:
                return self._json(404, {"error": "no revision"}, {"X-Error-Code": "RevisionNotFound"})
            tree = repo.commits[commit]
            if action == "revision":
                siblings = [{"rfilename": p} for p in tree]
                return self._json(200, {"id": f"{owner}/{name}", "sha": commit, "siblings": siblings, "private": False})
            if action == "paths-info":
                wanted = parse_qs(self._body().decode())["paths"]
                sized = {p: repo.sizes.get(p, len(tree[p])) for p in wanted if p in tree}
                listed = [{**self._entry(p, tree[p]), "size": size} for p, size in sized.items()]
                return self._json(200, listed)
            if action == "tree":
                return self._json(200, [self._entry(p, data) for p, data in tree.items()])
            self._not_found("EntryNotFound")

        @staticmethod
        def _entry(path: str, data: bytes) -> dict[str, object]:
            return {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}

        def _resolve(self, repo_id: str, revision: str, path: str) -> None:
            repo = hub.repos.get(repo_id)
            commit = repo.commit_of(revision) if repo else None
            if repo is None or commit is None or path not in repo.commits[commit]:
                return self._not_found("EntryNotFound")
            data = repo.commits[commit][path]
            headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_id(data)}"'}
            self._send(200, data, headers)

        do_GET = do_POST = do_HEAD = _route

    return Handler


@contextmanager
def fake_hub() -> Iterator[FakeHub]:
    """A :class:`FakeHub` serving on 127.0.0.1 at a free port until the block ends."""
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
