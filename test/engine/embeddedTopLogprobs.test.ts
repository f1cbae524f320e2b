/**
 * Top-k log-probs on the embedded engine (the released ARPO code's entropy input, vLLM's `logprobs = k`):
 * the selection against a sort on generated rows, and real generations on the jax-js policy.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { beforeAll } from "vitest"
import { referenceSegmentEntropy } from "../../src/core/entropy.ts"
import { derive, root, uniform } from "../../src/core/random.ts"
import { layerEmbedded } from "../../src/engine/embedded.ts"
import { Engine, type GenerateRequest } from "../../src/engine/Engine.ts"
import { Events } from "../../src/events/Events.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { logSumExp, topLogprobs } from "../../src/model/sample.ts"
import { encode } from "../../src/model/tokenizer.ts"

/** The reference: sort indices by logit (descending, lower index first on ties), take k, add the sampled one. */
const bySort = (x: ReadonlyArray<number>, k: number, sampled: number): Array<number> => {
  const lse = logSumExp(x, 0, x.length)
  const order = x.map((_, i) => i).sort((a, b) => x[b]! - x[a]! || a - b).slice(0, k)
  const out = order.map((i) => x[i]! - lse)
  if (!order.includes(sampled)) out.push(x[sampled]! - lse)
  return out
}

describe("topLogprobs", () => {
  it("equals a full sort's top k (plus the sampled token outside it) on 300 generated rows, ties included", () => {
    for (let r = 0; r < 300; r++) {
      const key = derive(root(31), r)
      const n = 1 + Math.floor(uniform(key, 0) * 40)
      // coarse values make ties common
      const x = Array.from({ length: n }, (_, i) => Math.round(uniform(key, i + 1) * 8) - 4)
      const k = 1 + Math.floor(uniform(key, 999) * 12)
      const sampled = Math.floor(uniform(key, 1000) * n)
      assert.deepStrictEqual(topLogprobs(x, 0, n, k, sampled), bySort(x, k, sampled), `row ${r}`)
    }
  })
})

const config = { ...tinyConfig, dModel: 32, layers: 1, heads: 2, mlpWidth: 64, context: 64 }
let policy: Policy
beforeAll(async () => {
  await ensureBackend()
  policy = Policy.init(config, root(23))
})

const request = (i: number, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  tokens: encode("<think>what is 3+4?"),
  maxTokens: 16,
  temperature: 1,
  topP: 1,
  stopTokens: [],
  stopStrings: [],
  key: derive(root(7), i),
  ...extra
})

describe("embedded Engine top-k log-probs", () => {
  it.effect("reports k or k+1 log-probs per token when asked (descending, holding the sampled token's), the same tokens as without, a truncated entropy ≤ the exact one", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      assert.isAtLeast(engine.capabilities.topLogprobs ?? 0, 10)
      const plain = yield* engine.generate([0, 1, 2, 3].map((i) => request(i)))
      const asked = yield* engine.generate([0, 1, 2, 3].map((i) => request(i, { topLogprobs: 10 })))
      let outside = 0
      asked.forEach((g, r) => {
        assert.deepStrictEqual(g.tokens, plain[r]!.tokens)
        assert.deepStrictEqual(g.logprobs, plain[r]!.logprobs)
        assert.isUndefined(plain[r]!.topLogprobs)
        const tops = g.topLogprobs!
        assert.strictEqual(tops.length, g.tokens.length)
        tops.forEach((row, t) => {
          assert.oneOf(row.length, [10, 11])
          for (let i = 1; i < 10; i++) assert.isTrue(row[i]! <= row[i - 1]!)
          assert.include(row, g.logprobs[t]!)
          if (row.length === 11) {
            outside++
            assert.isTrue(g.logprobs[t]! <= row[9]!)
          }
          // one position's truncated sum (the released code's per-position value, × ln V) never exceeds the exact entropy
          const truncated = referenceSegmentEntropy([row.slice(0, 10)], config.vocab, 1) * Math.log(config.vocab)
          assert.isTrue(truncated <= g.entropies[t]! + 1e-9, `truncated ${truncated} > exact ${g.entropies[t]}`)
        })
      })
      // an untrained policy over 268 tokens samples outside its top 10 often: both shapes occur
      assert.isAbove(outside, 0)
    }).pipe(Effect.provide(layerEmbedded(policy, { maxSlots: 8 }).pipe(Layer.provideMerge(Events.layerMemory)))))

  it.live("with threads: 2 the workers report the same top-k log-probs as one thread", () =>
    Effect.gen(function*() {
      const reqs = [0, 1, 2, 3, 4, 5].map((i) => request(i, { topLogprobs: 5 }))
      const one = yield* Effect.scoped(Effect.gen(function*() {
        return yield* (yield* Engine).generate(reqs)
      }).pipe(Effect.provide(layerEmbedded(policy, { maxSlots: 8 }).pipe(Layer.provideMerge(Events.layerMemory)))))
      const two = yield* Effect.scoped(Effect.gen(function*() {
        return yield* (yield* Engine).generate(reqs)
      }).pipe(Effect.provide(layerEmbedded(policy, { maxSlots: 8, threads: 2 }).pipe(Layer.provideMerge(Events.layerMemory)))))
      assert.deepStrictEqual(two.map((g) => g.tokens), one.map((g) => g.tokens))
      two.forEach((g, r) => {
        assert.strictEqual(g.topLogprobs!.length, g.tokens.length)
        g.topLogprobs!.forEach((row, t) => {
          const ref = one[r]!.topLogprobs![t]!
          assert.strictEqual(row.length, ref.length)
          row.forEach((l, i) => assert.closeTo(l, ref[i]!, 1e-5))
        })
      })
    }))
})
