"""Reading raw shards defensively: every line becomes a record or a quarantine entry, never nothing."""

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codeparrot.raw import RAW_COLUMNS, normalise_record

# str.split() treats these ASCII characters as whitespace (the original's "".join(content.split())).
ASCII_WHITESPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


@dataclass
class BadLine:
    """A line that cannot become a record; kept byte for byte in the quarantine file."""

    line: int
    reason: str
    detail: str
    raw: bytes

    def to_json(self, shard: str) -> str:
        # surrogateescape + JSON's \udcXX escapes keep invalid UTF-8 lossless: raw.encode("utf-8", "surrogateescape").
        return json.dumps({
            "shard": shard, "line": self.line, "reason": self.reason, "detail": self.detail,
            "bytes": len(self.raw), "raw": self.raw.decode("utf-8", "surrogateescape"),
        })


def iter_gzip_lines(path: str | Path, chunk_size: int = 1 << 20) -> Iterator[tuple[bytes, bool]]:
    """Yield (line without newline, complete) from a gzip file, multi-member aware.

    A truncated last member does not lose what came before it: the partial tail is yielded with
    complete=False. A file that is not gzip at all raises with its name.
    """
    decoder = zlib.decompressobj(wbits=31)
    fed = False  # whether the current member got any input (a fresh one at EOF is no truncation)
    pending = b""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            while block:
                fed = True
                try:
                    data = decoder.decompress(block)
                except zlib.error as e:
                    raise ValueError(f"{path}: not a readable gzip file ({e}); re-export or remove this shard") from None
                block = b""
                if decoder.eof:  # next gzip member (concatenated exports)
                    block = decoder.unused_data
                    decoder, fed = zlib.decompressobj(wbits=31), False
                if b"\n" in data:
                    *lines, pending = (pending + data).split(b"\n")
                    for line in lines:
                        yield line, True
                else:
                    pending += data
    truncated = fed and not decoder.eof
    if pending or truncated:
        yield pending, not truncated


def parse_line(raw: bytes, number: int, max_line_bytes: int) -> dict | BadLine:
    """One NDJSON line -> normalised record, or the reason it cannot be one."""
    if len(raw) > max_line_bytes:
        return BadLine(number, "line_too_long", f"{len(raw)} bytes > clean.max_line_bytes={max_line_bytes}", raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return BadLine(number, "invalid_utf8", str(e), raw)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        return BadLine(number, "malformed_json", str(e), raw)
    if not isinstance(record, dict) or not all(k in record for k in RAW_COLUMNS):
        missing = [k for k in RAW_COLUMNS if not isinstance(record, dict) or k not in record]
        return BadLine(number, "missing_columns", f"missing {missing}", raw)
    content = record["content"]
    if not isinstance(content, str):
        return BadLine(number, "invalid_record", f"content is {type(content).__name__}, not a string", raw)
    if "\x00" in content:
        return BadLine(number, "nul_bytes", "content contains NUL bytes (binary file)", raw)
    try:
        record = normalise_record(record)
    except (TypeError, ValueError) as e:
        return BadLine(number, "invalid_record", str(e), raw)
    if not isinstance(record["repo_name"], str) or not isinstance(record["path"], str):
        return BadLine(number, "invalid_record", "repo_name and path must be strings", raw)
    return record


def read_shard(path: str | Path, max_line_bytes: int) -> Iterator[dict | BadLine]:
    """Records and bad lines of one raw shard, with 1-based line numbers."""
    number = 0
    for raw, complete in iter_gzip_lines(path):
        number += 1
        if not complete:
            yield BadLine(number, "truncated_gzip", "the gzip stream ends inside this line", raw)
        elif raw.strip():
            yield parse_line(raw, number, max_line_bytes)


def strip_whitespace(content: str) -> bytes:
    """The content with all whitespace removed, as UTF-8 (the original's dedup normalisation)."""
    if content.isascii():
        return content.encode("ascii").translate(None, ASCII_WHITESPACE)
    return "".join(content.split()).encode("utf-8")


def content_hash(content: str) -> str:
    """md5 of the content without whitespace, like the original; equal code reindented is equal."""
    return hashlib.md5(strip_whitespace(content)).hexdigest()


def bucket_of(hash_hex: str, num_buckets: int) -> int:
    return int(hash_hex[:15], 16) % num_buckets


def open_quarantine(path: str | Path) -> gzip.GzipFile:
    """Gzipped NDJSON of bad lines (see BadLine.to_json); empty when the shard was clean."""
    return gzip.GzipFile(path, "wb", mtime=0)
