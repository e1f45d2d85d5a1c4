"""Reduce step per hash bucket: exact dedup, heuristic filters, decontamination, license.

Every record with a given content hash is in this bucket, so the result is the same for any
number of raw shards and any order of them. Rows come out sorted by hash.
"""

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codeparrot.atomic import atomic_output
from codeparrot.clean.decontaminate import benchmark_text
from codeparrot.clean.examples import EXAMPLES_PER_REASON, trigger_lines
from codeparrot.clean.filters import STAT_COLUMNS, Filters, removal_reason
from codeparrot.clean.partition import PARTITION_SCHEMA, read_partition_bucket
from codeparrot.clean.stats import HISTOGRAM_EDGES, counter_dict, histogram, write_stats
from codeparrot.clean.token_counter import TokenCounter, char_token_ratios

# Tie-breaks after the hash make the representative independent of input order.
REPRESENTATIVE_ORDER = [("hash", "ascending"), ("repo_name", "ascending"), ("path", "ascending"),
                        ("license", "ascending"), ("copies", "ascending"), ("content", "ascending")]
OUTPUT_COLUMNS = ["repo_name", "path", "copies", "size", "content", "license", "hash",
                  *(name for name, _ in STAT_COLUMNS), "char_token_ratio", "exact_copies"]
REMOVED_SCHEMA = pa.schema([("repo_name", pa.string()), ("path", pa.string()), ("hash", pa.string()),
                            ("reason", pa.string()), ("detail", pa.string())])


def read_bucket(partition_paths: list[str], bucket: int) -> pa.Table:
    batches = [b for p in partition_paths for b in read_partition_bucket(p, bucket)]
    return pa.Table.from_batches(batches, PARTITION_SCHEMA).drop_columns(["bucket"])


def exact_dedup(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Row index of one representative per hash (smallest repo_name, path, ...) in hash order,
    and how many copies it had."""
    order = pc.sort_indices(table.select([k for k, _ in REPRESENTATIVE_ORDER]),
                            REPRESENTATIVE_ORDER).to_numpy().astype(np.int64)
    hashes = table["hash"].take(order).to_numpy(zero_copy_only=False)
    first = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]]) if len(hashes) else np.array([], dtype=np.int64)
    return order[first], np.diff(np.r_[first, len(hashes)])


def take_in_slices(table: pa.Table, rows: np.ndarray, sizes: np.ndarray, slice_bytes: int = 8 << 20):
    """`table.take(rows)` as (start, stop, rows[start:stop] taken) with about `slice_bytes` of content
    each: every slice reuses the memory of the one before (touching fresh memory costs more than
    the copy itself; see take_rows). `sizes`: content bytes per row of `table`."""
    ends = np.cumsum(sizes[rows])
    cuts = np.unique(np.searchsorted(ends, np.arange(slice_bytes, ends[-1] if len(ends) else 0, slice_bytes),
                                     side="right"))
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(rows)]):
        yield start, stop, take_rows(table, rows[start:stop])


def write_rows(table: pa.Table, rows: np.ndarray, extra: dict[str, pa.Array], sizes: np.ndarray, path: str) -> None:
    """`table.take(rows)` plus the `extra` columns (aligned with `rows`) as parquet, a slice at a time."""
    # No dictionary or statistics for the content: they cost a pass over it and help no reader.
    small = [name for name in OUTPUT_COLUMNS if name != "content"]
    with atomic_output(path) as tmp, pq.ParquetWriter(tmp, output_schema(table, extra), compression="lz4",
                                                      use_dictionary=small, write_statistics=small) as writer:
        for start, stop, part in take_in_slices(table, rows, sizes):
            for name, values in extra.items():
                part = part.append_column(name, values[start:stop])
            writer.write_table(part.select(OUTPUT_COLUMNS))


def take_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """`table.take(rows)` copying only the taken rows: Arrow's take on a chunked table concatenates
    the chunks first, a copy of the whole bucket. Takes from each chunk, then restores the order."""
    batches = table.to_batches()
    starts = np.cumsum([0] + [b.num_rows for b in batches])
    batch_of = np.searchsorted(starts, rows, side="right") - 1
    by_batch = np.argsort(batch_of, kind="stable")
    grouped_rows, grouped_batch = rows[by_batch], batch_of[by_batch]
    parts = [batches[k].take(grouped_rows[grouped_batch == k] - starts[k]) for k in np.unique(grouped_batch)]
    return pa.Table.from_batches(parts, table.schema).combine_chunks().take(np.argsort(by_batch))


def output_schema(table: pa.Table, extra: dict[str, pa.Array]) -> pa.Schema:
    fields = {**{f.name: f for f in table.schema},
              **{name: pa.field(name, values.type) for name, values in extra.items()}}
    return pa.schema([fields[name] for name in OUTPUT_COLUMNS])


def is_permissive(license: str | None, permissive: list[str]) -> bool:
    """SPDX-ish match, case-insensitive; `A OR B` is permissive if one side is."""
    if not license:
        return False
    allowed = {p.lower() for p in permissive}
    return any(part.strip() in allowed for part in license.lower().replace("(", "").replace(")", "").split(" or "))


def clean_bucket(
    partition_paths: list[str],
    bucket: int,
    out_path: str,
    removed_path: str,
    stats_path: str,
    seed: int,
    filters: dict,
    license: dict,
) -> dict:
    """Exact dedup -> filters (statistics from the partition step) -> decontamination -> license, for one bucket.

    `filters`: the `clean.filters` section after resolve_filters. Only the small columns of the
    representatives become Python objects; the content is copied once, into the output (and read
    as text only for the char/token-ratio filter)."""
    settings = Filters.from_config(filters)
    table = read_bucket(partition_paths, bucket)
    sizes_in = pc.binary_length(table["content"]).to_numpy()  # from the offsets, without touching the content
    representatives, copies = exact_dedup(table)
    rows = table.select(["repo_name", "path", "hash", "license", "contamination", *(n for n, _ in STAT_COLUMNS)]) \
        .take(representatives).to_pylist()
    ratios = [None] * len(rows)
    if settings.char_token_ratio.enabled:
        counter, ratios = TokenCounter(settings.char_token_ratio.tokenizer), []
        for _, _, part in take_in_slices(table.select(["content"]), representatives, sizes_in):
            ratios += char_token_ratios(part["content"].to_pylist(), counter, settings.char_token_ratio.batch_size)

    keep = np.ones(len(rows), dtype=bool)
    row_reasons = ["kept"] * len(rows)
    removed = {name: [] for name in REMOVED_SCHEMA.names}
    reasons = Counter()
    for i, (row, ratio) in enumerate(zip(rows, ratios)):
        row["char_token_ratio"] = ratio
        reason, detail = removal_reason(row, row["hash"], settings, seed), ""
        if not reason and row["contamination"]:
            reason, detail = "decontaminated", row["contamination"]
        elif not reason and license["permissive_only"] and not is_permissive(row["license"], license["permissive"]):
            reason, detail = "license", str(row["license"])
        if reason:
            keep[i] = False
            row_reasons[i] = reason
            reasons[reason] += 1
            for name, value in (("repo_name", row["repo_name"]), ("path", row["path"]), ("hash", row["hash"]),
                                ("reason", reason), ("detail", detail)):
                removed[name].append(value)

    extra = {"char_token_ratio": pa.array(ratios, pa.float64()).filter(keep),
             "exact_copies": pa.array(copies[keep], pa.int64())}
    write_rows(table, representatives[keep], extra, sizes_in, out_path)
    with atomic_output(removed_path) as tmp:
        pq.write_table(pa.table(removed, schema=REMOVED_SCHEMA), tmp)

    sizes = Counter(int(c) for c in copies if c > 1)
    rep_sizes = sizes_in[representatives]
    stats = {
        "bucket": bucket,
        "records_in": table.num_rows,
        "bytes_in": int(sizes_in.sum()),
        "exact_dedup": {
            "removed": table.num_rows - len(rows),
            "bytes_removed": int(sizes_in.sum() - rep_sizes.sum()),
            "clusters": int(sum(sizes.values())),
            "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())},
        },
        "removed_by_reason": counter_dict(reasons),
        "decontaminated_by_source": counter_dict(Counter(
            d.split(":")[0] for d, r in zip(removed["detail"], removed["reason"]) if r == "decontaminated")),
        "bytes_removed_by_reason": {r: int(rep_sizes[np.array(row_reasons) == r].sum()) for r in sorted(reasons)},
        "records_out": int(keep.sum()),
        "bytes_out": int(rep_sizes[keep].sum()),
        "histograms": filter_histograms(rows, rep_sizes, row_reasons),
        "examples": removal_examples(table, representatives, rows, row_reasons, settings),
    }
    write_stats(stats_path, stats)
    return stats


def filter_histograms(rows: list[dict], sizes: np.ndarray, reasons: list[str]) -> dict:
    """Per filter statistic: a histogram (HISTOGRAM_EDGES) of the kept files and of those removed, per reason."""
    values = {name: [row[name] for row in rows] for name in HISTOGRAM_EDGES if name != "size"}
    values["size"] = sizes.tolist()
    return {name: {reason: histogram(name, [v for v, r in zip(column, reasons) if r == reason])
                   for reason in sorted(set(reasons))}
            for name, column in values.items()}


def removal_examples(table: pa.Table, representatives: np.ndarray, rows: list[dict], reasons: list[str],
                     filters: Filters) -> list[dict]:
    """The first EXAMPLES_PER_REASON removed files per reason (hash order) with the lines that removed them."""
    examples, seen = [], Counter()
    for i, (row, reason) in enumerate(zip(rows, reasons)):
        if reason == "kept" or seen[reason] >= EXAMPLES_PER_REASON:
            continue
        seen[reason] += 1
        content = table["content"][int(representatives[i])].as_py()
        source = row["contamination"] if reason == "decontaminated" else None
        benchmark = benchmark_text(source) if source else None
        examples.append({"reason": reason, "repo_name": row["repo_name"], "path": row["path"], "hash": row["hash"],
                         "license": row["license"], "lines": trigger_lines(reason, content, filters, benchmark),
                         **({"benchmark": source, "benchmark_text": benchmark} if source else {})})
    return examples
