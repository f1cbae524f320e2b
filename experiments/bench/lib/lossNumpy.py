"""The numpy side of the model benchmark's RL-math figure (experiments/bench/model.ts runs it).

Reads a [rows, cols] float64 batch written by the benchmark (advantages, old and new log-probs, mask)
and times verl's vectorized PPO loss on it: ratio, clipped surrogate, clip fraction, dual clip and the
token-mean aggregation (value and clip fraction, no gradient). Prints one JSON line: the repetition
times in ms (wall and process CPU time) and the value and clip fraction (so the benchmark can check both sides agree).
"""
import json
import sys
import time

import numpy as np

folder, rows, cols, reps, clip_low, clip_high, dual = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
load = lambda name: np.fromfile(f"{folder}/{name}.f64", dtype=np.float64).reshape(rows, cols)
adv, old, new, mask = load("advantages"), load("old"), load("new"), load("mask")


def loss():
    ratio = np.exp(new - old)
    pg1 = -adv * ratio
    pg2 = -adv * np.clip(ratio, 1 - clip_low, 1 + clip_high)
    clip_max = np.maximum(pg1, pg2)
    n = mask.sum()
    clipfrac = ((pg2 > pg1) * mask).sum() / n
    pg3 = -adv * dual
    pg = np.where(adv < 0, np.minimum(pg3, clip_max), clip_max)
    return (pg * mask).sum() / n, clipfrac


loss()
ms = []
cpu_ms = []
for _ in range(reps):
    c0 = time.process_time()
    t0 = time.perf_counter()
    value, clipfrac = loss()
    ms.append((time.perf_counter() - t0) * 1000)
    cpu_ms.append((time.process_time() - c0) * 1000)
print(json.dumps({"ms": ms, "cpuMs": cpu_ms, "value": float(value), "clipFraction": float(clipfrac), "numpy": np.__version__}))
