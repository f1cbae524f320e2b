import { beforeAll, describe, expect, it } from "vitest"
import { derive, root } from "../../src/core/random.ts"
import type { ModelConfig } from "../../src/model/config.ts"
import { defaultGeneratorOptions, type GenRequest, Generator } from "../../src/model/generate.ts"
import { initHost, toHost } from "../../src/model/params.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { Learner, packMicroBatches } from "../../src/model/train.ts"
import { named, referenceLogprobs } from "./reference.ts"

const tiny: ModelConfig = { vocab: 11, dModel: 8, layers: 2, heads: 2, mlpWidth: 12, context: 32, tiedHead: false, ropeTheta: 100, normEps: 1e-5 }
const eos = 9
const pad = 10
const options = { ...defaultGeneratorOptions(eos, pad), maxSlots: 8, prefillChunk: 16, minReuse: 2 }

beforeAll(ensureBackend)

const seqs = [
  [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3],
  [3, 3, 3, 1, 0],
  [8, 7, 6, 5, 4, 3, 2, 1, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5]
]

describe("forward pass", () => {
  for (const tiedHead of [false, true]) {
    it(`scores equal the plain-JS float64 reference (tiedHead ${tiedHead}) within 2e-5`, () => {
      const c = { ...tiny, tiedHead }
      const host = initHost(c, root(3))
      const gen = new Generator(Policy.fromHost(c, host), options)
      const got = gen.score(seqs)
      const ref = named(host)
      let worst = 0
      seqs.forEach((s, i) => {
        const want = referenceLogprobs(c, ref, s)
        for (let t = 0; t < s.length; t++) worst = Math.max(worst, Math.abs(want[t]! - got[i]!.logprobs[t]!))
      })
      expect(worst).toBeLessThan(2e-5)
      gen.dispose()
    })
  }

  it("the float64 gradient of the SFT loss equals central finite differences of the reference (rel. error < 1e-4)", () => {
    const c = { ...tiny, layers: 1 }
    const host = initHost(c, root(5))
    // non-trivial norm gains so their gradients are exercised too
    for (const t of host) if (t.name.endsWith("Norm")) t.data.forEach((_, i) => (t.data[i] = 1 + 0.1 * Math.sin(i + 1)))
    const policy = Policy.fromHost(c, host, 0, "float64")
    const learner = new Learner(policy)
    const batch = seqs.slice(0, 2).map((tokens) => ({ tokens, lossMask: tokens.map((_, t) => (t > 0 ? 1 : 0)) }))
    const scale = [0.3, 0.7]
    const r = learner.valueAndGrad("sft", packMicroBatches(batch, (i) => scale[i]!, 4, c.context, pad))
    const grad = toHost(c, r.grad)
    const loss = (h: ReturnType<typeof named>) =>
      batch.reduce((acc, s, i) => acc - scale[i]! * referenceLogprobs(c, h, s.tokens).reduce((a, b) => a + b, 0), 0)
    const ref = named(host)
    // jax-js approximates exp/log even in float64 (~1e-6 relative), so values agree to ~1e-5, not 1e-12
    expect(Math.abs(loss(ref) - r.value) / Math.abs(r.value)).toBeLessThan(1e-5)
    let num = 0
    let den = 0
    const eps = 1e-5
    for (const t of grad) {
      const w = ref.get(t.name)!
      for (let k = 0; k < 4; k++) {
        const i = (k * 7919 + t.name.length) % w.length
        const orig = w[i]!
        w[i] = orig + eps
        const up = loss(ref)
        w[i] = orig - eps
        const down = loss(ref)
        w[i] = orig
        const fd = (up - down) / (2 * eps)
        num += (fd - t.data[i]!) ** 2
        den += fd ** 2
      }
    }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-4)
    learner.dispose()
  })
})

const requests = (prompt: ReadonlyArray<number>, n: number, seed: number, maxTokens = 12): Array<GenRequest> =>
  Array.from({ length: n }, (_, i) => ({ tokens: prompt, maxTokens, temperature: 1, topP: 1, stopTokens: [], key: derive(root(seed), i) }))

describe("KV-cache generation", () => {
  const c = tiny
  const host = initHost(c, root(11))

  it("sampled log-probs and entropies equal a full forward pass of the same tokens (|Δ| < 1e-4)", () => {
    const gen = new Generator(Policy.fromHost(c, host), { ...options, prefixCacheTokens: 0 })
    const prompt = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3] // longer than one prefill chunk
    const { results } = gen.generate([...requests(prompt, 3, 1, 10), ...requests([4, 4], 2, 2, 10)])
    const scored = gen.score(results.map((r, i) => [...(i < 3 ? prompt : [4, 4]), ...r.tokens]))
    let worst = 0
    results.forEach((r, i) => {
      const off = i < 3 ? prompt.length : 2
      r.logprobs.forEach((lp, t) => {
        worst = Math.max(worst, Math.abs(lp - scored[i]!.logprobs[off + t]!), Math.abs(r.entropies[t]! - scored[i]!.entropies[off + t]!))
      })
    })
    expect(worst).toBeLessThan(1e-4)
    gen.dispose()
  })

  it("long generations that grow the cache across length buckets and side-block flushes match a full forward (|Δ| < 1e-4)", () => {
    const long: ModelConfig = { ...c, context: 160 }
    const policy = Policy.fromHost(long, initHost(long, root(12)))
    const gen = new Generator(policy, { ...options, eos: -1 })
    const shortP = [3, 1, 4, 1, 5]
    const longP = Array.from({ length: 40 }, (_, i) => (i * 7) % 10)
    // different lengths and budgets: rows finish mid-block while others run on to the context end
    const reqs = [...requests(shortP, 2, 21, 100), ...requests(longP, 2, 22, 37), ...requests(longP, 1, 23, 500)]
    const { results } = gen.generate(reqs)
    expect(results.map((r) => r.tokens.length)).toEqual([100, 100, 37, 37, 160 - longP.length])
    const seqs = results.map((r, i) => [...reqs[i]!.tokens, ...r.tokens])
    const scored = gen.score(seqs)
    let worst = 0
    results.forEach((r, i) => {
      const off = reqs[i]!.tokens.length
      r.logprobs.forEach((lp, t) => {
        worst = Math.max(worst, Math.abs(lp - scored[i]!.logprobs[off + t]!), Math.abs(r.entropies[t]! - scored[i]!.entropies[off + t]!))
      })
    })
    expect(worst).toBeLessThan(1e-4)
    // the rows kept in the prefix cache are the right keys/values: continuing from them equals recomputing
    const ctx = [...seqs[0]!.slice(0, 90), 2, 2]
    const again = gen.generate(requests(ctx, 1, 24, 20))
    expect(again.stats.reusedTokens).toBeGreaterThanOrEqual(89)
    const fresh = new Generator(policy, { ...options, eos: -1, prefixCacheTokens: 0 })
    const base = fresh.generate(requests(ctx, 1, 24, 20))
    expect(again.results[0]!.tokens).toEqual(base.results[0]!.tokens)
    again.results[0]!.logprobs.forEach((lp, t) => expect(Math.abs(lp - base.results[0]!.logprobs[t]!)).toBeLessThan(1e-5))
    gen.dispose()
    fresh.dispose()
  })

  it("the same requests and keys give bit-identical tokens and log-probs", () => {
    const a = new Generator(Policy.fromHost(c, host), options)
    const b = new Generator(Policy.fromHost(c, host), options)
    const reqs = requests([1, 5, 2, 6], 5, 9, 15)
    const ra = a.generate(reqs).results
    expect(b.generate(reqs).results).toEqual(ra)
    // a second call on the same engine (now served partly from its prefix cache) agrees too
    expect(a.generate(reqs).results.map((r) => r.tokens)).toEqual(ra.map((r) => r.tokens))
    a.dispose()
    b.dispose()
  })

  it("a prefix reused from the cache or from a sibling request gives the same log-probs as recomputing it", () => {
    const cached = new Generator(Policy.fromHost(c, host), options)
    const fresh = new Generator(Policy.fromHost(c, host), { ...options, prefixCacheTokens: 0, minReuse: 1_000 })
    const prompt = [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]
    const first = cached.generate(requests(prompt, 2, 4, 8))
    // continuations after an inserted "tool result", branched three ways
    const ctx = [...prompt, ...first.results[0]!.tokens, 3, 1, 4]
    const branched = requests(ctx, 3, 5, 8)
    const reuse = cached.generate(branched)
    const again = fresh.generate(branched)
    expect(reuse.stats.reusedTokens).toBeGreaterThanOrEqual(ctx.length - 4 + 2 * (ctx.length - 1))
    expect(again.stats.reusedTokens).toBe(0)
    expect(reuse.stats.computedTokens).toBeLessThan(again.stats.computedTokens)
    reuse.results.forEach((r, i) => {
      expect(r.tokens).toEqual(again.results[i]!.tokens)
      r.logprobs.forEach((lp, t) => expect(Math.abs(lp - again.results[i]!.logprobs[t]!)).toBeLessThan(1e-5))
    })
    cached.dispose()
    fresh.dispose()
  })

  it("stops at a stop token (kept), at EOS, and at maxTokens", () => {
    const gen = new Generator(Policy.fromHost(c, host), options)
    const stops = [0, 1, 2, 3, 4, 5, 6, 7, 8]
    const [stopped] = gen.generate([{ ...requests([1, 2], 1, 3)[0]!, stopTokens: stops }]).results
    expect(stopped!.finish).toBe("stop")
    expect(stopped!.tokens.length).toBeGreaterThan(0)
    expect(stops).toContain(stopped!.tokens.at(-1))
    const long = gen.generate(requests([1, 2], 4, 8, 6)).results
    for (const r of long) {
      if (r.finish === "eos") expect(r.tokens.at(-1)).toBe(eos)
      else expect(r.tokens.length).toBe(6)
    }
    gen.dispose()
  })
})
