import { beforeAll, describe, expect, it } from "vitest"
import { derive, intBelow, root, uniform } from "../../src/core/random.ts"
import { type ModelConfig, tinyConfig } from "../../src/model/config.ts"
import { forward, nativeWeights, ropeOf } from "../../src/model/native/model.ts"
import { plainOps } from "../../src/model/native/plain.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { Learner, packMicroBatches } from "../../src/model/train.ts"

beforeAll(ensureBackend)

const pad = 267
const seqsOf = (seed: number, count: number, maxLen: number) =>
  Array.from({ length: count }, (_, i) => {
    const k = derive(root(seed), "seq", i)
    const n = 2 + intBelow(uniform(k, 0), maxLen - 1)
    return { tokens: Array.from({ length: n }, (_, t) => intBelow(uniform(k, t + 1), 267)) }
  })

const maxAbs = (xs: ArrayLike<number>) => {
  let m = 0
  for (let i = 0; i < xs.length; i++) m = Math.max(m, Math.abs(xs[i]!))
  return m
}

describe("native forward", () => {
  for (const [name, config] of [["untied", tinyConfig], ["tied", { ...tinyConfig, tiedHead: true }]] as Array<[string, ModelConfig]>) {
    it(`per-token log-probs equal jax-js's scoring on the tiny config (${name} head)`, () => {
      const policy = Policy.init(config, root(3))
      const learner = new Learner(policy)
      const seqs = seqsOf(11, 6, 70)
      const jax = learner.logprobs(seqs, 4, pad)
      const w = nativeWeights(config, policy.toHost().map((t) => t.data as Float32Array))
      const rope = ropeOf(config)
      const mbs = packMicroBatches(seqs.map((s) => ({ tokens: s.tokens, lossMask: [] })), () => 0, 4, config.context, pad)
      let row = 0
      for (const mb of mbs) {
        const f = forward(config, plainOps, w, rope, mb.tokens, mb.realRows, mb.length)
        for (let b = 0; b < mb.realRows; b++, row++) {
          const mine = f.logp.subarray(b * mb.length, b * mb.length + seqs[row]!.tokens.length)
          const diff = mine.map((x, i) => x - jax[row]![i]!)
          expect(maxAbs(diff)).toBeLessThan(1e-4 * maxAbs(jax[row]!) + 1e-5)
          expect(mine[0]).toBe(0)
        }
      }
      expect(row).toBe(seqs.length)
      learner.dispose()
    })
  }
})
