import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { emptyMoments, pushMoment, standardize } from "../../src/core/deltaH.ts"
import { root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { type RolloutTree, trajectories } from "../../src/core/tree.ts"
import { Events } from "../../src/events/Events.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import type { ArpoConfigInput } from "../../src/rollout/config.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import type { ScriptedEngineOptions } from "../../src/engine/scripted.ts"
import { stack } from "./fixtures.ts"
import { childrenOf, firstOwnSegment, rootResponse, windowOf } from "./treeChecks.ts"

const V = 64
const prompts = [tokenIds([20, 21]), tokenIds([30]), tokenIds([40, 41, 42]), tokenIds([50])]

const run = (config: ArpoConfigInput, engine: ScriptedEngineOptions = {}, seed = 1) =>
  Effect.gen(function*() {
    const sampler = yield* Sampler
    const trees = yield* sampler.sample(prompts, { step: 3, key: root(seed) })
    const events = (yield* (yield* Events).recorded).map((e) => e.event)
    return { trees, events }
  }).pipe(Effect.provide(stack(layerArpo(config), engine) as Layer.Layer<Sampler | Events>))

const decisions = (trees: ReadonlyArray<RolloutTree>) =>
  trees.flatMap((tree) => tree.nodes.flatMap((n, id) => (n.branch ? [{ tree, id, b: n.branch }] : [])))

/** Entropy rises after tool results (so ΔH > 0 and β matters). */
const hotAfterTools: ScriptedEngineOptions = { entropy: (i) => 0.5 + 0.8 * i.toolResultsSeen }

describe("arpo paper mode", () => {
  it.effect("standardized ΔH: β weighs ΔH ÷ the running std of the ΔH values decided before (replayed from the events, across two batches)", () =>
    Effect.gen(function*() {
      const sampler = yield* Sampler
      yield* sampler.sample(prompts, { step: 1, key: root(1) })
      yield* sampler.sample(prompts, { step: 2, key: root(1) })
      const branchEvents = (yield* (yield* Events).recorded).flatMap((e) => (e.event._tag === "rollout.branch" ? [e.event] : []))
      assert.isAbove(branchEvents.length, 12)
      let m = emptyMoments
      let standardizedSeen = 0
      for (const b of branchEvents) {
        const d = standardize(b.deltaH, m)
        if (m.n >= 8) standardizedSeen++
        assert.closeTo(b.probability, Math.min(1, Math.max(0, 0.5 + 1 * d)), 1e-12)
        m = pushMoment(m, b.deltaH)
      }
      assert.isAbove(standardizedSeen, 4)
    }).pipe(Effect.provide(stack(layerArpo({ budget: 8, initial: 3, beta: 1, window: 5, deltaHScale: "standardized" }), hotAfterTools) as Layer.Layer<Sampler | Events>)))

  it.effect("records every decision at the tool node: H_t from the continuation, H_initial from the root, p, u, children", () =>
    Effect.gen(function*() {
      const { trees, events } = yield* run({ budget: 8, initial: 3, beta: 0.5, window: 5 }, hotAfterTools)
      const ds = decisions(trees)
      assert.isAbove(ds.length, 3)
      for (const { tree, id, b } of ds) {
        const node = tree.nodes[id]!
        assert.strictEqual(node.kind, "tool")
        const kids = childrenOf(tree, id)
        const probe = kids[0]!
        assert.closeTo(b.hAfterTool, windowOf(tree, probe, 5), 1e-12)
        assert.closeTo(b.hInitial, windowOf(tree, rootResponse(tree, probe), 5), 1e-12)
        assert.closeTo(b.deltaH, (b.hAfterTool - b.hInitial) / Math.log(V), 1e-12)
        assert.closeTo(b.probability, Math.min(1, Math.max(0, 0.5 + 0.5 * b.deltaH)), 1e-12)
        assert.strictEqual(b.branched, b.u < b.probability)
        assert.strictEqual(kids.length - 1, b.children, "the branches are the later children of the tool node")
        if (b.branched) assert.isAbove(b.children, 0)
      }
      const branchEvents = events.filter((e) => e._tag === "rollout.branch")
      assert.strictEqual(branchEvents.length, ds.length)
      const batch = events.find((e) => e._tag === "rollout.batch")
      assert.isTrue(batch?._tag === "rollout.batch" && batch.branchConsidered === ds.length)
      for (const tree of trees) assert.strictEqual(trajectories(tree).length, 8)
    }))

  it.effect("α = 0, β = 0 never branches: the budget is filled with fresh global samples", () =>
    Effect.gen(function*() {
      const { trees } = yield* run({ budget: 6, initial: 2, alpha: 0, beta: 0 })
      for (const tree of trees) {
        assert.strictEqual(childrenOf(tree, 0).length, 6)
        assert.isTrue(decisions([tree]).every((d) => !d.b.branched))
      }
    }))

  it.effect("α = 1 branches at every decision while the budget allows", () =>
    Effect.gen(function*() {
      const { trees } = yield* run({ budget: 8, initial: 2, alpha: 1, beta: 0 }, { callProbability: () => 1 })
      for (const tree of trees) {
        assert.strictEqual(childrenOf(tree, 0).length, 2, "no top-up needed: every slot went to a branch")
        assert.strictEqual(trajectories(tree).length, 8)
      }
    }))

  it.effect("branching increases with β when entropy rises after tool results", () =>
    Effect.gen(function*() {
      const taken: Array<number> = []
      for (const beta of [0, 0.2, 0.6]) {
        let n = 0
        for (const seed of [1, 2, 3]) {
          const { trees } = yield* run({ budget: 16, initial: 4, alpha: 0.1, beta, window: 5 }, hotAfterTools, seed)
          n += decisions(trees).filter((d) => d.b.branched).length
        }
        taken.push(n)
      }
      assert.isBelow(taken[0]!, taken[1]!)
      assert.isBelow(taken[1]!, taken[2]!)
    }))

  it.effect("Z = 2 starts two continuations per branch taken", () =>
    Effect.gen(function*() {
      const { trees } = yield* run({ budget: 9, initial: 3, alpha: 1, beta: 0, branchFactor: 2 }, { callProbability: () => 1 })
      const ds = decisions(trees).filter((d) => d.b.branched)
      assert.isAbove(ds.length, 0)
      for (const { tree, id, b } of ds) {
        assert.isAtMost(b.children, 2)
        assert.strictEqual(childrenOf(tree, id).length, b.children + 1)
      }
      assert.isTrue(ds.some((d) => d.b.children === 2))
    }))
})

/** The released code's decision for one draw, written out from ARPO_SPEC §1.2 (not imported). */
const pseudocodeBranches = (hNow: number, hInit: number, u: number, alpha: number, beta: number) => {
  const dH = hNow - hInit
  const x = Math.min(1, Math.max(0, u - beta * dH))
  return !(x > alpha)
}

describe("arpo reference mode", () => {
  it.effect("decisions match the spec's pseudocode on the recorded entropies (H_now: this round's segment; H_init: the trajectory's first)", () =>
    Effect.gen(function*() {
      const lnV = Math.log(V)
      for (const seed of [1, 2, 3]) {
        const { trees } = yield* run({ budget: 8, initial: 3, mode: "reference", beta: 0.5 }, hotAfterTools, seed)
        const ds = decisions(trees)
        assert.isAbove(ds.length, 0)
        for (const { tree, id, b } of ds) {
          const segment = tree.nodes[id]!.parent // the segment that made the call
          const own = firstOwnSegment(tree, segment)
          const hNow = windowOf(tree, segment, 20) / lnV
          const hInit = windowOf(tree, own, 20) / lnV
          assert.closeTo(b.deltaH, hNow - hInit, 1e-12)
          assert.strictEqual(b.branched, pseudocodeBranches(hNow, hInit, b.u, 0.5, 0.5))
          assert.strictEqual(childrenOf(tree, id).length - 1, b.children)
        }
        for (const tree of trees) assert.strictEqual(trajectories(tree).length, 8)
      }
    }))

  it.effect("the decision is one round late: a root trajectory's first decision has ΔH = 0 exactly (P = α)", () =>
    Effect.gen(function*() {
      const { trees } = yield* run({ budget: 8, initial: 3, mode: "reference" }, hotAfterTools)
      let firstRound = 0
      for (const { tree, id, b } of decisions(trees)) {
        const segment = tree.nodes[id]!.parent
        if (tree.nodes[segment]!.parent === 0) {
          firstRound++
          assert.strictEqual(b.deltaH, 0)
          assert.strictEqual(b.probability, 0.5)
        }
      }
      assert.isAbove(firstRound, 0)
    }))

  it.effect("a prompt with nothing running gets one fresh sample per round", () =>
    Effect.gen(function*() {
      const { trees } = yield* run({ budget: 5, initial: 1, mode: "reference", alpha: 0, beta: 0 }, { callProbability: () => 0 })
      for (const tree of trees) {
        // without calls every sample ends in one round; four top-ups, one per round, each from the prompt
        assert.strictEqual(childrenOf(tree, 0).length, 5)
        const keys = childrenOf(tree, 0).map((c) => tree.nodes[c]!.key)
        assert.strictEqual(new Set(keys.map((k) => JSON.stringify(k))).size, 5)
      }
    }))
})
