"""Reading raw shards defensively: every line becomes a record or a quarantine entry, never nothing."""

import gzip
import hashlib
import json
import re
import zlib

import orjson
from isal import isal_zlib  # ISA-L inflate: ~2.5x zlib's speed, same stream format
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codeparrot.raw import RAW_COLUMNS, normalise_record

# str.split() treats these as whitespace (the original's "".join(content.split())): ASCII ones,
# deleted with bytes.translate, and the non-ASCII ones, removed from the UTF-8 bytes in one regex pass.
ASCII_WHITESPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
UNICODE_WHITESPACE = tuple(chr(c).encode("utf-8") for c in (
    0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000))
UNICODE_WHITESPACE_RE = re.compile(b"|".join(map(re.escape, UNICODE_WHITESPACE)))


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
    decoder = isal_zlib.decompressobj(wbits=31)
    fed = False  # whether the current member got any input (a fresh one at EOF is no truncation)
    pending = b""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            while block:
                fed = True
                try:
                    data = decoder.decompress(block)
                except (zlib.error, isal_zlib.error) as e:
                    raise ValueError(f"{path}: not a readable gzip file ({e}); re-export or remove this shard") from None
                block = b""
                if decoder.eof:  # next gzip member (concatenated exports)
                    block = decoder.unused_data
                    decoder, fed = isal_zlib.decompressobj(wbits=31), False
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
    if len(raw) <= max_line_bytes:
        # Fast path (orjson validates UTF-8 and rejects lone surrogates); anything odd is
        # diagnosed by the slow path below, which names the reason.
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            record = None
        if (isinstance(record, dict) and isinstance(record.get("content"), str) and "\x00" not in record["content"]
                and all(k in record for k in RAW_COLUMNS) and isinstance(record["repo_name"], str)
                and isinstance(record["path"], str)):
            try:
                return normalise_record(record)
            except (TypeError, ValueError):
                pass
    return diagnose_line(raw, number, max_line_bytes)


def diagnose_line(raw: bytes, number: int, max_line_bytes: int) -> dict | BadLine:
    """The slow, explicit path: which check a line fails (or the record, if it passes them all)."""
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
        content.encode("utf-8")
    except UnicodeEncodeError as e:  # a JSON escape of a lone surrogate (\ud800)
        return BadLine(number, "invalid_utf8", f"escaped lone surrogate: {e}", raw)
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


def strip_whitespace(content: str, encoded: bytes | None = None) -> bytes:
    """The content with all whitespace removed, as UTF-8 (the original's dedup normalisation).

    `encoded`: the content's UTF-8 bytes, when the caller has them already."""
    data = (content.encode("utf-8", "surrogatepass") if encoded is None else encoded).translate(None, ASCII_WHITESPACE)
    return data if content.isascii() else UNICODE_WHITESPACE_RE.sub(b"", data)


def content_hash(content: str) -> str:
    """md5 of the content without whitespace, like the original; equal code reindented is equal."""
    return hashlib.md5(strip_whitespace(content)).hexdigest()


def bucket_of(hash_hex: str, num_buckets: int) -> int:
    return int(hash_hex[:15], 16) % num_buckets


def open_quarantine(path: str | Path) -> gzip.GzipFile:
    """Gzipped NDJSON of bad lines (see BadLine.to_json); empty when the shard was clean."""
    return gzip.GzipFile(path, "wb", mtime=0)
