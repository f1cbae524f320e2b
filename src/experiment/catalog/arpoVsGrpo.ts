/**
 * The flagship experiment `arpo-vs-grpo`: does ARPO (entropy-triggered branching after tool results,
 * N = 4 global samples + branches) beat GRPO (M independent samples) at an equal rollout budget M = 8,
 * and at what tool-call cost? Both arms start from the same cached cold-start weights and see the same
 * prompts (keyed by seed and step). Quick: 2 seeds, 8 RL steps after a shorter cold start (minutes on 2 cores); full: 3 seeds.
 */
import { define, type ExperimentSpec } from "../define.ts"
import { baseConfig } from "./defaults.ts"

export const arpoVsGrpoSpec: ExperimentSpec = {
  name: "arpo-vs-grpo",
  description: "ARPO vs GRPO at an equal rollout budget: held-out accuracy, tool calls per question, wall time",
  config: baseConfig,
  profiles: {
    quick: { seeds: [1, 2], set: { sft: { steps: 300 }, rl: { steps: 8 }, eval: { every: 4, questions: 64 }, checkpointEvery: 4 } },
    full: { seeds: [1, 2, 3], set: {} }
  },
  arms: [
    { name: "grpo", sampler: "global" },
    { name: "arpo", sampler: "arpo" }
  ]
}

export const arpoVsGrpo = define(arpoVsGrpoSpec)

/**
 * Profiles for studies that swap one Layer of the flagship's ARPO arm (trainers, engines): the flagship's
 * quick settings with one seed (the same cached cold start), and its full settings with three.
 */
export const flagshipProfiles: ExperimentSpec["profiles"] = {
  quick: { seeds: [1], set: arpoVsGrpoSpec.profiles.quick.set ?? {} },
  full: { seeds: [1, 2, 3], set: {} }
}
