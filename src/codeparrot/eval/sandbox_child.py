"""The process inside the sandbox: defines the generated program, then calls its function on the
inputs the judge sends and sends back what it returned. Standard library only (it runs as
`python -I -S -B` with nothing of the project mounted but this file), and only modules that load
fast: json's import alone is a large part of a sample's start-up (measured in docs/sandbox.md).

Nothing here is trusted: the generated program shares this process and may replace any of it.
The judge (codeparrot.eval.sandbox) treats every reply as a claim about a return value, decodes
it with `decode` from here, size-capped, and evaluates the assertions itself.

Messages are a 4-byte big-endian length and a body. Judge to child (trusted): marshal. Child to
judge: JSON, values tagged so that tuples, sets, dicts with any keys and bytes survive (lists are
JSON arrays, other containers a one-key object); the judge parses it with json, never marshal.
"""

import marshal
import os
import resource
import struct
import sys
from _json import encode_basestring_ascii as json_string

HEADER = struct.Struct(">I")
# The largest reply the judge reads; a bigger one fails its sample.
MAX_MESSAGE = 1 << 20
TAGS = {"t": tuple, "s": set, "fs": frozenset}
# Nesting deeper than this is not a HumanEval answer; refusing it keeps decoding off the C stack limit.
MAX_DEPTH = 100
FLOATS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class Unrepresentable(TypeError):
    """A value that has no literal form (a generator, a class instance, a cycle)."""


def to_json(value, depth=0) -> str:
    """Tagged JSON of a literal: None, bool, int, float, complex, str, bytes and lists, tuples,
    sets, frozensets and dicts of those."""
    if depth > MAX_DEPTH:
        raise Unrepresentable("nested too deeply")
    kind = type(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)  # ValueError past the interpreter's 4300-digit limit
    if kind is float:
        text = repr(value)
        return FLOATS.get(text, text)
    if kind is str:
        return json_string(value)
    if kind is list:
        return "[" + ",".join(to_json(v, depth + 1) for v in value) + "]"
    for tag, container in TAGS.items():
        if kind is container:
            return f'{{"{tag}":[' + ",".join(to_json(v, depth + 1) for v in value) + "]}"
    if kind is dict:
        return '{"d":[' + ",".join(f"[{to_json(k, depth + 1)},{to_json(v, depth + 1)}]"
                                   for k, v in value.items()) + "]}"
    if kind is bytes:
        return f'{{"b":"{value.hex()}"}}'
    if kind is complex:
        return f'{{"c":[{to_json(value.real)},{to_json(value.imag)}]}}'
    raise Unrepresentable(kind.__name__)


def decode(data, depth=0):
    """The inverse of encode; raises ValueError or TypeError on anything encode cannot produce."""
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(v, depth + 1) for v in data]
    if type(data) is not dict or len(data) != 1:
        raise ValueError("not an encoded value")
    (tag, body), = data.items()
    if tag in TAGS and type(body) is list:
        return TAGS[tag](decode(v, depth + 1) for v in body)
    if tag == "d" and type(body) is list and all(type(kv) is list and len(kv) == 2 for kv in body):
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "c" and type(body) is list and len(body) == 2 and all(type(x) in (int, float) for x in body):
        return complex(*body)
    raise ValueError(f"unknown tag {tag!r}")


def send(fd, body: bytes) -> None:
    data = HEADER.pack(len(body)) + body
    while data:
        data = data[os.write(fd, data):]


def receive(fd):
    """The next message from the judge (trusted, marshal), or None at end of input."""
    def read(n):
        chunks = []
        while n:
            chunk = os.read(fd, n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    header = read(HEADER.size)
    return None if header is None else marshal.loads(read(HEADER.unpack(header)[0]))


def reply(fd, call) -> None:
    """Send what `call()` returned ({"r": value}), the name of what it raised ({"e": name}), or
    the type of a result that has no literal form ({"x": name})."""
    try:
        result = call()
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: the judge decides
        body = '{"e":' + json_string(type(e).__name__) + "}"
    else:
        try:
            body = '{"r":' + to_json(result) + "}"
        except (Unrepresentable, RecursionError, ValueError):
            body = '{"x":' + json_string(type(result).__name__) + "}"
    send(fd, body.encode())


def main() -> None:
    for limit in sys.argv[1].split(","):  # NAME=value,...
        name, value = limit.split("=")
        resource.setrlimit(getattr(resource, name), (int(value), int(value)))
    requests, replies = os.dup(0), os.dup(1)
    # Nothing the program prints reaches the judge except through `replies`.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    send(replies, b"{}")  # hello: the sandbox is set up; from here on, failures are the program's
    program, entry_point = receive(requests)
    namespace = {"__name__": "__main__"}

    def define():
        exec(compile(program, "program.py", "exec"), namespace)
        if not callable(namespace.get(entry_point)):
            raise NameError(entry_point)
        return True

    reply(replies, define)
    function = namespace.get(entry_point)
    while (call := receive(requests)) is not None:
        args, kwargs = call
        reply(replies, lambda: function(*args, **kwargs))  # noqa: B023 (reply calls it at once)


if __name__ == "__main__":
    main()
