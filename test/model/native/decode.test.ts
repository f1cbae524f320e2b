import { beforeAll, describe, expect, it } from "vitest"
import { derive, root } from "../../../src/core/random.ts"
import { tinyConfig } from "../../../src/model/config.ts"
import { defaultGeneratorOptions, type GenRequest, type GenResult, Generator } from "../../../src/model/generate.ts"
import { NativeArgumentError } from "../../../src/model/native/heap.ts"
import { NativeGenerator, NativeSamplerUnsupported } from "../../../src/model/native/generator.ts"
import { Policy } from "../../../src/model/policy.ts"
import { ensureBackend } from "../../../src/model/runtime.ts"
import { byteTokenizer, padId } from "../../../src/model/tokenizer.ts"
import { prompts, trainTinyPolicy } from "../../rollout/embeddedFixture.ts"

const options = { ...defaultGeneratorOptions(byteTokenizer.eos, padId), maxSlots: 64, prefixCacheTokens: 0, minReuse: 2 }

const req = (tokens: ReadonlyArray<number>, k: number, maxTokens: number, extra: Partial<GenRequest> = {}): GenRequest =>
  ({ tokens, maxTokens, temperature: 1, topP: 1, stopTokens: [], key: derive(root(11), k), ...extra })

/** Share of positions (while both agree so far) where the two samplers drew the same token, over all requests. */
const agreement = (a: ReadonlyArray<GenResult>, b: ReadonlyArray<GenResult>) => {
  let same = 0
  let total = 0
  a.forEach((r, i) => {
    const s = b[i]!.tokens
    for (let t = 0; t < Math.min(r.tokens.length, s.length); t++) {
      total++
      if (r.tokens[t] !== s[t]) break
      same++
    }
  })
  return { same, total }
}

let trained: Policy
beforeAll(async () => {
  await ensureBackend()
  trained = await trainTinyPolicy(25)
}, 120_000)

describe("native generator against jax-js's", () => {
  const models = () => [
    { name: "tiny (random init)", policy: Policy.init(tinyConfig, root(7)) },
    { name: "trained rollout fixture", policy: trained },
    // head size 6 and MLP width 50 (not multiples of 4): attention and SwiGLU take the plain-JS paths
    { name: "odd sizes (plain-JS paths)", policy: Policy.init({ ...tinyConfig, dModel: 36, heads: 6, mlpWidth: 50, layers: 1, context: 64 }, root(12)) }
  ]

  it("score: teacher-forced per-token log-probs and entropies equal jax-js's within float32 tolerance (|Δ| < 2e-4)", () => {
    for (const { policy } of models()) {
      const jax = new Generator(policy, options)
      const native = new NativeGenerator(policy, options)
      const V = policy.config.vocab
      const seqs = Array.from({ length: 20 }, (_, i) =>
        Array.from({ length: 3 + ((i * 37) % (policy.config.context - 3)) }, (_, t) => (i * 31 + t * 7 + ((t * t) % 13)) % V))
      const a = jax.score(seqs)
      const b = native.score(seqs)
      let worst = 0
      a.forEach((r, i) => {
        expect(b[i]!.logprobs.length).toBe(seqs[i]!.length)
        expect(b[i]!.logprobs[0]).toBe(0)
        for (let t = 1; t < seqs[i]!.length; t++) {
          worst = Math.max(worst, Math.abs(r.logprobs[t]! - b[i]!.logprobs[t]!), Math.abs(r.entropies[t]! - b[i]!.entropies[t]!))
        }
      })
      expect(worst).toBeLessThan(2e-4)
      jax.dispose()
      native.dispose()
    }
  }, 120_000)

  it("generate: the same keys give jax-js's tokens at nearly every position, and the sampled log-probs and entropies equal jax-js's teacher-forced ones (|Δ| < 2e-4)", () => {
    for (const { name, policy } of models()) {
      const jax = new Generator(policy, options)
      const native = new NativeGenerator(policy, options)
      // 40 requests: 8 prompts × 5 keys (the followers copy their leader's prefix), temperatures 1 and 0.7, top-p 1 and 0.9
      const reqs = prompts(8).flatMap((p, i) =>
        [0, 1, 2, 3, 4].map((k) => req(p, 10 * i + k, 60, { temperature: k === 3 ? 0.7 : 1, topP: k === 4 ? 0.9 : 1, ...(k === 2 ? { topLogprobs: 5 } : {}) })))
      const a = jax.generate(reqs)
      const b = native.generate(reqs)
      const { same, total } = agreement(a.results, b.results)
      console.log(`${name}: native drew jax-js's token at ${same} of ${total} positions (${((100 * same) / total).toFixed(2)}%)`)
      expect(same / total).toBeGreaterThan(0.98)
      expect(b.stats.sequences).toBe(reqs.length)
      expect(b.stats.newTokens).toBe(b.results.reduce((n, r) => n + r.tokens.length, 0))
      // every follower reused its leader's whole context but the last token
      expect(b.stats.reusedTokens).toBe(reqs.filter((_, i) => i % 5 !== 0).reduce((n, r) => n + r.tokens.length - 1, 0))
      expect(b.stats.computedTokens + b.stats.reusedTokens).toBe(reqs.reduce((n, r) => n + r.tokens.length - 1, 0) + b.stats.newTokens)
      // teacher-forced check of the native samples by jax-js's score
      const scored = jax.score(reqs.map((r, i) => [...r.tokens, ...b.results[i]!.tokens]))
      let worst = 0
      b.results.forEach((r, i) => {
        const off = reqs[i]!.tokens.length
        r.tokens.forEach((_, t) => {
          worst = Math.max(worst, Math.abs(r.logprobs[t]! - scored[i]!.logprobs[off + t]!), Math.abs(r.entropies[t]! - scored[i]!.entropies[off + t]!))
        })
        if (i % 5 === 2) {
          expect(r.topLogprobs?.length).toBe(r.tokens.length)
          r.topLogprobs!.forEach((top) => expect(top[0]!).toBeGreaterThanOrEqual(r.logprobs[r.topLogprobs!.indexOf(top)]! - 1e-9))
        } else expect(r.topLogprobs).toBeUndefined()
      })
      expect(worst).toBeLessThan(2e-4)
      jax.dispose()
      native.dispose()
    }
  }, 180_000)

  it("branches of earlier results reuse their parents' KV from the prefix cache (counted as reused) and get the log-probs of recomputing it (|Δ| < 1e-4)", () => {
    const policy = trained
    const cached = new NativeGenerator(policy, { ...options, prefixCacheTokens: 65536 })
    const fresh = new NativeGenerator(policy, { ...options, prefixCacheTokens: 0, minReuse: 1_000 })
    const first = prompts(6).map((p, i) => req(p, 200 + i, 30))
    const a = cached.generate(first).results
    const branches = first.map((r, i) => req([...r.tokens, ...a[i]!.tokens.slice(0, 12)], 300 + i, 20))
    const b = cached.generate(branches)
    const f = fresh.generate(branches)
    expect(b.stats.reusedTokens).toBe(branches.reduce((n, r) => n + r.tokens.length - 1, 0))
    expect(f.stats.reusedTokens).toBe(0)
    expect(b.stats.computedTokens).toBe(b.stats.newTokens)
    expect(b.results.map((r) => r.tokens)).toEqual(f.results.map((r) => r.tokens))
    b.results.forEach((r, i) => r.logprobs.forEach((x, t) => expect(Math.abs(x - f.results[i]!.logprobs[t]!)).toBeLessThan(1e-4)))
    // a weight change drops the cache
    policy.replace(Policy.fromHost(policy.config, policy.toHost()).params)
    expect(cached.generate(branches).stats.reusedTokens).toBe(0)
  }, 60_000)

  it("stops at a stop token (kept), at EOS, at maxTokens and at the context, like jax-js", () => {
    const policy = trained
    const jax = new Generator(policy, options)
    const native = new NativeGenerator(policy, options)
    const p = prompts(3)
    const close = byteTokenizer.encode("</python>")
    const reqs = [
      req(p[0]!, 1, 40, { stopTokens: close }),
      req(p[1]!, 2, 100),
      req(p[2]!, 3, 3),
      req(p[0]!, 4, 0),
      req(Array.from({ length: policy.config.context - 4 }, (_, i) => p[1]![i % p[1]!.length]!), 5, 50, { temperature: 0 })
    ]
    const a = jax.generate(reqs).results
    const b = native.generate(reqs).results
    expect(b.map((r) => r.finish)).toEqual(a.map((r) => r.finish))
    expect(b.map((r) => r.tokens)).toEqual(a.map((r) => r.tokens))
    expect(b[2]!.tokens.length).toBe(3)
    expect(b[3]!.tokens).toEqual([])
    expect(b[4]!.tokens.length).toBeLessThanOrEqual(4)
    jax.dispose()
    native.dispose()
  }, 60_000)

  it("serves new weights after the policy's weights are replaced", () => {
    const policy = Policy.init(tinyConfig, root(8))
    const native = new NativeGenerator(policy, options)
    const r = [req([1, 2, 3, 4], 0, 10)]
    const before = native.score([[1, 2, 3, 4, 5, 6]])[0]!.logprobs
    const other = Policy.init(tinyConfig, root(9))
    policy.replace(other.params)
    const after = native.score([[1, 2, 3, 4, 5, 6]])[0]!.logprobs
    const jax = new Generator(policy, options)
    const expected = jax.score([[1, 2, 3, 4, 5, 6]])[0]!.logprobs
    expect(Math.abs(after[3]! - before[3]!)).toBeGreaterThan(1e-3)
    after.forEach((x, t) => expect(Math.abs(x - expected[t]!)).toBeLessThan(2e-4))
    expect(native.generate(r).results[0]!.tokens.length).toBe(10)
    jax.dispose()
  }, 60_000)

  it("bad input: a typed error naming what and where", () => {
    const native = new NativeGenerator(Policy.init(tinyConfig, root(8)), options)
    expect(() => native.score([[1, 2, 999]])).toThrow(/999 is outside the vocabulary/)
    expect(() => native.generate([req([], 0, 3)])).toThrow(/empty context/)
    expect(() => new NativeGenerator({ config: tinyConfig, dtype: "float64", generation: 0, toHost: () => [] }, options)).toThrow(NativeSamplerUnsupported)
    expect(new NativeArgumentError({ argument: "tokens", message: "x" })._tag).toBe("NativeArgumentError")
  })
})
