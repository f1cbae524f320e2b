/**
 * A new advantage estimator in one file: each trajectory's reward minus its group's median (a baseline
 * that one outlier cannot drag, unlike GRPO's mean), optionally divided by the group's mean absolute
 * deviation. Registered as `median`; an arm picks it with `advantage: { estimator: { name: "median" } }`
 * (or `--set advantage.estimator=median`). docs/writing-an-estimator.md explains it.
 */
import { Defaults, Experiment, Registry, AdvantageEstimator } from "arpo"
import { Schema, Effect } from "effect"

/** Per-trajectory advantages: r − median of its group (÷ mean |r − median| + eps when `scale`). */
export const medianAdvantages = (rewards: ArrayLike<number>, groups: ArrayLike<number>, scale: boolean, eps: number): Float64Array => {
  const byGroup = new Map<number, Array<number>>()
  for (let i = 0; i < rewards.length; i++) byGroup.set(groups[i]!, [...(byGroup.get(groups[i]!) ?? []), rewards[i]!])
  const center = new Map<number, { median: number; spread: number }>()
  for (const [g, rs] of byGroup) {
    const sorted = [...rs].sort((a, b) => a - b)
    const mid = sorted.length >> 1
    const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
    const spread = rs.reduce((a, r) => a + Math.abs(r - median), 0) / rs.length
    center.set(g, { median, spread })
  }
  return Float64Array.from(rewards, (r, i) => {
    const c = center.get(groups[i]!)!
    return scale ? (r - c.median) / (c.spread + eps) : r - c.median
  })
}

export const median = Registry.estimator(
  "median",
  Schema.Struct({
    scale: Schema.Boolean.pipe(Schema.withDecodingDefaultKey(Effect.succeed(false))),
    eps: Schema.Finite.pipe(Schema.withDecodingDefaultKey(Effect.succeed(1e-6)))
  }),
  (c) => AdvantageEstimator.fromEstimator("median", (rewards, groups) => medianAdvantages(rewards, groups, c.scale, c.eps))
)

export default Experiment.define({
  name: "median-baseline",
  description: "GRPO's mean/std advantages vs a median baseline, both with ARPO rollouts",
  config: Defaults.baseConfig,
  profiles: { quick: { seeds: [1], set: { sft: { steps: 300 }, rl: { steps: 4 } } }, full: { seeds: [1, 2, 3] } },
  register: { estimator: [median] },
  arms: [
    { name: "grpo", sampler: "arpo" },
    { name: "median", sampler: "arpo", set: { advantage: { estimator: { name: "median" } } } }
  ]
})
