/**
 * Integration: the samplers on the real embedded engine (jax-js) with the real calculator tool behind
 * `<python>`. The tiny policy is SFT-trained for a few steps so that ΔH > 0 where ARPO measures it.
 */
import { Effect, Layer } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { root } from "../../src/core/random.ts"
import { encodeJson, type RolloutTree, trajectories } from "../../src/core/tree.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import type { EventBody } from "../../src/events/Event.ts"
import { Events } from "../../src/events/Events.ts"
import type { Policy } from "../../src/model/policy.ts"
import { byteTokenizer } from "../../src/model/tokenizer.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import { layerGlobal } from "../../src/rollout/global.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { prompts, trainTinyPolicy } from "./embeddedFixture.ts"

let policy: Policy

beforeAll(async () => {
  policy = await trainTinyPolicy(25)
}, 120_000)

const sample = (
  sampler: Layer.Layer<Sampler, unknown, never> | ReturnType<typeof layerArpo>,
  seed: number,
  n = 4
): Promise<{ trees: ReadonlyArray<RolloutTree>; events: ReadonlyArray<EventBody> }> => {
  const layer = (sampler as ReturnType<typeof layerArpo>).pipe(
    Layer.provideMerge(Layer.mergeAll(layerEmbedded(policy, { maxSlots: 16 }), Toolbox.layer([Calculator.tool({ name: "python" })]))),
    Layer.provideMerge(Events.layerMemory)
  )
  return Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const s = yield* Sampler
        const trees = yield* s.sample(prompts(n), { step: 0, key: root(seed) })
        const events = (yield* (yield* Events).recorded).map((e) => e.event)
        return { trees, events }
      }).pipe(Effect.provide(layer))
    )
  )
}

const batchOf = (events: ReadonlyArray<EventBody>) => {
  const b = events.find((e) => e._tag === "rollout.batch")
  if (b?._tag !== "rollout.batch") throw new Error("no rollout.batch event")
  return b
}

describe("samplers on the embedded engine", () => {
  it("global: exactly M trajectories per prompt, real calculator results inserted as tool tokens", async () => {
    const { trees } = await sample(layerGlobal({ budget: 4, maxResponseTokens: 60 }), 1)
    for (const tree of trees) {
      const ts = trajectories(tree)
      expect(ts.length).toBe(4)
      const d = Number(byteTokenizer.decode(tree.nodes[0]!.tokens).slice(1, 2))
      const results = tree.nodes.filter((n) => n.kind === "tool").map((n) => byteTokenizer.decode(n.tokens))
      expect(results.length).toBeGreaterThan(0)
      expect(results.filter((r) => r === ` <result>\n${d * d}\n</result>`).length).toBeGreaterThan(0)
    }
  })

  it("arpo: the same seed reproduces the same serialized trees and branch events", async () => {
    const config = { budget: 6, initial: 2, alpha: 0.2, beta: 0.1, window: 6, maxResponseTokens: 60 }
    const a = await sample(layerArpo(config), 3)
    const b = await sample(layerArpo(config), 3)
    expect(a.trees.map((t) => encodeJson(t))).toEqual(b.trees.map((t) => encodeJson(t)))
    const branches = (x: typeof a) => x.events.filter((e) => e._tag === "rollout.branch")
    expect(branches(a)).toEqual(branches(b))
    const c = await sample(layerArpo(config), 4)
    expect(c.trees.map((t) => encodeJson(t))).not.toEqual(a.trees.map((t) => encodeJson(t)))
  })

  it("arpo: branching increases with β (ΔH > 0 after tool results on this policy)", async () => {
    const taken: Array<number> = []
    for (const beta of [0, 0.1, 0.3]) {
      const { events } = await sample(layerArpo({ budget: 8, initial: 2, alpha: 0.1, beta, window: 6, maxResponseTokens: 60 }), 1)
      const batch = batchOf(events)
      expect(batch.deltaHMean).toBeGreaterThan(1)
      expect(batch.trajectories).toBe(32)
      taken.push(batch.branchTaken)
    }
    expect(taken[0]).toBeLessThan(taken[1]!)
    expect(taken[1]).toBeLessThan(taken[2]!)
  })
})
