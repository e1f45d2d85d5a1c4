"""A local stand-in for the Hugging Face Hub's HTTP API, for the tests (run: python hub.py ROOT PORT TOKENS_JSON).

It speaks the endpoints that huggingface_hub and datasets use to push and read repositories:
whoami, repo create, branch create, refs, commits, revision info, preupload, the NDJSON commit,
the git-LFS batch API with basic transfer, tree / paths-info listings, README YAML validation and
file resolve (HEAD and GET with Range). It is not Xet-enabled: the Xet token endpoint answers
with an error telling the client to use basic LFS (huggingface_hub with hf_xet installed goes Xet
without asking the server, so the tests set HF_HUB_DISABLE_XET=1).

Everything received is stored under ROOT: per repository a `repo.json` (refs and commits, each
commit a full path -> blob map) and its blobs by sha256 in `objects/`. TOKENS_JSON maps token ->
{"user": name, "orgs": [...], "role": "write" | "read"}. Test hooks under /_stand_in/: `faults`
(`drop_lfs_uploads`: {oid: N} drops the connection in the
middle of the next N uploads of that LFS object) and `stats` (LFS uploads received).
"""

import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_THRESHOLD = 10 * 1024 * 1024
LFS_SUFFIXES = (".parquet", ".arrow", ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npy", ".zip", ".gz", ".zst")
TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LOCK = threading.RLock()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class Store:
    """Repositories on disk; every change under LOCK, repo.json rewritten atomically."""

    def __init__(self, root: Path):
        self.root = root

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def load(self, repo_type: str, repo_id: str) -> dict:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        if not path.is_file():
            raise HubError(404, f"Repository {repo_type}s/{repo_id} not found", "RepoNotFound")
        return json.loads(path.read_text())

    def save(self, repo_type: str, repo_id: str, repo: dict) -> None:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def object_path(self, repo_type: str, repo_id: str, sha256: str) -> Path:
        return self.repo_dir(repo_type, repo_id) / "objects" / sha256

    def put_object(self, repo_type: str, repo_id: str, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.object_path(repo_type, repo_id, sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{sha256}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha256

    def commit_of(self, repo: dict, revision: str) -> dict:
        commit_id = repo["refs"].get(revision, revision if revision in repo["commits"] else None)
        if commit_id is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo["commits"][commit_id]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HubStandIn/1"

    # -- plumbing -----------------------------------------------------------------------------
    def log_message(self, format, *args):  # the tests read the log: no tokens are in it (headers are not logged)
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")

    @property
    def store(self) -> Store:
        return self.server.store

    @property
    def endpoint(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if raw is None:
            self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def fail(self, error: HubError) -> None:
        headers = {"X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        self.send(error.status, {"error": error.message, **error.extra}, headers)

    def user(self, write: bool = False) -> dict | None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        if token is None:
            if write:
                raise HubError(401, "Invalid credentials in Authorization header: a token is required")
            return None
        user = self.server.tokens.get(token)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        if write and user["role"] != "write":
            raise HubError(403, "This token has read-only access: writing needs a token with the write role")
        return user

    def may_write(self, repo_id: str) -> None:
        user = self.user(write=True)
        namespace = repo_id.split("/")[0]
        if namespace != user["user"] and namespace not in user.get("orgs", []):
            raise HubError(403, f"You don't have the rights to write to {repo_id}: namespace {namespace} is not yours")

    def route(self, method: str):
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = unquote(url.path)
        routes = [
            ("GET", r"/api/whoami-v2", self.whoami),
            ("POST", r"/api/repos/create", self.create_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("POST", r"/_stand_in/faults", self.set_faults),
            ("GET", r"/_stand_in/stats", self.stats),
            ("PUT", r"/_lfs/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})", self.lfs_put),
            ("POST", r"/_lfs/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})/verify", self.lfs_verify),
            ("POST", r"/(?:(?P<p>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", self.lfs_batch),
            ("GET", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/xet-(?:write|read)-token/(?P<rev>.+)", self.xet_token),
            ("POST", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>.+)", self.create_branch),
            ("POST", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>.+)", self.preupload),
            ("POST", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>.+)", self.commit),
            ("POST", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>.+)", self.paths_info),
            ("GET", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/refs", self.refs),
            ("GET", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/commits/(?P<rev>.+)", self.commits),
            ("GET", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self.tree),
            ("GET", r"/api/(?P<t>\w+)s/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>.+))?", self.info),
            ("GET", r"/(?:(?P<p>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
             self.resolve),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and (verb == method or (verb == "GET" and method == "HEAD")):
                args = {k: v for k, v in match.groupdict().items()}
                if "t" in args:
                    if args["t"] + "s" not in TYPES:
                        break
                    args["t"] = TYPES[args.pop("t") + "s"]
                elif "p" in args:
                    args["t"] = {None: "model", "datasets": "dataset", "spaces": "space"}[args.pop("p")]
                return handler, args
        return None, {}

    def handle_any(self, method: str) -> None:
        handler, args = self.route(method)
        try:
            if handler is None:
                self.body()
                raise HubError(404, f"no route for {method} {urlsplit(self.path).path}")
            handler(**args)
        except HubError as error:
            self.fail(error)
        except ConnectionError:
            self.close_connection = True

    def do_GET(self):
        self.handle_any("GET")

    def do_HEAD(self):
        self.handle_any("HEAD")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    # -- account and repositories -------------------------------------------------------------
    def whoami(self):
        user = self.user()
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        self.send(200, {
            "type": "user", "name": user["user"], "orgs": [{"name": o, "type": "org"} for o in user.get("orgs", [])],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": user["role"]}},
        })

    def create_repo(self):
        payload = json.loads(self.body() or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.user(write=True)['user']}/{payload['name']}"
        self.may_write(repo_id)
        url = f"{self.endpoint}/{PREFIX[repo_type]}{repo_id}"
        with LOCK:
            if (self.store.repo_dir(repo_type, repo_id) / "repo.json").exists():
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}", url=url)
            root = self.new_commit({}, None, "initial commit", {})
            repo = {"private": payload.get("visibility") == "private" or bool(payload.get("private")),
                    "refs": {"main": root["id"]}, "commits": {root["id"]: root}}
            self.store.save(repo_type, repo_id, repo)
        self.send(200, {"url": url, "name": repo_id, "id": repo_id})

    def create_branch(self, t, repo, rev):
        payload = json.loads(self.body() or b"{}")
        self.may_write(repo)
        with LOCK:
            data = self.store.load(t, repo)
            if rev in data["refs"]:
                raise HubError(409, f"Reference already exists: refs/heads/{rev}")
            start = self.store.commit_of(data, payload.get("startingPoint") or "main")
            data["refs"][rev] = start["id"]
            self.store.save(t, repo, data)
        self.send(200, {})

    def readable(self, t, repo) -> dict:
        data = self.store.load(t, repo)
        if data["private"]:
            user = self.user()
            if user is None or (repo.split("/")[0] != user["user"] and repo.split("/")[0] not in user.get("orgs", [])):
                raise HubError(404, f"Repository {t}s/{repo} not found", "RepoNotFound")
        return data

    def refs(self, t, repo):
        data = self.readable(t, repo)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(data["refs"].items())]
        self.send(200, {"branches": branches, "tags": [], "converts": []})

    def commits(self, t, repo, rev):
        data = self.readable(t, repo)
        commit, history = self.store.commit_of(data, rev), []
        while commit is not None:
            history.append({"id": commit["id"], "title": commit["title"], "message": commit["description"],
                            "authors": [{"user": commit["author"]}], "date": commit["date"]})
            commit = data["commits"].get(commit["parent"]) if commit["parent"] else None
        self.send(200, history)

    def info(self, t, repo, rev=None):
        data = self.readable(t, repo)
        commit = self.store.commit_of(data, rev or "main")
        files = sorted(commit["files"])
        card = self.card_data(t, repo, commit)
        self.send(200, {
            "_id": hashlib.md5(repo.encode()).hexdigest()[:24], "id": repo, "author": repo.split("/")[0],
            "sha": commit["id"], "lastModified": commit["date"], "createdAt": commit["date"],
            "private": data["private"], "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
            "cardData": card,
            "siblings": [{"rfilename": f} for f in files],
            "usedStorage": sum(commit["files"][f]["size"] for f in files),
        })

    def card_data(self, t, repo, commit) -> dict | None:
        entry = commit["files"].get("README.md")
        if entry is None:
            return None
        text = self.store.object_path(t, repo, entry["sha256"]).read_text()
        match = re.match(r"---\n(.*?)\n---\n", text, re.S)
        return yaml.safe_load(match.group(1)) if match else None

    def xet_token(self, t, repo, rev):
        raise HubError(400, f"{t}s/{repo} is not Xet-enabled on this Hub stand-in: use basic LFS transfer "
                            "(set HF_HUB_DISABLE_XET=1)")

    def validate_yaml(self):
        payload = json.loads(self.body() or b"{}")
        match = re.match(r"---\n(.*?)\n---\n", payload.get("content", ""), re.S)
        errors = []
        if match:
            try:
                metadata = yaml.safe_load(match.group(1))
                if not isinstance(metadata, dict):
                    errors.append("YAML metadata is not a mapping")
                for config in (metadata or {}).get("configs", []) if isinstance(metadata, dict) else []:
                    if not isinstance(config, dict) or "config_name" not in config or "data_files" not in config:
                        errors.append(f'"configs" entry needs config_name and data_files: {config!r}')
            except yaml.YAMLError as error:
                errors.append(f"Invalid YAML: {error}")
        self.send(400 if errors else 200, {"errors": [{"message": m} for m in errors], "warnings": []})

    # -- upload ------------------------------------------------------------------------------
    def preupload(self, t, repo, rev):
        payload = json.loads(self.body())
        self.may_write(repo)
        commit = self.store.commit_of(self.store.load(t, repo), rev)
        files = []
        for f in payload["files"]:
            lfs = (f["size"] >= LFS_THRESHOLD or f["path"].endswith(LFS_SUFFIXES)
                   or b"\0" in base64.b64decode(f["sample"]))
            remote = commit["files"].get(f["path"])
            oid = None if remote is None else (remote["sha256"] if remote["lfs"] else remote["oid"])
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        self.send(200, {"files": files, "commitOid": commit["id"]})

    def lfs_batch(self, t, repo):
        payload = json.loads(self.body())
        self.may_write(repo)
        self.store.load(t, repo)
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.store.object_path(t, repo, obj["oid"]).exists():
                href = f"{self.endpoint}/_lfs/{t}s/{repo}/{obj['oid']}"
                entry["actions"] = {"upload": {"href": href, "header": {}, "expires_in": 3600},
                                    "verify": {"href": f"{href}/verify", "header": {}}}
            objects.append(entry)
        self.send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def lfs_put(self, t, repo, oid):
        length = int(self.headers.get("Content-Length") or 0)
        with LOCK:
            drops = self.server.faults.get("drop_lfs_uploads", {})
            drop = drops.get(oid, 0) > 0
            if drop:
                drops[oid] -= 1
        if drop:  # a network drop: half the body arrives, then the connection is gone
            self.rfile.read(length // 2)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        data = self.rfile.read(length)
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"LFS object {oid}: received bytes do not match the oid")
        self.store.put_object(t, repo, data)
        with LOCK:
            self.server.lfs_puts[oid] = self.server.lfs_puts.get(oid, 0) + 1
        self.send(200, {})

    def lfs_verify(self, t, repo, oid):
        self.body()
        if not self.store.object_path(t, repo, oid).exists():
            raise HubError(404, f"LFS object {oid} not found")
        self.send(200, {})

    def new_commit(self, files: dict, parent: str | None, title: str, author: str | dict,
                   description: str = "") -> dict:
        date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        digest = json.dumps([files, parent, title, description, date], sort_keys=True).encode()
        return {"id": hashlib.sha1(digest).hexdigest(), "parent": parent, "title": title, "description": description,
                "author": author or "", "date": date, "files": files}

    def commit(self, t, repo, rev):
        lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
        user = self.user(write=True)
        self.may_write(repo)
        header = next(item["value"] for item in lines if item["key"] == "header")
        with LOCK:
            data = self.store.load(t, repo)
            parent = self.store.commit_of(data, rev)
            if header.get("parentCommit") and header["parentCommit"] != parent["id"]:
                raise HubError(412, f"A commit has happened since {header['parentCommit']}")
            files = dict(parent["files"])
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    content = (base64.b64decode(value["content"]) if value.get("encoding") == "base64"
                               else value["content"].encode())
                    sha256 = self.store.put_object(t, repo, content)
                    files[value["path"]] = {"sha256": sha256, "size": len(content), "lfs": False,
                                            "oid": git_blob_oid(content)}
                elif key == "lfsFile":
                    if not self.store.object_path(t, repo, value["oid"]).exists():
                        raise HubError(400, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    files[value["path"]] = {"sha256": value["oid"], "size": value["size"], "lfs": True,
                                            "oid": git_blob_oid(lfs_pointer(value["oid"], value["size"]))}
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(prefix)}
            commit = self.new_commit(files, parent["id"], header["summary"], user["user"],
                                     header.get("description", ""))
            data["commits"][commit["id"]] = commit
            data["refs"][rev if rev in data["refs"] else "main"] = commit["id"]
            self.store.save(t, repo, data)
        url = f"{self.endpoint}/{PREFIX[t]}{repo}/commit/{commit['id']}"
        self.send(200, {"success": True, "commitOid": commit["id"], "commitUrl": url,
                        "commitMessage": header["summary"]})

    # -- read --------------------------------------------------------------------------------
    def entry(self, path: str, f: dict | None, expand: bool, commit: dict) -> dict:
        if f is None:
            return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        entry = {"type": "file", "oid": f["oid"], "size": f["size"], "path": path}
        if f["lfs"]:
            entry["lfs"] = {"oid": f["sha256"], "size": f["size"],
                            "pointerSize": len(lfs_pointer(f["sha256"], f["size"]))}
        if expand:
            entry["lastCommit"] = {"id": commit["id"], "title": commit["title"], "date": commit["date"]}
            entry["securityFileStatus"] = {"status": "safe"}
        return entry

    def listing(self, commit: dict, folder: str, recursive: bool, expand: bool) -> list[dict]:
        folder = folder.strip("/")
        prefix = f"{folder}/" if folder else ""
        out, dirs = [], set()
        for path in sorted(commit["files"]):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                directory = prefix + "/".join(parts[:depth])
                if directory not in dirs and (recursive or depth == 1):
                    dirs.add(directory)
                    out.append(self.entry(directory, None, expand, commit))
            if recursive or len(parts) == 1:
                out.append(self.entry(path, commit["files"][path], expand, commit))
        return out

    def tree(self, t, repo, rev, path=None):
        commit = self.store.commit_of(self.readable(t, repo), unquote(rev))
        path = (path or "").strip("/")
        if path and path not in commit["files"] and not any(p.startswith(path + "/") for p in commit["files"]):
            raise HubError(404, f"{path} does not exist in {rev}", "EntryNotFound")
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        self.send(200, self.listing(commit, path, recursive, self.query.get("expand", "").lower() in ("1", "true")))

    def paths_info(self, t, repo, rev):
        raw = self.body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(raw)
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(raw.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[-1].lower() in ("1", "true")
        commit = self.store.commit_of(self.readable(t, repo), rev)
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit["files"]:
                out.append(self.entry(path, commit["files"][path], expand, commit))
            elif any(p.startswith(path + "/") for p in commit["files"]):
                out.append(self.entry(path, None, expand, commit))
        self.send(200, out)

    def resolve(self, t, repo, rev, path):
        commit = self.store.commit_of(self.readable(t, repo), unquote(rev))
        f = commit["files"].get(path)
        if f is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        blob = self.store.object_path(t, repo, f["sha256"])
        size = f["size"]
        headers = {"X-Repo-Commit": commit["id"], "ETag": f'"{f["sha256"] if f["lfs"] else f["oid"]}"',
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if f["lfs"]:
            headers.update({"X-Linked-Etag": f'"{f["sha256"]}"', "X-Linked-Size": str(size)})
        start, end, status = 0, size - 1, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match:
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start = max(size - int(match.group(2)), 0)
            if start >= size and size:
                self.send(416, {"error": "range not satisfiable"}, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(end - start + 1, 0)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "GET" and length:
            with open(blob, "rb") as handle:
                handle.seek(start)
                self.wfile.write(handle.read(length))

    # -- test hooks --------------------------------------------------------------------------
    def set_faults(self):
        with LOCK:
            self.server.faults.update(json.loads(self.body()))
        self.send(200, self.server.faults)

    def stats(self):
        with LOCK:
            self.send(200, {"lfs_puts": dict(self.server.lfs_puts)})


def serve(root: str, port: int, tokens: dict) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.store, server.tokens, server.faults, server.lfs_puts = Store(Path(root)), tokens, {}, {}
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text()))
