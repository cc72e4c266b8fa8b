#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The compose cluster as plain processes, trained end to end (issue 7, acceptance 2).

packaging/cluster/run-local.sh starts what packaging/compose/docker-compose.yml starts: one
director, the TTPs of grids 0 and 1 and two workers per grid, from the compose config files,
against the real RabbitMQ broker on loopback. The test then:

1. checks that every process runs the compose service's command: the same role, flags and
   config file; container paths replaced by host folders the way the volumes share them
   (director and TTPs one data/outputs/mlflow folder, each worker its own); service names
   replaced by loopback addresses; port 5000 by 0 (the processes share one host).
2. submits four runs of examples/heart_disease/job-cluster.yaml with `synergos submit`, four
   client processes at once (one project and run each, so their registrations never collide);
   each next one starts once the director lists the previous one's training job
   (`synergos jobs`), see kStagger below.
3. asserts: every submit exits 0; the four training jobs ran on both grids, each on its grid's
   TTP, at the same time (a grid-0 and a grid-1 training overlap; the runs took less wall time
   than their summed durations); `synergos status` counts 12 succeeded jobs and nothing else;
   the REST API has a model record per run whose file is under the shared outputs folder, and
   per run a validation record per hospital with its metrics; the director wrote four MLflow
   runs with the validation metrics.
4. stops the cluster with run-local.sh stop and checks that no process is left.

Isolation: the broker is shared, so the test runs in a vhost of its own (rabbitmqctl, removed
at the end). The config files are the compose ones with that single value changed; the test
checks that the copies differ from packaging/compose/config in the vhost line only.

Usage: cluster_runs_test.py --synergos BIN --source DIR --work DIR
Environment: SYNERGOS_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f),
SYNERGOS_TEST_RABBITMQCTL (default: rabbitmqctl on PATH).
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime

try:
    import yaml
except ImportError:  # python3-yaml is in packaging/build-deps.txt
    sys.exit("cluster_runs_test: python3-yaml is missing (apt-get install python3-yaml)")

kBudgetS = 85          # everything up to the stop; the stop has its own 20 s
kStartTimeoutS = 45    # run-local.sh start
kCtlTimeoutS = 30      # one rabbitmqctl call
kRuns = 4
kRounds = 60           # with kBatch, a training (3-5 s; CI measured 0.8-1.5 s at 20 rounds)
kEpochs = 5            # outlasts the next submit's set-up (~0.8 s in CI: process start,
                       # registration, a preprocess job), so the next training takes grid 1
kBatch = 8
# The director places a job on the grid with the fewest unfinished jobs, but it counts them
# and records the new job in two steps without a lock (JobService::submit), so trainings
# POSTed in the same millisecond can all see the same counts and land on one grid. Each submit
# therefore starts once the previous run's training is listed, so every placement sees the
# ones before it. The four clients still run at the same time.
kStagger = True
kCollab = "heart_cluster"
kExpt = "heart_expt"
kProcesses = ["director-1", "ttp-0", "ttp-1",
              "worker-g0-1", "worker-g0-2", "worker-g1-1", "worker-g1-2"]
kService = {"director-1": "director"}  # run-local name -> compose service, where they differ
kWorkerOf = {("a", 0): "worker-g0-1", ("b", 0): "worker-g0-2",
             ("a", 1): "worker-g1-1", ("b", 1): "worker-g1-2"}

failures = []
t0 = time.monotonic()


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def die(what):
    print("FAIL " + what, flush=True)
    raise SystemExit(1)


def remaining():
    return kBudgetS - (time.monotonic() - t0)


def broker_from_env():
    url = os.environ.get("SYNERGOS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    u = urllib.parse.urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 5672, urllib.parse.unquote(u.username or "guest")


def rabbitmqctl(ctl, *args):
    r = subprocess.run(["timeout", str(kCtlTimeoutS), ctl, "-q", *args],
                       capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


def parse_time(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def http_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read().decode())


# ---- 1. the processes run the compose commands --------------------------------------------------
def interpolate(text):
    """${VAR:-default} as compose does it, with this environment."""
    def repl(m):
        return os.environ.get(m.group(1)) or (m.group(3) or "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", repl, text)


def flag_groups(tokens):
    """['director', '--a', 'x', '--b'] -> ('director', {'--a': ['x'], '--b': []})."""
    role, groups, current = tokens[0], {}, None
    for t in tokens[1:]:
        if t.startswith("--"):
            current = t
            groups[current] = []
        elif current is None:
            raise ValueError("argument before any flag: " + t)
        else:
            groups[current].append(t)
    return role, groups


def volume_targets(service):
    """Container path -> (kind, source) for each volume of a service."""
    out = {}
    for v in service.get("volumes", []):
        parts = interpolate(v).split(":")
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/")) else "volume"
        out[target] = (kind, source)
    return out


def check_commands(compose_file, state, config_dir, data_root, broker_host, broker_port):
    doc = yaml.safe_load(open(compose_file))
    services = doc["services"]
    folder_of_volume = {}   # named volume -> host folder given for it
    volume_of_folder = {}   # and back: two volumes must not share a folder
    for name in kProcesses:
        service = services.get(kService.get(name, name))
        if not check(service is not None, f"compose has a service for {name}"):
            continue
        pid = int(open(os.path.join(state, "pids", name)).read().split()[0])
        actual = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[1:-1]
        expected = shlex.split(interpolate(service["command"]))
        before = len(failures)
        e_role, e_flags = flag_groups(expected)
        a_role, a_flags = flag_groups(actual)
        where = f"{name}: synergos {' '.join(actual)}"
        check(a_role == e_role, f"{name} plays role '{e_role}' as in compose ({a_role})")
        # Loopback binding is the only flag the plain processes add (one host, many servers).
        extra = set(a_flags) - set(e_flags) - {"--host"}
        missing = set(e_flags) - set(a_flags)
        check(not extra and not missing,
              f"{name} has the compose flags (extra {sorted(extra)}, missing {sorted(missing)})")
        if "--host" in a_flags:
            check(a_flags["--host"] == ["127.0.0.1"], f"{name} binds loopback only")
        mounts = volume_targets(service)
        for flag, values in e_flags.items():
            got = a_flags.get(flag)
            if got is None:
                continue
            if flag == "--config":
                kind, source = mounts.get(values[0], (None, None))
                ok = kind == "bind" and got == [os.path.join(config_dir, os.path.basename(source))]
                check(ok, f"{name} --config: the compose mount {source} ({got})")
            elif flag == "--queue":
                ok = values[:2] == ["rabbitmq", "rabbitmq"] and \
                    got == ["rabbitmq", broker_host, str(broker_port)] and values[2] == "5672"
                check(ok, f"{name} --queue: compose {values}, here {got}")
            elif flag == "--port":
                check(values == ["5000"] and got == ["0"],
                      f"{name} --port: compose {values}, here {got}")
            elif flag in ("--data-dir", "--outputs-dir", "--mlflow-dir"):
                kind, source = mounts.get(values[0], (None, None))
                folder = os.path.realpath(got[0]) if len(got) == 1 else None
                if kind is None:
                    check(False, f"{name} {flag} {values[0]}: no compose volume holds it")
                elif kind == "bind":
                    # The workers' data: ${SYNERGOS_WORKER_DATA:-./workers}/gG-K.
                    want = os.path.realpath(os.path.join(data_root, os.path.basename(source)))
                    check(folder == want, f"{name} {flag}: the bind mount {source} ({got})")
                else:
                    first = folder_of_volume.setdefault(source, folder)
                    owner = volume_of_folder.setdefault(folder, source)
                    check(first == folder and owner == source,
                          f"{name} {flag}: volume '{source}' is one host folder ({got})")
            else:
                check(got == values, f"{name} {flag}: compose {values}, here {got}")
        if len(failures) > before:
            print("     " + where)
    shared = {v: folder_of_volume.get(v) for v in ("data", "outputs", "mlflow")}
    check(all(shared.values()), f"director and TTPs share data, outputs and mlflow: {shared}")


# ---- 2. four submits ----------------------------------------------------------------------------
def synergos_json(bin_, server, *args):
    r = subprocess.run([bin_, *args, "--server", server, "--json"], capture_output=True,
                       text=True, timeout=20)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"synergos {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def run_env(env, i):
    return dict(env, CLUSTER_PROJECT=f"p{i}", CLUSTER_RUN=f"r{i}", CLUSTER_SEED=str(i))


def finish(p):
    """Waits for a client within the budget (killed past it); returns its output if piped."""
    try:
        out, _ = p.communicate(timeout=max(1, remaining()))
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return out or ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synergos", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    bin_ = os.path.realpath(a.synergos)
    source = os.path.realpath(a.source)
    work = a.work
    script = os.path.join(source, "packaging/cluster/run-local.sh")
    compose_dir = os.path.join(source, "packaging/compose")
    job_file = os.path.join(source, "examples/heart_disease/job-cluster.yaml")

    host, port, user = broker_from_env()
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as e:
        die(f"no RabbitMQ broker on {host}:{port} ({e}): start one with scripts/start-rabbitmq.sh"
            " and set SYNERGOS_TEST_AMQP_URL")
    ctl = os.environ.get("SYNERGOS_TEST_RABBITMQCTL") or shutil.which("rabbitmqctl")
    if not ctl:
        die("SYNERGOS_TEST_RABBITMQCTL is not set and rabbitmqctl is not on PATH: the test runs"
            " in a vhost of its own")

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    state = os.path.join(work, "state")
    vhost = f"synergos-cluster-runs-{os.getpid()}-{int(time.time())}"
    code, out = rabbitmqctl(ctl, "add_vhost", vhost)
    if code != 0:
        die(f"rabbitmqctl add_vhost {vhost}: {out}")
    submits = {}
    try:
        code, out = rabbitmqctl(ctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        if code != 0:
            die(f"rabbitmqctl set_permissions -p {vhost} {user}: {out}")
        run_cluster(bin_, source, work, state, script, compose_dir, job_file, host, port, vhost,
                    submits)
    finally:
        for p in submits.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.path.isdir(os.path.join(state, "pids")):
            subprocess.run([script, "stop", "--state", state, "--timeout", "10"],
                           capture_output=True, timeout=60)
        rabbitmqctl(ctl, "delete_vhost", vhost)
    if failures:
        print(f"{len(failures)} check(s) failed; logs in {state}/logs", file=sys.stderr)
        return 1
    print(f"all cluster-runs checks passed in {time.monotonic() - t0:.1f} s")
    return 0


def run_cluster(bin_, source, work, state, script, compose_dir, job_file, host, port, vhost,
                submits):
    # The compose config files with the test's vhost: nothing else may differ.
    config_dir = os.path.join(work, "config")
    os.makedirs(config_dir)
    for f in sorted(os.listdir(os.path.join(compose_dir, "config"))):
        text = open(os.path.join(compose_dir, "config", f)).read()
        copy, n = re.subn(r"(?m)^(\s+vhost:) /$", r"\1 " + vhost, text)
        open(os.path.join(config_dir, f), "w").write(copy)
        uses_mq = re.search(r"(?m)^message_queue:\n(?:\s+#.*\n)*\s+backend: rabbitmq", text)
        check(n == (1 if uses_mq else 0), f"config/{f}: vhost set {n} time(s)")
        diff = [(x, y) for x, y in zip(text.splitlines(), copy.splitlines()) if x != y]
        check(len(text.splitlines()) == len(copy.splitlines()) and
              all("vhost:" in x and "vhost:" in y for x, y in diff),
              f"config/{f} is the compose file but for the vhost line")
    # Every worker's data folder holds the example data, as ./workers/gG-K would in compose.
    data_root = os.path.join(work, "workers")
    os.makedirs(data_root)
    for g in ("g0-1", "g0-2", "g1-1", "g1-2"):
        os.symlink(os.path.join(source, "examples/data"), os.path.join(data_root, g))

    start = subprocess.run(
        [script, "start", "--bin", bin_, "--state", state, "--config-dir", config_dir,
         "--broker", f"{host}:{port}", "--data-root", data_root,
         "--timeout", str(kStartTimeoutS)],
        capture_output=True, text=True, timeout=kStartTimeoutS * 3 + 30)
    if start.returncode != 0:
        die(f"run-local.sh start failed:\n{start.stderr}")
    check(True, f"run-local.sh start: 7 processes up in {time.monotonic() - t0:.1f} s")

    check_commands(os.path.join(compose_dir, "docker-compose.yml"), state, config_dir, data_root,
                   host, port)

    ports = {n: open(os.path.join(state, "ports", n)).read().strip()
             for n in kProcesses if not n.startswith("ttp")}
    server = f"http://127.0.0.1:{ports['director-1']}"
    env = dict(os.environ, CLUSTER_ROUNDS=str(kRounds), CLUSTER_EPOCHS=str(kEpochs),
               CLUSTER_BATCH_SIZE=str(kBatch))
    for (hospital, grid), worker in kWorkerOf.items():
        env[f"WORKER_G{grid}_{hospital.upper()}_HOST"] = "127.0.0.1"
        env[f"WORKER_G{grid}_{hospital.upper()}_PORT"] = ports[worker]

    # Four clients at once, one project and run each; each starts once the previous one's
    # training is listed (kStagger).
    outputs = {}
    for i in range(1, kRuns + 1):
        outputs[i] = open(os.path.join(work, f"submit-{i}.out"), "w+")
        submits[i] = subprocess.Popen(
            [bin_, "submit", job_file, "--server", server,
             "--timeout", str(max(10, int(remaining())))],
            env=run_env(env, i), stdout=outputs[i], stderr=subprocess.STDOUT)
        while kStagger and i < kRuns:
            jobs = synergos_json(bin_, server, "jobs")
            if any(j.get("process") == "train" and j.get("filters", [None, None])[1] == f"p{i}"
                   for j in jobs):
                break
            if submits[i].poll() is not None or remaining() < 0:
                outputs[i].seek(0)
                die(f"submit {i} ended or took too long before its training was listed:\n"
                    + outputs[i].read())
            time.sleep(0.1)  # polling the director, as `synergos submit` does
    check(True, f"{kRuns} submits running (the last started at {time.monotonic() - t0:.1f} s)")

    for i, p in submits.items():
        if not isinstance(i, int):
            continue
        finish(p)
        outputs[i].seek(0)
        text = outputs[i].read()
        ok = check(p.returncode == 0 and text.rstrip().endswith("done"),
                   f"synergos submit of run r{i} exited {p.returncode}")
        if not ok:
            print(text)
        check(f"validation of run r{i}:" in text and "hospital_a" in text and "hospital_b" in text,
              f"submit r{i} printed the validation table")
    print(f"     submits done at {time.monotonic() - t0:.1f} s", flush=True)

    # ---- 3. what the director recorded ----------------------------------------------------------
    jobs = synergos_json(bin_, server, "jobs")
    by_process = {}
    for j in jobs:
        by_process.setdefault(j.get("process"), []).append(j)
    for process in ("preprocess", "train", "validate"):
        got = by_process.get(process, [])
        check(len(got) == kRuns and all(j.get("state") == "succeeded" for j in got),
              f"{kRuns} {process} jobs succeeded: " +
              ", ".join(f"{'/'.join(j['filters'][1:])}@grid {j['grid']} {j['state']}" for j in got))
    trains = sorted(by_process.get("train", []), key=lambda j: j.get("started_at", ""))
    for j in trains:
        check(j.get("ttp_id") == f"ttp-{j.get('grid')}",
              f"training {'/'.join(j['filters'])} ran on grid {j.get('grid')} by {j.get('ttp_id')}")
    grids = sorted({j.get("grid") for j in trains})
    check(grids == [0, 1], f"the trainings ran on both grids: {grids}")
    spans = [(parse_time(j["started_at"]), parse_time(j["finished_at"]), j["grid"], j["filters"][3])
             for j in trains if j.get("started_at") and j.get("finished_at")]
    for s, f, g, r in spans:
        print(f"     {r} grid {g}: {s - spans[0][0]:6.2f} s .. {f - spans[0][0]:6.2f} s")
    overlaps = [(a[3], b[3]) for a in spans for b in spans
                if a[2] == 0 and b[2] == 1 and a[0] < b[1] and b[0] < a[1]]
    check(bool(overlaps), f"a grid-0 and a grid-1 training ran at the same time: {overlaps}")
    if len(spans) == kRuns:
        # Time during which some training ran (the union of the spans), not first start to last
        # end: the staggered submits leave gaps between trainings that depend on the client.
        busy = sum(f - s for s, f, _, _ in spans)
        covered, end = 0.0, None
        for s, f, _, _ in sorted(spans):
            if end is None or s >= end:
                covered += f - s
                end = f
            elif f > end:
                covered += f - end
                end = f
        check(covered < busy,
              f"the trainings ran during {covered:.2f} s for {busy:.2f} s of work")

    status = synergos_json(bin_, server, "status")
    check(status.get("ready") is True and status.get("jobs") == {"succeeded": 3 * kRuns},
          f"synergos status: {status}")

    outputs_dir = os.path.realpath(os.path.join(state, "shared", "outputs"))
    for i in range(1, kRuns + 1):
        tail = f"/collaborations/{kCollab}/projects/p{i}"
        models = http_json(f"{server}/ttp/train{tail}/models/{kExpt}/r{i}")["data"]
        path = models[0].get("global", {}).get("path", "") if len(models) == 1 else ""
        real = os.path.realpath(path) if path else ""
        check(real.startswith(outputs_dir + os.sep) and os.path.isfile(real) and
              os.path.getsize(real) > 0,
              f"run r{i}: one model record, its file under the shared outputs: {path}")
        vals = http_json(f"{server}/ttp/evaluate{tail}/validations/{kExpt}/r{i}")["data"]
        who = sorted(v.get("key", {}).get("participant_id", "") for v in vals)
        check(who == ["hospital_a", "hospital_b"],
              f"run r{i}: a validation record per hospital {who}")
        for v in vals:
            stats = v.get("evaluate", {}).get("statistics", {})
            acc = stats.get("accuracy", [])
            tps = stats.get("TPs", [])
            ok = len(acc) == 5 and all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in acc) \
                and len(tps) == 5 and sum(tps) > 0
            check(ok, f"run r{i} {v['key'].get('participant_id')}: metrics per class "
                      f"(accuracy {[round(x, 3) for x in acc]}, TPs {tps})")

    mlflow = os.path.join(state, "shared", "mlflow")

    def count_runs_with_metrics():
        found = 0
        for expt in os.listdir(mlflow):
            edir = os.path.join(mlflow, expt)
            if not expt.isdigit() or not os.path.isdir(edir):
                continue
            for run in os.listdir(edir):
                metrics = os.path.join(edir, run, "metrics")
                if os.path.isdir(metrics) and any(m.startswith("hospital_a.evaluate.")
                                                  for m in os.listdir(metrics)):
                    found += 1
        return found
    # The metrics are logged after the job is archived (the post-archival step), so a client
    # can see the last validation succeed just before its metrics are written.
    tracked_by = time.monotonic() + 15
    runs_with_metrics = count_runs_with_metrics()
    while runs_with_metrics < kRuns and time.monotonic() < tracked_by:
        time.sleep(0.2)
        runs_with_metrics = count_runs_with_metrics()
    check(runs_with_metrics == kRuns,
          f"MLflow has {runs_with_metrics} runs with validation metrics")

    # ---- 4. stop --------------------------------------------------------------------------------
    pids = [int(open(os.path.join(state, "pids", n)).read().split()[0]) for n in kProcesses]
    stop = subprocess.run([script, "stop", "--state", state], capture_output=True, text=True,
                          timeout=60)
    check(stop.returncode == 0, f"run-local.sh stop: {stop.stderr.strip()}")
    check("SIGKILL" not in stop.stderr, "every process stopped on SIGTERM")
    left = [p for p in pids if process_alive(p)]
    check(not left, f"no cluster process is left (stopped {len(pids)}): {left}")
    users = []
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            try:
                cmd = open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if state in cmd and process_alive(int(p)):
                users.append(p)
    check(not users, f"no process uses {state}: {users}")
    print(f"     stopped at {time.monotonic() - t0:.1f} s")


def process_alive(pid):
    """Runs and is not a zombie."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # ctest's timeout: clean up first
    sys.exit(main())
