import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { beforeAll } from "vitest"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import { Engine, type GenerateRequest } from "../../src/engine/Engine.ts"
import { Events } from "../../src/events/Events.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { encode } from "../../src/model/tokenizer.ts"

const config = { ...tinyConfig, dModel: 32, layers: 1, heads: 2, mlpWidth: 64, context: 64 }
let policy: Policy
beforeAll(async () => {
  await ensureBackend()
  policy = Policy.init(config, root(21))
})

const layer = () => layerEmbedded(policy, { maxSlots: 8, minReuse: 4 }).pipe(Layer.provideMerge(Events.layerMemory))

const request = (text: string, i: number, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  tokens: encode(text),
  maxTokens: 12,
  temperature: 1,
  topP: 0.95,
  stopTokens: [],
  stopStrings: [],
  key: derive(root(5), i),
  ...extra
})

describe("embedded Engine", () => {
  it.effect("generates with exact entropies and log-probs, deterministic per key, and reports reuse in engine.call", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      assert.strictEqual(engine.capabilities.entropy, "exact")
      assert.isTrue(engine.capabilities.deterministic)
      const reqs = [0, 1, 2].map((i) => request("<think>what is 2+2?", i))
      const a = yield* engine.generate(reqs)
      const b = yield* engine.generate(reqs)
      assert.deepStrictEqual(b.map((g) => g.tokens), a.map((g) => g.tokens))
      for (const g of a) {
        assert.strictEqual(g.logprobs.length, g.tokens.length)
        for (const h of g.entropies) assert.isTrue(h >= 0 && h <= Math.log(config.vocab) + 1e-6)
        for (const lp of g.logprobs) assert.isTrue(lp <= 0)
      }
      const events = (yield* (yield* Events).recorded).map((e) => e.event).filter((e) => e._tag === "engine.call")
      assert.strictEqual(events.length, 2)
      const [first, second] = events as Array<Extract<(typeof events)[number], { _tag: "engine.call" }>>
      // within the first call the two later requests copy the shared prompt from the first one
      assert.isTrue(first!.reusedTokens >= 2 * (reqs[0]!.tokens.length - 1))
      // the second call finds all three prompts in the prefix cache
      assert.strictEqual(second!.reusedTokens, 3 * (reqs[0]!.tokens.length - 1))
      assert.strictEqual(second!.computedTokens, second!.newTokens + 0)
    }).pipe(Effect.provide(layer())))

  it.live("with threads: 2 the same requests give the same tokens as one thread, and branches reuse their parent's prefix", () =>
    Effect.gen(function*() {
      const run = (threads: number) =>
        Effect.gen(function*() {
          const engine = yield* Engine
          const reqs = [0, 1, 2, 3, 4].map((i) => request(i % 2 === 0 ? "<think>what is 2+2?" : "<search>capital of France", i))
          const first = yield* engine.generate(reqs)
          const branches = reqs.map((r, i) => ({ ...r, tokens: tokenIds([...r.tokens, ...first[i]!.tokens.slice(0, 4)]), key: derive(root(6), i) }))
          const second = yield* engine.generate(branches)
          const calls = (yield* (yield* Events).recorded).map((e) => e.event).filter((e) => e._tag === "engine.call")
          return { tokens: [...first, ...second].map((g) => g.tokens), reused: calls.map((e) => (e._tag === "engine.call" ? e.reusedTokens : 0)) }
        }).pipe(Effect.provide(layerEmbedded(policy, { maxSlots: 8, minReuse: 4, threads }).pipe(Layer.provideMerge(Events.layerMemory))))
      const one = yield* run(1)
      const two = yield* run(2)
      assert.deepStrictEqual(two.tokens, one.tokens)
      // every branch found its parent's KV on the thread that sampled it
      assert.strictEqual(two.reused[1], one.reused[1])
    }), 60_000)

  it.effect("keeps a sampled stop token and reports it; fails with ContextOverflow on a too long context", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const all = Array.from({ length: 256 }, (_, i) => i)
      const [g] = yield* engine.generate([request("hi", 9, { stopTokens: tokenIds(all) })])
      assert.strictEqual(g!.tokens.length, 1)
      assert.deepStrictEqual(g!.finish, { _tag: "stop", token: g!.tokens[0]! })
      const err = yield* Effect.flip(engine.generate([request("x".repeat(config.context), 0)]))
      assert.strictEqual(err._tag, "ContextOverflow")
    }).pipe(Effect.provide(layer())))

  it.effect("scores sequences with entry 0 equal to 0, matching generation log-probs", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      const req = request("score me", 3)
      const [g] = yield* engine.generate([req])
      const [s] = yield* engine.score([[...req.tokens, ...g!.tokens]])
      assert.strictEqual(s!.logprobs[0], 0)
      g!.logprobs.forEach((lp, t) => assert.isBelow(Math.abs(lp - s!.logprobs[req.tokens.length + t]!), 1e-4))
    }).pipe(Effect.provide(layer())))
})
