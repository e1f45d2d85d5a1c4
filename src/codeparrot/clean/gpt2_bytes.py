"""GPT-2's byte-to-character table: byte-level BPE vocabularies spell every byte as one printable character."""

from functools import cache


@cache
def gpt2_byte_chars() -> tuple[str, ...]:
    """GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for chr(256 + i)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return tuple(chars[b] for b in range(256))
