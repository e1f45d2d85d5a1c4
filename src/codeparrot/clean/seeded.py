"""Seeded per-item draws: the filters' random drops, the train/validation split, the completion sample."""

import hashlib


def seeded_uniform(seed: int, name: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, name, key): same key, same draw, in any order."""
    digest = hashlib.blake2b(f"{seed}/{name}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
