"""The near-dedup document id: a file's bucket and row in its filtered bucket file, in one uint64.

Ids sort by bucket, then row, so a cluster's smallest id is the same whatever the job order.
"""

import numpy as np

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1


def encode_doc_ids(bucket: int, rows: np.ndarray) -> np.ndarray:
    """uint64 ids of `rows` (row numbers in the filtered file of `bucket`)."""
    return (np.uint64(bucket) << np.uint64(ROW_BITS)) | np.asarray(rows).astype(np.uint64)


def decode_doc_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(buckets, rows) of uint64 ids, both int64."""
    ids = np.asarray(ids, dtype=np.uint64)
    return (ids >> np.uint64(ROW_BITS)).astype(np.int64), (ids & np.uint64(ROW_MASK)).astype(np.int64)
