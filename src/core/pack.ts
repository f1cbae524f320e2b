/**
 * Packing: rollout trees with one advantage per trajectory become a TrainBatch, one sequence per
 * (non-failed) trajectory, per-token advantages from soft or hard attribution. It does not compute
 * advantages (`advantage.ts`), pad, bucket or split into micro-batches (trainers do).
 */
import { type AttributionMode, attributeForest } from "./attribution.ts"
import type { TrainBatch, TrainSequence } from "./batch.ts"
import { entropyAware } from "./advantage.ts"
import type { RolloutTree, Trajectory } from "./tree.ts"

/** One tree and its per-trajectory advantages (in `trajectories(tree)` order). */
export interface PackItem {
  readonly tree: RolloutTree
  readonly advantages: ArrayLike<number>
  /** the group id of its sequences (default: `tree.prompt`) */
  readonly group?: number
}

export interface PackOptions {
  readonly attribution: AttributionMode
  /** policy version of a sequence with no model node that records one (default 0) */
  readonly defaultPolicyVersion?: number
  /**
   * AEPO's entropy-aware advantage (`entropyAware` in advantage.ts): scale every model token's advantage by
   * 1 + α·z, z its entropy z-scored over all model tokens of the batch (absent or 0: off)
   */
  readonly entropyAlpha?: number
}

/**
 * The policy version of a trajectory: the oldest (minimum) `policyVersion` among its model nodes.
 * A trajectory can mix versions when a rollout continued across a weight update (partial rollouts);
 * the oldest is the one a staleness bound must be checked against, so the sequence claims that one.
 */
export const trajectoryPolicyVersion = (tree: RolloutTree, t: Trajectory, fallback = 0): number => {
  let v = Number.POSITIVE_INFINITY
  for (const id of t.path) {
    const n = tree.nodes[id]!
    if (n.kind === "model" && n.policyVersion !== undefined) v = Math.min(v, n.policyVersion)
  }
  return Number.isFinite(v) ? v : fallback
}

/**
 * Pack trees into a TrainBatch: per trajectory (failed ones excluded, see `attribution.ts`) its tokens,
 * `responseStart` (prompt length), `lossMask` 1 on model tokens, attributed advantages (0 off model
 * tokens), `oldLogprobs` as sampled (the tree's, 0 off model tokens), weight 1, group, policy version.
 * Sequences come tree by tree, each tree's in `trajectories` order. Hard attribution is taken over
 * each group (`attributeForest`), whatever the number of trees it is stored in.
 */
export const pack = (items: ReadonlyArray<PackItem>, options: PackOptions): TrainBatch => {
  const sequences: Array<TrainSequence> = []
  const entropies: Array<ReadonlyArray<number>> = []
  const attributed = attributeForest(options.attribution, items)
  for (let j = 0; j < items.length; j++) {
    const item = items[j]!
    for (const a of attributed[j]!) {
      const t = a.trajectory
      entropies.push(t.entropies)
      sequences.push({
        tokens: t.tokens,
        responseStart: t.responseStart,
        lossMask: t.roles.map((r) => (r === "model" ? 1 : 0)),
        advantages: Array.from(a.advantages),
        oldLogprobs: t.logprobs.map((x) => x + 0),
        weight: 1,
        group: item.group ?? item.tree.prompt,
        policyVersion: trajectoryPolicyVersion(item.tree, t, options.defaultPolicyVersion ?? 0)
      })
    }
  }
  const alpha = options.entropyAlpha ?? 0
  if (alpha === 0 || sequences.length === 0) return { sequences }
  // the z-score is over the batch's model tokens (AEPO's response mask), so scale the concatenation
  const scaled = entropyAware(
    sequences.flatMap((s) => s.advantages),
    entropies.flatMap((e) => e),
    sequences.flatMap((s) => s.lossMask),
    alpha
  )
  let at = 0
  return {
    sequences: sequences.map((s) => {
      const advantages = Array.from(scaled.subarray(at, at + s.advantages.length))
      at += s.advantages.length
      return { ...s, advantages }
    })
  }
}
