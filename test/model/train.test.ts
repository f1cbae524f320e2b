import { beforeAll, describe, expect, it } from "vitest"
import type { TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, normalizer } from "../../src/core/loss.ts"
import { derive, intBelow, root, uniform } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import type { ModelConfig } from "../../src/model/config.ts"
import { defaultGeneratorOptions, Generator } from "../../src/model/generate.ts"
import { disposeParams, toHost } from "../../src/model/params.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { Learner, packMicroBatches } from "../../src/model/train.ts"

const small: ModelConfig = { vocab: 120, dModel: 64, layers: 2, heads: 4, mlpWidth: 128, context: 32, tiedHead: false, ropeTheta: 10000, normEps: 1e-5 }
const pad = 119

beforeAll(ensureBackend)

/** Copy task: 8 random letters, "|", the same letters again (the loss is on the copy). */
const copyBatch = (step: number) =>
  Array.from({ length: 16 }, (_, i) => {
    const k = derive(root(7), step, i)
    const x = Array.from({ length: 8 }, (_, j) => 97 + intBelow(uniform(k, j), 8))
    const tokens = [...x, 124 - 10, ...x]
    return { tokens, lossMask: tokens.map((_, t) => (t > 8 ? 1 : 0)) }
  })

describe("training", () => {
  it("60 SFT steps on a synthetic copy task cut the loss by more than 90%", () => {
    const policy = Policy.init(small, root(1))
    const learner = new Learner(policy, { lr: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
    const first = learner.sftStep(copyBatch(0), 16, pad).loss
    let last = first
    for (let s = 1; s < 60; s++) last = learner.sftStep(copyBatch(s), 16, pad).loss
    expect(first).toBeGreaterThan(3)
    expect(last).toBeLessThan(0.1 * first)
    expect(learner.step).toBe(60)
    learner.dispose()
  })

  it("a policy-gradient step with positive advantage on a token raises its log-prob (and negative lowers it)", () => {
    const policy = Policy.init(small, root(2))
    const gen = new Generator(policy, { ...defaultGeneratorOptions(118, pad), maxSlots: 4, prefixCacheTokens: 0 })
    const learner = new Learner(policy, { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
    const up = [5, 6, 7, 8, 9]
    const down = [5, 6, 7, 8, 10]
    const [before] = [gen.score([up, down])]
    const seq = (tokens: Array<number>, adv: number, old: Float64Array): TrainSequence => ({
      tokens: tokenIds(tokens),
      responseStart: 4,
      lossMask: [0, 0, 0, 0, 1],
      advantages: [0, 0, 0, 0, adv],
      oldLogprobs: Array.from(old),
      weight: 1,
      group: 0,
      policyVersion: 0
    })
    const batch = [seq(up, 1, before![0]!.logprobs), seq(down, -1, before![1]!.logprobs)]
    const stats = learner.policyStep(batch, defaultPolicyLossConfig, normalizer({ sequences: batch }), 4, pad)
    expect(stats.logprobMismatch).toBeLessThan(1e-4) // old log-probs came from the same weights
    expect(stats.tokens).toBe(2)
    const after = gen.score([up, down])
    expect(after[0]!.logprobs[4]!).toBeGreaterThan(before![0]!.logprobs[4]!)
    expect(after[1]!.logprobs[4]!).toBeLessThan(before![1]!.logprobs[4]!)
    gen.dispose()
    learner.dispose()
  })

  it("micro-batches with gradient accumulation give the full batch's loss and gradient", () => {
    const policy = Policy.init(small, root(3))
    const learner = new Learner(policy)
    const seqs = copyBatch(99).slice(0, 6)
    const total = seqs.reduce((a, s) => a + s.lossMask.reduce<number>((x, y) => x + y, 0), 0)
    const full = learner.valueAndGrad("sft", packMicroBatches(seqs, () => 1 / total, 8, small.context, pad))
    const micro = learner.valueAndGrad("sft", packMicroBatches(seqs, () => 1 / total, 2, small.context, pad))
    expect(Math.abs(full.value - micro.value)).toBeLessThan(1e-5)
    const a = toHost(small, full.grad)
    const b = toHost(small, micro.grad)
    let worst = 0
    a.forEach((t, i) => {
      for (let j = 0; j < t.data.length; j++) worst = Math.max(worst, Math.abs(t.data[j]! - b[i]!.data[j]!))
    })
    expect(worst).toBeLessThan(1e-5)
    disposeParams(full.grad)
    disposeParams(micro.grad)
    learner.dispose()
  })
})
