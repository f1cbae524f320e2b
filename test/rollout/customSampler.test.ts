/**
 * The example of docs/samplers.md ("Writing a new sampler"), verbatim except for import paths:
 * an "entropy-drop" ablation that branches only where the post-tool window is below the root's.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { branches } from "../../src/core/branching.ts"
import { root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { trajectories } from "../../src/core/tree.ts"
import { decodeConfig, runnerFields } from "../../src/rollout/config.ts"
import { branchAtProbes, type Policy, topUp } from "../../src/rollout/policy.ts"
import { fromPolicy, runnerEnv, settingsOf } from "../../src/rollout/runner.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import { stack } from "./fixtures.ts"

// --- the example (26 lines in the docs, with its imports) ---------------------------------------------------------------------------
export const EntropyDropConfig = Schema.Struct({ ...runnerFields, initial: Schema.Int, gamma: Schema.Finite })

export const entropyDropPolicy = (c: { initial: number; gamma: number }): Policy => ({
  initial: () => c.initial,
  afterRound: (view) => {
    const { actions, created, decisions } = branchAtProbes(view, 1, (probe, u) => {
      const probability = probe.deltaH < 0 ? Math.min(1, -c.gamma * probe.deltaH) : 0
      return { probability, branched: branches(probability, u) }
    })
    return { actions: [...actions, ...topUp(view, created)], decisions }
  }
})

export const layerEntropyDrop = (input: unknown) =>
  Layer.effect(Sampler, Effect.gen(function*() {
    const config = yield* decodeConfig("entropy-drop", EntropyDropConfig, input)
    const env = yield* runnerEnv
    return Sampler.of(fromPolicy(env, settingsOf("entropy-drop", config), () => entropyDropPolicy(config)))
  }))
// ------------------------------------------------------------------------------------------------------

describe("a custom sampler in under 50 lines", () => {
  it.effect("entropy-drop: exactly M per prompt, branches only where ΔH < 0", () =>
    Effect.gen(function*() {
      const sampler = yield* Sampler
      assert.strictEqual(sampler.name, "entropy-drop")
      const trees = yield* sampler.sample([tokenIds([20]), tokenIds([30]), tokenIds([40])], { step: 0, key: root(2) })
      let taken = 0
      for (const tree of trees) {
        assert.strictEqual(trajectories(tree).length, 8)
        for (const n of tree.nodes) {
          if (!n.branch) continue
          if (n.branch.branched) taken++
          if (n.branch.deltaH >= 0) assert.isFalse(n.branch.branched)
        }
      }
      assert.isAbove(taken, 0)
    }).pipe(Effect.provide(stack(layerEntropyDrop({ budget: 8, initial: 3, gamma: 20 })) as Layer.Layer<Sampler>)))
})
