/**
 * Research script: do GRPO, ARPO (β = 8) and random-branch separate on the flaky calculator with longer
 * training than the power study's 6 RL steps (issue 15, docs/results.md §4)? Every RL seed starts from the
 * power study's shared seed-1 cold start; held-out greedy accuracy on 512 questions (the same tool-result
 * keys for every arm, seed and step) at every kept checkpoint, paired over seeds × questions
 * (src/experiment/catalog/premiseLong.ts).
 *
 * Reproduce: `npm run arpo -- run experiments/premise-long.ts --profile full` (`--profile quick`: seed 1).
 * Settings from the environment: PREMISE_LONG_STEPS (RL steps, default 24), PREMISE_LONG_EVERY (checkpoint
 * and evaluation interval, default 8), PREMISE_LONG_LR (default 5e-4), PREMISE_LONG_ARMS (comma-separated
 * from grpo, arpo-b8, random, grpo-m6, aepo; default grpo,arpo-b8,random), PREMISE_LONG_ROOT (continue a
 * study in its directory, e.g. with `--seeds 5,6`), PREMISE_LONG_KERNELS (native: trainer.kernels and
 * engine.kernels = native; default the config's, jax-js). It writes one run per seed under
 * runs/premise-long/<id>/premise-long/ and the merged tables after every seed (premise-long.md / .json / .svg).
 */
import { premiseLongDefaults, premiseLongOf } from "../src/experiment/catalog/premiseLong.ts"

const env = (name: string): string | undefined => {
  const v = process.env[name]
  return v === undefined || v === "" ? undefined : v
}
const num = (name: string, fallback: number): number => {
  const v = env(name)
  if (v === undefined) return fallback
  const x = Number(v)
  if (!Number.isFinite(x) || x <= 0) throw new Error(`${name}=${v}: expected a positive number`)
  return x
}
const root = env("PREMISE_LONG_ROOT")
const kernels = env("PREMISE_LONG_KERNELS")
if (kernels !== undefined && kernels !== "native" && kernels !== "jax-js") throw new Error(`PREMISE_LONG_KERNELS=${kernels}: expected native or jax-js`)

export default premiseLongOf({
  steps: num("PREMISE_LONG_STEPS", premiseLongDefaults.steps),
  every: num("PREMISE_LONG_EVERY", premiseLongDefaults.every),
  lr: num("PREMISE_LONG_LR", premiseLongDefaults.lr),
  arms: env("PREMISE_LONG_ARMS")?.split(",").map((s) => s.trim()) ?? premiseLongDefaults.arms,
  ...(root === undefined ? {} : { root }),
  ...(kernels === undefined ? {} : { kernels })
})
