/**
 * Research script: hard vs soft advantage attribution under ARPO.
 *
 * Soft (the paper's default): every trajectory carries its own GRPO advantage on all its model tokens,
 * shared prefixes included. Hard: a token shared by d trajectories of a tree gets the mean of their
 * advantages (src/core/attribution.ts). Both arms use the ARPO sampler, the same cold start, prompts and
 * budget M = 8; they differ only in `advantage.attribution`. At ratio 1 (one epoch, one mini-batch) under
 * token-mean aggregation the two give the same gradient by construction (docs/core-math-advantages.md §3;
 * measured: identical runs), so this study trains with seq-mean-token-mean and 2 epochs × 2 mini-batches.
 *
 * Reproduce: `arpo run attribution --profile quick` (seed 1, 6 RL steps) or `--profile full` (seeds
 * 1,2,3, 40 steps). Compare held-out greedy accuracy and tool calls in the run's report.md.
 */
import { attribution } from "../src/experiment/catalog/studies.ts"

export default attribution
