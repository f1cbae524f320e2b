/**
 * Laws of the native trainer (src/model/native/): on generated batches of the real tiny config (untied and
 * tied head), its value, per-token log-probs, entropies, clip indicators and every gradient leaf equal
 * the jax-js Learner's within float32 tolerance, for the policy loss (clip-higher, dual clip, balanced
 * clip, KL) and for SFT, on plain rows and on packed rollout trees (per loss entry); one AdamW step on
 * the same gradient gives the same weights.
 */
import fc from "fast-check"
import { beforeAll, describe, expect, it } from "vitest"
import type { TrainSequence } from "../src/core/batch.ts"
import { aggregationScale, normalizer, type PolicyLossConfig } from "../src/core/loss.ts"
import { derive, intBelow, root, uniform } from "../src/core/random.ts"
import { tokenIds } from "../src/core/tokens.ts"
import { packTree } from "../src/core/treePack.ts"
import { type ModelConfig, tinyConfig } from "../src/model/config.ts"
import { NativeLearner } from "../src/model/native/learner.ts"
import { expF32 } from "../src/model/native/model.ts"
import { disposeParams, fromLeaves, leaves } from "../src/model/params.ts"
import { Policy } from "../src/model/policy.ts"
import { ensureBackend } from "../src/model/runtime.ts"
import { numpy as np } from "@jax-js/jax"
import { type AnyMicroBatch, Learner, packMicroBatches, packTreeMicroBatches } from "../src/model/train.ts"

beforeAll(ensureBackend)

const pad = 267
const rows = 4

const configs: Array<[string, ModelConfig]> = [["untied head", tinyConfig], ["tied head", { ...tinyConfig, tiedHead: true }]]

const lossConfig: fc.Arbitrary<PolicyLossConfig> = fc.record({
  clipLow: fc.constantFrom(0.1, 0.2),
  clipHigh: fc.constantFrom(0.2, 0.28),
  dualClip: fc.option(fc.constantFrom(2, 3), { nil: undefined }),
  balancedClip: fc.boolean(),
  klCoef: fc.constantFrom(0, 0.1),
  klEstimator: fc.constantFrom("k1" as const, "k2" as const, "k3" as const),
  aggregation: fc.constantFrom("token-mean" as const, "seq-mean-token-sum" as const, "seq-mean-token-mean" as const, "seq-mean-token-sum-norm" as const)
})

/** 6 sequences of 30–140 tokens (two micro-batches: 4 rows and 2; attention in 1–3 query blocks), prompt unmasked, old log-probs near the current ones. */
const batchOf = (seed: number, current: (tokens: ReadonlyArray<ReadonlyArray<number>>) => Array<Float64Array>): Array<TrainSequence> => {
  const k = derive(root(seed), "native-law")
  const toks = Array.from({ length: 6 }, (_, s) => {
    const n = 30 + intBelow(uniform(derive(k, s, "length"), 0), 111)
    return Array.from({ length: n }, (_, t) => intBelow(uniform(derive(k, s, "tokens"), t), 267))
  })
  const lp = current(toks)
  return toks.map((tokens, s) => {
    const start = 5 + intBelow(uniform(derive(k, s, "start"), 0), 10)
    const u = (t: number, what: string) => uniform(derive(k, s, what), t)
    return {
      tokens: tokenIds(tokens),
      responseStart: start,
      lossMask: tokens.map((_, t) => (t >= start && u(t, "mask") < 0.85 ? 1 : 0)),
      advantages: tokens.map((_, t) => (t >= start ? (s % 2 === 0 ? 1 : -1) * (0.2 + u(t, "adv")) : 0)),
      oldLogprobs: tokens.map((_, t) => (t >= start ? lp[s]![t]! + (u(t, "old") - 0.5) * 0.8 : 0)),
      refLogprobs: tokens.map((_, t) => lp[s]![t]! + (u(t, "ref") - 0.5) * 2),
      weight: 0.5 + u(0, "weight"),
      group: 0,
      policyVersion: 0
    }
  })
}

const maxAbs = (xs: ArrayLike<number>): number => {
  let m = 0
  for (let i = 0; i < xs.length; i++) m = Math.max(m, Math.abs(xs[i]!))
  return m
}

/** max |a − b| ≤ rel · max|b| + abs, with the figures in the message on failure. */
const close = (what: string, a: ArrayLike<number>, b: ArrayLike<number>, rel: number, abs: number): void => {
  expect(a.length, `${what}: length`).toBe(b.length)
  let worst = 0
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!))
  const bound = rel * maxAbs(b) + abs
  expect(worst, `${what}: max |Δ| ${worst} > ${bound}`).toBeLessThanOrEqual(bound)
}

/**
 * 6 sequences in two groups of 3 that share a prompt of 10–30 tokens; within a group, sequence j shares
 * the first 8·j tokens of its continuation with sequence 0 (an ARPO-like tree), then continues on its own.
 */
const treeBatchOf = (seed: number, current: (tokens: ReadonlyArray<ReadonlyArray<number>>) => Array<Float64Array>): Array<TrainSequence> => {
  const k = derive(root(seed), "native-tree-law")
  const rand = (what: string, i: number, n: number) => intBelow(uniform(derive(k, what), i), n)
  const toks = Array.from({ length: 6 }, (_, s) => {
    const g = Math.floor(s / 3)
    const j = s % 3
    const prompt = Array.from({ length: 10 + rand("prompt-length", g, 21) }, (_, t) => rand(`prompt-${g}`, t, 267))
    const shared = Array.from({ length: 8 * j }, (_, t) => rand(`branch-${g}`, t, 267))
    const own = Array.from({ length: 10 + rand("own-length", s, 50) }, (_, t) => rand(`own-${s}`, t, 267))
    return [...prompt, ...shared, ...own]
  })
  const lp = current(toks)
  return toks.map((tokens, s) => {
    const start = 10
    const u = (t: number, what: string) => uniform(derive(k, s, what), t)
    return {
      tokens: tokenIds(tokens),
      responseStart: start,
      lossMask: tokens.map((_, t) => (t >= start && u(t, "mask") < 0.85 ? 1 : 0)),
      advantages: tokens.map((_, t) => (t >= start ? (s % 2 === 0 ? 1 : -1) * (0.2 + u(t, "adv")) : 0)),
      oldLogprobs: tokens.map((_, t) => (t >= start ? lp[s]![t]! + (u(t, "old") - 0.5) * 0.8 : 0)),
      refLogprobs: tokens.map((_, t) => lp[s]![t]! + (u(t, "ref") - 0.5) * 2),
      weight: 0.5 + u(0, "weight"),
      group: 0,
      policyVersion: 0
    }
  })
}

/** Compares one objective's value, aux and gradient between the two learners on the same micro-batches (plain rows, or packed trees of ≤ rowTokens tokens). */
const compare = (jax: Learner, native: NativeLearner, objective: PolicyLossConfig | "sft", seqs: ReadonlyArray<TrainSequence>, rowTokens?: number): void => {
  const norm = normalizer({ sequences: seqs })
  const scaleOf = objective === "sft"
    ? () => 1 / norm.tokens
    : (i: number, masked: number) => aggregationScale(objective.aggregation, norm, masked) * seqs[i]!.weight
  const mbs: Array<AnyMicroBatch> = rowTokens === undefined || objective === "sft"
    ? packMicroBatches(seqs, scaleOf, rows, tinyConfig.context, pad)
    : packTreeMicroBatches(seqs, scaleOf, 2, tinyConfig.context, pad, rowTokens)
  const j = jax.valueAndGrad(objective, mbs)
  const n = native.valueAndGrad(objective, mbs)
  expect(Math.abs(n.value - j.value), `value ${n.value} vs ${j.value}`).toBeLessThanOrEqual(1e-5 * Math.abs(j.value) + 1e-6)
  mbs.forEach((mb, k) => {
    const real = "kind" in mb ? mb.index.length : mb.realRows * mb.length
    const masked = (xs: ArrayLike<number>) => Array.from({ length: real }, (_, i) => (mb.mask[i] === 1 ? xs[i]! : 0))
    close(`logp of micro-batch ${k}`, masked(n.logp[k]!), masked(j.logp[k]!), 1e-5, 1e-5)
    close(`entropy of micro-batch ${k}`, masked(n.entropy[k]!), masked(j.entropy[k]!), 1e-5, 1e-5)
    if (objective !== "sft") expect(masked(n.clipActive[k]!), `clip indicators of micro-batch ${k}`).toEqual(masked(j.clipActive[k]!))
  })
  // the generated old log-probs put a good share of tokens on the clipped side (so both branches are compared)
  if (objective !== "sft") expect(n.clipActive.reduce((acc, c) => acc + c.reduce((a, b) => a + b, 0), 0)).toBeGreaterThan(5)
  const jg = leaves(j.grad).map((a) => a.ref.dataSync() as Float32Array)
  disposeParams(j.grad)
  const names = native.leafNames
  jg.forEach((g, i) => close(`gradient of ${names[i]}`, n.grad[i]!, g, 1e-4, 1e-6))
}

describe("native trainer laws", () => {
  it("expF32 is e^x within 2e-7 relative on [−100, 88], exactly 0 below and at −∞, and NaN for NaN", () => {
    fc.assert(
      fc.property(fc.double({ min: -100, max: 88, noNaN: true }), (x) => Math.abs(expF32(x) - Math.exp(x)) <= 2e-7 * Math.exp(x)),
      { seed: 23, numRuns: 20_000 }
    )
    fc.assert(fc.property(fc.double({ min: -1e300, max: -100.000001, noNaN: true }), (x) => expF32(x) === 0), { seed: 24, numRuns: 1000 })
    expect(expF32(-Infinity)).toBe(0)
    expect(expF32(Number.NaN)).toBeNaN()
  })

  for (const [name, config] of configs) {
    // built on first use (after the backend is up), shared by the laws of this head variant
    let made: { policy: Policy; jax: Learner; native: NativeLearner } | undefined
    const setup = () => {
      if (made === undefined) {
        const policy = Policy.init(config, root(5))
        made = { policy, jax: new Learner(policy), native: new NativeLearner(policy) }
      }
      return made
    }
    const current = (toks: ReadonlyArray<ReadonlyArray<number>>) => setup().jax.logprobs(toks.map((tokens) => ({ tokens })), rows, pad)

    it(`the native policy loss's value, log-probs, entropies, clip indicators and gradient equal jax-js's (${name})`, () => {
      fc.assert(
        fc.property(lossConfig, fc.integer({ min: 0, max: 1_000_000 }), (loss, seed) => compare(setup().jax, setup().native, loss, batchOf(seed, current))),
        {
          seed: 19,
          numRuns: 4,
          // always both sides of dual clip and KL, besides the generated mixes
          examples: [
            [{ clipLow: 0.2, clipHigh: 0.28, dualClip: 3, balancedClip: true, klCoef: 0.1, klEstimator: "k3", aggregation: "token-mean" }, 1],
            [{ clipLow: 0.2, clipHigh: 0.2, dualClip: undefined, balancedClip: false, klCoef: 0, klEstimator: "k3", aggregation: "seq-mean-token-mean" }, 2]
          ]
        }
      )
    })

    it(`on packed rollout trees the native policy loss's value, per-entry log-probs, entropies, clip indicators and gradient equal jax-js's (${name})`, () => {
      fc.assert(
        fc.property(lossConfig, fc.integer({ min: 0, max: 1_000_000 }), fc.constantFrom(128, 256), (loss, seed, rowTokens) => {
          const seqs = treeBatchOf(seed, current)
          const packing = packTree(seqs, rowTokens)
          expect(packing.packedTokens).toBeLessThan(packing.sequenceTokens) // the shared prefixes are packed once
          compare(setup().jax, setup().native, loss, seqs, rowTokens)
        }),
        {
          seed: 22,
          numRuns: 3,
          examples: [[{ clipLow: 0.2, clipHigh: 0.28, dualClip: 3, balancedClip: true, klCoef: 0.1, klEstimator: "k2", aggregation: "seq-mean-token-mean" }, 3, 128]]
        }
      )
    })

    it(`the native SFT loss's value, log-probs, entropies and gradient equal jax-js's (${name})`, () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 1_000_000 }), (seed) => compare(setup().jax, setup().native, "sft", batchOf(seed, current))),
        { seed: 20, numRuns: 2 }
      )
    })

    it(`one native AdamW step on a gradient gives jax-js's weights and moments (${name})`, () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 1_000_000 }), fc.constantFrom(1, 0.05, Infinity), (seed, maxGradNorm) => {
          const { policy } = setup()
          const p0 = Policy.fromHost(config, policy.toHost())
          const pj = Policy.fromHost(config, policy.toHost())
          const adam = { lr: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.05, maxGradNorm }
          const lj = new Learner(pj, adam)
          const ln = new NativeLearner(p0, adam)
          // two steps, so the moments and the bias correction both matter
          for (let step = 0; step < 2; step++) {
            const seqs = batchOf(seed + step, current)
            const mbs = packMicroBatches(seqs, () => 0.01, rows, config.context, pad)
            const g = lj.valueAndGrad("sft", mbs).grad
            const host = leaves(g).map((a) => Float32Array.from(a.ref.dataSync() as Float32Array))
            const normJ = lj.apply(fromLeaves(config, host.map((h, i) => np.array(h, { shape: leaves(g)[i]!.shape }))))
            disposeParams(g)
            const normN = ln.apply(host)
            expect(Math.abs(normN - normJ), `grad norm ${normN} vs ${normJ}`).toBeLessThanOrEqual(1e-4 * normJ)
          }
          const wj = pj.toHost()
          const wn = ln.hostWeights()
          wj.forEach((t, i) => close(`weights ${t.name}`, wn[i]!, t.data, 1e-6, 1e-7))
          const pushed = p0.toHost()
          pushed.forEach((t, i) => close(`pushed weights ${t.name}`, t.data, wn[i]!, 0, 0))
          const sj = lj.optimizerState()
          const sn = ln.optimizerState()
          sj.m.forEach((m, i) => close(`m ${wj[i]!.name}`, sn.m[i]!, m, 1e-4, 1e-9))
          sj.v.forEach((v, i) => close(`v ${wj[i]!.name}`, sn.v[i]!, v, 1e-4, 1e-12))
          lj.dispose()
          disposeParams(pj.params)
          disposeParams(p0.params)
        }),
        { seed: 21, numRuns: 2 }
      )
    })
  }
})
