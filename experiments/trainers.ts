/**
 * Research script: the embedded (jax-js) trainer vs the PyTorch worker (workers/trainer.py) as the
 * Trainer of the same ARPO run. Same task, cold start, prompts, sampler and settings; the arms differ only
 * in the `trainer` Layer (an arm's `components`), so the reward / accuracy curves should agree within
 * noise — not bit for bit, since the float32 kernels differ. Needs Debian's python3-torch (or ARPO_PYTHON
 * pointing at a python with torch); without it the pytorch arm fails at start naming the missing torch.
 *
 * Reproduce: `arpo run trainers --profile quick` (seed 1, 8 RL steps after the flagship's cached quick
 * cold start) or `--profile full` (seeds 1,2,3, 40 steps). Measured results: docs/pytorch-worker.md.
 */
import { trainers } from "../src/experiment/catalog/trainers.ts"

export default trainers
