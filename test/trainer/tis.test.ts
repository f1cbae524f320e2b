// Truncated importance sampling in the trainers (src/core/tis.ts through PolicyTrainOptions.tis):
// the embedded trainer reports the weights tisWeights gives on its own log-probs and trains on the TIS
// batch; with trainer == engine log-probs TIS changes nothing; and (opt-in torch tier, skipped without
// `import torch`) the PyTorch trainer gives the same TIS figures, loss and update as the embedded one.
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { beforeAll } from "vitest"
import type { TrainBatch, TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, policyLoss } from "../../src/core/loss.ts"
import { root } from "../../src/core/random.ts"
import { applyTisBatch, tisWeights } from "../../src/core/tis.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { Events } from "../../src/events/Events.ts"
import { type ModelConfig, tinyConfig } from "../../src/model/config.ts"
import { readCheckpoint } from "../../src/model/checkpoint.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { padId } from "../../src/model/tokenizer.ts"
import { type AdamWConfig, Learner } from "../../src/model/train.ts"
import * as EmbeddedTrainer from "../../src/trainer/embedded.ts"
import * as Pytorch from "../../src/trainer/pytorch.ts"
import { type PolicyTrainOptions, Trainer, type TrainReport } from "../../src/trainer/Trainer.ts"

const small: ModelConfig = { ...tinyConfig, dModel: 32, layers: 2, heads: 4, mlpWidth: 64, context: 32 }
const adam: AdamWConfig = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }
const cap = 1.5
beforeAll(ensureBackend)

const lcg = (seed: number) => {
  let s = seed >>> 0
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296
}

/** Deterministic token sequences of 6..25 tokens. */
const tokenRows = (n: number, seed: number): Array<Array<number>> => {
  const u = lcg(seed)
  return Array.from({ length: n }, (_, i) => Array.from({ length: 6 + ((i * 7) % 20) }, () => Math.floor(u() * (small.vocab - 2))))
}

/** The trainer's own log-probs of the rows (the same no-grad pass the trainer runs), on a throwaway Learner. */
const trainerLogprobs = (policy: Policy, rows: ReadonlyArray<ReadonlyArray<number>>): Array<Float64Array> => {
  const learner = new Learner(policy, adam)
  try {
    return learner.logprobs(rows.map((tokens) => ({ tokens })), 16, padId)
  } finally {
    learner.dispose()
  }
}

/** A batch whose engine log-probs are `logp` shifted by up to ±`perturb` nats at model tokens. */
const batchOf = (rows: ReadonlyArray<ReadonlyArray<number>>, logp: ReadonlyArray<ArrayLike<number>>, perturb: number, seed: number): TrainBatch => {
  const u = lcg(seed)
  return {
    sequences: rows.map((tokens, i): TrainSequence => {
      const start = 2 + (i % 3)
      const mask = tokens.map((_, t) => (t >= start && t % 5 !== 4 ? 1 as const : 0 as const))
      const adv = (i % 2 === 0 ? 1 : -1) * (0.5 + u())
      return {
        tokens: tokenIds(tokens),
        responseStart: start,
        lossMask: mask,
        advantages: tokens.map((_, t) => (t >= start ? adv : 0)),
        oldLogprobs: tokens.map((_, t) => (mask[t] ? logp[i]![t]! + perturb * (2 * u() - 1) : 0)),
        weight: 1,
        group: Math.floor(i / 2),
        policyVersion: 0
      }
    })
  }
}

/** The TIS figures of some sequences, straight from tisWeights and the definition. */
const expectedFigures = (seqs: ReadonlyArray<TrainSequence>, trainerOld: ReadonlyArray<ArrayLike<number>>) => {
  let n = 0
  let w = 0
  let truncated = 0
  let mismatch = 0
  seqs.forEach((s, i) => {
    const ws = tisWeights(trainerOld[i]!, s.oldLogprobs, s.lossMask, cap)
    s.lossMask.forEach((m, t) => {
      if (m !== 1) return
      n++
      w += ws[t]!
      const d = trainerOld[i]![t]! - s.oldLogprobs[t]!
      if (Math.exp(d) > cap) truncated++
      mismatch += Math.abs(d)
    })
  })
  return { tisWeightMean: w / n, tisTruncated: truncated / n, logprobMismatch: mismatch / n }
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}
const maxParamDiff = (a: Policy, b: Policy) => {
  const ha = a.toHost()
  const hb = b.toHost()
  return Math.max(...ha.map((t, i) => maxAbsDiff(t.data, hb[i]!.data)))
}

const trainWith = (policy: Policy, batch: TrainBatch, options: Partial<PolicyTrainOptions>) =>
  Effect.gen(function*() {
    const report = yield* (yield* Trainer).train(batch, options)
    const events = (yield* (yield* Events).recorded).flatMap((e) => (e.event._tag === "train.step" ? [e.event] : []))
    return { report, events }
  }).pipe(Effect.provide(EmbeddedTrainer.layerEmbedded(policy, { adam }).pipe(Layer.provideMerge(Events.layerMemory))))

describe("TIS in the embedded trainer", () => {
  it.effect("the reported weights are tisWeights of the trainer's own log-probs, per mini-batch, and the first step's loss is the core loss of the TIS batch", () =>
    Effect.gen(function*() {
      const policy = Policy.init(small, root(21))
      const rows = tokenRows(6, 3)
      const own = trainerLogprobs(policy, rows)
      const batch = batchOf(rows, own, 0.8, 5)
      const { report, events } = yield* trainWith(policy, batch, { epochs: 1, miniBatches: 2, microBatchRows: 2, tis: { cap } })
      assert.strictEqual(report.steps.length, 2)
      const halves = [batch.sequences.slice(0, 3), batch.sequences.slice(3)]
      const olds = [own.slice(0, 3), own.slice(3)]
      report.steps.forEach((step, k) => {
        const want = expectedFigures(halves[k]!, olds[k]!)
        assert.approximately(step.tisWeightMean!, want.tisWeightMean, 1e-12)
        assert.strictEqual(step.tisTruncated, want.tisTruncated)
        assert.approximately(step.logprobMismatch, want.logprobMismatch, 1e-12)
        assert.deepStrictEqual({ w: events[k]!.tisWeightMean, c: events[k]!.tisTruncated }, { w: step.tisWeightMean, c: step.tisTruncated })
      })
      // the perturbation (±0.8 nats) is wide enough for both truncated and down-weighted tokens
      assert.isAbove(report.steps[0]!.tisTruncated!, 0)
      assert.isBelow(report.steps[0]!.tisWeightMean!, cap)
      // step 1 runs on the pre-update weights: ratio 1 against π_old, so its loss is the core's on the TIS batch
      const tisHalf = { sequences: applyTisBatch(halves[0]!, olds[0]!, cap).sequences }
      const core = policyLoss(tisHalf, olds[0]!, defaultPolicyLossConfig).value
      const plain = policyLoss({ sequences: halves[0]! }, olds[0]!, defaultPolicyLossConfig).value
      console.log(`embedded TIS: step-1 loss ${report.steps[0]!.loss.toFixed(6)} vs core ${core.toFixed(6)} (without TIS the core gives ${plain.toFixed(6)})`)
      assert.approximately(report.steps[0]!.loss, core, 1e-5 * Math.max(1, Math.abs(core)))
      assert.isAbove(Math.abs(core - plain), 1e-3, "TIS changed the loss")
    }))

  it.effect("with trainer and engine log-probs equal, TIS changes nothing: same steps and weights as TIS off", () =>
    Effect.gen(function*() {
      const base = Policy.init(small, root(22))
      const rows = tokenRows(5, 4)
      const batch = batchOf(rows, trainerLogprobs(base, rows), 0, 6)
      const on = Policy.fromHost(small, base.toHost())
      const off = Policy.fromHost(small, base.toHost())
      const options = { epochs: 2, miniBatches: 2, microBatchRows: 2 }
      const a: TrainReport = (yield* trainWith(on, batch, { ...options, tis: { cap: 2 } })).report
      const b: TrainReport = (yield* trainWith(off, batch, { ...options, tis: { cap: 0 } })).report
      assert.strictEqual(a.steps.length, 4)
      a.steps.forEach((s, k) => {
        const t = b.steps[k]!
        assert.approximately(s.loss, t.loss, 1e-7 * Math.max(1, Math.abs(t.loss)))
        assert.approximately(s.gradNorm, t.gradNorm, 1e-6 * Math.max(1, t.gradNorm))
        assert.strictEqual(s.clipFraction, t.clipFraction)
        assert.strictEqual(s.tisWeightMean, 1)
        assert.strictEqual(s.tisTruncated, 0)
        assert.isUndefined(t.tisWeightMean)
      })
      assert.isBelow(maxParamDiff(on, off), 1e-6)
    }))
})

// ---------------------------------------------------------------------------------------------------------------------
// Tier "pytorch" (opt-in, scripts/pytorch-tier): the worker's TIS figures, loss and update equal the embedded ones

const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
const script = path.resolve(import.meta.dirname, "../../workers/trainer.py")
const torchOk = spawnSync(python, ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 }).status === 0
if (!torchOk) console.log(`pytorch TIS tier skipped: \`${python} -c "import torch"\` failed; run scripts/pytorch-tier`)

describe.skipIf(!torchOk)("pytorch tier: TIS in the PyTorch trainer equals the embedded one", () => {
  it.live("same TIS figures, loss, gradient norm and weights after two TIS steps (float32 on both sides)", () =>
    Effect.gen(function*() {
      const base = Policy.init(small, root(23))
      const rows = tokenRows(6, 7)
      const batch = batchOf(rows, trainerLogprobs(base, rows), 0.8, 8)
      const options = { epochs: 1, miniBatches: 2, microBatchRows: 2, tis: { cap } }
      const embedded = Policy.fromHost(small, base.toHost())
      const torch = Policy.fromHost(small, base.toHost())
      const e = (yield* trainWith(embedded, batch, options)).report
      // the PyTorch trainer hands its new weights over as an embedded-layout file (read before its scope closes)
      const { p, exported } = yield* Effect.gen(function*() {
        const p = yield* (yield* Trainer).train(batch, options)
        return { p, exported: p.weights.location._tag === "path" ? readCheckpoint(p.weights.location.path).params : [] }
      }).pipe(
        Effect.provide(Pytorch.trainerOf({ python, script, device: "cpu", adam, threads: 1 })({ config: small, params: torch.toHost() })),
        Effect.provide(Events.layerMemory)
      )
      let dLoss = 0
      let dNorm = 0
      let dFig = 0
      e.steps.forEach((s, k) => {
        const t = p.steps[k]!
        dLoss = Math.max(dLoss, Math.abs(s.loss - t.loss) / Math.max(1, Math.abs(s.loss)))
        dNorm = Math.max(dNorm, Math.abs(s.gradNorm - t.gradNorm) / Math.max(1, s.gradNorm))
        dFig = Math.max(dFig, Math.abs(s.tisWeightMean! - t.tisWeightMean!), Math.abs(s.logprobMismatch - t.logprobMismatch))
        assert.strictEqual(t.tisTruncated, s.tisTruncated)
      })
      const dW = Math.max(...embedded.toHost().map((t, i) => maxAbsDiff(t.data, exported[i]!.data)))
      console.log(
        `pytorch TIS tier: max rel |Δ loss| ${dLoss.toExponential(2)}, |Δ gradNorm| ${dNorm.toExponential(2)}, ` +
          `|Δ tis figures| ${dFig.toExponential(2)}, max |Δ weight| after 2 steps ${dW.toExponential(2)}`
      )
      assert.isBelow(dFig, 1e-5)
      assert.isBelow(dLoss, 1e-4)
      assert.isBelow(dNorm, 1e-4)
      assert.isBelow(dW, 1e-4)
    }))
})
