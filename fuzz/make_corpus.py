#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpora fuzz/corpus/<target>/seed-* from the project's own files (examples,
configs, test data) and a few hand-written requests and messages. Run it after changing the
seeds; crash and regression inputs (crash-*, regress-*) in the same folders are left alone."""

import glob
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
SEP = b"\n%%\n"


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def head_lines(data, n):
    return b"\n".join(data.split(b"\n")[:n]) + b"\n"


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def clear_seeds():
    for path in glob.glob(os.path.join(CORPUS, "*", "seed-*")):
        os.remove(path)


# --- safetensors -----------------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def seeds_safetensors():
    f32 = lambda values: struct.pack("<%df" % len(values), *values)
    write("safetensors", "linear", safetensors({
        "nnl_0_linear.weight": ("F32", [1, 13], f32([0.1 * i for i in range(13)])),
        "nnl_0_linear.bias": ("F32", [1], f32([0.5]))}, {"round": "3", "format": "pt"}))
    write("safetensors", "dtypes", safetensors({
        "a": ("F64", [2], struct.pack("<2d", 1.0 / 3.0, -0.0)),
        "b": ("I64", [2], struct.pack("<2q", -(2 ** 40), 7)),
        "c": ("I32", [1], struct.pack("<i", -3)),
        "d": ("U8", [3], bytes([0, 255, 17])),
        "scalar": ("F32", [], f32([42.0])),
        "empty": ("F32", [0, 3], b"")}))
    write("safetensors", "empty", safetensors({}))
    write("safetensors", "metadata-only", safetensors({}, {"note": "caf\u00e9"}))
    write("safetensors", "truncated", safetensors({"w": ("F32", [4], f32([1, 2, 3, 4]))})[:-5])


# --- queue messages --------------------------------------------------------------------------
def seeds_messages():
    job = {"job_id": "job-0123456789abcdef01234567", "process": "train",
           "keys": ["heart", "hp", "e1", "r1"], "grid": 0,
           "grids": [[{"host": "127.0.0.1", "port": 8020, "f_port": 5000}]],
           "parameters": {"aggregator": "fedavg", "rounds": 2}, "attempt": 1, "max_attempts": 3}
    write("messages", "job-train", json.dumps(job).encode())
    write("messages", "job-preprocess", json.dumps(dict(job, process="preprocess",
                                                        keys=["heart", "hp"])).encode())
    base = {"job_id": job["job_id"], "process": "train", "filters": job["keys"], "grid": 0,
            "attempt": 1, "ttp_id": "ttp-0"}
    write("messages", "started", json.dumps(dict(base, type="started")).encode())
    write("messages", "progress", json.dumps(dict(base, type="progress", progress={
        "round": 1, "rounds": 2, "loss": 0.61, "grid": 0})).encode())
    write("messages", "result-ok", json.dumps(dict(base, type="result", status="succeeded",
                                                   reason="", final=True, outputs={
                                                       "model": "outputs/heart/hp/e1/r1"})).encode())
    write("messages", "result-failed", json.dumps(dict(base, type="result", status="failed",
                                                       reason="worker unreachable",
                                                       final=False, outputs={})).encode())
    write("messages", "bad-grid", b'{"job_id":"j","process":"train","keys":[],"grid":-1,'
                                  b'"parameters":{}}')


# --- YAML config -----------------------------------------------------------------------------
def seeds_config():
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")) +
                       glob.glob(os.path.join(ROOT, "packaging", "compose", "config", "*.yaml")) +
                       glob.glob(os.path.join(ROOT, "tests", "cli", "data", "*.yaml"))):
        rel = os.path.relpath(path, ROOT)
        write("config", rel.replace("/", "_"), read(rel))


# --- architecture lists ----------------------------------------------------------------------
def seeds_architecture():
    for example in ("heart_disease", "abalone"):
        arch = read("examples/data/%s/architecture.json" % example)
        hyper = read("examples/data/%s/hyperparameters.json" % example)
        write("architecture", example, arch + SEP + hyper)
    conv = [
        {"l_type": "Conv2d", "is_input": True, "activation": "relu",
         "structure": {"in_channels": 1, "out_channels": 4, "kernel_size": 3, "stride": [1, 1],
                       "padding": "same", "padding_mode": "zeros", "bias": True}},
        {"l_type": "MaxPool2d", "structure": {"kernel_size": [2, 2], "ceil_mode": False}},
        {"l_type": "BatchNorm2d", "structure": {"num_features": 4, "momentum": None}},
        {"l_type": "Dropout", "structure": {"p": 0.25}},
        {"l_type": "Flatten", "structure": {"start_dim": 1, "end_dim": -1}},
        {"l_type": "Linear", "activation": "log_softmax",
         "structure": {"in_features": 784, "out_features": 10}},
        {"l_type": "LeakyReLU", "structure": {"negative_slope": 0.2}},
        {"l_type": "Softmax", "structure": {"dim": 1}},
    ]
    args = {"rounds": 2, "epochs": 1, "batch_size": 32, "lr": 0.001, "weight_decay": 0.0,
            "criterion": "NLLLoss", "optimizer": "SGD", "lr_scheduler": "CyclicLR",
            "base_lr": 0.0005, "max_lr": 0.005, "seed": 42, "mu": 0.1}
    write("architecture", "conv", json.dumps(conv).encode() + SEP + json.dumps(args).encode())
    conv1d = [{"l_type": "Conv1d", "structure": {"in_channels": 1, "out_channels": 2,
                                                 "kernel_size": [3], "dilation": 2, "groups": 1}},
              {"l_type": "AvgPool1d", "structure": {"kernel_size": 2, "count_include_pad": False}},
              {"l_type": "ELU", "structure": {"alpha": 1.0}},
              {"l_type": "GELU", "structure": {"approximate": "tanh"}}]
    write("architecture", "conv1d", json.dumps(conv1d).encode())


# --- CSV + schema ----------------------------------------------------------------------------
def seeds_tabular():
    for example, folder in (("heart_disease", "data1/iid_1"), ("abalone", "data1/train")):
        base = "examples/data/%s/%s/" % (example, folder)
        schema = read(base + "schema.json")
        csv = [p for p in os.listdir(os.path.join(ROOT, base)) if p.endswith(".csv")][0]
        rows = read(base + csv)
        write("tabular", example, schema + SEP + head_lines(rows, 12))
        write("tabular", example + "-two-files",
              schema + SEP + head_lines(rows, 6) + SEP +
              rows.split(b"\n")[0] + b"\n" + b"\n".join(rows.split(b"\n")[6:10]) + b"\n")
    write("tabular", "quoted", b'{"name": "object", "x": "float64", "target": "category"}' + SEP +
          b'name,x,target\r\n"a, ""quoted""\nline",1.5,yes\r\nb,,no\r\n\r\n"c",NaN,yes\r\n')
    write("tabular", "bool-missing", b'{"flag": "bool", "n": "int64", "target": "float64"}' +
          SEP + b"\xef\xbb\xbfflag,n,target\nTrue,1,0.5\nFalse,,1.5\n,3,\n")


# --- JPEG marker structure -------------------------------------------------------------------
def jpeg_segment(marker, body):
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg_dht(class_id, counts, values=None):
    counts = list(counts) + [0] * (16 - len(counts))
    if values is None:
        values = bytes(i % 256 for i in range(sum(counts)))
    return jpeg_segment(0xC4, bytes([class_id] + counts) + values)


def seeds_jpeg():
    # Marker structure only (the target never decodes): SOI, APP0, DQT, SOF, DHT, SOS, entropy
    # data with a stuffed FF 00, a restart marker and fill bytes, EOI.
    app0 = jpeg_segment(0xE0, b"JFIF\0\1\1\0\0\1\0\1\0\0")
    dqt = jpeg_segment(0xDB, b"\0" + bytes([1] * 64))
    sof0 = jpeg_segment(0xC0, b"\x08\0\x08\0\x08\x01\x01\x11\0")
    dc = jpeg_dht(0x00, [0, 1, 5, 1, 1, 1, 1, 1, 1])  # the luminance DC table of T.81 Annex K
    ac = jpeg_dht(0x10, [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4])
    sos = jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    scan = b"\x12\x34\xff\x00\x56\xff\xd0\x78\xff\xff\x9a"
    write("jpeg", "baseline", b"\xff\xd8" + app0 + dqt + sof0 + dc + ac + sos + scan + b"\xff\xd9")
    # Progressive: a DHT between two scans (a decoder reads it after the first scan's data).
    sof2 = jpeg_segment(0xC2, b"\x08\0\x08\0\x08\x01\x01\x11\0")
    dc_scan = jpeg_segment(0xDA, b"\x01\x01\x00\x00\x00\x00")
    ac_scan = jpeg_segment(0xDA, b"\x01\x01\x00\x01\x3f\x00")
    write("jpeg", "progressive", b"\xff\xd8" + dqt + sof2 + dc + dc_scan + scan + ac + ac_scan +
          scan + b"\xff\xd9")
    # Refused: the unused AC table 3 with 700 codes (stb 2.27 wrote past values[256]).
    bad = jpeg_dht(0x13, [0] * 8 + [255, 255, 190], b"\xff" * 700)
    write("jpeg", "dht-overflow", b"\xff\xd8" + dqt + sof0 + dc + ac + bad + sos + scan + b"\xff\xd9")


# --- HTTP requests ---------------------------------------------------------------------------
def request(method, path, body=None, extra=""):
    data = b"" if body is None else json.dumps(body).encode()
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
    if body is not None:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    return (head + extra + "\r\n").encode() + data


def seeds_http():
    c = "/ttp/connect"
    p = c + "/collaborations/c1/projects/p1"
    collab = {"collab_id": "c1", "mq": {"host": "h", "ports": {"main": 5672, "ui": 15672},
                                        "secure": False}}
    project = {"project_id": "p1", "action": "classify",
               "incentives": {"tier_1": [], "tier_2": []}}
    model = json.loads(read("examples/data/heart_disease/architecture.json"))
    experiment = {"expt_id": "e1", "model": model}
    run = {"run_id": "r1", "algorithm": "FedProx", "rounds": 2, "epochs": 1, "lr": 0.001}
    participant = {"id": "w1", "category": None, "summary": None, "phone": None, "email": None,
                   "socials": None}
    registration = {"role": "host", "n_count": 1,
                    "node_0": {"host": "127.0.0.1", "port": 8020, "f_port": 5000,
                               "log_msgs": False, "verbose": False}}
    tags = {"train": [["data1", "iid_1"]], "evaluate": [["data1", "iid_1"]]}
    journey = [
        request("POST", c + "/collaborations", collab),
        request("POST", c + "/collaborations/c1/projects", project),
        request("POST", p + "/experiments", experiment),
        request("POST", p + "/experiments/e1/runs", run),
        request("POST", c + "/participants", participant),
        request("POST", p + "/participants/w1/registration", registration),
        request("POST", p + "/participants/w1/registration/tags", tags),
        request("POST", "/ttp/train/collaborations/c1/projects/p1/alignments", {}),
    ]
    write("http", "journey", b"".join(journey))
    write("http", "journey-models", b"".join(journey[:7]) + request(
        "POST", "/ttp/train/collaborations/c1/projects/p1/models/e1/r1", {"auto_align": False}) + request(
        "GET", "/v1/jobs/?state=queued&grid=0"))
    write("http", "evaluate", b"".join(journey[:7]) + request(
        "POST", "/ttp/evaluate/collaborations/c1/projects/p1/validations/e1/r1",
        {"auto_align": False}) + request(
        "POST", "/ttp/evaluate/participants/w1/collaborations/c1/predictions/p1/e1/r1",
        {"tags": {"predict": [["data1", "iid_1"]]}}))
    write("http", "crud", b"".join([
        request("POST", c + "/collaborations/", collab),
        request("GET", c + "/collaborations/c1"),
        request("PUT", c + "/collaborations/c1", {"mq": {"host": "q"}}),
        request("GET", c + "/collaborations"),
        request("DELETE", c + "/collaborations/c1"),
        request("GET", c + "/collaborations/c1?x=%41"),
    ]))
    write("http", "jobs", b"".join([
        request("GET", "/v1/jobs/"),
        request("GET", "/v1/jobs/job-0123456789abcdef01234567"),
        request("POST", "/v1/jobs/job-0123456789abcdef01234567/cancel", {}),
        request("DELETE", "/v1/jobs/nope"),
    ]))
    write("http", "chunked", b"POST /ttp/connect/participants HTTP/1.1\r\nHost: x\r\n"
          b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"9\r\n{\"id\":\"w2\r\n2\r\n\"}\r\n0\r\n\r\n")
    write("http", "bad-json", request("POST", c + "/collaborations", None,
                                      "Content-Type: application/json\r\nContent-Length: 9\r\n")
          + b"{\"a\": [1,")
    write("http", "deep-json", request("POST", c + "/participants",
                                       json.loads("[" * 70 + "]" * 70)))
    write("http", "wrong-type", request("POST", c + "/collaborations", None,
                                        "Content-Type: text/plain\r\nContent-Length: 2\r\n") + b"{}")
    write("http", "escapes", request("GET", c + "/collaborations/%E2%9C%93%ZZ/projects/") +
          request("OPTIONS", c + "/participants/") + request("HEAD", "/nope"))
    write("http", "http10-close", b"GET /ttp/connect/participants HTTP/1.0\r\n\r\n")


def main():
    clear_seeds()
    seeds_safetensors()
    seeds_messages()
    seeds_config()
    seeds_architecture()
    seeds_tabular()
    seeds_jpeg()
    seeds_http()
    for target in sorted(os.listdir(CORPUS)):
        print("%-14s %d files" % (target, len(os.listdir(os.path.join(CORPUS, target)))))


if __name__ == "__main__":
    sys.exit(main())
