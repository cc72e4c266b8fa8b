#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reads an MLflow file store the way MLflow's FileStore does, with the standard library only,
and prints what it found as JSON. Written independently of the C++ writer: it applies the
read-side rules of mlflow/store/tracking/file_store.py (folder layout, meta.yaml fields, metric
lines of 2 or 3 fields, keys checked as mlflow/utils/validation.py checks them) and fails loudly
on anything MLflow would refuse.

usage: read_mlflow_store.py <root>
"""
import json
import os
import posixpath
import re
import sys

# MLflow 2.x on POSIX (validate_param_and_metric_name); its Windows rule has no ":".
VALID_KEY = re.compile(r"^[/\w.\- :]*$")
RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
EXPERIMENT_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,63}$")
RESERVED_EXPERIMENT_FOLDERS = {"tags", "datasets", "traces"}


class StoreError(Exception):
    pass


def check_key(kind, name):
    if not VALID_KEY.match(name):
        raise StoreError(f"invalid {kind} name {name!r}")
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise StoreError(f"invalid {kind} name {name!r}: resolves to {norm!r}")


def parse_double_quoted(text):
    out = []
    i = 0
    simple = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "0": "\0", "/": "/", " ": " "}
    widths = {"x": 2, "u": 4, "U": 8}
    while i < len(text):
        c = text[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = text[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in widths:
            n = widths[e]
            out.append(chr(int(text[i + 2:i + 2 + n], 16)))
            i += 2 + n
        else:
            raise StoreError(f"unsupported escape \\{e}")
    return "".join(out)


def parse_scalar(raw):
    """The scalar forms a flat meta.yaml uses: quoted strings, null, ints, [] and plain text."""
    if raw.startswith("'"):
        if not raw.endswith("'") or len(raw) < 2:
            raise StoreError(f"unterminated single-quoted scalar {raw!r}")
        return raw[1:-1].replace("''", "'")
    if raw.startswith('"'):
        if not raw.endswith('"') or len(raw) < 2:
            raise StoreError(f"unterminated double-quoted scalar {raw!r}")
        return parse_double_quoted(raw[1:-1])
    if raw in ("", "~", "null", "Null", "NULL"):
        return None
    if raw == "[]":
        return []
    if re.fullmatch(r"[-+]?[0-9]+", raw):
        return int(raw)
    if raw in ("true", "True", "TRUE", "yes", "Yes", "false", "False", "FALSE", "no", "No"):
        raise StoreError(f"boolean-looking plain scalar {raw!r} would not read as a string")
    return raw


def read_meta(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith(" ") or ": " not in line and not line.endswith(":"):
                raise StoreError(f"{path}: not a flat 'key: value' line: {line!r}")
            key, _, raw = line.partition(":")
            meta[key] = parse_scalar(raw.strip())
    return meta


def read_files(folder, kind):
    """Every file below folder, keyed by its relative path (MLflow's _get_resource_files)."""
    out = {}
    if not os.path.isdir(folder):
        return out
    for root, _, files in os.walk(folder):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), folder)
            check_key(kind, rel)
            with open(os.path.join(root, name), encoding="utf-8") as f:
                out[rel] = f.read()
    return out


def read_metric(text, key):
    points = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            raise StoreError(f"metric {key!r}: last line has no newline")
        parts = line.strip().split(" ")
        if len(parts) not in (2, 3):
            raise StoreError(f"metric {key!r}: malformed line {line!r}")
        step = int(parts[2]) if len(parts) == 3 else 0
        points.append([int(parts[0]), float(parts[1]), step, parts[1]])
    if not points:
        raise StoreError(f"metric {key!r}: no data")
    return points


def read_run(experiment_id, run_dir):
    meta = read_meta(os.path.join(run_dir, "meta.yaml"))
    run_id = meta["run_id"]
    if not RUN_ID.match(run_id) or meta["run_uuid"] != run_id:
        raise StoreError(f"{run_dir}: bad run id {run_id!r}")
    if os.path.basename(run_dir) != run_id:
        raise StoreError(f"{run_dir}: folder and run_id {run_id!r} differ")
    if str(meta["experiment_id"]) != experiment_id:
        raise StoreError(f"{run_dir}: experiment_id {meta['experiment_id']!r} of another experiment")
    if meta["status"] not in (1, 2, 3, 4, 5):
        raise StoreError(f"{run_dir}: status {meta['status']!r} is not an MLflow RunStatus")
    for field in ("artifact_uri", "lifecycle_stage", "user_id", "source_type", "start_time",
                  "end_time", "tags"):
        if field not in meta:
            raise StoreError(f"{run_dir}: meta.yaml has no {field}")
    metrics = {k: read_metric(v, k) for k, v in read_files(os.path.join(run_dir, "metrics"),
                                                           "metric").items()}
    artifacts = []
    art_root = os.path.join(run_dir, "artifacts")
    for root, _, files in os.walk(art_root):
        artifacts += [os.path.relpath(os.path.join(root, n), art_root) for n in files]
    return {
        "run_id": run_id,
        "run_name": meta.get("run_name"),
        "status": meta["status"],
        "start_time": meta["start_time"],
        "end_time": meta["end_time"],
        "artifact_uri": meta["artifact_uri"],
        "lifecycle_stage": meta["lifecycle_stage"],
        "user_id": meta["user_id"],
        "params": read_files(os.path.join(run_dir, "params"), "param"),
        "tags": read_files(os.path.join(run_dir, "tags"), "tag"),
        "metrics": metrics,
        "artifacts": sorted(artifacts),
        "stray_files": sorted(n for n in os.listdir(run_dir)
                              if os.path.isfile(os.path.join(run_dir, n)) and n != "meta.yaml"),
    }


def read_experiment(parent, experiment_id):
    folder = os.path.join(parent, experiment_id)
    meta = read_meta(os.path.join(folder, "meta.yaml"))
    if str(meta["experiment_id"]) != experiment_id or not EXPERIMENT_ID.match(experiment_id):
        raise StoreError(f"{folder}: experiment_id {meta['experiment_id']!r} does not match")
    runs = []
    for entry in sorted(os.listdir(folder)):
        run_dir = os.path.join(folder, entry)
        if not os.path.isdir(run_dir) or entry in RESERVED_EXPERIMENT_FOLDERS:
            continue
        if not os.path.isfile(os.path.join(run_dir, "meta.yaml")):
            continue  # MLflow skips a malformed run with a debug message
        runs.append(read_run(experiment_id, run_dir))
    return {
        "experiment_id": experiment_id,
        "name": meta["name"],
        "artifact_location": meta["artifact_location"],
        "lifecycle_stage": meta["lifecycle_stage"],
        "creation_time": meta["creation_time"],
        "last_update_time": meta["last_update_time"],
        "runs": runs,
    }


def main():
    root = sys.argv[1]
    if not os.path.isdir(os.path.join(root, ".trash")):
        raise StoreError(f"{root}: no .trash folder")
    experiments = []
    for entry in sorted(os.listdir(root)):
        if entry in (".trash", "models") or not os.path.isdir(os.path.join(root, entry)):
            continue
        experiments.append(read_experiment(root, entry))
    print(json.dumps({"experiments": experiments}, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except (StoreError, KeyError, ValueError, FileNotFoundError) as e:
        print(f"read_mlflow_store: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
