import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { trajectories } from "../../src/core/tree.ts"
import { layerRandomBranch } from "../../src/rollout/randomBranch.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import { stack } from "./fixtures.ts"
import { childrenOf } from "./treeChecks.ts"

describe("random-branch sampler", () => {
  it.effect("branches with the constant probability at the post-tool points, ΔH recorded but unused", () =>
    Effect.gen(function*() {
      const sampler = yield* Sampler
      const trees = yield* sampler.sample([tokenIds([20]), tokenIds([30, 31])], { step: 0, key: root(4) })
      let decisions = 0
      for (const tree of trees) {
        assert.strictEqual(trajectories(tree).length, 10)
        tree.nodes.forEach((n, id) => {
          if (!n.branch) return
          decisions++
          assert.strictEqual(n.kind, "tool")
          assert.strictEqual(n.branch.probability, 0.3)
          assert.strictEqual(n.branch.branched, n.branch.u < 0.3)
          assert.isTrue(Number.isFinite(n.branch.deltaH))
          assert.strictEqual(childrenOf(tree, id).length - 1, n.branch.children)
        })
      }
      assert.isAbove(decisions, 0)
    }).pipe(Effect.provide(stack(layerRandomBranch({ budget: 10, initial: 3, probability: 0.3 })) as Layer.Layer<Sampler>)))
})
