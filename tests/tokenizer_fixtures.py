"""Small real inputs for the tokenizer, model and pretokenize tests: standard-library Python
files written in the published dataset layout, and a tokenizer trained on them."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from train_fixtures import stdlib_python_files

ADVERSARIAL = [
    "def f():\n\treturn 1\n",                                  # tabs
    "if x:\n    a = 1\n\tb = 2\n  \t c = 3\n",                   # mixed indentation
    "x = 1\r\ny = 2\r\n\r\n",                                    # CRLF
    "s = 'naïve café — 日本語 😀'\n# ünïcödé\n",                  # non-ASCII
    'EOS = "<|endoftext|>"\nsplit = text.split("<|endoftext|>")\n',  # literal special token
    "<|endoftext|>",
    "   \n\n\n\t\t\t   \x0b\x0c\n",                              # whitespace only
    "a" * 5000,                                                 # a very long run
    "",
    "\ufeff# BOM\nprint('\\u0000', '\x00')\n",                   # BOM and NUL
]


def corpus(count: int = 150) -> list[str]:
    return stdlib_python_files(count)


def write_dataset(folder: Path, splits: dict[str, list[list[str]]], row_group_size: int = 16) -> dict[str, list[Path]]:
    """data/{split}-0000i-of-0000n.parquet, one file per list of texts (small row groups: several batches)."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    files = {}
    for split, parts in splits.items():
        files[split] = []
        for i, texts in enumerate(parts):
            path = folder / "data" / f"{split}-{i:05d}-of-{len(parts):05d}.parquet"
            pq.write_table(pa.table({"content": texts}), path, row_group_size=row_group_size)
            files[split].append(path)
    return files


def small_dataset(folder: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """130 train files in two parquet files, 20 validation files in one."""
    texts = corpus()
    return write_dataset(folder, {"train": [texts[:80], texts[80:130]], "validation": [texts[130:]]}), texts
