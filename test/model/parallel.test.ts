import { describe, expect, it } from "vitest"
import { defaultPolicyLossConfig } from "../../src/core/loss.ts"
import { root } from "../../src/core/random.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { GradPool } from "../../src/model/parallel.ts"
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
})
