/**
 * Advantage attribution over a rollout tree: from one advantage per trajectory to one advantage per
 * token of every trajectory. Soft (ARPO's default and the released code): each trajectory carries its
 * own advantage on all its model tokens, shared prefixes included. Hard: a model token shared by d
 * trajectories gets the mean of their d advantages. It does not compute the per-trajectory advantages
 * (see `advantage.ts`) nor pack sequences (see `pack.ts`). Reference: ARPO_SPEC §2, docs/core-math-advantages.md.
 */
import { Schema } from "effect"
import { RoleCode } from "./tokens.ts"
import { type RolloutTree, type Trajectory, trajectories } from "./tree.ts"

export const AttributionMode = Schema.Literals(["soft", "hard"])
export type AttributionMode = typeof AttributionMode.Type

/** One trajectory with its per-token advantages (aligned with `trajectory.tokens`, 0 off model tokens). */
export interface Attributed {
  /** position in `trajectories(tree)` (and in the advantages given) */
  readonly index: number
  readonly trajectory: Trajectory
  readonly advantages: Float64Array
}

/**
 * Failed trajectories (finish "failed": the engine call failed after retries) are excluded: they are
 * not in the output and their advantages count in no mean. Their tokens were not a sample of the
 * policy we can trust (cut off by an error, not by the policy), ARPO_SPEC's Finish note.
 */
export const included = (t: Trajectory): boolean => t.finish !== "failed"

const check = (name: string, trajs: ReadonlyArray<Trajectory>, advantages: ArrayLike<number>): void => {
  if (advantages.length !== trajs.length) {
    throw new RangeError(`Attribution.${name}: ${advantages.length} advantages for ${trajs.length} trajectories`)
  }
  trajs.forEach((t, i) => {
    if (included(t) && !Number.isFinite(advantages[i]!)) {
      throw new RangeError(`Attribution.${name}: advantage of trajectory ${i} (leaf ${t.leaf}) is ${advantages[i]}`)
    }
  })
}

/** Soft: trajectory i's advantage on each of its model tokens (a shared prefix appears once per trajectory). */
export const soft = (tree: RolloutTree, advantages: ArrayLike<number>): ReadonlyArray<Attributed> => {
  const trajs = trajectories(tree)
  check("soft", trajs, advantages)
  const out: Array<Attributed> = []
  trajs.forEach((t, i) => {
    if (!included(t)) return
    const a = advantages[i]! + 0 // + 0 turns −0 into 0 (JSON cannot keep −0)
    const adv = new Float64Array(t.tokens.length)
    for (let k = 0; k < adv.length; k++) if (t.roles[k] === "model") adv[k] = a
    out.push({ index: i, trajectory: t, advantages: adv })
  })
  return out
}

/**
 * Hard: a model token gets the mean advantage of the (non-failed) trajectories through it. "Through
 * it" means sharing its whole prefix (token ids and roles, prompt included): the trajectories stored
 * through the same (node, offset) of the canonical tree (`canonicalize`). Defining sharing by prefix
 * rather than by stored node makes hard attribution independent of how the tree is stored (sibling
 * order, split segments, duplicated prefixes), the invariance the laws state.
 * Computed with a trie over (role, token) of the included trajectories: O(total tokens).
 */
export const hard = (tree: RolloutTree, advantages: ArrayLike<number>): ReadonlyArray<Attributed> => {
  const trajs = trajectories(tree)
  check("hard", trajs, advantages)
  const next: Array<Map<number, number>> = [new Map()]
  const sum: Array<number> = [0]
  const count: Array<number> = [0]
  const positions: Array<Int32Array> = []
  trajs.forEach((t, i) => {
    if (!included(t)) return
    const pos = new Int32Array(t.tokens.length)
    let node = 0
    for (let k = 0; k < t.tokens.length; k++) {
      const key = t.tokens[k]! * 3 + RoleCode[t.roles[k]!]
      let child = next[node]!.get(key)
      if (child === undefined) {
        child = next.length
        next[node]!.set(key, child)
        next.push(new Map())
        sum.push(0)
        count.push(0)
      }
      node = child
      sum[node]! += advantages[i]!
      count[node]!++
      pos[k] = node
    }
    positions[i] = pos
  })
  const out: Array<Attributed> = []
  trajs.forEach((t, i) => {
    if (!included(t)) return
    const pos = positions[i]!
    const adv = new Float64Array(t.tokens.length)
    for (let k = 0; k < adv.length; k++) if (t.roles[k] === "model") adv[k] = sum[pos[k]!]! / count[pos[k]!]! + 0
    out.push({ index: i, trajectory: t, advantages: adv })
  })
  return out
}

/** The attribution registry. */
export const attributions: Readonly<Record<AttributionMode, (tree: RolloutTree, advantages: ArrayLike<number>) => ReadonlyArray<Attributed>>> = {
  soft,
  hard
}

/** Attribute with the given mode. */
export const attribute = (mode: AttributionMode, tree: RolloutTree, advantages: ArrayLike<number>): ReadonlyArray<Attributed> =>
  attributions[mode](tree, advantages)
