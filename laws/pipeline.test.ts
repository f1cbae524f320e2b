/**
 * Laws of the whole training-signal pipeline under storage changes: rewards (a pure function of each
 * trajectory's content) → estimator (all four) → attribution (soft, hard) → packing → `policyLoss`
 * (value and gradient, all four aggregations, ratios away from 1, clip variants, KL) must not change
 * when the same trajectories are stored differently. The storage changes (flattening every trajectory
 * into its own chain, moving a fork point up a segment, splitting a group into a forest of trees,
 * reversing sibling order) are written here, from parent pointers, apart from `tree.ts` and its node
 * maps: nothing is carried across by `carryLeafValues`. Batches are compared as multisets of
 * sequences keyed by content, values within rounding, gradients per token. Every pipeline run also
 * checks that the fast loss path (`policyLossFast`) gives policyLoss's value and gradient bit for bit.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Advantage from "../src/core/advantage.ts"
import * as Attribution from "../src/core/attribution.ts"
import type { TrainBatch } from "../src/core/batch.ts"
import { type Aggregation, type PolicyLossConfig, policyLoss } from "../src/core/loss.ts"
import { flattenBatch, policyLossFast } from "../src/core/lossFast.ts"
import { pack } from "../src/core/pack.ts"
import * as Tree from "../src/core/tree.ts"
import { type AppendOp, arbAppendOp, buildTree } from "./treeArbitraries.ts"

// ---------------------------------------------------------------------------------------------
// Storage changes, written from parent pointers (independent of tree.ts's remapping operations)
// ---------------------------------------------------------------------------------------------

type Body = Omit<Tree.Node, "parent">
interface Nested {
  readonly node: Body
  readonly kids: ReadonlyArray<Nested>
}

const body = (n: Tree.Node): Body => {
  const { parent: _parent, ...rest } = n
  return rest
}

const nest = (tree: Tree.RolloutTree): Nested => {
  const kids: Array<Array<number>> = tree.nodes.map(() => [])
  tree.nodes.forEach((n, i) => {
    if (n.parent >= 0) kids[n.parent]!.push(i)
  })
  const build = (i: number): Nested => ({ node: body(tree.nodes[i]!), kids: kids[i]!.map(build) })
  return build(0)
}

/** Preorder ids; `reverse` visits children last-first (a sibling reordering). */
const serialize = (prompt: number, root: Nested, reverse = false): Tree.RolloutTree => {
  const nodes: Array<Tree.Node> = []
  const visit = (n: Nested, parent: number): void => {
    const id = nodes.length
    nodes.push({ ...n.node, parent })
    const kids = reverse ? [...n.kids].reverse() : n.kids
    for (const k of kids) visit(k, id)
  }
  visit(root, -1)
  return { prompt, nodes }
}

/** Every root-to-leaf path as its own chain under the prompt: nothing but the prompt is shared. */
const flatten = (tree: Tree.RolloutTree): Tree.RolloutTree => {
  const root = nest(tree)
  const paths: Array<ReadonlyArray<Body>> = []
  const walk = (n: Nested, path: ReadonlyArray<Body>): void => {
    if (n.kids.length === 0) paths.push(path)
    for (const k of n.kids) walk(k, [...path, k.node])
  }
  walk(root, [])
  const chain = (path: ReadonlyArray<Body>): Nested => ({ node: path[0]!, kids: path.length > 1 ? [chain(path.slice(1))] : [] })
  return serialize(tree.prompt, { node: root.node, kids: paths.filter((p) => p.length > 0).map(chain) })
}

const cut = (n: Body, from: number, to: number, end: boolean): Body => {
  const per = (xs: ReadonlyArray<number> | undefined) => (xs !== undefined && xs.length === n.tokens.length ? xs.slice(from, to) : xs === undefined ? undefined : [])
  const out: Record<string, unknown> = { kind: n.kind, tokens: n.tokens.slice(from, to), logprobs: per(n.logprobs), entropies: per(n.entropies) }
  if (n.entropyLower !== undefined) out.entropyLower = per(n.entropyLower)
  if (n.entropyUpper !== undefined) out.entropyUpper = per(n.entropyUpper)
  if (n.key !== undefined) out.key = n.key
  if (n.policyVersion !== undefined) out.policyVersion = n.policyVersion
  if (end) {
    if (n.toolCall !== undefined) out.toolCall = n.toolCall
    if (n.finish !== undefined) out.finish = n.finish
    if (n.branch !== undefined) out.branch = n.branch
  }
  return out as unknown as Body
}

/**
 * Move the fork at the end of a branching node up by k of its tokens: the node keeps its first n − k
 * tokens and each child gets its own copy of the last k (with the node's end records); k = n removes
 * the node, the copies hang from its parent. `pick` chooses the node, `kPick` k. Undefined when no
 * non-root node has two or more children.
 */
const moveForkUp = (tree: Tree.RolloutTree, pick: number, kPick: number): Tree.RolloutTree | undefined => {
  const root = nest(tree)
  const forks: Array<Nested> = []
  const find = (n: Nested, isRoot: boolean): void => {
    if (!isRoot && n.kids.length >= 2 && n.node.tokens.length >= 1) forks.push(n)
    for (const k of n.kids) find(k, false)
  }
  find(root, true)
  if (forks.length === 0) return undefined
  const target = forks[pick % forks.length]!
  const len = target.node.tokens.length
  const k = 1 + (kPick % len)
  const copies = target.kids.map((c): Nested => ({ node: cut(target.node, len - k, len, true), kids: [c] }))
  const rebuild = (n: Nested): ReadonlyArray<Nested> => {
    if (n === target) return k === len ? copies : [{ node: cut(n.node, 0, len - k, false), kids: copies }]
    return [{ node: n.node, kids: n.kids.flatMap(rebuild) }]
  }
  return serialize(tree.prompt, rebuild(root)[0]!)
}

/** Split one tree into several trees of the same prompt: the root's children dealt out by `parts`. */
const splitForest = (tree: Tree.RolloutTree, parts: ReadonlyArray<number>): ReadonlyArray<Tree.RolloutTree> => {
  const root = nest(tree)
  if (root.kids.length === 0) return [tree]
  const buckets = new Map<number, Array<Nested>>()
  root.kids.forEach((k, i) => {
    const b = parts[i % parts.length]! % 4
    buckets.set(b, [...(buckets.get(b) ?? []), k])
  })
  return [...buckets.keys()].sort().map((b) => serialize(tree.prompt, { node: root.node, kids: buckets.get(b)! }))
}

// ---------------------------------------------------------------------------------------------
// The pipeline: content-defined rewards → estimator → attribution → pack → policyLoss
// ---------------------------------------------------------------------------------------------

/** What a trajectory is, for its reward: tokens and roles (storage-independent). */
const content = (t: Tree.Trajectory): string => JSON.stringify([t.tokens, t.roles])

// FNV-1a over a string, for content-defined pseudo-random numbers
const hash = (s: string, salt: number): number => {
  let h = (0x811c9dc5 ^ salt) >>> 0
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0
  h ^= h >>> 13
  return Math.imul(h, 0x5bd1e995) >>> 0
}

interface Setup {
  readonly estimator: Advantage.EstimatorName
  readonly attribution: Attribution.AttributionMode
  readonly loss: PolicyLossConfig
  /** salt of the content-defined numbers (rewards, new and reference log-probs) */
  readonly salt: number
  /** max |log ratio| of the new policy against the old */
  readonly shift: number
}

/**
 * Reward of each distinct trajectory content: distinct contents get distinct rewards (their rank in a
 * salted order, on a grid of eighths), identical contents the same one.
 */
const rewardTable = (forest: ReadonlyArray<Tree.RolloutTree>, salt: number): Map<string, number> => {
  const contents = [...new Set(forest.flatMap((t) => Tree.trajectories(t).map(content)))]
  contents.sort((a, b) => hash(a, salt) - hash(b, salt) || (a < b ? -1 : a > b ? 1 : 0))
  return new Map(contents.map((c, i) => [c, i / 8 - 1] as const))
}

/** The prefix of sequence position t as a string (token ids and loss mask up to and including t). */
const prefixKey = (tokens: ReadonlyArray<number>, mask: ReadonlyArray<number>, t: number): string =>
  `${tokens.slice(0, t + 1).join(",")}|${mask.slice(0, t + 1).join("")}`

interface Outcome {
  readonly batch: TrainBatch
  readonly value: number
  readonly grad: ReadonlyArray<Float64Array>
}

const run = (forest: ReadonlyArray<Tree.RolloutTree>, setup: Setup, rewards: Map<string, number>): Outcome => {
  const trajs = forest.map((t) => Tree.trajectories(t))
  // the estimator over the non-failed trajectories, groups = prompts (failed ones get 0, as the loop does)
  const flatRewards: Array<number> = []
  const groups: Array<number> = []
  forest.forEach((tree, j) =>
    trajs[j]!.forEach((t) => {
      if (t.finish === "failed") return
      flatRewards.push(rewards.get(content(t))!)
      groups.push(tree.prompt)
    })
  )
  const flat = Advantage.compute({ estimator: setup.estimator }, flatRewards, groups)
  let at = 0
  const items = forest.map((tree, j) => ({ tree, advantages: Float64Array.from(trajs[j]!, (t) => (t.finish === "failed" ? 0 : flat[at++]!)) }))
  const packed = pack(items, { attribution: setup.attribution })
  // new and reference log-probs: a pure function of the prefix (one policy), ratios away from 1
  const u = (key: string, salt: number) => hash(key, salt) / 0x100000000
  const batch: TrainBatch = {
    sequences: packed.sequences.map((s) => ({
      ...s,
      refLogprobs: s.tokens.map((_, t) => (s.lossMask[t] === 1 ? Math.min(0, s.oldLogprobs[t]! + (u(prefixKey(s.tokens, s.lossMask, t), setup.salt + 2) - 0.5)) : 0))
    }))
  }
  const newLogprobs = batch.sequences.map((s) =>
    Float64Array.from(s.tokens, (_, t) => s.oldLogprobs[t]! + setup.shift * (2 * u(prefixKey(s.tokens, s.lossMask, t), setup.salt + 1) - 1))
  )
  const loss = policyLoss(batch, newLogprobs, setup.loss)
  // the trainers' fast path gives the same bits on these tree-derived batches
  const flatBatch = flattenBatch(batch)
  const fastGrad = new Float64Array(flatBatch.offsets[flatBatch.sequences]!)
  const fast = policyLossFast(flatBatch, Float64Array.from(newLogprobs.flatMap((xs) => Array.from(xs))), setup.loss, { grad: fastGrad })
  expect(fast.value).toBe(loss.value)
  expect(Array.from(fastGrad)).toEqual(loss.grad.flatMap((g) => Array.from(g)))
  return { batch, value: loss.value, grad: loss.grad }
}

/** Sequences (with their gradients) sorted by content, so two batches can be compared as multisets. */
const rows = (o: Outcome) =>
  o.batch.sequences
    .map((s, i) => ({ key: JSON.stringify([s.tokens, s.lossMask, s.oldLogprobs, s.group, s.policyVersion]), adv: s.advantages, grad: o.grad[i]! }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))

const maxAbs = (xss: ReadonlyArray<ArrayLike<number>>): number => {
  let m = 0
  for (const xs of xss) for (let i = 0; i < xs.length; i++) m = Math.max(m, Math.abs(xs[i]!))
  return m
}

/**
 * The two outcomes agree: the same sequences; per token the same advantage and gradient within
 * 1e-12 of the batch's largest (sums of the same terms in another order round differently: a hard
 * mean of advantages summing to 0 is 0 in one order and 2.8e-17 in another); the value within rounding.
 */
const expectSame = (a: Outcome, b: Outcome): void => {
  const ra = rows(a)
  const rb = rows(b)
  expect(rb.map((r) => r.key)).toEqual(ra.map((r) => r.key))
  const advTol = 1e-12 * (1 + maxAbs(ra.map((r) => r.adv)))
  const gradTol = 1e-12 * maxAbs(ra.map((r) => r.grad)) + 1e-300
  ra.forEach((r, i) => {
    const s = rb[i]!
    r.adv.forEach((x, t) => {
      if (!(Math.abs(x - s.adv[t]!) <= advTol)) expect.fail(`sequence ${i} token ${t}: advantage ${x} vs ${s.adv[t]}`)
    })
    r.grad.forEach((g, t) => {
      if (!(Math.abs(g - s.grad[t]!) <= gradTol)) expect.fail(`sequence ${i} token ${t}: gradient ${g} vs ${s.grad[t]}`)
    })
  })
  expect(Math.abs(a.value - b.value)).toBeLessThanOrEqual(1e-10 + 1e-12 * Math.abs(a.value))
  // (clipFraction is not compared: at an advantage that rounds to 0 in one order and ±3e-17 in the
  // other, the PPO clip indicator flips although the gradient there is ~0 either way)
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

const aggregations: ReadonlyArray<Aggregation> = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]

const arbSetup: fc.Arbitrary<Setup> = fc.record({
  estimator: fc.constantFrom(...Advantage.EstimatorName.literals),
  attribution: fc.constantFrom(...Attribution.AttributionMode.literals),
  loss: fc.record({
    clipLow: fc.constantFrom(0.1, 0.2, 0.3),
    clipHigh: fc.constantFrom(0.2, 0.28, 0.5),
    dualClip: fc.constantFrom(undefined, 1.5, 3),
    balancedClip: fc.boolean(),
    klCoef: fc.constantFrom(0, 0.05),
    klEstimator: fc.constantFrom("k1" as const, "k2" as const, "k3" as const),
    aggregation: fc.constantFrom(...aggregations)
  }),
  salt: fc.nat(),
  shift: fc.constantFrom(0.3, 0.8, 1.5)
})

/**
 * A tree that always has a model token shared by two distinct non-failed trajectories: prompt →
 * model M → tool T → two model leaves A, B (different first tokens, finish "stop"), then random
 * appends that never hang below A or B (so both stay leaves). With content-ranked rewards the
 * trajectories through M always have different rewards, hence different advantages.
 */
const arbSharedTree = (prompt: number): fc.Arbitrary<Tree.RolloutTree> =>
  fc
    .record({
      promptTokens: fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 3 }),
      m: fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 4 }),
      t: fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 3 }),
      a: fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 3 }),
      b: fc.array(fc.nat({ max: 3 }), { minLength: 0, maxLength: 2 }),
      rest: fc.array(arbAppendOp(), { maxLength: 9 })
    })
    .map(({ promptTokens, m, t, a, b, rest }) => {
      const fixed: Array<AppendOp> = [
        { parentPick: 0, tokens: m, copy: 0, finishPick: 0 },
        { parentPick: 1, tokens: t, copy: 0, finishPick: 0 },
        { parentPick: 2, tokens: a, copy: 0, finishPick: 0 },
        { parentPick: 2, tokens: [(a[0]! + 1) % 4, ...b], copy: 0, finishPick: 0 }
      ]
      const free = rest.map((op, j) => {
        const allowed = [0, 1, 2, ...Array.from({ length: j }, (_, i) => 5 + i)]
        return { ...op, parentPick: allowed[op.parentPick % allowed.length]! }
      })
      return buildTree(prompt, promptTokens, [...fixed, ...free])
    })

/** One to three groups, each one tree (prompt ids 0, 1, 2). */
const arbGroups: fc.Arbitrary<ReadonlyArray<Tree.RolloutTree>> = fc.integer({ min: 1, max: 3 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => arbSharedTree(i))))

const runs = { numRuns: 150 } as const

// ---------------------------------------------------------------------------------------------
// Laws
// ---------------------------------------------------------------------------------------------

describe("pipeline invariance laws (rewards → estimator → attribution → pack → policyLoss)", () => {
  it("flattening every trajectory into its own chain changes no sequence, advantage, loss value or gradient", () => {
    fc.assert(
      fc.property(arbGroups, arbSetup, (groups, setup) => {
        const rewards = rewardTable(groups, setup.salt)
        expectSame(run(groups, setup, rewards), run(groups.map(flatten), setup, rewards))
      }),
      { seed: 601, ...runs }
    )
  })

  it("moving a fork point up a segment (each child gets its own copy of the node's last k tokens) changes nothing downstream", () => {
    fc.assert(
      fc.property(arbGroups, arbSetup, fc.nat(), fc.nat(), fc.nat(), (groups, setup, which, pick, kPick) => {
        const j = which % groups.length
        const moved = moveForkUp(groups[j]!, pick, kPick)!
        const rewards = rewardTable(groups, setup.salt)
        expectSame(run(groups, setup, rewards), run(groups.map((t, i) => (i === j ? moved : t)), setup, rewards))
      }),
      { seed: 602, ...runs }
    )
  })

  it("storing each group as a forest of several trees (and reversing sibling order) changes nothing downstream", () => {
    fc.assert(
      fc.property(arbGroups, arbSetup, fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), (groups, setup, parts) => {
        const forest = groups.flatMap((t) => splitForest(t, parts)).map((t) => serialize(t.prompt, nest(t), true)).reverse()
        const rewards = rewardTable(groups, setup.salt)
        expectSame(run(groups, setup, rewards), run(forest, setup, rewards))
      }),
      { seed: 603, ...runs }
    )
  })

  it("hard attribution is by prefix, not by stored (node, offset): a tree whose shared model token carries different advantages packs to the same advantages as its flattened form, every run", () => {
    fc.assert(
      fc.property(arbGroups, fc.nat(), fc.constantFrom(...Advantage.EstimatorName.literals), (groups, salt, estimator) => {
        const rewards = rewardTable(groups, salt)
        const setup: Setup = {
          estimator,
          attribution: "hard",
          loss: { clipLow: 0.2, clipHigh: 0.2, dualClip: 3, balancedClip: false, klCoef: 0, klEstimator: "k3", aggregation: "token-mean" },
          salt,
          shift: 0.5
        }
        const tree = run(groups, setup, rewards)
        // the precondition that makes this law bite on every run: some model token differs between soft and hard
        const soft = run(groups, { ...setup, attribution: "soft" }, rewards)
        expect(rows(tree).some((r, i) => r.adv.some((x, t) => x !== rows(soft)[i]!.adv[t]))).toBe(true)
        expectSame(tree, run(groups.map(flatten), setup, rewards))
      }),
      { seed: 604, numRuns: 100 }
    )
  })
})
