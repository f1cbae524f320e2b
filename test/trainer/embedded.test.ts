import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Fiber, Layer } from "effect"
import { beforeAll } from "vitest"
import type { TrainBatch } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig } from "../../src/core/loss.ts"
import { derive, root } from "../../src/core/random.ts"
import * as EmbeddedEngine from "../../src/engine/embedded.ts"
import { Engine } from "../../src/engine/Engine.ts"
import { Events } from "../../src/events/Events.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { encode } from "../../src/model/tokenizer.ts"
import * as EmbeddedTrainer from "../../src/trainer/embedded.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"

const config = { ...tinyConfig, dModel: 32, layers: 1, heads: 2, mlpWidth: 64, context: 64 }
beforeAll(ensureBackend)

const layers = (policy: Policy) =>
  Layer.mergeAll(
    EmbeddedEngine.layerEmbedded(policy, { maxSlots: 4 }),
    EmbeddedTrainer.layerEmbedded(policy, { adam: { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 } })
  ).pipe(Layer.provideMerge(Events.layerMemory))

/** Rollouts from the engine packed as a batch with advantage +1 for the first half, −1 for the rest. */
const rollouts = Effect.gen(function*() {
  const engine = yield* Engine
  const prompt = encode("<search>")
  const version = yield* engine.policyVersion
  const gens = yield* engine.generate([0, 1, 2, 3].map((i) => ({
    tokens: prompt, maxTokens: 6, temperature: 1, topP: 1, stopTokens: [], stopStrings: [], key: derive(root(2), version, i)
  })))
  const batch: TrainBatch = {
    sequences: gens.map((g, i) => ({
      tokens: [...prompt, ...g.tokens],
      responseStart: prompt.length,
      lossMask: [...prompt.map(() => 0 as const), ...g.tokens.map(() => 1 as const)],
      advantages: [...prompt.map(() => 0), ...g.tokens.map(() => (i < 2 ? 1 : -1))],
      oldLogprobs: [...prompt.map(() => 0), ...g.logprobs],
      weight: 1,
      group: 0,
      policyVersion: version
    }))
  }
  return batch
})

describe("embedded Trainer", () => {
  it.effect("trains on engine rollouts: version bumps, train.step events, engine serves the new weights", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const engine = yield* Engine
      const batch = yield* rollouts
      const [untrained] = yield* engine.score([batch.sequences[0]!.tokens])
      const report = yield* trainer.train(batch, { epochs: 2, miniBatches: 2, microBatchRows: 2 })
      assert.strictEqual(report.steps.length, 4)
      assert.strictEqual(report.weights.version, 1)
      assert.strictEqual(report.weights.format, "embedded")
      assert.isBelow(report.steps[0]!.logprobMismatch, 1e-4)
      // the engine holds its own references: until it loads the new weights it serves the old ones
      assert.strictEqual(yield* engine.policyVersion, 0)
      const [stillOld] = yield* engine.score([batch.sequences[0]!.tokens])
      assert.deepStrictEqual(stillOld!.logprobs, untrained!.logprobs)
      yield* engine.load(report.weights)
      assert.strictEqual(yield* engine.policyVersion, 1)
      const steps = (yield* (yield* Events).recorded).filter((e) => e.event._tag === "train.step")
      assert.strictEqual(steps.length, 4)
      // the engine now scores with the updated weights: positive-advantage tokens became more likely
      const [s] = yield* engine.score([batch.sequences[0]!.tokens])
      const seq = batch.sequences[0]!
      const gain = seq.tokens.reduce((a, _, t) => a + (seq.lossMask[t] ? s!.logprobs[t]! - seq.oldLogprobs[t]! : 0), 0)
      assert.isAbove(gain, 0)
    }).pipe(Effect.provide(layers(Policy.init(config, root(4))))))

  it.effect("refuses a stale batch and an invalid batch with typed errors", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const batch = yield* rollouts
      yield* trainer.train(batch)
      yield* trainer.train(batch, { maxPolicyLag: 1 })
      const stale = yield* Effect.flip(trainer.train(batch, { maxPolicyLag: 1 }))
      assert.strictEqual(stale._tag, "StaleBatch")
      const bad = { sequences: [{ ...batch.sequences[0]!, advantages: [1] }] }
      const invalid = yield* Effect.flip(trainer.train(bad, { maxPolicyLag: 99 }))
      assert.strictEqual(invalid._tag, "InvalidTrainBatch")
    }).pipe(Effect.provide(layers(Policy.init(config, root(5))))))

  it.effect("save then load restores weights, optimizer state and version", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const engine = yield* Engine
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-trainer-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const file = path.join(dir, "ckpt.safetensors")
      const batch = yield* rollouts
      const sft = yield* trainer.sft({ sequences: batch.sequences.map((s) => ({ tokens: s.tokens, lossMask: s.lossMask })) })
      yield* engine.load(sft.weights)
      yield* trainer.save(file)
      const probe = batch.sequences[1]!.tokens
      const [saved] = yield* engine.score([probe])
      yield* engine.load((yield* trainer.train(batch)).weights)
      const [moved] = yield* engine.score([probe])
      assert.notDeepEqual(moved!.logprobs, saved!.logprobs)
      yield* trainer.load(file)
      yield* engine.load(yield* trainer.weights())
      const [restored] = yield* engine.score([probe])
      assert.deepStrictEqual(restored!.logprobs, saved!.logprobs)
      assert.strictEqual(yield* trainer.policyVersion, 1)
      const missing = yield* Effect.flip(trainer.load(path.join(dir, "nope.safetensors")))
      assert.strictEqual(missing._tag, "CheckpointFailure")
    }).pipe(Effect.provide(layers(Policy.init(config, root(6))))))

  it.effect("hands its weights over as a GGUF file on request, and refuses a format it cannot produce", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      assert.deepStrictEqual(trainer.formats, ["embedded", "gguf"])
      const native = yield* trainer.weights()
      assert.strictEqual(native.location._tag, "handle")
      // tensor bytes of the float32 weights
      assert.strictEqual(native.bytes! % 4, 0)
      const gguf = yield* trainer.weights("gguf")
      assert.strictEqual(gguf.format, "gguf")
      assert.strictEqual(gguf.location._tag, "path")
      const file = gguf.location._tag === "path" ? gguf.location.path : ""
      assert.strictEqual(fs.statSync(file).size, gguf.bytes)
      assert.isAbove(gguf.bytes!, native.bytes!)
      const refused = yield* Effect.flip(trainer.weights("hf-lora"))
      assert.strictEqual(refused._tag, "WeightsFormatUnsupported")
    }).pipe(Effect.provide(layers(Policy.init(config, root(8)))), Effect.scoped))

  it.live("with workers: 2 a policy step equals the single-thread step (1e-5) and repeats bit-identically", () =>
    Effect.gen(function*() {
      const fixed: TrainBatch = {
        sequences: [0, 1, 2, 3].map((i) => {
          const tokens = encode(`<search>q${i} a${i * 7}</search>`)
          return {
            tokens,
            responseStart: 3,
            lossMask: tokens.map((_, t) => (t < 3 ? 0 as const : 1 as const)),
            advantages: tokens.map(() => (i < 2 ? 1 : -1)),
            oldLogprobs: tokens.map(() => -5),
            weight: 1,
            group: 0,
            policyVersion: 0
          }
        })
      }
      const run = (workers: number) =>
        Effect.gen(function*() {
          const policy = Policy.init(config, root(7))
          const trainer = yield* EmbeddedTrainer.make(policy, { workers })
          // two micro-batches of 2 rows: one for the main thread, one for the worker; two epochs so the
          // worker's weights must follow the updates
          const report = yield* trainer.train(fixed, { microBatchRows: 2, epochs: 2 })
          return { losses: report.steps.map((s) => s.loss), weights: policy.toHost().flatMap((t) => Array.from(t.data)) }
        }).pipe(Effect.scoped, Effect.provide(Events.layerMemory))
      const single = yield* run(1)
      const a = yield* run(2)
      const b = yield* run(2)
      assert.deepStrictEqual(a, b)
      a.losses.forEach((l, i) => assert.isBelow(Math.abs(l - single.losses[i]!), 1e-5))
      assert.isBelow(Math.max(...a.weights.map((w, i) => Math.abs(w - single.weights[i]!))), 1e-5)
    }), 60_000)

  it.live("with treePacking a policy step equals the unpacked step (1e-5) on trajectories that share prefixes", () =>
    Effect.gen(function*() {
      const fixed: TrainBatch = {
        sequences: [0, 1, 2, 3].map((i) => {
          // two pairs of branches: a shared prompt and call, then different continuations
          const tokens = encode(`<search>q${i >> 1} a${i * 7}</search>`)
          return {
            tokens,
            responseStart: 3,
            lossMask: tokens.map((_, t) => (t < 3 ? 0 as const : 1 as const)),
            advantages: tokens.map(() => (i % 2 === 0 ? 1 : -0.5)),
            oldLogprobs: tokens.map(() => -5),
            weight: 1,
            group: 0,
            policyVersion: 0
          }
        })
      }
      const run = (treePacking: boolean | { rowTokens: number }, workers = 1, microBatchRows = 2) =>
        Effect.gen(function*() {
          const policy = Policy.init(config, root(7))
          // Adam's ε at 1e-4: with 1e-8 its first steps turn the float rounding of near-zero gradient
          // components into updates of ±lr, which would compare rounding rather than the step
          const trainer = yield* EmbeddedTrainer.make(policy, { treePacking, workers, adam: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-4, weightDecay: 0.01, maxGradNorm: 1 } })
          const report = yield* trainer.train(fixed, { microBatchRows, epochs: 2, loss: { ...defaultPolicyLossConfig, aggregation: "seq-mean-token-mean" } })
          return { steps: report.steps, weights: policy.toHost().flatMap((t) => Array.from(t.data)) }
        }).pipe(Effect.scoped, Effect.provide(Events.layerMemory))
      const plain = yield* run(false)
      const packed = yield* run(true)
      // packed rows split over a worker thread: rows of ≤ 16 tokens make two rows (sequences 0–2 and 3),
      // one per micro-batch, so the main thread and the worker get one each
      const split1 = yield* run({ rowTokens: 16 }, 1, 1)
      const split2 = yield* run({ rowTokens: 16 }, 2, 1)
      assert.isBelow(Math.max(...split2.weights.map((w, i) => Math.abs(w - split1.weights[i]!))), 1e-5)
      assert.isBelow(Math.max(...split1.weights.map((w, i) => Math.abs(w - plain.weights[i]!))), 1e-5)
      packed.steps.forEach((s, i) => {
        const p = plain.steps[i]!
        assert.isBelow(Math.abs(s.loss - p.loss), 1e-5)
        assert.isBelow(Math.abs(s.entropy - p.entropy), 1e-5)
        assert.strictEqual(s.tokens, p.tokens)
        assert.strictEqual(s.clipFraction, p.clipFraction)
      })
      assert.isBelow(Math.max(...packed.weights.map((w, i) => Math.abs(w - plain.weights[i]!))), 1e-5)
    }), 60_000)

  it.live("interrupting a 2-thread step releases the workers and leaves weights and version consistent", () =>
    Effect.gen(function*() {
      const policy = Policy.init(config, root(8))
      const before = policy.toHost().flatMap((t) => Array.from(t.data))
      const batch: TrainBatch = {
        sequences: [0, 1, 2, 3].map((i) => {
          const tokens = encode(`<answer>${i}${i}${i}</answer>`)
          return {
            tokens, responseStart: 1, lossMask: tokens.map((_, t) => (t < 1 ? 0 as const : 1 as const)),
            advantages: tokens.map(() => (i < 2 ? 1 : -1)), oldLogprobs: tokens.map(() => -5), weight: 1, group: 0, policyVersion: 0
          }
        })
      }
      yield* Effect.gen(function*() {
        const trainer = yield* EmbeddedTrainer.make(policy, { workers: 2 })
        const fiber = yield* Effect.forkChild(trainer.train(batch, { microBatchRows: 2 }))
        yield* Effect.sleep("1 millis")
        yield* Fiber.interrupt(fiber)
      }).pipe(Effect.scoped, Effect.provide(Events.layerMemory))
      // the scope closed with the step in flight: no half-applied update (weights move iff the version did)
      const changed = policy.toHost().flatMap((t) => Array.from(t.data)).some((w, i) => w !== before[i])
      assert.strictEqual(changed, policy.version === 1)
    }), 60_000)
})
