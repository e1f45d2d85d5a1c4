"""Outputs that appear complete or not at all, even after kill -9 or power loss.

Every writer writes to a temporary name in the target's folder (unique per writer: a concurrent
or killed writer never shares it), fsyncs the data, renames it over the target and fsyncs the
folder. A file or a folder (save_pretrained) alike.
"""

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"  # temporary names: .<name>.tmp-<pid>-<random>


def temp_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """fsync a file, or every file and folder under a folder."""
    path = Path(path)
    if not path.is_dir():
        _fsync(path)
        return
    for folder, _, files in os.walk(path):
        for name in files:
            _fsync(Path(folder, name))
        _fsync(Path(folder), directory=True)


def commit(tmp: str | Path, path: str | Path) -> None:
    """fsync `tmp` and rename it to `path` (a folder replaces the old folder), then fsync the parent."""
    tmp, path = Path(tmp), Path(path)
    fsync_tree(tmp)
    if tmp.is_dir() and path.is_dir():
        old = temp_path(path)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)
    _fsync(path.parent, directory=True)


def discard(tmp: str | Path) -> None:
    tmp = Path(tmp)
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `path` to (file or folder); committed when the block ends
    without an exception, removed otherwise. The parent folder is created."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def save_pretrained(folder: str | Path, *objects) -> None:
    """`save_pretrained` of each object (model, tokenizer) into `folder`, which appears complete or not at all."""
    with atomic_output(folder) as tmp:
        for obj in objects:
            obj.save_pretrained(tmp)
