#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Prints (or, with --write, records in sdk/abi.sha256) the hash of sdk/include/** that the ABI
guard test checks: sha256 over every file sorted by relative path, each as "<path>\\n<bytes>".
Run it after deciding whether an SDK header change is an ABI major or minor bump."""
import hashlib
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
include = root / "sdk" / "include"
h = hashlib.sha256()
for rel in sorted(p.relative_to(include).as_posix() for p in include.rglob("*") if p.is_file()):
    h.update((rel + "\n").encode())
    h.update((include / rel).read_bytes())
digest = h.hexdigest()
if "--write" in sys.argv:
    record = root / "sdk" / "abi.sha256"
    version = record.read_text().splitlines()[0]
    record.write_text(f"{version}\n{digest}\n")
print(digest)
