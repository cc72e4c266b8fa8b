#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A tiny independent safetensors reader and writer (struct + json only) used by the codec's
compatibility test. `check FILE` validates a file written by the C++ codec against the expected
tensors below; `write FILE` writes those tensors for the C++ codec to read. When torch is
importable, `check` also rebuilds each tensor with torch.frombuffer and compares the values."""

import json
import struct
import sys

# name -> (dtype, shape, values); the C++ test builds the same set (see test_safetensors.cpp).
FORMATS = {"F32": "f", "F64": "d", "I64": "q", "I32": "i", "U8": "B"}


def expected():
    return {
        "nnl_0_linear.weight": ("F32", [3, 4], [i * 0.5 - 1.0 for i in range(12)]),
        "nnl_0_linear.bias": ("F64", [4], [1.0 / 3.0, -2.5, 1e300, -0.0]),
        "counts": ("I64", [2, 2], [-(2 ** 40), 7, 0, 2 ** 62]),
        "index": ("I32", [5], [-3, -1, 0, 2, 2 ** 31 - 1]),
        "mask": ("U8", [3], [0, 255, 17]),
        "scalar": ("F32", [], [42.0]),
        "empty": ("F32", [0, 3], []),
    }


METADATA = {"json": "{\"round\": 3, \"note\": \"caf\\u00e9\"}", "format": "pt", "owner": "Zo\u00eb"}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def fail(message):
    print("st_compat: " + message, file=sys.stderr)
    sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    header_bytes = blob[8:8 + n]
    if not header_bytes.startswith(b"{"):
        fail("header does not start with '{'")
    header = json.loads(header_bytes.decode("utf-8"))
    data = blob[8 + n:]
    return n, header, data


def check(path):
    n, header, data = read(path)
    if (8 + n) % 8 != 0:
        fail("data start %d is not 8-byte aligned" % (8 + n))
    meta = header.pop("__metadata__", {})
    if meta != METADATA:
        fail("metadata %r != %r" % (meta, METADATA))
    want = expected()
    if set(header) != set(want):
        fail("tensor names %r != %r" % (sorted(header), sorted(want)))
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            fail("tensor %s begins at %d, expected %d" % (name, begin, cursor))
        cursor = end
    if cursor != len(data):
        fail("tensors cover %d of %d data bytes" % (cursor, len(data)))
    try:
        import torch  # noqa: F401  (optional second opinion)
        torch_dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64,
                        "I32": torch.int32, "U8": torch.uint8}
    except ImportError:
        torch = None
    for name, (dtype, shape, values) in want.items():
        entry = header[name]
        if entry["dtype"] != dtype or entry["shape"] != shape:
            fail("tensor %s: dtype/shape %s %r != %s %r"
                 % (name, entry["dtype"], entry["shape"], dtype, shape))
        begin, end = entry["data_offsets"]
        raw = data[begin:end]
        count = numel(shape)
        got = list(struct.unpack("<%d%s" % (count, FORMATS[dtype]), raw))
        if dtype == "F32":
            values = list(struct.unpack("<%df" % count, struct.pack("<%df" % count, *values)))
        if got != values:
            fail("tensor %s: values %r != %r" % (name, got, values))
        if torch is not None and count > 0:
            t = torch.frombuffer(bytearray(raw), dtype=torch_dtypes[dtype]).reshape(shape)
            if t.flatten().tolist() != values:
                fail("tensor %s: torch reads %r" % (name, t.flatten().tolist()))
    print("st_compat: %s ok (%d tensors%s)" % (path, len(want), ", torch" if torch else ""))


def write(path):
    want = expected()
    # Data in reverse name order while the JSON keys are sorted: readers must go by offsets.
    header = {"__metadata__": METADATA}
    chunks = []
    offset = 0
    for name in sorted(want, reverse=True):
        dtype, shape, values = want[name]
        raw = struct.pack("<%d%s" % (numel(shape), FORMATS[dtype]), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header, sort_keys=True).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "write"):
        fail("usage: st_compat.py check|write FILE")
    (check if sys.argv[1] == "check" else write)(sys.argv[2])
