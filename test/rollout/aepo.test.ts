import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { aepoInitialRollouts, aepoPaperGlobalSamples } from "../../src/core/branching.ts"
import { root } from "../../src/core/random.ts"
import { tokenId, tokenIds } from "../../src/core/tokens.ts"
import { type RolloutTree, trajectories } from "../../src/core/tree.ts"
import { Events } from "../../src/events/Events.ts"
import { initialFromProbe, layerAepo } from "../../src/rollout/aepo.ts"
import { AepoConfig, type AepoConfigInput } from "../../src/rollout/config.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import type { ScriptedEngineOptions } from "../../src/engine/scripted.ts"
import { stack } from "./fixtures.ts"
import { childrenOf } from "./treeChecks.ts"

const prompts = [tokenIds([20, 21]), tokenIds([30]), tokenIds([40, 41, 42]), tokenIds([50])]

const run = (config: AepoConfigInput, engine: ScriptedEngineOptions = {}, seed = 1) =>
  Effect.gen(function*() {
    const sampler = yield* Sampler
    const trees = yield* sampler.sample(prompts, { step: 0, key: root(seed) })
    const events = (yield* (yield* Events).recorded).map((e) => e.event)
    return { trees, events }
  }).pipe(Effect.provide(stack(layerAepo(config), engine) as Layer.Layer<Sampler | Events>))

const taken = (trees: ReadonlyArray<RolloutTree>) =>
  trees.flatMap((t) => t.nodes.filter((n) => n.branch?.branched)).length

const model = (parent: number, entropies: ReadonlyArray<number>) => ({
  parent,
  kind: "model" as const,
  tokens: entropies.map(() => tokenId(12)),
  logprobs: entropies.map(() => -1),
  entropies,
  finish: "stop" as const
})
const tool = (parent: number) => ({ parent, kind: "tool" as const, tokens: [tokenId(12)], logprobs: [], entropies: [] })

describe("aepo sampler", () => {
  it("the dynamic split follows the released rule (reference) and the paper's σ rule on a probe rollout", () => {
    // root segment window 4, after the tool window 1 (window k = 2)
    const tree: RolloutTree = { prompt: 0, nodes: [{ parent: -1, kind: "prompt", tokens: [tokenId(20)], logprobs: [], entropies: [] }, model(0, [2, 2, 9]), tool(1), model(2, [0.5, 0.5])] }
    const lnV = Math.log(64)
    const c = Schema.decodeUnknownSync(AepoConfig)({ budget: 12, window: 2 })
    assert.strictEqual(initialFromProbe(c, tree, 64), aepoInitialRollouts(12, 4 / lnV, (4 / lnV + 1 / lnV) / 2, 0.5))
    const p = Schema.decodeUnknownSync(AepoConfig)({ budget: 12, window: 2, initialSplit: "paper", splitScale: 3 })
    assert.strictEqual(initialFromProbe(p, tree, 64), aepoPaperGlobalSamples(12, 4 / lnV, [1 / lnV], 3))
  })

  it("the dynamic split measures its windows in the configured form (rollout.deltaHWindow); the paper form is unchanged", () => {
    // k = 2: the response opens with a 1-token segment (a call), then after the result a 3-token segment
    const tree: RolloutTree = { prompt: 0, nodes: [{ parent: -1, kind: "prompt", tokens: [tokenId(20)], logprobs: [], entropies: [] }, model(0, [3]), tool(1), model(2, [0.5, 0.5, 9])] }
    const lnV = Math.log(64)
    // root window per form: paper = first segment's sum (3), mean = k × its mean (6), continued = the first k
    // model tokens across the result (3 + 0.5); the window after the result is 1 in every form
    const roots = { paper: 3, mean: 6, continued: 3.5 } as const
    const got: Record<string, number> = {}
    for (const form of ["paper", "mean", "continued"] as const) {
      const r = Schema.decodeUnknownSync(AepoConfig)({ budget: 12, window: 2, splitScale: 4, deltaHWindow: form })
      got[form] = initialFromProbe(r, tree, 64)
      assert.strictEqual(got[form], aepoInitialRollouts(12, roots[form] / lnV, (roots[form] / lnV + 1 / lnV) / 2, 4), `reference split, ${form}`)
      const p = Schema.decodeUnknownSync(AepoConfig)({ budget: 12, window: 2, initialSplit: "paper", splitScale: 4, deltaHWindow: form })
      assert.strictEqual(initialFromProbe(p, tree, 64), aepoPaperGlobalSamples(12, roots[form] / lnV, [1 / lnV], 4), `paper split, ${form}`)
    }
    // the forms give different splits here, so the form is honoured, not ignored
    assert.notStrictEqual(got["mean"], got["paper"])
    assert.notStrictEqual(got["continued"], got["mean"])
    assert.notStrictEqual(got["continued"], got["paper"])
  })

  it.effect("the dynamic split sets how many global samples each prompt starts with; the probe is outside the budget", () =>
    Effect.gen(function*() {
      const { trees, events } = yield* run({ budget: 8 })
      for (const tree of trees) assert.strictEqual(trajectories(tree).length, 8)
      const probe = events.find((e) => e._tag === "metric" && e.name === "rollout.aepoProbeTokens")
      assert.isDefined(probe)
      assert.isUndefined(events.find((e) => e._tag === "rollout.batch" && e.sampler === "aepo-probe"))
    }))

  it.effect("the consecutive-branch penalty suppresses branching in consecutive rounds", () =>
    Effect.gen(function*() {
      const engine: ScriptedEngineOptions = { callProbability: () => 1, entropy: (i) => 0.5 + 0.3 * i.toolResultsSeen }
      let free = 0
      let penalised = 0
      for (const seed of [1, 2, 3]) {
        const base = { budget: 16, initialSplit: "fixed", initial: 2, branchProbability: 0.3, callLimit: 4, maxResponseTokens: 200 } as const
        free += taken((yield* run({ ...base, penaltyStep: 0 }, engine, seed)).trees)
        penalised += taken((yield* run({ ...base, penaltyStep: 1 }, engine, seed)).trees)
      }
      assert.isBelow(penalised, free)
    }))

  it.effect("fixed split: N global samples, then branches and top-up, exactly M", () =>
    Effect.gen(function*() {
      const { trees } = yield* run({ budget: 8, initialSplit: "fixed", initial: 3 })
      for (const tree of trees) {
        assert.isAtLeast(childrenOf(tree, 0).length, 3)
        assert.strictEqual(trajectories(tree).length, 8)
      }
    }))
})
