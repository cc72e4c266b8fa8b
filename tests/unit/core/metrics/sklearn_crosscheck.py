#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Manual cross-check of core/metrics against scikit-learn on random inputs (not part of ctest:
the unit tests use hand-worked values). Needs Debian's python3-sklearn:

    apt-get install -y python3-sklearn
    cmake --build <build> --target synergos_metrics_sklearn_crosscheck
    /usr/bin/python3 tests/unit/core/metrics/sklearn_crosscheck.py \
        <build>/tests/unit/core/metrics/synergos_metrics_sklearn_crosscheck

Per class c the reference is what the original worker computed, on one-hot columns:
accuracy_score, roc_auc_score (0.0 when undefined), auc(recall, precision) of
precision_recall_curve (0.0 without positives), f1_score and the confusion counts.
"""
import json
import subprocess
import sys

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, auc, f1_score, mean_absolute_error,
                             mean_squared_error, precision_recall_curve, r2_score, roc_auc_score)


def run(driver, inp):
    out = subprocess.run([driver], input=json.dumps(inp).encode(), capture_output=True, check=True)
    return json.loads(out.stdout)


def reference_classify(y, score, classes):
    if score.shape[1] == 1:
        pred = (score[:, 0] > 0.5).astype(int)
        score = np.c_[1 - score[:, 0].astype(np.float64), score[:, 0].astype(np.float64)]
    else:
        pred = score.argmax(axis=1)
    res = {k: [] for k in ("accuracy", "roc_auc_score", "pr_auc_score", "f_score", "TPs", "TNs",
                           "FPs", "FNs")}
    for c in range(classes):
        yt = (y == c).astype(int)
        yp = (pred == c).astype(int)
        s = score[:, c]
        res["accuracy"].append(accuracy_score(yt, yp))
        res["roc_auc_score"].append(roc_auc_score(yt, s) if 0 < yt.sum() < len(yt) else 0.0)
        if yt.sum() > 0:
            precision, recall, _ = precision_recall_curve(yt, s)
            res["pr_auc_score"].append(auc(recall, precision))
        else:
            res["pr_auc_score"].append(0.0)
        res["f_score"].append(f1_score(yt, yp, zero_division=0))
        res["TPs"].append(int(((yt == 1) & (yp == 1)).sum()))
        res["TNs"].append(int(((yt == 0) & (yp == 0)).sum()))
        res["FPs"].append(int(((yt == 0) & (yp == 1)).sum()))
        res["FNs"].append(int(((yt == 1) & (yp == 0)).sum()))
    return res


def main():
    driver = sys.argv[1]
    rng = np.random.default_rng(7)
    worst = 0.0
    cases = 300
    for trial in range(cases):
        n = int(rng.integers(2, 60))
        kind = trial % 3
        if kind == 0:  # binary, one probability column, coarse scores: many ties
            y = rng.integers(0, 2, n)
            s = np.round(rng.random(n), 1).astype(np.float32)
            inp = dict(action="classify", labels=np.eye(2)[y].ravel().tolist(), lw=2,
                       scores=s.tolist(), sw=1, rows=n)
            ref = reference_classify(y, s.reshape(-1, 1), 2)
        elif kind == 1:  # multiclass, the last class never present
            classes = int(rng.integers(3, 6))
            y = rng.integers(0, classes - 1, n)
            s = np.round(rng.random((n, classes)), 1).astype(np.float32)
            inp = dict(action="classify", labels=np.eye(classes)[y].ravel().tolist(), lw=classes,
                       scores=s.ravel().tolist(), sw=classes, rows=n)
            ref = reference_classify(y, s, classes)
        else:
            y = rng.normal(size=n).astype(np.float32)
            p = (y + rng.normal(size=n) * 0.5).astype(np.float32)
            inp = dict(action="regress", labels=y.tolist(), lw=1, scores=p.tolist(), sw=1, rows=n)
            yd, pd = y.astype(np.float64), p.astype(np.float64)
            ref = {"R2": r2_score(yd, pd), "MSE": mean_squared_error(yd, pd),
                   "MAE": mean_absolute_error(yd, pd)}
        got = run(driver, inp)
        for key, value in ref.items():
            a = np.array(got[key], dtype=float)
            b = np.array(value, dtype=float)
            if a.shape != b.shape:
                sys.exit(f"case {trial} {key}: shape {a.shape} != {b.shape}")
            diff = float(np.max(np.abs(a - b)))
            worst = max(worst, diff)
            if diff > 1e-9:
                sys.exit(f"case {trial} {key}: {got[key]} != {value}")
    print(f"{cases} random cases agree with scikit-learn {sklearn.__version__}; "
          f"largest absolute difference {worst:.2e}")


if __name__ == "__main__":
    main()
