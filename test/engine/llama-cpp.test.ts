/**
 * Tier "llama.cpp": the llama.cpp in-process Engine (node-llama-cpp) on the embedded policy exported to
 * GGUF, cross-checked against the embedded engine on the same weights: per-token log-probs and exact
 * entropies, generated tokens for the same keys, stop/EOS/length, prefix reuse across a branch, and
 * loading new weights by GGUF reload. Skips, saying why, unless node-llama-cpp is installed (scripts/llama-cpp);
 * the LlamaCppUnavailable check runs always.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { derive, root, uniform } from "../../src/core/random.ts"
import { type TokenId, tokenIds } from "../../src/core/tokens.ts"
import { pathWeights } from "../../src/core/weights.ts"
import * as Embedded from "../../src/engine/embedded.ts"
import { Engine, type GenerateRequest, type Generation } from "../../src/engine/Engine.ts"
import * as LlamaCpp from "../../src/engine/llamaCpp.ts"
import { LlamaCppUnavailable, loadNodeLlamaCpp, unavailableReason } from "../../src/engine/nodeLlamaCpp.ts"
import { Events } from "../../src/events/Events.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { writeGguf } from "../../src/model/gguf.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { byteTokenizer, encode, eosId } from "../../src/model/tokenizer.ts"

const unavailable = await unavailableReason()
if (unavailable !== undefined) console.log(`tier llama.cpp skipped (run scripts/llama-cpp to install node-llama-cpp): ${unavailable}`)

/**
 * Log-prob and entropy agreement between llama.cpp (F32 weights and KV cache, node-llama-cpp's float32
 * softmax) and the jax-js float32 model. Measured: see the console line of the first test (~1e-6 here).
 */
const TOL = 1e-4
/**
 * llama.cpp's float32 results for one position vary with how it was evaluated (which sequences were
 * batched together, a reused prefix evaluated earlier): measured ≤ ~8e-7.
 */
const REPEAT_TOL = 1e-5
/** A token may differ only where u falls this close to a boundary of the sampling CDF (a near-tie). */
const NEAR_TIE = 1e-4

const config = { ...tinyConfig, dModel: 64, layers: 2, heads: 4, mlpWidth: 128, context: 128 }
let dir = ""
let file = ""
let policy: Policy

beforeAll(async () => {
  if (unavailable !== undefined) return
  await ensureBackend()
  policy = Policy.init(config, root(7))
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-llama-cpp-test-"))
  file = path.join(dir, "policy.gguf")
  writeGguf(file, config, policy.toHost())
})
afterAll(() => {
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

const texts = [
  "<think>what is 2+2?</think>",
  "Q: 17*3 = ? <python>print(17*3)</python><result>51</result>",
  "a",
  "The quick brown fox jumps over the lazy dog. <search>fox</search>",
  "<answer>42</answer>"
]

const request = (tokens: ReadonlyArray<TokenId>, i: number, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  tokens,
  maxTokens: 24,
  temperature: 1,
  topP: 1,
  stopTokens: [],
  stopStrings: [],
  key: derive(root(11), i),
  ...extra
})

const embedded = () => Embedded.make(policy, { maxSlots: 8 })
const llama = (extra: Partial<LlamaCpp.LlamaCppOptions> = {}) => LlamaCpp.make({ model: file, sequences: 4, ...extra })

const maxAbs = (a: ReadonlyArray<ReadonlyArray<number>>, b: ReadonlyArray<ReadonlyArray<number>>): number => {
  let m = 0
  a.forEach((row, i) => row.forEach((x, t) => (m = Math.max(m, Math.abs(x - b[i]![t]!)))))
  return m
}

const engineCalls = Effect.gen(function*() {
  const events = yield* (yield* Events).recorded
  return events.map((e) => e.event).flatMap((e) => (e._tag === "engine.call" ? [e] : []))
})

/**
 * How close `u` lies to a decision boundary of sample.ts's draw from `p` (temperature, then the top-p
 * nucleus in probability order, inverse CDF): the distance to the nearest CDF edge, or of the nucleus
 * cumulative sum to topP. A token that differs between two engines must sit at such a near-tie.
 */
const tieMargin = (p: Float64Array, temperature: number, topP: number, u: number): number => {
  const q = Array.from(p, (x) => (x > 0 ? x ** (1 / temperature) : 0))
  const z = q.reduce((a, b) => a + b, 0)
  const probs = q.map((x) => x / z)
  let order = probs.map((_, i) => i)
  let margin = Infinity
  let total = 1
  if (topP < 1) {
    order = order.sort((a, b) => probs[b]! - probs[a]! || a - b)
    let cum = 0
    let keep = 0
    while (keep < order.length && (keep === 0 || cum < topP)) {
      cum += probs[order[keep++]!]!
      margin = Math.min(margin, Math.abs(cum - topP))
    }
    order.length = keep
    total = cum
  }
  let cum = 0
  for (const i of order) {
    cum += probs[i]!
    margin = Math.min(margin, Math.abs(u * total - cum))
  }
  return margin
}

/**
 * A fake of llama.cpp's native context as node-llama-cpp drives it: a decode leaves its output rows
 * permuted with the swaps that restore them pending, and the first read applies them in place, one swap
 * at a time (yielding between swaps, as another worker thread could interleave), as `output_reorder` does.
 */
const fakeNative = (rows: number) => {
  let out: Array<number> = []
  let swaps: Array<readonly [number, number]> = []
  const log: Array<string> = []
  const pause = () => new Promise<void>((resolve) => setTimeout(resolve, 1))
  return {
    log,
    decodeBatch: async (): Promise<unknown> => {
      // row r holds output r; stored reversed, with the swaps that restore the order pending
      out = Array.from({ length: rows }, (_, r) => rows - 1 - r)
      swaps = Array.from({ length: Math.floor(rows / 2) }, (_, i) => [i, rows - 1 - i] as const)
      return undefined
    },
    sampleToken: async (...args: ReadonlyArray<unknown>): Promise<unknown> => {
      const row = args[0] as number
      log.push(`start ${row}`)
      for (const [i, j] of swaps) {
        ;[out[i], out[j]] = [out[j]!, out[i]!]
        await pause()
      }
      swaps = []
      await pause()
      log.push(`end ${row}`)
      return out[row]
    }
  }
}

describe("llama.cpp engine: reading a batch's outputs", () => {
  it.live("unguarded concurrent reads of a reordered batch return other rows (the fake reproduces llama.cpp's race)", () =>
    Effect.gen(function*() {
      const native = fakeNative(8)
      yield* Effect.promise(() => native.decodeBatch())
      const got = yield* Effect.promise(() => Promise.all(Array.from({ length: 8 }, (_, r) => native.sampleToken(r))))
      assert.notDeepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7])
    }))

  it.live("guardOutputReorder: the first read after each decode runs alone, so every sequence reads its own row; the rest stay concurrent", () =>
    Effect.gen(function*() {
      const native = fakeNative(8)
      const context = { _ctx: native } as unknown as Parameters<typeof LlamaCpp.guardOutputReorder>[0]
      assert.isTrue(LlamaCpp.guardOutputReorder(context))
      for (let batch = 0; batch < 3; batch++) {
        native.log.length = 0
        const guarded = context as unknown as { readonly _ctx: { decodeBatch: () => Promise<unknown>; sampleToken: (row: number) => Promise<unknown> } }
        yield* Effect.promise(() => guarded._ctx.decodeBatch())
        const got = yield* Effect.promise(() => Promise.all(Array.from({ length: 8 }, (_, r) => guarded._ctx.sampleToken(r))))
        assert.deepStrictEqual(got, [0, 1, 2, 3, 4, 5, 6, 7])
        // the first read ended before any other started; the others overlapped
        assert.deepStrictEqual(native.log.slice(0, 2), ["start 0", "end 0"])
        assert.deepStrictEqual(native.log.slice(2, 9), [1, 2, 3, 4, 5, 6, 7].map((r) => `start ${r}`))
      }
      assert.isFalse(LlamaCpp.guardOutputReorder({} as typeof context))
    }))
})

describe("llama.cpp engine: unavailable library", () => {
  it.live("fails with LlamaCppUnavailable naming the place tried and the install command", () =>
    Effect.gen(function*() {
      const missing = path.join(os.tmpdir(), "arpo-no-such-node-llama-cpp")
      const exit = yield* Effect.exit(Effect.scoped(LlamaCpp.make({ model: "none.gguf", packageDirectory: missing })).pipe(Effect.provide(Events.layerMemory)))
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(Effect.tryPromise({ try: () => loadNodeLlamaCpp(missing), catch: (e) => e }))
      assert.instanceOf(error, LlamaCppUnavailable)
      const e = error as LlamaCppUnavailable
      assert.strictEqual(e.tried.length, 1)
      assert.include(e.message, missing)
      assert.include(e.message, "scripts/llama-cpp")
      if (Exit.isFailure(exit)) assert.include(String(exit.cause), "LlamaCppUnavailable")
    }))
})

describe.skipIf(unavailable !== undefined)("llama.cpp engine (node-llama-cpp)", () => {
  it.live("scores the same per-token log-probs and exact entropies as the embedded engine on the same weights", () =>
    Effect.gen(function*() {
      const seqs = texts.map(encode)
      const a = yield* (yield* embedded()).score(seqs)
      const engine = yield* llama()
      const b = yield* engine.score(seqs)
      const dl = maxAbs(a.map((s) => s.logprobs), b.map((s) => s.logprobs))
      const de = maxAbs(a.map((s) => s.entropies), b.map((s) => s.entropies))
      console.log(`llama.cpp vs embedded score: max |Δ log-prob| = ${dl.toExponential(2)}, max |Δ entropy| = ${de.toExponential(2)} over ${seqs.reduce((n, s) => n + s.length, 0)} tokens`)
      assert.isBelow(dl, TOL)
      assert.isBelow(de, TOL)
      b.forEach((s, i) => {
        assert.strictEqual(s.logprobs.length, seqs[i]!.length)
        assert.strictEqual(s.logprobs[0], 0)
        assert.strictEqual(s.entropies[0], 0)
      })
      // the probe gives the whole distribution; its entropy is the scored one at the next position
      const p = yield* engine.nextDistribution(seqs[0]!.slice(0, 5))
      assert.strictEqual(p.length, config.vocab)
      assert.closeTo(p.reduce((x, y) => x + y, 0), 1, 1e-12)
      // (float32 rounding depends on how llama.cpp batched the evaluation: ~1e-7)
      assert.closeTo(LlamaCpp.entropyOfProbabilities(p), b[0]!.entropies[5]!, REPEAT_TOL)
      assert.closeTo(Math.log(p[seqs[0]![5]!]!), b[0]!.logprobs[5]!, REPEAT_TOL)
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("generates the embedded engine's tokens for the same keys (differences only at near-ties)", () =>
    Effect.gen(function*() {
      const reqs = texts.flatMap((t, i) => [
        request(encode(t), 2 * i, { maxTokens: 32 }),
        request(encode(t), 2 * i + 1, { maxTokens: 32, temperature: 0.8, topP: 0.9 })
      ])
      const a = yield* (yield* embedded()).generate(reqs)
      const engine = yield* llama()
      const t0 = performance.now()
      const b = yield* engine.generate(reqs)
      const ms = performance.now() - t0
      let same = 0
      let total = 0
      let divergences = 0
      let dValues = 0
      for (let i = 0; i < reqs.length; i++) {
        const x = a[i]!
        const y = b[i]!
        const n = Math.min(x.tokens.length, y.tokens.length)
        let j = 0
        while (j < n && x.tokens[j] === y.tokens[j]) j++
        same += j
        for (let t = 0; t < j; t++) {
          dValues = Math.max(dValues, Math.abs(x.logprobs[t]! - y.logprobs[t]!), Math.abs(x.entropies[t]! - y.entropies[t]!))
        }
        total += Math.max(x.tokens.length, y.tokens.length)
        if (j === x.tokens.length && j === y.tokens.length) {
          assert.deepStrictEqual(y.finish, x.finish)
          continue
        }
        // the first difference must be a near-tie of the sampling rule at that position
        divergences += 1
        const context = [...reqs[i]!.tokens, ...y.tokens.slice(0, j)]
        const p = yield* engine.nextDistribution(tokenIds(context))
        const margin = tieMargin(p, reqs[i]!.temperature, reqs[i]!.topP, uniform(reqs[i]!.key, j))
        console.log(`request ${i}: first different token at ${j} (embedded ${x.tokens[j]}, llama.cpp ${y.tokens[j]}), tie margin ${margin.toExponential(2)}`)
        assert.isBelow(margin, NEAR_TIE)
      }
      const newTokens = b.reduce((s, g) => s + g.tokens.length, 0)
      console.log(`llama.cpp vs embedded generation: ${same}/${total} tokens equal, ${divergences} near-tie divergences, max |Δ| of log-probs/entropies on equal tokens ${dValues.toExponential(2)}; llama.cpp ${newTokens} tokens in ${ms.toFixed(0)} ms`)
      assert.isBelow(dValues, TOL)
      for (const g of b) {
        assert.strictEqual(g.logprobs.length, g.tokens.length)
        assert.strictEqual(g.entropies.length, g.tokens.length)
      }
      // the same requests again (other sequences, prefixes reused): the same tokens; values within float32 rounding
      const again = yield* engine.generate(reqs)
      assert.deepStrictEqual(again.map((g) => g.tokens), b.map((g) => g.tokens))
      const d = maxAbs([...again.map((g) => g.logprobs), ...again.map((g) => g.entropies)], [...b.map((g) => g.logprobs), ...b.map((g) => g.entropies)])
      console.log(`llama.cpp repeated generation: same tokens, max |Δ| of log-probs/entropies = ${d.toExponential(2)}`)
      assert.isBelow(d, REPEAT_TOL)
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("keeps a sampled stop token, ends on EOS, and stops at maxTokens and at the context size", () =>
    Effect.gen(function*() {
      const engine = yield* llama()
      const prompt = encode(texts[0]!)
      const free = (yield* engine.generate([request(prompt, 3, { maxTokens: 12 })]))[0]!
      assert.strictEqual(free.tokens.length, 12)
      assert.deepStrictEqual(free.finish, { _tag: "length" })
      const at = free.tokens.findIndex((t, i) => i >= 2 && !free.tokens.slice(0, i).includes(t))
      const stopToken = free.tokens[at]!
      const stopped = (yield* engine.generate([request(prompt, 3, { maxTokens: 12, stopTokens: [stopToken] })]))[0]!
      assert.deepStrictEqual(stopped.tokens, free.tokens.slice(0, at + 1))
      assert.deepStrictEqual(stopped.finish, { _tag: "stop", token: stopToken })
      assert.isBelow(maxAbs([stopped.logprobs], [free.logprobs.slice(0, at + 1)]), REPEAT_TOL)

      const none = (yield* engine.generate([request(prompt, 3, { maxTokens: 0 })]))[0]!
      assert.deepStrictEqual(none, { tokens: [], logprobs: [], entropies: [], finish: { _tag: "length" } } satisfies Generation)

      // the context size bounds the output: 120 prompt tokens + 8 new = 128
      const long = tokenIds(Array.from({ length: 120 }, (_, i) => 97 + (i % 26)))
      const bounded = (yield* engine.generate([request(long, 4, { maxTokens: 50 })]))[0]!
      assert.strictEqual(bounded.tokens.length, 8)
      assert.deepStrictEqual(bounded.finish, { _tag: "length" })
      const overflow = yield* Effect.flip(engine.generate([request(tokenIds(Array(128).fill(97)), 5)]))
      assert.strictEqual(overflow._tag, "ContextOverflow")
      const overflowScore = yield* Effect.flip(engine.score([tokenIds(Array(129).fill(97))]))
      assert.strictEqual(overflowScore._tag, "ContextOverflow")
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("ends on the tokenizer's EOS (kept in the output), and the GGUF's own tokenizer matches the embedded one", () =>
    Effect.gen(function*() {
      const prompt = encode(texts[1]!)
      const free = (yield* (yield* llama()).generate([request(prompt, 6, { maxTokens: 10 })]))[0]!
      // treat the token sampled at position 3 as EOS: generation ends there with finish "eos"
      const eos = free.tokens[3]!
      const at = free.tokens.indexOf(eos)
      const engine = yield* llama({ tokenizer: { ...byteTokenizer, eos } })
      const ended = (yield* engine.generate([request(prompt, 6, { maxTokens: 10 })]))[0]!
      assert.deepStrictEqual(ended.tokens, free.tokens.slice(0, at + 1))
      assert.deepStrictEqual(ended.finish, { _tag: "eos" })

      const own = (yield* llama({ tokenizer: "model", sequences: 1 })).tokenizer
      assert.strictEqual(own.vocabSize, byteTokenizer.vocabSize)
      assert.strictEqual(own.eos, eosId)
      for (const t of texts) assert.deepStrictEqual(own.encode(t), encode(t))
      // llama.cpp's detokenizer cleans spaces for this vocabulary's "default" pre-tokenizer (" ?" → "?")
      assert.strictEqual(own.decode(encode(texts[0]!)), texts[0])
      assert.strictEqual(own.decode(encode("x = ? y")), "x =? y")
      assert.strictEqual(own.special("</search>"), byteTokenizer.special("</search>"))
      assert.isUndefined(own.special("a"))
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("a branch from a shared prefix reuses the sequence's KV (reported in engine.call) and equals a cold run", () =>
    Effect.gen(function*() {
      const prompt = encode(texts[3]!)
      const warm = yield* llama({ sequences: 2 })
      const first = (yield* warm.generate([request(prompt, 8, { maxTokens: 16 })]))[0]!
      const k = 6
      const branch = request(tokenIds([...prompt, ...first.tokens.slice(0, k)]), 9, { maxTokens: 16 })
      const reused = (yield* warm.generate([branch]))[0]!
      const calls = yield* engineCalls
      const call = calls[calls.length - 1]!
      // the sequence held the prompt and the first 15 generated tokens (the last one is never evaluated)
      assert.strictEqual(call.reusedTokens, prompt.length + k - 1)
      assert.strictEqual(call.computedTokens, 1 + reused.tokens.length)
      assert.strictEqual(call.adapter, "llama.cpp")
      const cold = (yield* Effect.scoped(Effect.flatMap(llama({ sequences: 2 }), (e) => e.generate([branch]))))[0]!
      assert.deepStrictEqual(reused.tokens, cold.tokens)
      const d = maxAbs([reused.logprobs, reused.entropies], [cold.logprobs, cold.entropies])
      console.log(`prefix reuse vs cold run: identical tokens, max |Δ| of log-probs/entropies = ${d.toExponential(2)}`)
      assert.isBelow(d, REPEAT_TOL)
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("load(gguf weights) reopens the model on the new file: what it serves changes only on a load", () =>
    Effect.gen(function*() {
      const other = Policy.init(config, root(10))
      const otherFile = path.join(dir, "other.gguf")
      writeGguf(otherFile, config, other.toHost())
      const seqs = texts.slice(0, 3).map(encode)
      const engine = yield* LlamaCpp.makeLoadable({ sequences: 2 })
      assert.deepStrictEqual(engine.accepts, ["gguf"])
      // nothing loaded yet: calls fail with a typed error
      const early = yield* Effect.exit(engine.score(seqs))
      assert.isTrue(Exit.isFailure(early))
      yield* engine.load(pathWeights(0, "gguf", file))
      assert.strictEqual(yield* engine.loads, 1)
      const before = yield* engine.score(seqs)
      assert.isBelow(maxAbs(before.map((s) => s.logprobs), (yield* (yield* embedded()).score(seqs)).map((s) => s.logprobs)), TOL)

      yield* engine.load(pathWeights(1, "gguf", otherFile))
      assert.strictEqual(yield* engine.policyVersion, 1)
      assert.strictEqual(yield* engine.loads, 2)
      assert.strictEqual(yield* engine.modelPath, otherFile)
      const after = yield* engine.score(seqs)
      const expected = yield* (yield* Embedded.make(other, { maxSlots: 8 })).score(seqs)
      assert.isBelow(maxAbs(after.map((s) => s.logprobs), expected.map((s) => s.logprobs)), TOL)
      assert.isBelow(maxAbs(after.map((s) => s.entropies), expected.map((s) => s.entropies)), TOL)
      assert.isAbove(maxAbs(after.map((s) => s.logprobs), before.map((s) => s.logprobs)), 1e-3)

      // a format it cannot load is refused with a typed error naming the engine; the served weights stay
      const refused = yield* Effect.flip(engine.load(pathWeights(2, "hf", dir)))
      assert.strictEqual(refused._tag, "WeightsFormatUnsupported")
      assert.strictEqual(yield* engine.policyVersion, 1)
      assert.strictEqual(yield* engine.loads, 2)
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("256 sequences decoded together each get their own distribution: log-probs equal the embedded engine's score", () =>
    Effect.gen(function*() {
      // regression: llama.cpp reorders a multi-sequence batch's output rows lazily, in place, on the first
      // read; node-llama-cpp reads all sequences' rows at once on worker threads, so without
      // guardOutputReorder some batches handed rows to the wrong sequences (log-probs off by nats)
      const prompts = texts.map((t) => encode(t).slice(0, 24))
      const n = 256
      const engine = yield* llama({ sequences: n, contextSize: 64 })
      const reference = yield* embedded()
      let d = 0
      let tokens = 0
      // The second pass continues the first one's outputs in REVERSED order: each request reuses the
      // sequence holding its prefix, so a batch lists the sequences in descending order and llama.cpp must
      // swap nearly every output row (the widest race window: failed 3 runs of 3 without the guard)
      let contexts: ReadonlyArray<ReadonlyArray<TokenId>> = Array.from({ length: n }, (_, i) => prompts[Math.floor(i / (n / prompts.length))]!)
      for (let pass = 0; pass < 2; pass++) {
        const reqs = contexts.map((c, i) =>
          request(c, n * pass + i, { maxTokens: 12, temperature: (i + pass) % 2 === 0 ? 0 : 1, stopTokens: tokenIds([62]) }))
        const out = yield* engine.generate(reqs)
        const expected = yield* reference.score(reqs.map((r, i) => tokenIds([...r.tokens, ...out[i]!.tokens])))
        d = Math.max(d, maxAbs(out.map((g) => g.logprobs), expected.map((s, i) => s.logprobs.slice(reqs[i]!.tokens.length))))
        tokens += out.reduce((k, g) => k + g.tokens.length, 0)
        contexts = reqs.map((r, i) => tokenIds([...r.tokens, ...out[i]!.tokens.slice(0, 4)])).reverse()
      }
      console.log(`${n} sequences at once: max |Δ log-prob| vs embedded score = ${d.toExponential(2)} over ${tokens} tokens`)
      assert.isBelow(d, TOL)
    }).pipe(Effect.scoped, Effect.provide(Events.layerMemory)))

  it.live("swaps into a program as the Engine layer", () =>
    Effect.gen(function*() {
      const layer = LlamaCpp.layerLoadable({ sequences: 2, name: "llama.cpp(loadable)" }).pipe(Layer.provideMerge(Events.layerMemory))
      const name = yield* Effect.gen(function*() {
        const engine = yield* Engine
        yield* engine.load(pathWeights(0, "gguf", file))
        const g = yield* engine.generate([request(encode("hi"), 0, { maxTokens: 3 })])
        assert.strictEqual(g[0]!.tokens.length, 3)
        return engine.name
      }).pipe(Effect.provide(layer))
      assert.strictEqual(name, "llama.cpp(loadable)")
    }))
})
