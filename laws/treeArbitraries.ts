/**
 * fast-check arbitraries for rollout trees, rewards and advantages, shared by every law about trees
 * (attribution, packing, samplers). Trees use a tiny vocabulary so that siblings often share leading
 * tokens (non-canonical prefixes), and per-token log-probs/entropies are a pure function of the
 * token's whole prefix, as they would be for one policy: merging identical prefixes loses nothing.
 * It does not build trees through a sampler or an engine (see test/rollout/ for those).
 */
import fc from "fast-check"
import * as Tree from "../src/core/tree.ts"
import { type Role, tokenId } from "../src/core/tokens.ts"

export interface ArbTreeOptions {
  /** non-root nodes, at most (default 10) */
  readonly maxNodes?: number
  /** non-root nodes, at least (default 0) */
  readonly minNodes?: number
  /** token ids are drawn from [0, vocab) (default 4: small, so prefixes collide) */
  readonly vocab?: number
  /** tokens per segment, at most (default 4; at least 1) */
  readonly maxSegment?: number
  /** allow leaves whose finish is "failed" (default true) */
  readonly allowFailed?: boolean
  /** every model node gets this policy version (default 0); "mixed": 0, 1 or 2 by prefix */
  readonly policyVersion?: number | "mixed"
}

/** One append: which existing node to hang it from, and its tokens. */
export interface AppendOp {
  readonly parentPick: number
  readonly tokens: ReadonlyArray<number>
  /** when >0 and the parent already has a child of this kind, start with that many of its tokens */
  readonly copy: number
  readonly finishPick: number
}

// FNV-style mixing of one (role, token) into a running prefix hash.
const mix = (h: number, role: Role, token: number): number => {
  let x = (h ^ (token + 1) ^ (role === "model" ? 0x1000 : role === "tool" ? 0x2000 : 0x3000)) >>> 0
  x = Math.imul(x, 0x01000193) >>> 0
  x ^= x >>> 15
  x = Math.imul(x, 0x2c1b3c6d) >>> 0
  return (x ^ (x >>> 12)) >>> 0
}

const logprobOf = (h: number) => -((h % 1000) / 250)
const entropyOf = (h: number) => ((h >>> 10) % 1000) / 250

const finishes = ["stop", "eos", "length", "failed"] as const
const tools = ["python", "search"] as const

/**
 * Build a tree from append operations. Kinds alternate as in agentic rollouts: the prompt and tool
 * results are followed by model segments, model segments by tool results. After building, model
 * nodes with children get a tool call, model leaves a finish, tool nodes with children a branch record.
 */
export const buildTree = (
  prompt: number,
  promptTokens: ReadonlyArray<number>,
  ops: ReadonlyArray<AppendOp>,
  options: ArbTreeOptions = {}
): Tree.RolloutTree => {
  let tree = Tree.make(prompt, promptTokens.map(tokenId))
  const hashes: Array<number> = [promptTokens.reduce((h, t) => mix(h, "prompt", t), 0x811c9dc5)]
  for (const op of ops) {
    const parent = op.parentPick % tree.nodes.length
    const parentKind = tree.nodes[parent]!.kind
    const kind = parentKind === "model" ? "tool" : "model"
    let tokens = [...op.tokens]
    if (op.copy > 0) {
      const sibling = tree.nodes.find((n) => n.parent === parent && n.kind === kind)
      if (sibling) tokens = [...sibling.tokens.slice(0, op.copy), ...tokens]
    }
    let h = hashes[parent]!
    const lps: Array<number> = []
    const ens: Array<number> = []
    for (const t of tokens) {
      h = mix(h, kind, t)
      lps.push(logprobOf(h))
      ens.push(entropyOf(h))
    }
    const version = options.policyVersion === "mixed" ? h % 3 : (options.policyVersion ?? 0)
    ;[tree] = Tree.append(tree, parent, {
      kind,
      tokens: tokens.map(tokenId),
      logprobs: kind === "model" ? lps : [],
      entropies: kind === "model" ? ens : [],
      ...(kind === "model" ? { policyVersion: version, key: { k0: h | 0, k1: prompt } } : {})
    })
    hashes.push(h)
  }
  const kids = Tree.children(tree)
  const allowFailed = options.allowFailed ?? true
  return {
    prompt: tree.prompt,
    nodes: tree.nodes.map((n, i) => {
      if (i === 0) return n
      const h = hashes[i]!
      const pick = ops[i - 1]!.finishPick
      if (n.kind === "model") {
        return kids[i]!.length > 0
          ? { ...n, toolCall: { tool: tools[h % 2]!, content: `call ${h % 97}` } }
          : { ...n, finish: finishes[pick % (allowFailed ? 4 : 3)]! }
      }
      return kids[i]!.length > 0
        ? {
          ...n,
          branch: {
            hAfterTool: (h % 100) / 10,
            hInitial: ((h >>> 8) % 100) / 10,
            deltaH: ((h % 100) - ((h >>> 8) % 100)) / 100,
            probability: (h % 11) / 10,
            u: ((h >>> 4) % 101) / 100,
            branched: kids[i]!.length > 1,
            children: kids[i]!.length - 1
          }
        }
        : n
    })
  }
}

/** One append operation (see `AppendOp`). */
export const arbAppendOp = (options: ArbTreeOptions = {}): fc.Arbitrary<AppendOp> =>
  fc.record({
    parentPick: fc.nat(),
    tokens: fc.array(fc.nat({ max: (options.vocab ?? 4) - 1 }), { minLength: 1, maxLength: options.maxSegment ?? 4 }),
    copy: fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
    finishPick: fc.nat()
  })

/** A random rollout tree (see `buildTree`): any shape, often with non-canonical shared prefixes. */
export const arbTree = (options: ArbTreeOptions = {}): fc.Arbitrary<Tree.RolloutTree> =>
  fc
    .record({
      prompt: fc.nat({ max: 1000 }),
      promptTokens: fc.array(fc.nat({ max: (options.vocab ?? 4) - 1 }), { minLength: 1, maxLength: 3 }),
      ops: fc.array(arbAppendOp(options), { minLength: options.minNodes ?? 0, maxLength: options.maxNodes ?? 10 })
    })
    .map(({ prompt, promptTokens, ops }) => buildTree(prompt, promptTokens, ops, options))

/**
 * A tree where nothing but the prompt is shared: the root's children are the only branching, each
 * starts with a distinct first token and continues as a chain (model, tool, model, …) to its leaf.
 */
export const arbStarTree = (options: ArbTreeOptions = {}): fc.Arbitrary<Tree.RolloutTree> => {
  const vocab = options.vocab ?? 4
  const segment = fc.array(fc.nat({ max: vocab - 1 }), { minLength: 1, maxLength: options.maxSegment ?? 4 })
  return fc
    .record({
      prompt: fc.nat({ max: 1000 }),
      promptTokens: fc.array(fc.nat({ max: vocab - 1 }), { minLength: 1, maxLength: 3 }),
      chains: fc.array(fc.array(segment, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 5 }),
      finishPicks: fc.array(fc.nat(), { minLength: 5, maxLength: 5 })
    })
    .map(({ chains, finishPicks, prompt, promptTokens }) => {
      const ops: Array<AppendOp> = []
      let next = 1 // node id the next op creates
      chains.forEach((chain, c) => {
        chain.forEach((tokens, depth) => {
          // distinct first token per chain (outside the shared vocabulary), so no prefix is shared
          const first = depth === 0 ? [vocab + c, ...tokens.slice(1)] : tokens
          ops.push({ parentPick: depth === 0 ? 0 : next - 1, tokens: first, copy: 0, finishPick: finishPicks[c]! })
          next++
        })
      })
      return buildTree(prompt, promptTokens, ops, options)
    })
}

/** Rewards on a grid of eighths in [-1, 1.125] (exact in binary, so sums do not depend on order). */
export const arbReward: fc.Arbitrary<number> = fc.integer({ min: -8, max: 9 }).map((k) => k / 8)

/** `n` rewards (see `arbReward`). */
export const arbRewards = (n: number): fc.Arbitrary<Float64Array> =>
  fc.array(arbReward, { minLength: n, maxLength: n }).map((xs) => Float64Array.from(xs))

/** Any finite reward in [-10, 10] (not on a grid). */
export const arbRealReward: fc.Arbitrary<number> = fc.double({ min: -10, max: 10, noNaN: true, noDefaultInfinity: true })

export interface GroupedRewards {
  readonly rewards: Float64Array
  readonly groups: Int32Array
}

/** Rewards with group ids; every group has `minGroup` (default 2) to `maxGroup` (default 8) members, interleaved. */
export const arbGroupedRewards = (
  options: { readonly minGroup?: number; readonly maxGroup?: number; readonly maxGroups?: number; readonly reward?: fc.Arbitrary<number> } = {}
): fc.Arbitrary<GroupedRewards> =>
  fc
    .array(fc.array(options.reward ?? arbRealReward, { minLength: options.minGroup ?? 2, maxLength: options.maxGroup ?? 8 }), {
      minLength: 1,
      maxLength: options.maxGroups ?? 4
    })
    .chain((groups) => {
      const flat = groups.flatMap((g, gi) => g.map((r) => [r, gi * 7 - 3] as const))
      return fc.shuffledSubarray(flat, { minLength: flat.length, maxLength: flat.length }).map((xs) => ({
        rewards: Float64Array.from(xs.map(([r]) => r)),
        groups: Int32Array.from(xs.map(([, g]) => g))
      }))
    })

/** A tree with one advantage per trajectory (on the grid of `arbReward`). */
export const arbTreeWithAdvantages = (
  options: ArbTreeOptions = {},
  tree: fc.Arbitrary<Tree.RolloutTree> = arbTree(options)
): fc.Arbitrary<{ readonly tree: Tree.RolloutTree; readonly advantages: Float64Array }> =>
  tree.chain((t) => arbRewards(Tree.leaves(t).length).map((advantages) => ({ tree: t, advantages })))

/** A split point: a non-root node with at least two tokens, and a cut inside it (or none). */
export const pickSplit = (tree: Tree.RolloutTree, nodePick: number, atPick: number): readonly [number, number] | undefined => {
  const candidates = tree.nodes.map((n, i) => [i, n.tokens.length] as const).filter(([i, len]) => i > 0 && len >= 2)
  if (candidates.length === 0) return undefined
  const [node, len] = candidates[nodePick % candidates.length]!
  return [node, 1 + (atPick % (len - 1))]
}

/** Per parent, a random permutation of its children (as `SiblingOrder` wants). */
export const permutationsFor = (tree: Tree.RolloutTree, seeds: ReadonlyArray<number>): ReadonlyArray<ReadonlyArray<number>> =>
  Tree.children(tree).map((ks, parent) => {
    const perm = ks.map((_, i) => i)
    // Fisher–Yates driven by the given seeds (deterministic for a fast-check counterexample)
    for (let i = perm.length - 1; i > 0; i--) {
      const s = seeds.length === 0 ? 0 : seeds[(parent + i) % seeds.length]!
      const j = s % (i + 1)
      ;[perm[i], perm[j]] = [perm[j]!, perm[i]!]
    }
    return perm
  })
