import { describe, expect, it } from "vitest"
import type { TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, normalizer } from "../../src/core/loss.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { root } from "../../src/core/random.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { NativeLearner } from "../../src/model/native/learner.ts"
import { GradPool, nativeValueAndGradParallel } from "../../src/model/parallel.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { Learner, packMicroBatches } from "../../src/model/train.ts"

const config = { ...tinyConfig, dModel: 16, layers: 1, heads: 2, mlpWidth: 32, context: 32 }

describe("gradient worker pool", () => {
  it("a worker's share equals the main thread's gradient of the same micro-batches; a terminated pool refuses requests", async () => {
    await ensureBackend()
    const learner = new Learner(Policy.init(config, root(3)))
    const seqs = [0, 1, 2, 3].map((i) => ({ tokens: [1, 2 + i, 3, 4 + i, 5], lossMask: [0, 1, 1, 1, 1], advantages: [0, 1, 1, -1, 1], oldLogprobs: [0, -5, -5, -5, -5] }))
    const mbs = packMicroBatches(seqs, () => 0.05, 2, config.context, 0)
    const pool = GradPool.start(config, "float32", 1)
    try {
      // the worker gets the second half; the main thread computes the first, then the sum must match
      const par = await learner.valueAndGradParallel(pool, defaultPolicyLossConfig, mbs)
      const ref = learner.valueAndGrad(defaultPolicyLossConfig, mbs)
      expect(Math.abs(par.value - ref.value)).toBeLessThan(1e-6)
      const host = (g: typeof ref.grad) => [g.embed, g.finalNorm].map((a) => Array.from(a.ref.dataSync()))
      const [pa, ra] = [host(par.grad), host(ref.grad)]
      pa.forEach((xs, i) => xs.forEach((x, j) => expect(Math.abs(x - ra[i]![j]!)).toBeLessThan(1e-6)))
      expect(par.logp.length).toBe(mbs.length)
    } finally {
      await pool.terminate()
    }
    await expect(pool.request(0, "sft", mbs, 0, () => [])).rejects.toThrow(/terminated/)
    learner.dispose()
  }, 30_000)

  it("native kernels: the main thread's share plus a native worker's equals the single-thread native gradient; a policy step on 2 threads moves the weights as on 1", async () => {
    await ensureBackend()
    const seqs = [0, 1, 2, 3, 4].map((i) => ({ tokens: [1, 2 + i, 3, 4 + i, 5, 6], lossMask: [0, 1, 1, 1, 1, 1], advantages: [0, 1, -1, 1, 1, -1], oldLogprobs: [0, -5, -5, -5, -5, -5] }))
    const mbs = packMicroBatches(seqs, () => 0.05, 2, config.context, 0)
    const one = new NativeLearner(Policy.init(config, root(4)))
    const two = new NativeLearner(Policy.init(config, root(4)))
    const pool = GradPool.start(config, "float32", 1, "native")
    try {
      const ref = one.valueAndGrad(defaultPolicyLossConfig, mbs)
      const refGrad = ref.grad.map((g) => Float32Array.from(g))
      const par = await nativeValueAndGradParallel(two, pool, defaultPolicyLossConfig, mbs)
      expect(Math.abs(par.value - ref.value)).toBeLessThan(1e-6)
      expect(par.logp.length).toBe(mbs.length)
      par.logp.forEach((xs, k) => xs.forEach((x, i) => expect(Math.abs(x - ref.logp[k]![i]!)).toBeLessThan(1e-6)))
      par.grad.forEach((g, i) => g.forEach((x, j) => expect(Math.abs(x - refGrad[i]![j]!)).toBeLessThan(1e-6)))
      // a whole step, twice (the second sends the worker the updated weights)
      const seqsPg: Array<TrainSequence> = seqs.map((s) => ({ ...s, tokens: tokenIds(s.tokens), lossMask: s.lossMask.map((m) => (m === 1 ? 1 : 0)), responseStart: 1, weight: 1, group: 0, policyVersion: 0 }))
      const norm = normalizer({ sequences: seqsPg })
      for (let step = 0; step < 2; step++) {
        const a = one.policyStep(seqsPg, defaultPolicyLossConfig, norm, 2, 0)
        const b = await two.policyStepParallel(pool, seqsPg, defaultPolicyLossConfig, norm, 2, 0)
        expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-6)
        expect(Math.abs(a.gradNorm - b.gradNorm)).toBeLessThan(1e-5)
      }
      const [wa, wb] = [one.hostWeights(), two.hostWeights()]
      wa.forEach((w, i) => w.forEach((x, j) => expect(Math.abs(x - wb[i]![j]!)).toBeLessThan(1e-5)))
    } finally {
      await pool.terminate()
    }
  }, 60_000)
})
