/**
 * Research script: do GRPO, ARPO (β = 8) and random-branch separate with longer training than the power
 * study's 6 RL steps (issue 15, docs/results.md §4)? By default on the flaky calculator, every RL seed from
 * the power study's shared seed-1 cold start; held-out greedy accuracy on 512 questions (the same tool-result
 * keys for every arm, seed and step) at every kept checkpoint, paired over seeds × questions
 * (src/experiment/catalog/premiseLong.ts).
 *
 * Reproduce: `npm run arpo -- run experiments/premise-long.ts --profile full` (`--profile quick`: seed 1).
 * Settings from the environment (absent or empty: the default; a bad value stops the script with an error
 * naming the variable):
 * - PREMISE_LONG_STEPS (RL steps, default 24), PREMISE_LONG_EVERY (checkpoint and evaluation interval,
 *   default 8), PREMISE_LONG_LR (default 5e-4);
 * - PREMISE_LONG_ARMS (comma-separated from grpo, arpo-b8, random, grpo-m6, aepo; default grpo,arpo-b8,random);
 * - PREMISE_LONG_VARIANT (any `premiseVariants` name: flaky, flaky-control, noisy, noisy-control, chase,
 *   chase-control; default flaky): the task variant; arms are named `<variant>.grpo` etc., so the flaky
 *   study's names and configs are unchanged;
 * - PREMISE_LONG_SET (a JSON merge patch over every arm's config, applied after the study's settings and
 *   the variant's task, e.g. `{"model":{"dModel":96,"layers":3},"task":{"lookalikes":1},"sft":{"steps":800}}`;
 *   the cold start follows it, since its cache key is the task, model and SFT settings);
 * - PREMISE_LONG_COLDSTART (shared, default: every RL seed from the seed-1 cold start; per-seed: each RL seed
 *   from its own cold start, sft.seed = the RL seed, so the intervals cover cold-start variation);
 * - PREMISE_LONG_ROOT (continue a study in its directory, e.g. with `--seeds 5,6`), PREMISE_LONG_KERNELS
 *   (native: trainer.kernels and engine.kernels = native; default the config's, jax-js).
 * It writes one run per seed under runs/premise-long/<id>/premise-long/ and the merged tables after every
 * seed (premise-long.md / .json / .svg).
 */
import { premiseLongOf, premiseLongOptionsFromEnv } from "../src/experiment/catalog/premiseLong.ts"

export default premiseLongOf(premiseLongOptionsFromEnv(process.env))
