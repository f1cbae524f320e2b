/**
 * The AdvantageEstimator service: one scalar advantage per trajectory from the rewards of a batch and the
 * group (prompt) of each trajectory. The loop uses whichever the run's `advantage.estimator` names (a
 * registry entry, src/experiment/registries.ts); `fromEstimator` wraps a core estimator function. It does
 * not attribute advantages to tokens (core/attribution.ts) nor pack batches.
 */
import { Context, Layer } from "effect"
import type { Estimator } from "../core/advantage.ts"

export class AdvantageEstimator extends Context.Service<AdvantageEstimator, {
  readonly name: string
  /** per-trajectory advantages; `groups[i]` is trajectory i's group */
  readonly estimate: (rewards: ArrayLike<number>, groups: ArrayLike<number>) => Float64Array
}>()("arpo/AdvantageEstimator") {}

/** A core estimator (src/core/advantage.ts) with fixed options as the service's layer. */
export const fromEstimator = (name: string, estimator: Estimator, options: Parameters<Estimator>[2] = {}): Layer.Layer<AdvantageEstimator> =>
  Layer.succeed(AdvantageEstimator, AdvantageEstimator.of({ name, estimate: (rewards, groups) => estimator(rewards, groups, options) }))
