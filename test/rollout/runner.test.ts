import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { encodeJson, trajectories, type RolloutTree } from "../../src/core/tree.ts"
import { ContextOverflow, EngineFailure } from "../../src/engine/Engine.ts"
import type { StampedEvent } from "../../src/events/Event.ts"
import { Events } from "../../src/events/Events.ts"
import { layerAepo } from "../../src/rollout/aepo.ts"
import { layerArpo } from "../../src/rollout/arpo.ts"
import { layerGlobal } from "../../src/rollout/global.ts"
import { layerRandomBranch } from "../../src/rollout/randomBranch.ts"
import { Sampler } from "../../src/rollout/Sampler.ts"
import { scriptedTokenizer } from "../../src/engine/scripted.ts"
import * as Protocol from "../../src/tools/protocol.ts"
import { keyedDelay, stack } from "./fixtures.ts"

const prompts = [tokenIds([20, 21, 22]), tokenIds([30, 31]), tokenIds([40]), tokenIds([50, 51, 52, 53])]

const samplers = {
  global: layerGlobal({ budget: 6 }),
  "arpo-paper": layerArpo({ budget: 6, initial: 2, alpha: 0.6 }),
  "arpo-reference": layerArpo({ budget: 6, initial: 2, mode: "reference" }),
  aepo: layerAepo({ budget: 6 }),
  "aepo-fixed": layerAepo({ budget: 6, initial: 2, initialSplit: "fixed" }),
  "random-branch": layerRandomBranch({ budget: 6, initial: 2 })
}

const sampleWith = (layer: Layer.Layer<Sampler, unknown, never>, seed: number, step = 0) =>
  Effect.gen(function*() {
    const sampler = yield* Sampler
    const trees = yield* sampler.sample(prompts, { step, key: root(seed) })
    const events = yield* (yield* Events).recorded
    return { trees, events }
  }).pipe(Effect.provide(layer as Layer.Layer<Sampler | Events, unknown, never>))

/** Events without wall-clock figures (`…Ms`), which are the only non-deterministic fields. */
const stripTimes = (events: ReadonlyArray<StampedEvent>) =>
  JSON.stringify(events.map((e) => e.event), (k, v) => (k.endsWith("Ms") ? undefined : v))

const serialize = (trees: ReadonlyArray<RolloutTree>) => trees.map((t) => encodeJson(t)).join("\n")

describe("budget", () => {
  for (const [name, layer] of Object.entries(samplers)) {
    it.effect(`${name}: exactly M trajectories per prompt when nothing fails, over several seeds`, () =>
      Effect.gen(function*() {
        for (const seed of [1, 2, 3, 4, 5]) {
          const { trees } = yield* sampleWith(stack(layer), seed)
          for (const tree of trees) {
            const ts = trajectories(tree)
            assert.strictEqual(ts.length, 6, `seed ${seed} prompt ${tree.prompt}`)
            for (const t of ts) assert.oneOf(t.finish, ["stop", "eos", "length"])
          }
        }
      }))
  }
})

describe("determinism", () => {
  for (const [name, layer] of Object.entries(samplers)) {
    it.live(`${name}: the same seed gives identical trees and events whatever the tool completion order and concurrency`, () =>
      Effect.gen(function*() {
        const a = yield* sampleWith(stack(layer, {}, { delayMs: keyedDelay(1, 6) }), 7)
        const b = yield* sampleWith(stack(layer, {}, { delayMs: keyedDelay(2, 6) }), 7)
        const c = yield* sampleWith(stack(layer), 7)
        assert.strictEqual(serialize(a.trees), serialize(b.trees))
        assert.strictEqual(serialize(a.trees), serialize(c.trees))
        assert.strictEqual(stripTimes(a.events), stripTimes(b.events))
        const d = yield* sampleWith(stack(layer), 8)
        assert.notStrictEqual(serialize(a.trees), serialize(d.trees))
        const e = yield* sampleWith(stack(layer), 7, 1)
        assert.notStrictEqual(serialize(a.trees), serialize(e.trees), "the step is part of every key path")
      }))
  }

  it.live("tool concurrency 1 and 8 give the same trees", () =>
    Effect.gen(function*() {
      const one = yield* sampleWith(stack(layerArpo({ budget: 6, initial: 2, toolConcurrency: 1 }), {}, { delayMs: keyedDelay(3, 4) }), 11)
      const eight = yield* sampleWith(stack(layerArpo({ budget: 6, initial: 2, toolConcurrency: 8 }), {}, { delayMs: keyedDelay(3, 4) }), 11)
      assert.strictEqual(serialize(one.trees), serialize(eight.trees))
    }))
})

describe("faults", () => {
  it.live("a tool that hangs, errors or crashes does not lose the batch; the trajectory continues with the error text", () =>
    Effect.gen(function*() {
      const tok = scriptedTokenizer(64)
      const { trees, events } = yield* sampleWith(
        stack(layerArpo({ budget: 4, initial: 2, toolTimeoutMs: 30 }), {}, {
          behaviour: (call) => {
            const id = Number(call.content.slice(1)) % 4
            return id === 0 ? "hang" : id === 1 ? "error" : id === 2 ? "die" : "ok"
          }
        }),
        3
      )
      const asTokens = (output: string) => JSON.stringify(tok.encode(Protocol.formatResult(output)))
      const timeout = asTokens(Protocol.timeoutText("search", 30))
      const crash = asTokens(Protocol.failureText("search", "Error: tool search crashed"))
      let timeouts = 0
      let crashes = 0
      let continued = 0
      for (const tree of trees) {
        assert.strictEqual(trajectories(tree).length, 4)
        tree.nodes.forEach((n, id) => {
          if (n.kind !== "tool") return
          const text = JSON.stringify(n.tokens)
          if (text === timeout) timeouts++
          if (text === crash) crashes++
          if ((text === timeout || text === crash) && tree.nodes.some((m) => m.parent === id)) continued++
        })
      }
      assert.isAbove(continued, 0)
      assert.isAbove(timeouts, 0)
      assert.isAbove(crashes, 0)
      const batch = events.map((e) => e.event).find((e) => e._tag === "rollout.batch")
      assert.isTrue(batch?._tag === "rollout.batch" && batch.toolFailures > 0 && batch.failedTrajectories === 0)
    }))

  it.effect("an engine call that keeps failing marks only its trajectory failed, with a note; the batch survives", () =>
    Effect.gen(function*() {
      // the request of prompt 1's third segment of any trajectory fails permanently
      const failing = (r: { readonly tokens: ReadonlyArray<number> }) => r.tokens[0] === 30 && r.tokens.length > 12
      const { trees, events } = yield* sampleWith(
        stack(layerGlobal({ budget: 4 }), {
          fail: (r) => (failing(r) ? new EngineFailure({ adapter: "scripted", message: "boom", transient: true }) : undefined)
        }),
        5
      )
      const failed = trajectories(trees[1]!).filter((t) => t.finish === "failed")
      assert.isAbove(failed.length, 0)
      assert.strictEqual(trajectories(trees[1]!).length, 4, "failed trajectories still count in M")
      for (const p of [0, 2, 3]) assert.isTrue(trajectories(trees[p]!).every((t) => t.finish !== "failed"))
      const notes = events.map((e) => e.event).filter((e) => e._tag === "note")
      assert.strictEqual(notes.length, failed.length)
      assert.match(notes[0]!._tag === "note" ? notes[0]!.message : "", /prompt 1 trajectory \d+ failed .*excluded from training/)
    }))

  it.effect("a context the engine cannot extend ends the trajectory for length, not as a failure", () =>
    Effect.gen(function*() {
      const { trees } = yield* sampleWith(
        stack(layerGlobal({ budget: 3 }), {
          fail: (r) => (r.tokens.length > 10 ? new ContextOverflow({ adapter: "scripted", tokens: r.tokens.length, limit: 10 }) : undefined)
        }),
        6
      )
      let ended = 0
      for (const tree of trees) {
        for (const t of trajectories(tree)) {
          assert.notStrictEqual(t.finish, "failed")
          if (t.finish === "length") ended++
        }
      }
      assert.isAbove(ended, 0)
    }))

  it.effect("a transient engine failure is retried and loses nothing", () =>
    Effect.gen(function*() {
      const ok = yield* sampleWith(stack(layerGlobal({ budget: 4 })), 5)
      const flaky = yield* sampleWith(
        stack(layerGlobal({ budget: 4 }), {
          fail: (_, attempt) => (attempt === 0 ? new EngineFailure({ adapter: "scripted", message: "blip", transient: true }) : undefined)
        }),
        5
      )
      assert.strictEqual(serialize(flaky.trees), serialize(ok.trees))
    }))
})

describe("limits", () => {
  it.effect("past the call limit the trajectory ends without running the call", () =>
    Effect.gen(function*() {
      const { trees, events } = yield* sampleWith(
        stack(layerGlobal({ budget: 3, callLimit: 2, maxResponseTokens: 400 }), { callProbability: () => 1 }),
        2
      )
      for (const tree of trees) {
        for (const t of trajectories(tree)) {
          assert.strictEqual(t.toolCalls, 2)
          assert.strictEqual(t.finish, "stop")
        }
      }
      const batch = events.map((e) => e.event).find((e) => e._tag === "rollout.batch")
      assert.isTrue(batch?._tag === "rollout.batch" && batch.callLimitReached === 12)
    }))

  it.effect("no response exceeds the response budget", () =>
    Effect.gen(function*() {
      const { trees } = yield* sampleWith(stack(layerArpo({ budget: 4, initial: 2, maxResponseTokens: 14 })), 9)
      let lengthEnded = 0
      for (const tree of trees) {
        for (const t of trajectories(tree)) {
          assert.isAtMost(t.tokens.length - t.responseStart, 14)
          if (t.finish === "length") lengthEnded++
        }
      }
      assert.isAbove(lengthEnded, 0)
    }))
})

describe("config", () => {
  it.effect("a bad config fails the layer with SamplerConfigInvalid naming the field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(stack(layerArpo({ budget: 4, initial: 8 }))))
      assert.strictEqual((error as { _tag: string })._tag, "SamplerConfigInvalid")
      assert.match((error as Error).message, /initial \(N = 8\) exceeds budget \(M = 4\)/)
      const error2 = yield* Effect.flip(Layer.build(stack(layerArpo({ alpha: Number.NaN }))))
      assert.match((error2 as Error).message, /alpha/)
    }))
})
