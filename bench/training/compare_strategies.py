#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Compare federated strategies on heart_disease split across workers (non-IID by default).

Steps (Python 3 standard library only):

  prepare  Pools examples/data/heart_disease (iid_1 + iid_2), draws a label-skewed split for
           each worker from a Dirichlet distribution (seeded), holds out a per-worker evaluate
           split, and writes one data directory per worker:
             <out>/worker_<i>/heart_disease_noniid/{train,evaluate}/{metadata,schema}.json,data.csv

  run      Drives a running director through the Synergos REST API: participants,
           collaboration, project, experiment, registrations and tags (/ttp/connect/...),
           alignment (/ttp/train/.../alignments/), then for every algorithm one run per round
           count in --round-grid, trained (/ttp/train/.../models/{e}/{r}) and validated
           (/ttp/evaluate/.../validations/{e}/{r}). Accuracy after k rounds is the pooled
           accuracy of the run trained for k rounds (same seed, so the same first k rounds).
           Prints final accuracy and the rounds needed to reach --target accuracy.

  local    Everything from a build folder, nothing else running: prepare, start one
           `synergos worker` per data directory and a standalone `synergos director` (the
           project's configs/, free loopback ports, logs under <out>/logs), `run`, stop them.
           Needs the targets `synergos` and `synergos_plugins` built, e.g.
             cmake --build build/release --target synergos synergos_plugins
             bench/training/compare_strategies.py local --build build/release
           --garbage-scale S puts the last worker behind a garbage-proxy (robustness runs).

  garbage-proxy
           A faulty participant for robustness checks: forwards the worker protocol to a real
           worker but replaces the weights of every train reply by random values scaled by
           --scale. Register its address as one more --worker.

What `run` needs (see docs/strategies.md):
  - a director (REST on --director) with a TTP whose config lists the compared algorithms under
    `aggregators:` (fedavg, fedprox, fedadam, scaffold by default);
  - one worker per prepared data directory (four by default), reachable at the --worker
    addresses in order, each started with its data directory at <out>/worker_<i>;
  - for scaffold, workers whose model plugin runs SCAFFOLD's client side (the bundled torch
    plugin does); with another plugin the scaffold runs fail with "lacks tensor
    'scaffold.delta_c...'" and are reported as failed.

--algorithms takes plugin names, or LABEL=PLUGIN to compare one strategy under other settings,
e.g. `--algorithms fedavg,scaffold,scaffold_sgd=scaffold --field scaffold_sgd.optimizer='"SGD"'`.
"""

import argparse
import csv
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DATASET = os.path.join(HERE, "..", "..", "examples", "data", "heart_disease")
SOURCES = [os.path.join(DATASET, "data1", "iid_1"), os.path.join(DATASET, "data2", "iid_2")]
DATASET_TAG = "heart_disease_noniid"
# The example job's run settings (examples/heart_disease/job.yaml); --run-field overrides them.
BASE_RUN = {"batch_size": 32, "optimizer": "Adam", "lr": 0.01, "criterion": "NLLLoss",
            "lr_scheduler": ""}


# ---- prepare ---------------------------------------------------------------------------------

def read_rows(folder):
    csvs = [f for f in sorted(os.listdir(folder)) if f.endswith(".csv")]
    if not csvs:
        raise SystemExit(f"no CSV file in {folder}")
    with open(os.path.join(folder, csvs[0]), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [row for row in reader if row]


def dirichlet(rng, alpha, k):
    draws = [rng.gammavariate(alpha, 1.0) for _ in range(k)]
    total = sum(draws)
    return [d / total for d in draws]


def split_non_iid(rows, label_index, workers, alpha, rng, min_rows):
    """Per class, share the rows between workers with Dirichlet(alpha) proportions."""
    by_class = {}
    for row in rows:
        by_class.setdefault(row[label_index], []).append(row)
    for attempt in range(100):
        parts = [[] for _ in range(workers)]
        for label in sorted(by_class):
            members = by_class[label][:]
            rng.shuffle(members)
            shares = dirichlet(rng, alpha, workers)
            start = 0
            for w in range(workers):
                end = len(members) if w == workers - 1 else start + round(shares[w] * len(members))
                parts[w].extend(members[start:end])
                start = end
        if min(len(p) for p in parts) >= min_rows:
            return parts
    raise SystemExit(f"could not draw a split with at least {min_rows} rows per worker; "
                     "raise --alpha")


def write_split(folder, header, rows, schema, metadata):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "data.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    for name, doc in (("schema.json", schema), ("metadata.json", metadata)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(doc, f, indent=2)


def prepare(args):
    header, rows = None, []
    for folder in SOURCES:
        h, r = read_rows(folder)
        if header is not None and h != header:
            raise SystemExit(f"{folder}: columns differ from {SOURCES[0]}")
        header = h
        rows.extend(r)
    with open(os.path.join(SOURCES[0], "schema.json")) as f:
        schema = json.load(f)
    with open(os.path.join(SOURCES[0], "metadata.json")) as f:
        metadata = json.load(f)
    label = header.index("target")
    rng = random.Random(args.seed)
    if args.iid:
        rng.shuffle(rows)
        parts = [rows[w::args.workers] for w in range(args.workers)]
        print(f"{len(rows)} rows, IID split, seed {args.seed}")
    else:
        parts = split_non_iid(rows, label, args.workers, args.alpha, rng, min_rows=40)
        print(f"{len(rows)} rows, Dirichlet alpha {args.alpha}, seed {args.seed}")
    classes = sorted({r[label] for r in rows}, key=float)
    print("worker      train  evaluate  " + "  ".join(f"class {c}" for c in classes))
    for w, part in enumerate(parts, start=1):
        rng.shuffle(part)
        cut = max(1, int(len(part) * args.evaluate_fraction))
        evaluate, train = part[:cut], part[cut:]
        base = os.path.join(args.out, f"worker_{w}", DATASET_TAG)
        write_split(os.path.join(base, "train"), header, train, schema, metadata)
        write_split(os.path.join(base, "evaluate"), header, evaluate, schema, metadata)
        counts = "  ".join(f"{sum(1 for r in part if r[label] == c):7d}" for c in classes)
        print(f"worker_{w}  {len(train):7d}  {len(evaluate):8d}  {counts}")
    print(f"data directories: {os.path.abspath(args.out)}/worker_<i>")


# ---- REST client -----------------------------------------------------------------------------

class Api:
    def __init__(self, base, timeout):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def call(self, method, path, body=None, ok=(200, 201)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
        except urllib.error.URLError as e:
            raise SystemExit(f"{method} {path}: cannot reach the director: {e.reason}")
        if status not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {text.strip()[:500]}")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, {"message": text}

    def upsert(self, path, body):
        """POST a record; an existing one is replaced (the API's create is an upsert)."""
        return self.call("POST", path, body)[1]

    def wait(self, what, jobs, poll_path):
        """Waits for the queued jobs (GET /v1/jobs/{id}), else until GET poll_path answers."""
        deadline = time.monotonic() + self.timeout
        ids = [j.get("job_id") for j in jobs or [] if isinstance(j, dict) and j.get("job_id")]
        while time.monotonic() < deadline:
            if ids:
                states = []
                for job_id in ids:
                    _, body = self.call("GET", f"/v1/jobs/{job_id}")
                    job = body.get("data", {})
                    states.append(job.get("state"))
                    if job.get("state") in ("failed", "cancelled"):
                        raise RuntimeError(f"{what}: job {job_id} {job.get('state')}: "
                                           f"{job.get('reason')}")
                if all(s == "succeeded" for s in states):
                    return self.call("GET", poll_path)[1]
            else:
                status, body = self.call("GET", poll_path, ok=(200, 404))
                if status == 200:
                    return body
            time.sleep(1.0)
        raise RuntimeError(f"{what}: not done after {self.timeout} s")


def pooled_accuracy(validations):
    """Sum of true positives over classes / rows, pooled over participants."""
    correct = rows = 0
    for record in validations:
        stats = (record.get("evaluate") or {}).get("statistics") or {}
        tps, fns = stats.get("TPs"), stats.get("FNs")
        if not tps or not fns:
            continue
        correct += sum(tps)
        rows += sum(tps) + sum(fns)
    return correct / rows if rows else float("nan")


def parse_fields(items):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        algorithm, dot, field = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--field {item!r}: expected algorithm.field=value")
        out.setdefault(algorithm, {})[field] = json.loads(value)
    return out


def run(args):
    if len(args.worker) < 2:
        raise SystemExit("give one --worker host:port per prepared data directory (at least 2)")
    api = Api(args.director, args.timeout)
    algorithms = args.algorithms.split(",")
    grid = sorted({int(k) for k in args.round_grid.split(",")}) if args.round_grid else \
        list(range(1, args.rounds + 1))
    fields = parse_fields(args.field)
    with open(os.path.join(DATASET, "architecture.json")) as f:
        architecture = json.load(f)
    base_run = dict(BASE_RUN)
    for item in args.run_field:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--run-field {item!r}: expected field=value")
        base_run[key] = json.loads(value)
    c, p, e = args.collaboration, args.project, args.experiment
    connect = f"/ttp/connect/collaborations/{c}"

    # Connection phase.
    api.upsert("/ttp/connect/collaborations/", {"collab_id": c})
    api.upsert(f"{connect}/projects/", {"project_id": p, "action": "classify",
                                        "incentives": {"tier_1": [], "tier_2": []}})
    api.upsert(f"{connect}/projects/{p}/experiments/", {"expt_id": e, "model": architecture})
    for i, address in enumerate(args.worker, start=1):
        host, _, port = address.rpartition(":")
        pid = f"{args.participant_prefix}{i}"
        api.upsert("/ttp/connect/participants/", {"id": pid, "category": None, "summary": None,
                                                  "phone": None, "email": None, "socials": None})
        reg = f"{connect}/projects/{p}/participants/{pid}/registration"
        api.call("DELETE", reg, ok=(200, 404, 500))  # a fresh registration id for the tags
        api.upsert(reg, {"role": "host" if i == 1 else "guest", "n_count": 1,
                         "node_0": {"host": host, "port": int(port), "f_port": int(port),
                                    "log_msgs": False, "verbose": False}})
        api.upsert(f"{reg}/tags", {"train": [[DATASET_TAG, "train"]],
                                   "evaluate": [[DATASET_TAG, "evaluate"]]})

    # Alignment (auto_fix sizes the model's first and last layers).
    train = f"/ttp/train/collaborations/{c}/projects/{p}"
    _, body = api.call("POST", f"{train}/alignments/", {"auto_align": True, "auto_fix": True})
    api.wait("alignment", body.get("jobs"), f"{train}/alignments/")

    accuracy = {}  # (label, rounds) -> accuracy or None (failed)
    errors = {}
    labels = {}
    for entry in algorithms:
        label, sep, plugin = entry.partition("=")
        labels[label] = plugin if sep else label
    algorithms = list(labels)
    for algorithm in algorithms:
        plugin = labels[algorithm]
        for k in grid:
            if algorithm in errors:
                accuracy[(algorithm, k)] = None  # a failed algorithm is not retried per count
                continue
            r = f"{algorithm}_r{k}"
            run_body = dict(base_run)
            run_body.update({"run_id": r, "algorithm": plugin, "rounds": k,
                             "epochs": args.epochs, "seed": args.seed,
                             "patience": k + 1})  # no global early stopping inside the grid
            run_body.update(fields.get(algorithm, {}))
            api.upsert(f"{connect}/projects/{p}/experiments/{e}/runs/", run_body)
            try:
                _, body = api.call("POST", f"{train}/models/{e}/{r}", {"auto_align": True})
                api.wait(f"training {r}", body.get("jobs"), f"{train}/models/{e}/{r}")
                evaluate = f"/ttp/evaluate/collaborations/{c}/projects/{p}/validations/{e}/{r}"
                _, body = api.call("POST", evaluate, {"auto_align": True})
                result = api.wait(f"validation {r}", body.get("jobs"), evaluate)
                acc = pooled_accuracy(result.get("data", []))
                if math.isnan(acc):
                    raise RuntimeError(f"validation {r}: no classification statistics returned")
                accuracy[(algorithm, k)] = acc
            except RuntimeError as err:
                accuracy[(algorithm, k)] = None
                errors.setdefault(algorithm, str(err))
            shown = accuracy[(algorithm, k)]
            print(f"  {algorithm:>10} after {k:3d} rounds: "
                  f"{'failed' if shown is None else f'{shown:.3f}'}", file=sys.stderr)

    print()
    print(f"heart_disease, {len(args.worker)} workers; accuracy on the pooled evaluate splits; "
          f"target {args.target:.0%}")
    print()
    print(f"| algorithm | final accuracy ({grid[-1]} rounds) | rounds to reach {args.target:.0%} |")
    print("| --- | --- | --- |")
    for algorithm in algorithms:
        final = accuracy.get((algorithm, grid[-1]))
        reached = next((k for k in grid if (accuracy.get((algorithm, k)) or 0) >= args.target),
                       None)
        final_text = "failed" if final is None else f"{final:.3f}"
        reached_text = str(reached) if reached is not None else f"not within {grid[-1]}"
        print(f"| {algorithm} | {final_text} | {reached_text} |")
    for algorithm, err in errors.items():
        print(f"\n{algorithm}: {err}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["algorithm", "rounds", "accuracy"])
            for (algorithm, k), acc in sorted(accuracy.items()):
                writer.writerow([algorithm, k, "" if acc is None else f"{acc:.6f}"])
    return 1 if errors else 0


# ---- garbage proxy ---------------------------------------------------------------------------

def garbage_safetensors(body, rng, scale):
    """The same safetensors file with every float tensor replaced by scale * uniform(-1, 1)."""
    import struct
    (length,) = struct.unpack("<Q", body[:8])
    header = json.loads(body[8:8 + length])
    data = bytearray(body[8 + length:])
    for name, info in header.items():
        if name == "__metadata__" or info.get("dtype") not in ("F32", "F64"):
            continue
        begin, end = info["data_offsets"]
        fmt, size = ("<f", 4) if info["dtype"] == "F32" else ("<d", 8)
        for offset in range(begin, end, size):
            struct.pack_into(fmt, data, offset, scale * rng.uniform(-1.0, 1.0))
    return body[:8 + length] + bytes(data)


def garbage_proxy(args):
    import http.server
    import socketserver
    target = args.target if "://" in args.target else "http://" + args.target
    rng = random.Random(args.seed)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *unused):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            req = urllib.request.Request(target + self.path, data=body, method=self.command)
            if self.headers.get("Content-Type"):
                req.add_header("Content-Type", self.headers["Content-Type"])
            try:
                with urllib.request.urlopen(req, timeout=args.timeout) as resp:
                    status, ctype, out = resp.status, resp.headers.get("Content-Type"), resp.read()
            except urllib.error.HTTPError as e:
                status, ctype, out = e.code, e.headers.get("Content-Type"), e.read()
            except urllib.error.URLError as e:
                status, ctype = 502, "application/json"
                out = json.dumps({"message": f"garbage-proxy: {e.reason}"}).encode()
            if status == 200 and self.path.endswith("/train") and "safetensors" in (ctype or ""):
                out = garbage_safetensors(out, rng, args.scale)
            self.send_response(status)
            self.send_header("Content-Type", ctype or "application/octet-stream")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = forward

    host, _, port = args.listen.rpartition(":")
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler) as server:
        print(f"garbage-proxy listening on {server.server_address[1]}, forwarding to {target}, "
              f"train replies scaled by {args.scale}", flush=True)
        server.serve_forever()


# ---- local: a whole deployment from a build folder ---------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc, log, what, timeout=120.0):
    """Bounded wait until `log` says the process listens; fails when it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                text = f.read()
            if "listening on" in text:
                return text
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}; see {log}")
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {timeout:.0f} s; see {log}")


def stop_all(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def director_config(root, out, algorithms):
    """The project's standalone director config with `aggregators:` listing the compared
    plugins only (so only those need to be built)."""
    import re
    with open(os.path.join(root, "configs", "director-standalone.yaml")) as f:
        text = f.read()
    plugins = []
    for entry in algorithms.split(","):
        plugin = entry.partition("=")[2] or entry
        if plugin not in plugins:
            plugins.append(plugin)
    text, n = re.subn(r"^aggregators:\s*\[[^\]]*\]", f"aggregators: [{', '.join(plugins)}]",
                      text, count=1, flags=re.M)
    if n != 1:
        raise SystemExit("configs/director-standalone.yaml: no `aggregators: [...]` list to adapt")
    # The optional tuning function is not used here (and need not be built).
    text = re.sub(r"^[ \t]*- (?:name: )?optimize\b[^\n]*\n(?:[ \t]*required:[^\n]*\n)?", "",
                  text, flags=re.M)
    path = os.path.join(out, "director.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def local(args):
    root = os.path.abspath(os.path.join(HERE, "..", ".."))
    exe = os.path.join(os.path.abspath(args.build), "bin", "synergos")
    if not os.access(exe, os.X_OK):
        raise SystemExit(f"{exe} not found: build the targets synergos and synergos_plugins "
                         f"first (cmake --build {args.build} --target synergos synergos_plugins)")
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="synergos-compare-"))
    if os.path.exists(os.path.join(out, "worker_1")):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    prepare(argparse.Namespace(out=out, workers=args.workers, alpha=args.alpha,
                               evaluate_fraction=args.evaluate_fraction, seed=args.split_seed,
                               iid=args.iid))
    procs = []
    try:
        addresses = []
        for w in range(1, args.workers + 1):
            port = free_port()
            log = os.path.join(out, "logs", f"worker_{w}.log")
            state = os.path.join(out, "state", f"worker_{w}")
            with open(log, "w") as f:
                proc = subprocess.Popen(
                    [exe, "worker", "--config", os.path.join(root, "configs", "worker.yaml"),
                     "--id", f"worker_{w}", "--port", str(port),
                     "--data-dir", os.path.join(out, f"worker_{w}"),
                     "--outputs-dir", os.path.join(state, "outputs"),
                     "--mlflow-dir", os.path.join(state, "mlflow")],
                    stdout=f, stderr=subprocess.STDOUT)
            procs.append(proc)
            wait_listening(proc, log, f"worker_{w}")
            addresses.append(f"127.0.0.1:{port}")
        if args.garbage_scale > 0:
            # The last worker becomes faulty: its train replies are replaced by noise.
            port = free_port()
            log = os.path.join(out, "logs", "garbage_proxy.log")
            with open(log, "w") as f:
                proc = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "garbage-proxy",
                     "--listen", f"127.0.0.1:{port}", "--target", addresses[-1],
                     "--scale", str(args.garbage_scale)],
                    stdout=f, stderr=subprocess.STDOUT)
            procs.append(proc)
            wait_listening(proc, log, "garbage-proxy")
            addresses[-1] = f"127.0.0.1:{port}"
        port = free_port()
        log = os.path.join(out, "logs", "director.log")
        state = os.path.join(out, "state", "director")
        config = director_config(root, out, args.algorithms)
        with open(log, "w") as f:
            proc = subprocess.Popen(
                [exe, "director", "--config", config,
                 "--id", "director", "--port", str(port),
                 "--data-dir", os.path.join(state, "data"),
                 "--outputs-dir", os.path.join(state, "outputs"),
                 "--mlflow-dir", os.path.join(state, "mlflow")],
                stdout=f, stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_listening(proc, log, "director")
        print(f"director on 127.0.0.1:{port}, workers on {', '.join(addresses)}; logs in "
              f"{out}/logs", file=sys.stderr)
        args.director = f"http://127.0.0.1:{port}"
        args.worker = addresses
        return run(args)
    finally:
        stop_all(procs)


def add_run_arguments(go):
    go.add_argument("--algorithms", default="fedavg,fedprox,fedadam,scaffold",
                    help="plugin names, or LABEL=PLUGIN (default fedavg,fedprox,fedadam,scaffold)")
    go.add_argument("--rounds", type=int, default=20, help="largest round count (default 20)")
    go.add_argument("--round-grid", default="",
                    help="round counts to train, e.g. 1,2,4,8,16 (default: 1..--rounds)")
    go.add_argument("--epochs", type=int, default=5, help="local epochs per round (default 5)")
    go.add_argument("--seed", type=int, default=42)
    go.add_argument("--target", type=float, default=0.5)
    go.add_argument("--run-field", action="append", default=[], metavar="FIELD=JSON",
                    help="a run field for every algorithm, e.g. lr=0.05 (defaults: the example "
                         "job's Adam, lr 0.01, batch 32, NLLLoss)")
    go.add_argument("--field", action="append", default=[], metavar="LABEL.FIELD=JSON",
                    help="a strategy field, e.g. fedadam.server_lr=0.05 or fedprox.mu=0.01")
    go.add_argument("--collaboration", default="strategies")
    go.add_argument("--project", default="heart_noniid")
    go.add_argument("--experiment", default="logreg")
    go.add_argument("--participant-prefix", default="noniid_worker_")
    go.add_argument("--timeout", type=float, default=3600, help="seconds per job")
    go.add_argument("--csv", help="also write accuracy per (algorithm, rounds) here")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the non-IID worker data directories")
    prep.add_argument("--out", required=True, help="folder for worker_1 .. worker_4")
    prep.add_argument("--workers", type=int, default=4)
    prep.add_argument("--alpha", type=float, default=0.5,
                      help="Dirichlet concentration; smaller is more skewed (default 0.5)")
    prep.add_argument("--evaluate-fraction", type=float, default=0.2)
    prep.add_argument("--seed", type=int, default=7)
    prep.add_argument("--iid", action="store_true", help="split uniformly instead of non-IID")
    go = sub.add_parser("run", help="train and validate through a running director")
    go.add_argument("--director", default="http://127.0.0.1:5000")
    go.add_argument("--worker", action="append", default=[], metavar="HOST:PORT",
                    help="a worker's REST address; four, in the order of worker_1 .. worker_4")
    add_run_arguments(go)
    loc = sub.add_parser("local", help="prepare, start workers and a director from a build "
                                       "folder, run, stop them")
    loc.add_argument("--build", required=True, help="build folder with bin/synergos and plugins/")
    loc.add_argument("--out", help="working folder (default: a new temporary folder)")
    loc.add_argument("--workers", type=int, default=4)
    loc.add_argument("--alpha", type=float, default=0.5)
    loc.add_argument("--evaluate-fraction", type=float, default=0.2)
    loc.add_argument("--split-seed", type=int, default=7)
    loc.add_argument("--iid", action="store_true")
    loc.add_argument("--garbage-scale", type=float, default=0.0,
                     help="> 0: the last worker replies scaled noise to train calls")
    add_run_arguments(loc)
    bad = sub.add_parser("garbage-proxy", help="a faulty worker: forwards to a real one, "
                                                "replies garbage weights to train calls")
    bad.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    bad.add_argument("--target", required=True, metavar="HOST:PORT", help="the real worker")
    bad.add_argument("--scale", type=float, default=100.0)
    bad.add_argument("--seed", type=int, default=1)
    bad.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args)
        return 0
    if args.command == "garbage-proxy":
        garbage_proxy(args)
        return 0
    if args.command == "local":
        return local(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
