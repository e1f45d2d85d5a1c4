"""Token counts of a trained code tokenizer, for the char_token_ratio filter."""

import json
import re
from collections import Counter
from pathlib import Path

from codeparrot.clean.gpt2_bytes import gpt2_byte_chars

# GPT-2's pre-tokenizer pattern (byte-level BPE splits text into these words, then merges within
# each word). For ASCII text the stdlib version is identical and faster than `regex`.
GPT2_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_WORDS_ASCII = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


class TokenCounter:
    """Number of tokens a byte-level BPE tokenizer gives a text, without encoding it in full.

    A byte-level BPE token never crosses a pre-tokenizer word, so the count is the sum over words
    of each distinct word's token count, which is cached: code repeats its words, so after a few
    files almost every word is a dictionary hit. Tokenizers of another kind are encoded in batches.
    """

    def __init__(self, tokenizer_path: str):
        from tokenizers import Tokenizer

        path = Path(tokenizer_path)
        path = path / "tokenizer.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"clean.filters.char_token_ratio.tokenizer: {path} does not exist; "
                                    "give a trained tokenizer (folder or tokenizer.json) or null")
        self.tokenizer = Tokenizer.from_file(str(path))
        spec = json.loads(path.read_text())
        pre = spec.get("pre_tokenizer") or {}
        self.by_words = (spec.get("normalizer") is None and (spec.get("model") or {}).get("type") == "BPE"
                         and not (spec.get("model") or {}).get("dropout")
                         and pre.get("type") == "ByteLevel" and pre.get("use_regex", True))
        if self.by_words:
            import regex

            from tokenizers import pre_tokenizers

            self.words = regex.compile(GPT2_WORDS)
            alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 characters standing for bytes
            self.byte_char = gpt2_byte_chars()
            assert set(self.byte_char) == set(alphabet)
            self.cache: dict[str, int] = {}
            # Added tokens (`<|endoftext|>`) are matched before the pre-tokenizer, as one token each
            # (the original's `tokenizer(content)` too): a text containing one is encoded whole.
            self.added = [t.content for t in self.tokenizer.get_added_tokens_decoder().values()]

    def _word_tokens(self, word: str) -> int:
        mapped = "".join(self.byte_char[b] for b in word.encode("utf-8", "surrogatepass"))
        n = self.cache[word] = len(self.tokenizer.model.tokenize(mapped))
        return n

    def count(self, text: str) -> int:
        if any(token in text for token in self.added):
            return len(self.tokenizer.encode(text, add_special_tokens=False).ids)
        pattern = GPT2_WORDS_ASCII if text.isascii() else self.words
        cache, total = self.cache, 0
        for word, n in Counter(pattern.findall(text)).items():
            k = cache.get(word)
            total += n * (k if k is not None else self._word_tokens(word))
        return total

    def counts(self, texts: list[str], batch_size: int = 1000) -> list[int]:
        if self.by_words:
            return [self.count(t) for t in texts]
        counts = []
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch_fast(texts[start:start + batch_size], add_special_tokens=False)
            counts += [len(e.ids) for e in encodings]
        return counts


def char_token_ratios(contents: list[str], counter: TokenCounter, batch_size: int = 1000) -> list[float]:
    """Characters per token with a trained code tokenizer."""
    counts = counter.counts(contents, batch_size)
    return [len(c) / max(n, 1) for c, n in zip(contents, counts)]
