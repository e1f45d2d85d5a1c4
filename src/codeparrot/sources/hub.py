"""The `hub` source: an existing dataset of code files (e.g. the original raw CodeParrot data).

Read with `datasets` in streaming mode (nothing is cached in full) from the Hugging Face Hub or
from a local folder in Hub layout, and written as the same raw shards as every other source.
Only `content` is required; missing columns are filled: `repo_name` with the dataset's id (a
local folder's name), `path` with `file-<row index>.<extension>`, `copies` with 1, `license` with
null; `size` is always the UTF-8 byte length of `content`, as in the BigQuery table. Values of
other types are written as they are: the clean stage normalises or quarantines them
(codeparrot.clean.records), as for every source. A private dataset needs HF_TOKEN (or `hf auth login`).
"""

import os
from collections import Counter
from collections.abc import Iterable

from tqdm import tqdm

from codeparrot.raw import RawShardWriter, size_out_of_bounds, write_manifest


def dataset_name(path: str) -> str:
    """The `repo_name` of rows without one: the Hub id, or a local folder's name."""
    return os.path.basename(path.rstrip("/")) if os.path.isdir(path) else path


def hub_records(examples: Iterable[dict], extension: str, min_size: int, max_size: int, skipped: Counter, dataset: str):
    """Yield raw records from dataset rows; rows without text, of another extension or out of bounds are counted."""
    for index, row in enumerate(examples):
        content = row.get("content")
        if not isinstance(content, str):
            skipped["no_content"] += 1
            continue
        path = row.get("path") or f"file-{index:09d}{extension}"
        if isinstance(path, str) and not path.endswith(extension):
            skipped["other_extension"] += 1
            continue
        size = len(content.encode("utf-8"))
        if reason := size_out_of_bounds(size, min_size, max_size):
            skipped[reason] += 1
            continue
        copies = row.get("copies")
        yield {
            "repo_name": row.get("repo_name") or dataset, "path": path, "copies": 1 if copies is None else copies,
            "size": size, "content": content, "license": row.get("license"),
        }


def collect_hub(
    shards_dir: str,
    manifest_path: str,
    path: str,
    split: str = "train",
    extension: str = ".py",
    min_size: int = 1024,
    max_size: int = 1048575,
    max_records: int | None = None,
    shard_bytes: int = 64 << 20,
) -> dict:
    """Stream `split` of the dataset at `path` (Hub id or local folder) into raw shards; return the manifest."""
    from datasets import load_dataset

    if not path:
        raise ValueError("source.hub.path is not set: give a dataset id (e.g. transformersbook/codeparrot) "
                         "or a local folder.")
    stream = load_dataset(path, split=split, streaming=True)
    if stream.column_names is not None and "content" not in stream.column_names:
        raise ValueError(f"{path} has no `content` column (columns: {', '.join(stream.column_names)}); "
                         "it is not a dataset of code files.")
    skipped = Counter()
    with RawShardWriter(shards_dir, shard_bytes) as writer:
        records = hub_records(stream, extension, min_size, max_size, skipped, dataset_name(path))
        desc = f"collect {os.path.basename(path.rstrip('/'))}"
        for kept, record in enumerate(tqdm(records, desc=desc, unit=" files", mininterval=2)):
            if max_records is not None and kept >= max_records:
                break
            writer.write(record)
        shards = writer.close()
    return write_manifest(manifest_path, shards, source="hub", skipped=skipped)
