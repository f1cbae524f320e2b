import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { trajectories } from "../../src/core/tree.ts"
import { Events } from "../../src/events/Events.ts"
import { layerGlobal } from "../../src/rollout/global.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import { stack } from "./fixtures.ts"

const prompts = [tokenIds([20, 21, 22]), tokenIds([30, 31])]

describe("global sampler", () => {
  it.effect("starts M independent trajectories per prompt, all from the prompt node", () =>
    Effect.gen(function*() {
      const sampler = yield* Sampler
      const trees = yield* sampler.sample(prompts, { step: 0, key: root(1) })
      assert.strictEqual(trees.length, 2)
      for (const tree of trees) {
        const ts = trajectories(tree)
        assert.strictEqual(ts.length, 4)
        const rootChildren = tree.nodes.filter((n) => n.parent === 0).length
        assert.strictEqual(rootChildren, 4)
        for (const t of ts) assert.notStrictEqual(t.finish, "failed")
      }
      const events = yield* (yield* Events).recorded
      const batch = events.map((e) => e.event).find((e) => e._tag === "rollout.batch")
      assert.isDefined(batch)
      if (batch?._tag === "rollout.batch") {
        assert.strictEqual(batch.trajectories, 8)
        assert.strictEqual(batch.branchConsidered, 0)
        assert.isAbove(batch.toolCalls, 0)
      }
    }).pipe(Effect.provide(stack(layerGlobal({ budget: 4 })))))
})
