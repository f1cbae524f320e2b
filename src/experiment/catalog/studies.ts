/**
 * The smaller research experiments that reuse the loop with other arms: `entropy-after-tools` (does
 * token entropy rise in the first k tokens after a tool result, compared with the start of the
 * response?), `attribution` (hard vs soft advantage attribution under ARPO) and `beta-sweep`
 * (β ∈ {0, 0.2, 0.4, 1.0} and the random-branch ablation). Their quick profiles share the flagship's
 * cached cold start and run a few RL steps; full profiles use 3 seeds.
 */
import { Effect } from "effect"
import * as NodePath from "node:path"
import { mergePatch } from "../../run/config.ts"
import { readEventsFile } from "../../io/RunStore.ts"
import { define, type ExperimentSpec } from "../define.ts"
import { arpoVsGrpoSpec } from "./arpoVsGrpo.ts"
import { baseConfig } from "./defaults.ts"

const quick = arpoVsGrpoSpec.profiles.quick.set

/** Per arm: trajectory-weighted window entropies at the response start and after tool results, and ΔH. */
export const entropyFigures = (dir: string) =>
  Effect.gen(function*() {
    const log = yield* readEventsFile(NodePath.join(dir, "events.jsonl"))
    const byArm = new Map<string, { w: number; hInit: number; hTool: number; probes: number; dSum: number; dPos: number }>()
    for (const { stamp, event } of log.events) {
      const a = byArm.get(stamp.arm) ?? { w: 0, hInit: 0, hTool: 0, probes: 0, dSum: 0, dPos: 0 }
      byArm.set(stamp.arm, a)
      if (event._tag === "rollout.batch" && (event.probes ?? 0) > 0) {
        const p = event.probes ?? 0
        a.w += event.trajectories
        a.hInit += event.meanEntropyInitial * event.trajectories
        a.hTool += event.meanEntropyAfterTool * event.trajectories
        a.probes += p
        a.dSum += (event.deltaHMean ?? 0) * p
      }
      if (event._tag === "rollout.branch" && event.deltaH > 0) a.dPos += 1
    }
    return [...byArm].filter(([, a]) => a.w > 0).map(([arm, a]) => ({
      arm,
      meanWindowEntropyAtStart: a.hInit / a.w,
      meanWindowEntropyAfterTool: a.hTool / a.w,
      probes: a.probes,
      meanDeltaH: a.dSum / Math.max(1, a.probes)
    }))
  })

export const entropyAfterToolsSpec: ExperimentSpec = {
  name: "entropy-after-tools",
  description: "Does token entropy rise in the first k tokens after tool results, compared with the start of the response?",
  config: baseConfig,
  profiles: {
    quick: { seeds: [1], set: { ...quick, rl: { steps: 4 }, eval: { every: 0 } } },
    full: { seeds: [1, 2, 3], set: { rl: { steps: 20 }, eval: { every: 0 } } }
  },
  arms: [
    // global sampling (no branching) measures the same window k as ARPO: an unbiased view of the policy
    { name: "global", sampler: "global" },
    { name: "arpo", sampler: "arpo" }
  ],
  conclude: (_summary, dir) =>
    Effect.map(entropyFigures(dir), (rows) => [
      `Entropy of the first k tokens (window sums, nats): response start vs right after a tool result`,
      ...rows.map((r) =>
        `  ${r.arm}: start ${r.meanWindowEntropyAtStart.toFixed(3)}, after tool ${r.meanWindowEntropyAfterTool.toFixed(3)} ` +
        `(${r.meanWindowEntropyAfterTool > r.meanWindowEntropyAtStart ? "rises" : "does not rise"}); mean ΔH ${r.meanDeltaH.toFixed(4)} over ${r.probes} probes`
      )
    ])
}

/**
 * At ratio 1 (one PPO epoch, one mini-batch) with an aggregation that weights every token equally,
 * soft and hard attribution give the same gradient by construction (docs/core-math-advantages.md §3),
 * so this study uses per-sequence normalisation (seq-mean-token-mean) and 2 epochs × 2 mini-batches,
 * where they can differ.
 */
export const attributionSpec: ExperimentSpec = {
  name: "attribution",
  description: "Hard vs soft advantage attribution over ARPO's rollout trees (seq-mean-token-mean, 2 PPO epochs × 2 mini-batches)",
  config: mergePatch(baseConfig, { loss: { aggregation: "seq-mean-token-mean" }, rl: { epochs: 2, miniBatches: 2 } }),
  profiles: {
    quick: { seeds: [1], set: { ...quick, rl: { steps: 6 }, eval: { every: 6, questions: 32 } } },
    full: { seeds: [1, 2, 3], set: {} }
  },
  arms: [
    { name: "arpo-soft", sampler: "arpo", set: { advantage: { attribution: "soft" } } },
    { name: "arpo-hard", sampler: "arpo", set: { advantage: { attribution: "hard" } } }
  ]
}

export const betaSweepSpec: ExperimentSpec = {
  name: "beta-sweep",
  description: "ARPO's entropy weight β ∈ {0, 0.2, 0.4, 1.0} and the random-branch ablation, at equal budget",
  config: baseConfig,
  profiles: {
    quick: { seeds: [1], set: { ...quick, rl: { steps: 4 }, eval: { every: 4, questions: 32 } } },
    full: { seeds: [1, 2, 3], set: {} }
  },
  arms: [
    { name: "beta-0", sampler: "arpo", set: { rollout: { beta: 0 } } },
    { name: "beta-0.2", sampler: "arpo", set: { rollout: { beta: 0.2 } } },
    { name: "beta-0.4", sampler: "arpo", set: { rollout: { beta: 0.4 } } },
    { name: "beta-1.0", sampler: "arpo", set: { rollout: { beta: 1 } } },
    { name: "random-branch", sampler: "random-branch" }
  ]
}

export const entropyAfterTools = define(entropyAfterToolsSpec)
export const attribution = define(attributionSpec)
export const betaSweep = define(betaSweepSpec)
