import { describe, expect, it } from "vitest"
import { derive, root } from "../../src/core/random.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { defaultGeneratorOptions, type GenRequest, Generator } from "../../src/model/generate.ts"
import { NativeGenerator } from "../../src/model/native/generator.ts"
import { Policy } from "../../src/model/policy.ts"
import { PrefixCache } from "../../src/model/prefix.ts"
import { ensureBackend, setKernelInstanceCache } from "../../src/model/runtime.ts"
import { routeRequests, SamplerPool } from "../../src/model/samplerPool.ts"

const config = { ...tinyConfig, dModel: 16, layers: 1, heads: 2, mlpWidth: 32, context: 64 }
const options = { ...defaultGeneratorOptions(-1, 267), maxSlots: 8, minReuse: 4 }

const req = (tokens: ReadonlyArray<number>, k: number, maxTokens = 12): GenRequest =>
  ({ tokens, maxTokens, temperature: 1, topP: 1, stopTokens: [], key: derive(root(9), k) })

describe("sampler pool", () => {
  it("two threads give the same tokens for the same keys as one thread, for fresh requests and for branches of earlier results", async () => {
    await ensureBackend()
    const policy = Policy.init(config, root(3))
    const single = new Generator(policy, options)
    const pool = SamplerPool.start(policy, options, 2)
    try {
      const prompts = [[1, 2, 3, 4, 5, 6, 7], [9, 8, 7, 6, 5, 4], [20, 21, 22, 23, 24, 25, 26, 27]]
      const first = prompts.flatMap((p, i) => [req(p, 2 * i), req(p, 2 * i + 1)])
      const a = single.generate(first)
      const b = await pool.generate(first)
      expect(b.results.map((r) => r.tokens)).toEqual(a.results.map((r) => r.tokens))
      expect(b.results.map((r) => r.finish)).toEqual(a.results.map((r) => r.finish))
      b.results.forEach((r, i) => r.logprobs.forEach((x, t) => expect(Math.abs(x - a.results[i]!.logprobs[t]!)).toBeLessThan(1e-4)))
      expect(b.stats.newTokens).toBe(a.stats.newTokens)
      // branches: continue each result from a cut of its own tokens (the ARPO shape)
      const second = first.map((r, i) => req([...r.tokens, ...a.results[i]!.tokens.slice(0, 6)], 100 + i, 8))
      const c = single.generate(second)
      const d = await pool.generate(second)
      expect(d.results.map((r) => r.tokens)).toEqual(c.results.map((r) => r.tokens))
      d.results.forEach((r, i) => r.entropies.forEach((x, t) => expect(Math.abs(x - c.results[i]!.entropies[t]!)).toBeLessThan(1e-4)))
      // every branch found its parent's KV on the thread that sampled the parent
      expect(d.stats.reusedTokens).toBe(c.stats.reusedTokens)
      expect(d.stats.reusedTokens).toBeGreaterThan(0)
    } finally {
      single.dispose()
      await pool.dispose()
    }
    await expect(pool.generate([req([1, 2, 3], 0)])).rejects.toThrow(/disposed/)
  }, 60_000)

  it("engine native: two threads give the same tokens for the same keys as the native generator on one, also after a weight change", async () => {
    await ensureBackend()
    const policy = Policy.init(config, root(5))
    const single = new NativeGenerator(policy, options)
    const pool = SamplerPool.start(policy, options, 2, "native")
    try {
      const prompts = [[1, 2, 3, 4, 5, 6, 7], [9, 8, 7, 6, 5, 4], [20, 21, 22, 23, 24, 25, 26, 27]]
      const reqs = prompts.flatMap((p, i) => [req(p, 2 * i), req(p, 2 * i + 1)])
      for (const round of [0, 1]) {
        if (round === 1) policy.replace(Policy.init(config, root(6)).params) // new weights go to the worker
        const a = single.generate(reqs)
        const b = await pool.generate(reqs)
        expect(b.results.map((r) => r.tokens)).toEqual(a.results.map((r) => r.tokens))
        b.results.forEach((r, i) => r.logprobs.forEach((x, t) => expect(Math.abs(x - a.results[i]!.logprobs[t]!)).toBeLessThan(1e-5)))
        expect(b.stats.newTokens).toBe(a.stats.newTokens)
      }
    } finally {
      single.dispose()
      await pool.dispose()
    }
  }, 60_000)

  it("keeping kernel instances across dispatches changes no bit of the sampled tokens, log-probs and entropies", async () => {
    await ensureBackend()
    const policy = Policy.init(config, root(4))
    const gen = new Generator(policy, { ...options, prefixCacheTokens: 0 })
    try {
      const reqs = [0, 1, 2, 3].map((i) => req([3, 1, 4, 1, 5, 9, 2, 6].slice(0, 3 + i), 40 + i, 20))
      const cached = gen.generate(reqs).results
      setKernelInstanceCache(false)
      let shipped
      try {
        shipped = gen.generate(reqs).results
      } finally {
        setKernelInstanceCache(true)
      }
      expect(cached).toEqual(shipped)
    } finally {
      gen.dispose()
    }
  }, 60_000)

  it("routing sends a branch to the thread holding its parent while that thread is under its share, and balances the rest", () => {
    const held = [new PrefixCache(1000), new PrefixCache(1000)]
    held[1]!.insert(Int32Array.from([1, 2, 3, 4, 5, 6]), [], [])
    // two branches of the sequence thread 1 holds, two unrelated requests
    const route = routeRequests([{ tokens: [1, 2, 3, 4, 5, 6, 7] }, { tokens: [1, 2, 3, 4, 5, 9] }, { tokens: [8, 8, 8] }, { tokens: [7, 7, 7] }], held, 4)
    expect(Array.from(route)).toEqual([1, 1, 0, 0])
    // three branches of one parent over two threads: the third exceeds thread 1's share and goes to thread 0
    const r2 = routeRequests([{ tokens: [1, 2, 3, 4, 5, 6, 1] }, { tokens: [1, 2, 3, 4, 5, 6, 2] }, { tokens: [1, 2, 3, 4, 5, 6, 3] }, { tokens: [5] }], held, 4)
    expect(Array.from(r2)).toEqual([1, 1, 0, 0])
  })
})
