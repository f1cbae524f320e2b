/**
 * A tiny `premise-entropy` run for the resume tests: the flaky calculator and its control, seeds 1 and 2
 * (four units, each its own cold start), a 1-layer model, a few SFT steps, 2 batches of 2 prompts.
 * `entropyTinySpec(components)` may replace components (the kill test's trainer); the options are shared
 * by the run in the test process and the killed child (killEntropyUnit.ts).
 */
import type { RunOptions } from "../../src/experiment/Experiment.ts"
import { premiseEntropySpec } from "../../src/experiment/catalog/premise.ts"
import type { ExperimentSpec } from "../../src/experiment/define.ts"

export const entropyTinySpec = (extra: Partial<ExperimentSpec> = {}): ExperimentSpec => ({
  ...premiseEntropySpec,
  arms: premiseEntropySpec.arms.filter((a) => a.name === "flaky" || a.name === "flaky-control"),
  ...extra
})

export const entropyTinyOptions = (out: string): RunOptions => ({
  profile: "quick",
  seeds: [1, 2],
  set: {
    "model.dModel": "16",
    "model.layers": "1",
    "model.mlpWidth": "32",
    "sft.steps": process.env["ENTROPY_TINY_SFT"] ?? "40",
    "rl.steps": "2",
    "rl.promptsPerStep": "2",
    "rollout.maxResponseTokens": "32"
  },
  sweep: {},
  out
})
