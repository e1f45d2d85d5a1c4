"""Reading raw shards defensively: every line becomes a record or a quarantine entry, never nothing.

The one reader contract for every source (local, gcs, bigquery, hub): the sources only move
bytes; here each line is checked once. A line is kept when it is a JSON object whose fields have
the expected types, or types whose meaning is unambiguous (normalised: a number as `license`
becomes its string, `copies` given as "3" or 3.0 becomes 3, `size` is always recomputed from the
content). Anything else is quarantined with its reason, shard and line number. Memory is bounded
by `max_line_bytes` and the decompression chunk, whatever the input: an over-long line is
quarantined while it is read, keeping only its first EVIDENCE_BYTES.
"""

import contextlib
import gzip
import hashlib
import json
import re
import zlib

import orjson
from isal import isal_zlib  # ISA-L inflate: faster than zlib, same stream format
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codeparrot.raw import RAW_COLUMNS

# str.split() treats these as whitespace (the original's "".join(content.split())): ASCII ones,
# deleted with bytes.translate, and the non-ASCII ones, removed from the UTF-8 bytes in one regex pass.
ASCII_WHITESPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
UNICODE_WHITESPACE = tuple(chr(c).encode("utf-8") for c in (
    0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000))
UNICODE_WHITESPACE_RE = re.compile(b"|".join(map(re.escape, UNICODE_WHITESPACE)))

# The first bytes of an over-long line kept in the quarantine: enough to find the file it came from.
EVIDENCE_BYTES = 64 << 10
# `size` is recomputed from the content, so it may be absent or of any type.
REQUIRED_COLUMNS = tuple(c for c in RAW_COLUMNS if c != "size")


@dataclass
class BadLine:
    """A line that cannot become a record; kept byte for byte in the quarantine file.

    `length`: the line's full length when `raw` holds only its first bytes (an over-long line,
    or the unreadable rest of a damaged shard)."""

    line: int
    reason: str
    detail: str
    raw: bytes
    length: int | None = None

    def to_json(self, shard: str) -> str:
        # surrogateescape + JSON's \udcXX escapes keep invalid UTF-8 lossless: raw.encode("utf-8", "surrogateescape").
        return json.dumps({
            "shard": shard, "line": self.line, "reason": self.reason, "detail": self.detail,
            "bytes": len(self.raw) if self.length is None else self.length, "raw_complete": self.length is None,
            "raw": self.raw.decode("utf-8", "surrogateescape"),
        })


@dataclass
class Line:
    """One line of a shard as read: `data` is the whole line, or its first bytes when `status` says so."""

    data: bytes
    status: str = "ok"  # ok | too_long (data: first EVIDENCE_BYTES) | truncated_gzip | corrupt_shard
    length: int | None = None  # full length when data is not all of it
    detail: str = ""


class _LineSplitter:
    """Splits decompressed chunks into lines without ever holding more than `max_line_bytes` of one."""

    def __init__(self, max_line_bytes: int):
        self.max = max_line_bytes
        self.pending = bytearray()
        self.overflow = 0  # > 0: length so far of an over-long line (pending keeps its first bytes)

    def _add(self, piece: bytes) -> None:
        if self.overflow:
            self.overflow += len(piece)
        elif len(self.pending) + len(piece) > self.max:
            self.overflow = len(self.pending) + len(piece)
            self.pending += piece[:max(0, EVIDENCE_BYTES - len(self.pending))]
            del self.pending[EVIDENCE_BYTES:]
        else:
            self.pending += piece

    def take(self) -> Line:
        line = Line(bytes(self.pending), "too_long", self.overflow) if self.overflow else Line(bytes(self.pending))
        self.pending.clear()
        self.overflow = 0
        return line

    def feed(self, data: bytes) -> list[Line]:
        *complete, rest = data.split(b"\n")
        lines = []
        for part in complete:
            if not self.pending and not self.overflow and len(part) <= self.max:
                lines.append(Line(part))  # the common case: no copy
            else:
                self._add(part)
                lines.append(self.take())
        self._add(rest)
        return lines

    @property
    def empty(self) -> bool:
        return not self.pending and not self.overflow


def corrupt_shard_error(path, problem: str) -> ValueError:
    return ValueError(
        f"{path}: {problem}. Re-export or re-download this shard (delete it and rerun the source step), or set "
        "source.on_corrupt_shard: quarantine to keep the records before the damage and count the rest as quarantined."
    )


def iter_gzip_lines(path: str | Path, max_line_bytes: int = 8 << 20, max_shard_bytes: int | None = None,
                    on_corrupt: str = "fail", chunk_size: int = 1 << 20) -> Iterator[Line]:
    """The lines of a gzip file (multi-member aware), in bounded memory.

    Each inflate call yields at most `chunk_size` bytes (a gzip bomb cannot blow up memory), and
    more than `max_shard_bytes` decompressed bytes count as a damaged shard. A truncated last
    member does not lose what came before it: its partial tail comes with status truncated_gzip.
    A damaged stream raises naming the file (on_corrupt "fail"), or ends with one corrupt_shard
    line (on_corrupt "quarantine") holding the partial line before the damage as evidence and
    the number of compressed bytes left unread as its length.
    """
    splitter = _LineSplitter(max_line_bytes)
    decoder = isal_zlib.decompressobj(wbits=31)
    fed = False  # whether the current member got any input (a fresh one at EOF is no truncation)
    total = 0
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            while block:
                fed = True
                try:
                    data = decoder.decompress(block, chunk_size)
                    total += len(data)
                    if max_shard_bytes is not None and total > max_shard_bytes:
                        raise ValueError(f"more than clean.max_shard_bytes={max_shard_bytes} bytes once decompressed")
                except (zlib.error, isal_zlib.error, ValueError) as e:
                    problem = f"not a readable gzip file ({e})"
                    if on_corrupt != "quarantine":
                        raise corrupt_shard_error(path, problem) from None
                    unread = size - f.tell() + len(block)
                    evidence = splitter.take()
                    yield Line(evidence.data, "corrupt_shard", unread,
                               f"{problem}; {unread} compressed bytes of {size} left unread")
                    return
                if decoder.eof:  # next gzip member (concatenated exports)
                    block = decoder.unused_data
                    decoder, fed = isal_zlib.decompressobj(wbits=31), False
                else:
                    block = decoder.unconsumed_tail
                yield from splitter.feed(data)
    truncated = fed and not decoder.eof
    if not splitter.empty or truncated:
        line = splitter.take()
        if truncated:
            line.status, line.detail = "truncated_gzip", "the gzip stream ends inside this line"
        yield line


def _json_type(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number")


def _as_int(value) -> int | None:
    """An integer given as int, integral float or decimal string; None when the meaning is not clear."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def check_record(record, normalised: dict) -> dict | tuple[str, str]:
    """The record with its fields normalised, or (reason, detail) when it cannot be one.

    `normalised` counts each normalisation (field_fromtype) made."""
    if not isinstance(record, dict):
        return "not_an_object", f"a JSON {_json_type(record)}, not an object"
    missing = [k for k in REQUIRED_COLUMNS if k not in record]
    if missing:
        return "missing_columns", f"missing {missing}"
    content = record["content"]
    for key in ("content", "repo_name", "path"):
        if not isinstance(record[key], str):
            return "wrong_type", f"{key} is a JSON {_json_type(record[key])}, not a string"
    if "\x00" in content:
        return "nul_bytes", "content contains NUL bytes (binary file)"
    copies = record["copies"]
    if type(copies) is not int:
        copies = _as_int(copies)
        if copies is None:
            return "wrong_type", f"copies is {json.dumps(record['copies'])[:80]}, not an integer"
        key = f"copies_from_{_json_type(record['copies'])}"
        normalised[key] = normalised.get(key, 0) + 1
    license = record["license"]
    if license is not None and not isinstance(license, str):
        if isinstance(license, bool) or not isinstance(license, (int, float)):
            return "wrong_type", f"license is a JSON {_json_type(license)}, not a string or null"
        license = str(license)
        normalised["license_from_number"] = normalised.get("license_from_number", 0) + 1
    return {"repo_name": record["repo_name"], "path": record["path"], "copies": copies, "content": content,
            "license": license}


def parse_line(raw: bytes, number: int, normalised: dict) -> dict | BadLine:
    """One NDJSON line (at most max_line_bytes, see iter_gzip_lines) -> checked record, or the reason
    it cannot be one."""
    try:
        record = orjson.loads(raw)  # validates UTF-8 and rejects lone surrogates
    except orjson.JSONDecodeError as e:
        return diagnose_line(raw, number, str(e))
    result = check_record(record, normalised)
    if isinstance(result, tuple):
        return BadLine(number, *result, raw)
    return result


def diagnose_line(raw: bytes, number: int, error: str) -> BadLine:
    """Why orjson refused a line: invalid UTF-8 (or an escaped lone surrogate), or malformed JSON."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return BadLine(number, "invalid_utf8", str(e), raw)
    return BadLine(number, "invalid_utf8" if "surrogate" in error else "malformed_json", error, raw)


def read_shard(path: str | Path, max_line_bytes: int, max_shard_bytes: int | None = None, on_corrupt: str = "fail",
               normalised: dict | None = None) -> Iterator[dict | BadLine]:
    """Records and bad lines of one raw shard, with 1-based line numbers (blank lines are skipped, not records)."""
    normalised = {} if normalised is None else normalised
    for number, line in enumerate(iter_gzip_lines(path, max_line_bytes, max_shard_bytes, on_corrupt), 1):
        if line.status == "too_long":
            yield BadLine(number, "line_too_long", f"{line.length} bytes > clean.max_line_bytes={max_line_bytes}",
                          line.data, line.length)
        elif line.status != "ok":
            yield BadLine(number, line.status, line.detail, line.data, line.length)
        elif line.data.strip():
            yield parse_line(line.data, number, normalised)


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


@contextlib.contextmanager
def open_quarantine(path: str | Path) -> Iterator[gzip.GzipFile]:
    """Gzipped NDJSON of bad lines (see BadLine.to_json); empty when the shard was clean.

    No name or time in the gzip header: the same bad lines give the same bytes, whatever temporary name is written."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        yield f
