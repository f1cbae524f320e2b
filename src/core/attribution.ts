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

/** One tree's trajectories and their advantages, for the shared-trie computation of `hard`. */
interface HardInput {
  readonly trajs: ReadonlyArray<Trajectory>
  readonly advantages: ArrayLike<number>
}

/**
 * Hard attribution over several trees at once: one trie over (role, token) of the included
 * trajectories of all `inputs`, so a prefix shared by trajectories stored in different trees is one
 * token with one mean. Returns the attribution of each input, in input order. O(total tokens).
 */
const hardOver = (inputs: ReadonlyArray<HardInput>): Array<Array<Attributed>> => {
  const next: Array<Map<number, number>> = [new Map()]
  const sum: Array<number> = [0]
  const count: Array<number> = [0]
  const positions = inputs.map(({ trajs, advantages }) => {
    const out: Array<Int32Array> = []
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
      out[i] = pos
    })
    return out
  })
  return inputs.map(({ trajs }, j) => {
    const out: Array<Attributed> = []
    trajs.forEach((t, i) => {
      if (!included(t)) return
      const pos = positions[j]![i]!
      const adv = new Float64Array(t.tokens.length)
      for (let k = 0; k < adv.length; k++) if (t.roles[k] === "model") adv[k] = sum[pos[k]!]! / count[pos[k]!]! + 0
      out.push({ index: i, trajectory: t, advantages: adv })
    })
    return out
  })
}

/**
 * Hard: a model token gets the mean advantage of the (non-failed) trajectories through it. "Through
 * it" means sharing its whole prefix (token ids and roles, prompt included): the trajectories stored
 * through the same (node, offset) of the canonical tree (`canonicalize`). Defining sharing by prefix
 * rather than by stored node makes hard attribution independent of how the tree is stored (sibling
 * order, split segments, duplicated prefixes), the invariance the laws state. One tree is one group;
 * for a group stored as several trees use `attributeForest`, which takes the means over the group.
 * Computed with a trie over (role, token) of the included trajectories: O(total tokens).
 */
export const hard = (tree: RolloutTree, advantages: ArrayLike<number>): ReadonlyArray<Attributed> => {
  const trajs = trajectories(tree)
  check("hard", trajs, advantages)
  return hardOver([{ trajs, advantages }])[0]!
}

/** The attribution registry. */
export const attributions: Readonly<Record<AttributionMode, (tree: RolloutTree, advantages: ArrayLike<number>) => ReadonlyArray<Attributed>>> = {
  soft,
  hard
}

/** Attribute with the given mode. */
export const attribute = (mode: AttributionMode, tree: RolloutTree, advantages: ArrayLike<number>): ReadonlyArray<Attributed> =>
  attributions[mode](tree, advantages)

/** One tree of a forest with its per-trajectory advantages (in `trajectories(tree)` order). */
export interface ForestItem {
  readonly tree: RolloutTree
  readonly advantages: ArrayLike<number>
  /** the group (prompt) id of its trajectories (default: `tree.prompt`) */
  readonly group?: number
}

/**
 * Attribute every tree of a forest; the result is per item, in item order. Soft is per tree (it
 * looks at nothing but the trajectory). Hard takes its means over the whole GROUP (items with the
 * same `group ?? tree.prompt`), not over one tree: when a sampler stores one prompt's rollouts as
 * several trees (a restart, a refill, a tree per initial sample), a prefix shared by trajectories in
 * different trees is still one token, so hard attribution does not depend on how a group is split
 * into trees (laws/pipeline.test.ts, "across forests"). Trees of different groups never share a token.
 */
export const attributeForest = (mode: AttributionMode, items: ReadonlyArray<ForestItem>): ReadonlyArray<ReadonlyArray<Attributed>> => {
  if (mode === "soft") return items.map((item) => soft(item.tree, item.advantages))
  const inputs = items.map((item) => {
    const trajs = trajectories(item.tree)
    check("hard", trajs, item.advantages)
    return { trajs, advantages: item.advantages }
  })
  const byGroup = new Map<number, Array<number>>()
  items.forEach((item, j) => {
    const g = item.group ?? item.tree.prompt
    const members = byGroup.get(g)
    if (members === undefined) byGroup.set(g, [j])
    else members.push(j)
  })
  const out: Array<ReadonlyArray<Attributed>> = new Array(items.length)
  for (const members of byGroup.values()) {
    const attributed = hardOver(members.map((j) => inputs[j]!))
    members.forEach((j, k) => {
      out[j] = attributed[k]!
    })
  }
  return out
}
