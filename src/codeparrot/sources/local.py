"""The `local` source: Python files from directory trees on this machine.

By default the site-packages of the running environment: tens of thousands of real files,
written by others, each owned by an installed distribution that declares a license.
"""

import os
import sysconfig
from collections import Counter
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from codeparrot.raw import RawShardWriter, size_out_of_bounds, write_manifest


def default_roots() -> list[str]:
    return [sysconfig.get_paths()["purelib"]]


def distribution_license(dist: metadata.Distribution) -> str | None:
    """License from the metadata: SPDX expression, else a one-line License field, else the classifier."""
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return expression.strip()
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 80 and text.upper() != "UNKNOWN":
        return text
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License :: ")]
    return classifiers[0] if classifiers else None


def file_owners(root: str) -> dict[str, tuple[str, str | None]]:
    """Map each file (resolved absolute path) installed in `root` to (distribution, license)."""
    owners = {}
    for dist in sorted(metadata.distributions(path=[root]), key=lambda d: d.metadata["Name"] or ""):
        name = dist.metadata["Name"]
        license = distribution_license(dist)
        for file in dist.files or []:
            owners.setdefault(os.path.normpath(dist.locate_file(file)), (name, license))
    return owners


def walk_python_files(root: str, extension: str, skipped: Counter):
    """Yield (relative posix path, absolute path) in sorted order; symlinks are counted and skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(extension):
                continue
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                skipped["symlink"] += 1
                continue
            yield Path(os.path.relpath(path, root)).as_posix(), path


def collect_local(
    shards_dir: str,
    manifest_path: str,
    roots: list[str] | None = None,
    extension: str = ".py",
    min_size: int = 1024,
    max_size: int = 1048575,
    max_files: int | None = None,
    shard_bytes: int = 64 << 20,
) -> dict:
    """Write the Python files under `roots` as raw shards; return the manifest."""
    roots = [os.path.abspath(r) for r in (roots or default_roots())]
    for root in roots:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"source.local.roots: {root} is not a directory")
    skipped = Counter()
    kept = 0
    with RawShardWriter(shards_dir, shard_bytes) as writer:
        for root in roots:
            owners = file_owners(root)
            files = walk_python_files(root, extension, skipped)
            for relpath, path in tqdm(files, desc=f"collect {root}", unit=" files", mininterval=2):
                if max_files is not None and kept >= max_files:
                    break
                if reason := size_out_of_bounds(os.lstat(path).st_size, min_size, max_size):
                    skipped[reason] += 1
                    continue
                data = Path(path).read_bytes()
                try:
                    content = data.decode("utf-8")
                except UnicodeDecodeError:
                    skipped["undecodable"] += 1
                    continue
                repo_name, license = owners.get(os.path.normpath(path), (relpath.split("/")[0], None))
                writer.write({
                    "repo_name": repo_name, "path": relpath, "copies": 1,
                    "size": len(data), "content": content, "license": license,
                })
                kept += 1
        shards = writer.close()
    return write_manifest(manifest_path, shards, source="local", skipped=skipped)
