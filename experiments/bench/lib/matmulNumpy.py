"""The machine's float32 matmul peak for the model benchmark (experiments/bench/model.ts runs it once per
thread count, with OPENBLAS_NUM_THREADS set for this process only): a 1024³ float32 matmul in numpy,
one untimed warm-up, then `reps` timed repetitions. Prints one JSON line: the repetition times in ms
(wall and process CPU time), the thread count BLAS reports using and the numpy version.
"""
import json
import os
import sys
import time

import numpy as np

n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
a @ b
ms, cpu_ms = [], []
for _ in range(reps):
    c0, t0 = time.process_time(), time.perf_counter()
    a @ b
    ms.append((time.perf_counter() - t0) * 1000)
    cpu_ms.append((time.process_time() - c0) * 1000)
print(json.dumps({"ms": ms, "cpuMs": cpu_ms, "threads": os.environ.get("OPENBLAS_NUM_THREADS", ""), "numpy": np.__version__}))
