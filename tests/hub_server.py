"""A loopback HTTP server that serves Hub-style model folders the way huggingface.co's ``resolve`` endpoint does.

``/{org}/{repo}/resolve/{revision}/{filename}``: small files answer 200 with ``ETag`` (git blob sha1),
``Content-Length`` and ``X-Repo-Commit``; ``*.safetensors`` (LFS) answer 302 to a blob URL with ``X-Linked-Etag``
(the sha256), ``X-Linked-Size`` and ``X-Repo-Commit``, as the Hub redirects LFS files to its CDN. A revision is
served when it is ``main``, the commit, or one of ``tags``. Unknown repos and
files answer 404 with the Hub's ``X-Error-Code``. ``truncate_to`` cuts every LFS body short (a broken transfer).
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class HubServer:
    def __init__(self, repos: dict[str, Path], tags=()):
        self.repos = {k: Path(v) for k, v in repos.items()}  # repo_id -> folder
        self.tags = set(tags)  # revisions served besides main and the commit (a spec's pinned tag)
        self.requests: list[tuple[str, str]] = []
        self.truncate_to: int | None = None
        self.commit = hashlib.sha1(repr(sorted(self.repos)).encode()).hexdigest()
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer

    def log_message(self, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _error(self, code: int, error_code: str, message: str):
        self.send_response(code)
        self.send_header("X-Error-Code", error_code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, body: bool):
        path = unquote(self.path.split("?", 1)[0])
        self.hub.requests.append((self.command, path))
        parts = path.strip("/").split("/")
        if parts[0] == "lfs-blob" and len(parts) >= 4:  # /lfs-blob/{org}/{repo}/{filename}
            return self._send_file(parts[1] + "/" + parts[2], "/".join(parts[3:]), body, lfs_blob=True)
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(404, "RepoNotFound", "Repository not found")
        repo_id, revision, filename = parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:])
        if revision not in ("main", self.hub.commit, *self.hub.tags):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._send_file(repo_id, filename, body, lfs_blob=False)

    def _send_file(self, repo_id: str, filename: str, body: bool, lfs_blob: bool):
        folder = self.hub.repos.get(repo_id)
        if folder is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        file = folder / filename
        if not file.is_file():
            return self._error(404, "EntryNotFound", f"{filename} does not exist on main")
        data = file.read_bytes()
        is_lfs = filename.endswith(".safetensors")
        if is_lfs and not lfs_blob:  # the Hub redirects LFS files to a CDN URL and names the blob in X-Linked-*
            self.send_response(302)
            self.send_header("Location", f"{self.hub.url}/lfs-blob/{repo_id}/{filename}")
            self.send_header("X-Repo-Commit", self.hub.commit)
            self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'W/"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = hashlib.sha256(data).hexdigest() if is_lfs else \
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        self.send_response(200)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", self.hub.commit)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if body:
            if is_lfs and self.hub.truncate_to is not None:
                data = data[: self.hub.truncate_to]
                self.close_connection = True
            self.wfile.write(data)
