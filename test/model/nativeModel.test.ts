import { beforeAll, describe, expect, it } from "vitest"
import { derive, intBelow, root, uniform } from "../../src/core/random.ts"
import { type ModelConfig, tinyConfig } from "../../src/model/config.ts"
import { heapBackend } from "../../src/model/native/backend.ts"
import { Heap } from "../../src/model/native/heap.ts"
import { NativeLearner, NativeTrainerUnsupported } from "../../src/model/native/learner.ts"
import { backward, forward, nativeWeights, ropeOf, workspaceFloats } from "../../src/model/native/model.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import type { TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, normalizer } from "../../src/core/loss.ts"
import { plainBackend as plainOps } from "../../src/model/native/backend.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { Learner, packMicroBatches, packTreeMicroBatches } from "../../src/model/train.ts"

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

const small: ModelConfig = { vocab: 120, dModel: 64, layers: 2, heads: 4, mlpWidth: 128, context: 32, tiedHead: false, ropeTheta: 10000, normEps: 1e-5 }
const smallPad = 119

/** Copy task: 8 random letters, "|", the same letters again (the loss is on the copy). */
const copyBatch = (step: number) =>
  Array.from({ length: 16 }, (_, i) => {
    const k = derive(root(7), step, i)
    const x = Array.from({ length: 8 }, (_, j) => 97 + intBelow(uniform(k, j), 8))
    const tokens = [...x, 114, ...x]
    return { tokens, lossMask: tokens.map((_, t) => (t > 8 ? 1 : 0)) }
  })

describe("native learner", () => {
  it("a forward and backward pass allocate no more than workspaceFloats says (the heap is sized by it)", () => {
    for (const [config, B, T] of [[tinyConfig, 3, 48], [{ ...tinyConfig, tiedHead: true }, 2, 144], [small, 4, 32]] as Array<[ModelConfig, number, number]>) {
      const policy = Policy.init(config, root(4))
      const heap = Heap.create(64 << 20)
      const ops = heapBackend(heap)
      const w = nativeWeights(config, policy.toHost().map((t) => {
        const a = heap.alloc(t.data.length)
        a.set(t.data)
        return a
      }))
      const g = nativeWeights(config, w.leaves.map((l) => heap.alloc(l.length)))
      const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 31) % config.vocab)
      const before = heap.used
      const f = forward(config, ops, w, ropeOf(config), tokens, B, T)
      backward(config, ops, w, ropeOf(config), f, new Float64Array(B * T).fill(0.1), g)
      expect(heap.used - before).toBeGreaterThan(0.9 * workspaceFloats(config, B, T) * 4)
      expect(heap.used - before).toBeLessThanOrEqual(workspaceFloats(config, B, T) * 4)
    }
  })

  it("60 native SFT steps on a copy task cut the loss by more than 90%, on a heap grown for 32-row micro-batches", () => {
    const policy = Policy.init(small, root(1))
    const learner = new NativeLearner(policy, { lr: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
    const batch = (s: number) => [...copyBatch(s), ...copyBatch(s + 1000)]
    const bytes = learner.heapBytes
    const first = learner.sftStep(batch(0), 32, smallPad).loss
    expect(learner.heapBytes).toBeGreaterThan(bytes)
    let last = first
    for (let s = 1; s < 60; s++) last = learner.sftStep(batch(s), 32, smallPad).loss
    expect(first).toBeGreaterThan(3)
    expect(last).toBeLessThan(0.1 * first)
    expect(learner.step).toBe(60)
  })

  it("a native policy step with positive advantage on a token raises its log-prob (and negative lowers it), and the policy serves the new weights", () => {
    const policy = Policy.init(small, root(2))
    const learner = new NativeLearner(policy, { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
    const up = [5, 6, 7, 8, 9]
    const down = [5, 6, 7, 8, 10]
    const before = learner.logprobs([{ tokens: up }, { tokens: down }], 4, smallPad)
    const seq = (tokens: Array<number>, adv: number, old: Float64Array): TrainSequence => ({
      tokens: tokenIds(tokens), responseStart: 4, lossMask: [0, 0, 0, 0, 1], advantages: [0, 0, 0, 0, adv],
      oldLogprobs: Array.from(old), weight: 1, group: 0, policyVersion: 0
    })
    const batch = [seq(up, 1, before[0]!), seq(down, -1, before[1]!)]
    const generation = policy.generation
    const stats = learner.policyStep(batch, defaultPolicyLossConfig, normalizer({ sequences: batch }), 4, smallPad)
    expect(stats.logprobMismatch).toBeLessThan(1e-5)
    expect(stats.tokens).toBe(2)
    expect(policy.generation).toBe(generation + 1)
    // the jax-js learner on the same policy reads the pushed weights
    const jax = new Learner(policy)
    const after = jax.logprobs([{ tokens: up }, { tokens: down }], 4, smallPad)
    expect(after[0]![4]!).toBeGreaterThan(before[0]![4]!)
    expect(after[1]![4]!).toBeLessThan(before[1]![4]!)
    const mine = learner.logprobs([{ tokens: up }, { tokens: down }], 4, smallPad)
    for (let t = 0; t < 5; t++) expect(Math.abs(mine[0]![t]! - after[0]![t]!)).toBeLessThan(1e-5)
    jax.dispose()
  })

  it("SFT on packed trees, float64 policies and bad tree layouts are typed errors naming what and where", () => {
    const policy = Policy.init(small, root(2))
    const learner = new NativeLearner(policy)
    const s: TrainSequence = { tokens: tokenIds([1, 2, 3]), responseStart: 1, lossMask: [0, 1, 1], advantages: [0, 1, 1], oldLogprobs: [0, -1, -1], weight: 1, group: 0, policyVersion: 0 }
    const trees = packTreeMicroBatches([s], () => 1, 4, small.context, smallPad)
    const sft = () => learner.valueAndGrad("sft", trees)
    expect(sft).toThrow(NativeTrainerUnsupported)
    expect(sft).toThrow(/SFT steps take plain micro-batches/)
    const broken = { ...trees[0]!, end: trees[0]!.end.map((e, i) => (i === 1 ? 0 : e)) }
    expect(() => learner.valueAndGrad(defaultPolicyLossConfig, [broken])).toThrow(/row 0 token 1 \(packed tree\): subtree end 0/)
    expect(() => new NativeLearner(Policy.init(small, root(2), "float64"))).toThrow(/float64/)
  })
})
