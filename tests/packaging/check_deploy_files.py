#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the deployment files against the executable they start.

- packaging/compose/docker-compose.yml parses (anchors, merge keys, ${VAR:-default}
  interpolation as compose does it), has the cluster's services, and every Synergos service's
  command uses only flags that `synergos <role> --help` lists; the whole command, with the
  mounted config file, passes `synergos check-config` (for basic and for graylog logging).
- every config file the compose file mounts passes `synergos check-config`.
- packaging/systemd/*.service parse, their ExecStart (specifiers and environment expanded)
  uses only accepted flags and passes `synergos check-config` with the config the .deb
  installs, and the directories the process writes lie in the unit's StateDirectory.
- packaging/Dockerfile has the build and runtime stages, copies files that exist, and ends in
  the runtime contract (non-root user, entry point, volumes, port).

Usage: check_deploy_files.py --synergos BIN --source DIR
"""

import argparse
import os
import re
import shlex
import subprocess
import sys

try:
    import yaml
except ImportError:  # python3-yaml comes with python3-torch (packaging/build-deps.txt)
    sys.exit("check_deploy_files: python3-yaml is missing (apt-get install python3-yaml)")

kRoles = ("director", "ttp", "worker")
kTimeoutS = 60

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)
    return ok


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kTimeoutS, env=env)


# ---- the executable's flags -------------------------------------------------------------------
def accepted_flags(synergos, role):
    """Long and short flags listed by `synergos ROLE --help` (plus the -mq alias it names)."""
    out = run([synergos, role, "--help"])
    if out.returncode != 0:
        sys.exit(f"check_deploy_files: '{synergos} {role} --help' failed: {out.stderr.strip()}")
    flags = set()
    for line in out.stdout.splitlines():
        m = re.match(r"^\s{1,4}(?:(-[A-Za-z0-9]) \[ )?(--[A-Za-z0-9_-]+)", line)
        if m:
            flags.add(m.group(2))
            if m.group(1):
                flags.add(m.group(1))
    for alias in re.findall(r"alias (-[A-Za-z0-9_-]+)", out.stdout):
        flags.add(alias)
    if "--config" not in flags:
        sys.exit(f"check_deploy_files: no flags found in '{synergos} {role} --help':\n{out.stdout}")
    return flags


def flags_in(tokens):
    return [t for t in tokens if t.startswith("-") and not re.fullmatch(r"-[0-9.]+", t)]


def flag_value(tokens, flag):
    for i, t in enumerate(tokens):
        if t == flag and i + 1 < len(tokens):
            return tokens[i + 1]
    return None


def check_config(synergos, config_file, args, what):
    """Runs `synergos check-config --config FILE ARGS` and records the outcome."""
    cmd = [synergos, "check-config", "--config", config_file] + list(args)
    env = dict(os.environ)
    env.pop("SYNERGOS_PLUGIN_PATH", None)
    out = run(cmd, env)
    detail = (out.stdout + out.stderr).strip().replace("\n", " | ")
    return check(out.returncode == 0, f"{what}: synergos check-config {shlex.join(cmd[3:])}"
                 + ("" if out.returncode == 0 else f" -> exit {out.returncode}: {detail}"))


# ---- compose ----------------------------------------------------------------------------------
class Loader(yaml.SafeLoader):
    pass


def interpolate(value, env):
    """Compose variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}."""
    def repl(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3)
        current = env.get(name)
        if op == ":-" and not current:
            return default
        if op == "-" and current is None:
            return default
        return current or ""
    pattern = r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
    if isinstance(value, str):
        return re.sub(pattern, repl, value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def synergos_services(doc):
    return {name: svc for name, svc in doc["services"].items()
            if "packaging/Dockerfile" in str((svc.get("build") or {}).get("dockerfile", ""))}


def check_compose(synergos, source, flags):
    compose_dir = os.path.join(source, "packaging", "compose")
    path = os.path.join(compose_dir, "docker-compose.yml")
    with open(path, encoding="utf-8") as f:
        raw = yaml.load(f, Loader=Loader)
    check(isinstance(raw, dict) and isinstance(raw.get("services"), dict),
          f"{path} parses to a mapping with services")
    names = set(raw["services"])
    for wanted in ["rabbitmq", "director", "ttp-0", "ttp-1", "worker-g0-1", "worker-g0-2",
                   "worker-g1-1", "worker-g1-2", "graylog"]:
        check(wanted in names, f"compose: service '{wanted}' exists")
    declared_volumes = set((raw.get("volumes") or {}).keys())
    profiled = {n for n, s in raw["services"].items() if s.get("profiles")}
    check("graylog" in profiled and "rabbitmq" not in profiled and "director" not in profiled,
          "compose: Graylog is behind a profile, the cluster is not")
    check(all("graylog" in raw["services"][n]["profiles"] for n in profiled),
          "compose: every profiled service belongs to the 'graylog' profile")
    for name, svc in raw["services"].items():
        deps = svc.get("depends_on") or []
        for dep in (deps if isinstance(deps, list) else deps.keys()):
            check(dep in names, f"compose: {name} depends on existing service '{dep}'")
            if name not in profiled:
                check(dep not in profiled,
                      f"compose: {name} (always on) does not depend on profiled '{dep}'")

    # Shell snippets (health checks, the Graylog setup) at least parse.
    doc = interpolate(raw, {})
    for name, svc in doc["services"].items():
        snippets = []
        test = (svc.get("healthcheck") or {}).get("test") or []
        if len(test) == 4 and test[0] == "CMD" and test[2] == "-c":
            snippets.append((test[1], test[3]))
        entry = svc.get("entrypoint")
        if isinstance(entry, list) and entry[-1:] == ["-c"] and svc.get("command"):
            snippets.append(("sh", svc["command"][0]))
        for shell, script in snippets:
            out = run([shell, "-n", "-c", script])
            check(out.returncode == 0, f"compose: {name}: '{shell} -n' accepts its script "
                  f"{out.stderr.strip()}")

    variants = {"basic logging": {}, "graylog logging":
                {"SYNERGOS_LOGGING_VARIANT": "graylog graylog 12201"}}
    for label, env in variants.items():
        doc = interpolate(raw, env)
        services = synergos_services(doc)
        check(len(services) == 7, f"compose ({label}): 7 Synergos services, got {sorted(services)}")
        grids, ids, worker_grids = [], [], {}
        for name, svc in sorted(services.items()):
            command = svc.get("command")
            tokens = shlex.split(command) if isinstance(command, str) else list(command or [])
            if not check(bool(tokens) and tokens[0] in kRoles,
                         f"compose ({label}): {name} command starts with a role: {tokens[:1]}"):
                continue
            role = tokens[0]
            unknown = [t for t in flags_in(tokens[1:]) if t not in flags[role]]
            check(not unknown, f"compose ({label}): {name} uses only flags of "
                  f"'synergos {role} --help' (unknown: {unknown})")
            ids.append(flag_value(tokens, "--id"))
            if role == "ttp":
                grids.append(flag_value(tokens, "--grid"))
            if role == "worker":
                m = re.fullmatch(r"worker-g(\d+)-\d+", name)
                if check(m is not None, f"compose: worker service name {name} names its grid"):
                    worker_grids[m.group(1)] = worker_grids.get(m.group(1), 0) + 1
            # The config file: --config names a container path; a volume maps it to ./config/.
            mounts = {}
            for volume in svc.get("volumes") or []:
                parts = volume.split(":")
                if len(parts) >= 2:
                    mounts[parts[1]] = parts[0]
                    if not parts[0].startswith((".", "/", "$")):
                        check(parts[0] in declared_volumes,
                              f"compose: {name} volume '{parts[0]}' is declared")
            container_config = flag_value(tokens, "--config")
            host_config = mounts.get(container_config or "")
            if not check(host_config is not None and host_config.startswith("./"),
                         f"compose: {name} mounts its --config {container_config} from the "
                         f"compose folder ({host_config})"):
                continue
            host_config = os.path.normpath(os.path.join(compose_dir, host_config))
            if not check(os.path.isfile(host_config), f"compose: {host_config} exists"):
                continue
            args = []
            i = 1
            while i < len(tokens):
                if tokens[i] == "--config":
                    i += 2
                    continue
                args.append(tokens[i])
                i += 1
            check_config(synergos, host_config, args, f"compose ({label}): {name}")
        check(sorted(grids) == ["0", "1"], f"compose ({label}): TTPs on grids 0 and 1: {grids}")
        check(worker_grids == {"0": 2, "1": 2},
              f"compose ({label}): two workers per grid: {worker_grids}")
        check(len(ids) == len(set(ids)) and None not in ids,
              f"compose ({label}): every Synergos service has its own --id: {ids}")

    mounted = set()
    for svc in raw["services"].values():
        for volume in svc.get("volumes") or []:
            source_part = volume.split(":")[0]
            if source_part.startswith("./config/"):
                mounted.add(os.path.normpath(os.path.join(compose_dir, source_part)))
    config_dir = os.path.join(compose_dir, "config")
    on_disk = {os.path.join(config_dir, f) for f in os.listdir(config_dir) if f.endswith(".yaml")}
    check(mounted == on_disk, f"compose: the mounted configs are the files in {config_dir}")
    for config in sorted(mounted):
        check_config(synergos, config, [], "compose config")


# ---- systemd ----------------------------------------------------------------------------------
def parse_unit(path):
    """systemd unit syntax: [Section], Key=Value, '#'/';' comments, '\\' continuations."""
    sections, current, pending = {}, None, ""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if pending:
                line = pending + " " + line.strip()
                pending = ""
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            if stripped.endswith("\\"):
                pending = stripped[:-1]
                continue
            m = re.fullmatch(r"\[([A-Za-z]+)\]", stripped)
            if m:
                current = sections.setdefault(m.group(1), [])
                continue
            if current is None or "=" not in stripped:
                raise ValueError(f"{path}:{number}: not 'Key=Value' inside a section: {stripped}")
            key, value = stripped.split("=", 1)
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()):
                raise ValueError(f"{path}:{number}: bad key '{key}'")
            current.append((key.strip(), value.strip()))
    return sections


def values(section, key):
    return [v for k, v in section if k == key]


def expand_exec(command, environment, instance):
    """ExecStart as systemd runs it: %-specifiers, ${VAR} as one word, $VAR split into words."""
    command = command.replace("%%", "\0").replace("%i", instance).replace("%I", instance)
    if "%" in command:
        raise ValueError(f"unexpected specifier in '{command}'")
    command = command.replace("\0", "%")
    words = []
    for word in shlex.split(command):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            words.extend(environment.get(m.group(1), "").split())
            continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                            lambda v: environment.get(v.group(1), ""), word))
    return words


def check_units(synergos, source, flags):
    unit_dir = os.path.join(source, "packaging", "systemd")
    units = sorted(f for f in os.listdir(unit_dir) if f.endswith(".service"))
    check(units == ["synergos-director.service", "synergos-ttp@.service",
                    "synergos-worker@.service"], f"systemd: one unit per role: {units}")
    samples = {"director": "", "ttp": "1", "worker": "hospital-a"}
    for unit in units:
        path = os.path.join(unit_dir, unit)
        try:
            sections = parse_unit(path)
        except ValueError as e:
            check(False, f"systemd: {e}")
            continue
        check(True, f"systemd: {unit} parses")
        role = re.fullmatch(r"synergos-(\w+)@?\.service", unit).group(1)
        service = sections.get("Service", [])
        check(bool(values(sections.get("Unit", []), "Description")), f"{unit}: has a Description")
        check("multi-user.target" in values(sections.get("Install", []), "WantedBy"),
              f"{unit}: WantedBy=multi-user.target")
        check(("@" in unit) == (role != "director"),
              f"{unit}: TTPs and workers are templates, the director is not")
        environment = {}
        for value in values(service, "Environment"):
            for assignment in shlex.split(value):
                key, _, val = assignment.partition("=")
                environment[key] = val
        for env_file in values(service, "EnvironmentFile"):
            check(env_file.startswith("-"), f"{unit}: EnvironmentFile {env_file} is optional")
        exec_start = values(service, "ExecStart")
        if not check(len(exec_start) == 1, f"{unit}: one ExecStart"):
            continue
        instance = samples[role]
        words = expand_exec(exec_start[0], environment, instance)
        check(words[:2] == ["/usr/bin/synergos", role],
              f"{unit}: ExecStart runs /usr/bin/synergos {role}: {words[:2]}")
        unknown = [t for t in flags_in(words[2:]) if t not in flags[role]]
        check(not unknown, f"{unit}: ExecStart uses only flags of 'synergos {role} --help' "
              f"(unknown: {unknown})")
        installed_config = flag_value(words, "--config") or ""
        check(installed_config.startswith("/etc/synergos/"),
              f"{unit}: --config is an installed config: {installed_config}")
        # The .deb installs configs/ as /etc/synergos/.
        config = os.path.join(source, "configs", os.path.basename(installed_config))
        if not check(os.path.isfile(config), f"{unit}: {installed_config} comes from {config}"):
            continue
        args = []
        i = 2
        while i < len(words):
            if words[i] == "--config":
                i += 2
                continue
            args.append(words[i])
            i += 1
        check_config(synergos, config, args, f"systemd: {unit} (instance '{instance}')")

        # Where the process writes must be writable under DynamicUser/ProtectSystem: inside
        # a StateDirectory.
        state_dirs = []
        for value in values(service, "StateDirectory"):
            state_dirs += ["/var/lib/" + d.replace("%i", instance) for d in value.split()]
        with open(config, encoding="utf-8") as f:
            paths = (yaml.safe_load(f) or {}).get("paths") or {}
        for key, flag in (("data_dir", "--data-dir"), ("outputs_dir", "--outputs-dir"),
                          ("mlflow_dir", "--mlflow-dir")):
            where = flag_value(words, flag) or paths.get(key)
            check(where is not None and any(os.path.normpath(where) == d or
                                            where.startswith(d + "/") for d in state_dirs),
                  f"{unit}: {key} {where} lies in a StateDirectory {state_dirs}")
        workdir = values(service, "WorkingDirectory")
        if workdir:
            wd = workdir[0].replace("%i", instance)
            check(wd in state_dirs, f"{unit}: WorkingDirectory {wd} is a StateDirectory")


# ---- Dockerfile -------------------------------------------------------------------------------
def check_dockerfile(source):
    path = os.path.join(source, "packaging", "Dockerfile")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Join continuation lines, drop comments.
    logical = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    instructions = [line.strip() for line in logical.splitlines() if line.strip()]
    args = {}
    stages = []
    for ins in instructions:
        word, _, rest = ins.partition(" ")
        word = word.upper()
        if word == "ARG" and not stages:
            key, _, val = rest.partition("=")
            args[key.strip()] = val.strip()
        elif word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            image = re.sub(r"\$\{(\w+)\}", lambda v: args.get(v.group(1), ""), m.group(1))
            stages.append({"image": image, "name": m.group(2), "ins": []})
        elif stages:
            stages[-1]["ins"].append((word, rest.strip()))
    check([(s["name"], s["image"]) for s in stages] ==
          [("dashboard", "node:20-bookworm-slim"), ("build", "debian:bookworm"),
           ("runtime", "debian:bookworm-slim")],
          f"Dockerfile: stages dashboard (node:20-bookworm-slim), build (debian:bookworm) and "
          f"runtime (debian:bookworm-slim): {[(s['name'], s['image']) for s in stages]}")
    if len(stages) != 3:
        return
    dashboard, build, runtime = stages
    dashboard_runs = " ".join(r for w, r in dashboard["ins"] if w == "RUN")
    check("npm ci" in dashboard_runs and "npm run build" in dashboard_runs and
          "/dashboard/dist/index.html" in dashboard_runs,
          "Dockerfile: the dashboard stage runs npm ci and npm run build and checks index.html")
    # The director looks for it at <exe>/../share/synergos/dashboard (dashboard_routes.cpp).
    check(("COPY", "--from=dashboard /dashboard/dist /opt/synergos/share/synergos/dashboard")
          in runtime["ins"],
          "Dockerfile: the runtime stage copies the dashboard to /opt/synergos/share/synergos/dashboard")
    build_runs = " ".join(r for w, r in build["ins"] if w == "RUN")
    check("build-deps.txt" in build_runs and "cmake --preset release" in build_runs,
          "Dockerfile: the build stage installs build-deps.txt and runs cmake --preset release")
    # The image installs the build's part of the list only: the marker must be in both files.
    marker = "# --- tests and benchmarks"
    with open(os.path.join(source, "packaging", "build-deps.txt"), encoding="utf-8") as f:
        deps = f.read()
    check(("/^" + marker + "/,$d") in build_runs and any(l.startswith(marker) for l in deps.splitlines()),
          "Dockerfile: the build stage stops build-deps.txt at its tests-and-benchmarks marker")
    runtime_runs = " ".join(r for w, r in runtime["ins"] if w == "RUN")
    check("runtime-deps.txt" in runtime_runs and "build-deps" not in runtime_runs,
          "Dockerfile: the runtime stage installs runtime-deps.txt only")
    for stage in stages:
        for word, rest in stage["ins"]:
            if word == "COPY" and "--from=" not in rest:
                parts = [p for p in rest.split() if not p.startswith("--")]
                for src in parts[:-1]:
                    src_path = os.path.join(source, src)
                    check(os.path.exists(src_path), f"Dockerfile: COPY source {src} exists")
    last = {}
    for word, rest in runtime["ins"]:
        last[word] = rest
    check(last.get("USER") == "synergos", f"Dockerfile: runs as user synergos ({last.get('USER')})")
    check(last.get("ENTRYPOINT") == '["synergos"]', "Dockerfile: ENTRYPOINT [\"synergos\"]")
    check(last.get("CMD") == '["--help"]', "Dockerfile: CMD [\"--help\"]")
    check(last.get("EXPOSE") == "5000", "Dockerfile: EXPOSE 5000")
    check(last.get("VOLUME") ==
          '["/synergos/data", "/synergos/outputs", "/synergos/mlflow"]',
          f"Dockerfile: VOLUME data, outputs, mlflow ({last.get('VOLUME')})")
    with open(os.path.join(source, "CMakePresets.json"), encoding="utf-8") as f:
        check('"name": "release"' in f.read(), "CMakePresets.json has the release preset")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synergos", required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()
    args.source = os.path.abspath(args.source)
    flags = {role: accepted_flags(args.synergos, role) for role in kRoles}
    check_compose(args.synergos, args.source, flags)
    check_units(args.synergos, args.source, flags)
    check_dockerfile(args.source)
    if failures:
        print(f"\n{len(failures)} check(s) failed:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    print("\nall deployment-file checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
