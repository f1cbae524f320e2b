// Tier "hf" (needs `import torch`; nothing is downloaded): the PyTorch worker on the Hugging Face fixtures in
// ../shared/data/hf-fixtures, driven from TypeScript (src/trainer/hfPytorch.ts): the goldens through the typed
// ops, the core's loss semantics on an HF model, large batches as a file, the Trainer layer with LoRA whose
// GGUF export llama.cpp scores like the worker (tier "llama.cpp" too), and the HF export loading back.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Context, Effect, Layer, Schema } from "effect"
import { afterAll, beforeAll } from "vitest"
import type { TrainBatch, TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, normalizer, type PolicyLossConfig, policyLoss } from "../../src/core/loss.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import * as LlamaCpp from "../../src/engine/llamaCpp.ts"
import { unavailableReason } from "../../src/engine/nodeLlamaCpp.ts"
import { Events } from "../../src/events/Events.ts"
import { baseConfig } from "../../src/experiment/catalog/defaults.ts"
import { builtinRegistries } from "../../src/experiment/registries.ts"
import { decodeConfig } from "../../src/run/config.ts"
import { makeHf, openHfWorker } from "../../src/trainer/hfPytorch.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"

const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
const probe = spawnSync(python, ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 })
const torchOk = probe.status === 0
if (!torchOk) console.log(`hf tier skipped: \`${python} -c "import torch"\` failed; run scripts/pytorch-tier`)
const llamaUnavailable = torchOk ? await unavailableReason() : "torch missing"
if (torchOk && llamaUnavailable !== undefined) console.log(`hf × llama.cpp checks skipped (scripts/llama-cpp installs it): ${llamaUnavailable}`)

const fixtures = path.resolve(import.meta.dirname, "../../../shared/data/hf-fixtures")
interface Golden {
  readonly sequences: ReadonlyArray<{ readonly tokens: Array<number>; readonly logprobs: Array<number>; readonly entropies?: Array<number> }>
}
const golden = (name: string): Golden => JSON.parse(fs.readFileSync(path.join(fixtures, name, "golden.json"), "utf8"))
const maxDiff = (a: ReadonlyArray<ReadonlyArray<number>>, b: ReadonlyArray<ReadonlyArray<number>>) => {
  let m = 0
  a.forEach((row, i) => row.forEach((x, t) => (m = Math.max(m, Math.abs(x - b[i]![t]!)))))
  return m
}
const base = { python, device: "cpu" as const, threads: 1, seed: 1 }

/** A PPO batch over the fixture's sequences: responses from token 4, old log-probs near the current ones. */
const batchOf = (seqs: ReadonlyArray<ReadonlyArray<number>>, logp: ReadonlyArray<ReadonlyArray<number>>, withRef: boolean, version = 0): TrainBatch => ({
  sequences: seqs.map((tokens, i): TrainSequence => {
    const mask = tokens.map((_, t) => (t >= 4 && t % 5 !== 2 ? 1 as const : 0 as const))
    return {
      tokens: tokenIds(tokens),
      responseStart: 4,
      lossMask: mask,
      advantages: tokens.map((_, t) => (t >= 4 ? (i % 2 === 0 ? 1 : -0.7) * (1 + 0.1 * Math.sin(t)) : 0)),
      oldLogprobs: tokens.map((_, t) => (mask[t] ? logp[i]![t]! + 0.4 * Math.sin(3 * t + i) : 0)),
      ...(withRef ? { refLogprobs: tokens.map((_, t) => (mask[t] ? logp[i]![t]! + 0.1 * Math.cos(t) : 0)) } : {}),
      weight: i === 1 ? 0.5 : 1,
      group: Math.floor(i / 2),
      policyVersion: version
    }
  })
})

describe.skipIf(!torchOk)("hf tier: the PyTorch worker on Hugging Face checkpoints, from TypeScript", () => {
  let dir = ""
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-hf-ts-"))
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it.live("logprobs match the golden; loss value and d loss/d logprob equal the core's policyLoss; a batch sent as a file gives the same", () =>
    Effect.scoped(Effect.gen(function*() {
      const g = golden("qwen3-tiny")
      const seqs = g.sequences.map((s) => s.tokens)
      const w = yield* openHfWorker({ ...base, hfModel: path.join(fixtures, "qwen3-tiny") })
      assert.strictEqual(w.info.architecture, "Qwen3ForCausalLM")
      assert.strictEqual(w.info.trainableParams, w.info.params)
      const lp = (yield* w.logprobs(seqs)).logprobs
      assert.isBelow(maxDiff(lp, g.sequences.map((s) => s.logprobs)), 1e-4)
      const configs: ReadonlyArray<PolicyLossConfig> = [
        defaultPolicyLossConfig,
        { ...defaultPolicyLossConfig, clipHigh: 0.28, balancedClip: true, aggregation: "seq-mean-token-mean" },
        { ...defaultPolicyLossConfig, klCoef: 0.1, aggregation: "seq-mean-token-sum" }
      ]
      for (const cfg of configs) {
        const batch = batchOf(seqs, lp, cfg.klCoef !== 0)
        const core = policyLoss(batch, lp, cfg)
        const r = yield* w.loss(batch.sequences, cfg, normalizer(batch), { microBatchRows: 2 })
        assert.approximately(r.loss, core.value, 1e-5 * Math.max(1, Math.abs(core.value)))
        assert.approximately(r.clipFraction, core.clipFraction, 1e-9)
        assert.isAbove(core.clipFraction, 0)
        assert.isBelow(maxDiff(r.tokenGrads, core.grad.map((x) => Array.from(x))), 1e-5)
      }
      // the same request as a safetensors file (threshold 0) gives the same figures
      const w2 = yield* openHfWorker({ ...base, hfModel: path.join(fixtures, "qwen3-tiny"), fileThreshold: 0 })
      const batch = batchOf(seqs, lp, true)
      const cfg = configs[2]!
      const a = yield* w.loss(batch.sequences, cfg, normalizer(batch))
      const b = yield* w2.loss(batch.sequences, cfg, normalizer(batch))
      assert.strictEqual(b.loss, a.loss)
      assert.deepStrictEqual(b.tokenGrads, a.tokenGrads)
      assert.deepStrictEqual((yield* w2.logprobs(seqs)).logprobs, lp)
    }).pipe(Effect.provide(NodeServices.layer))), 180_000)

  it.live.skipIf(llamaUnavailable !== undefined)("GGUF exports of all three fixtures load in llama.cpp with their own BPE vocabulary and reproduce the goldens", () =>
    Effect.scoped(Effect.gen(function*() {
      const names = ["qwen2-tiny", "llama-tiny", "qwen3-tiny"]
      const code = `import sys; sys.path.insert(0, ${JSON.stringify(path.resolve(import.meta.dirname, "../../workers"))})
import hf_model as H, hf_gguf as G
for n in ${JSON.stringify(names)}:
    m, ck = H.load_pretrained(${JSON.stringify(fixtures)} + "/" + n)
    G.write_gguf(${JSON.stringify(dir)} + "/" + n + ".gguf", ck, dict(m.named_parameters()))`
      const r = spawnSync(python, ["-c", code], { encoding: "utf8", timeout: 120_000 })
      assert.strictEqual(r.status, 0, r.stderr)
      for (const name of names) {
        const g = golden(name)
        const engine = yield* LlamaCpp.make({ model: path.join(dir, `${name}.gguf`), tokenizer: "model" })
        const scored = yield* engine.score(g.sequences.map((s) => tokenIds(s.tokens)))
        const dl = maxDiff(scored.map((s) => Array.from(s.logprobs)), g.sequences.map((s) => s.logprobs))
        const de = maxDiff(scored.map((s) => Array.from(s.entropies)), g.sequences.map((s) => s.entropies ?? []))
        console.log(`hf tier: ${name} GGUF in llama.cpp vs transformers' golden: max |dlogp| ${dl.toExponential(2)}, max |dH| ${de.toExponential(2)}`)
        assert.isBelow(dl, 1e-4)
        assert.isBelow(de, 1e-4)
        assert.deepStrictEqual(Array.from(engine.tokenizer.encode("<|im_start|>user\nWhat is 17*23?")), g.sequences[0]!.tokens.slice(0, 14))
      }
    }).pipe(Effect.provide(Events.layerMemory))), 180_000)

  it.live("the registered trainer pytorch-hf builds from a run config (settings decoded with defaults); without a path it fails naming trainer.path", () =>
    Effect.gen(function*() {
      const entry = builtinRegistries.trainer.find((e) => e.name === "pytorch-hf")!
      const run = yield* decodeConfig(baseConfig, "test")
      const settings = Schema.decodeUnknownSync(entry.config as never)({ path: path.join(fixtures, "llama-tiny"), device: "cpu", loraRank: 2 })
      assert.strictEqual((settings as { dtype: string }).dtype, "auto")
      const name = yield* Effect.scoped(Effect.gen(function*() {
        const ctx = yield* Layer.build(entry.layer(settings, { run, initial: undefined as never }))
        return Context.get(ctx, Trainer).name
      }))
      assert.include(name, "pytorch-hf(LlamaForCausalLM, cpu, float32")
      assert.include(name, "LoRA r 2")
      const e = yield* Effect.flip(Effect.scoped(Layer.build(entry.layer(Schema.decodeUnknownSync(entry.config as never)({}), { run, initial: undefined as never }))))
      assert.include(String((e as { message?: string }).message), "trainer.path")
    }).pipe(Effect.provide(Events.layerMemory)), 120_000)

  it.live("a checkpoint it refuses fails init with the file and the field named", () =>
    Effect.gen(function*() {
      const bad = path.join(dir, "bad")
      fs.mkdirSync(bad, { recursive: true })
      const cfg = JSON.parse(fs.readFileSync(path.join(fixtures, "llama-tiny", "config.json"), "utf8"))
      fs.writeFileSync(path.join(bad, "config.json"), JSON.stringify({ ...cfg, rope_parameters: { rope_type: "yarn", rope_theta: 1e4, factor: 4 } }))
      fs.copyFileSync(path.join(fixtures, "llama-tiny", "model.safetensors"), path.join(bad, "model.safetensors"))
      const e = yield* Effect.flip(Effect.scoped(openHfWorker({ ...base, hfModel: bad })))
      assert.strictEqual(e._tag, "WorkerProtocolError")
      assert.include(e.message, path.join(bad, "config.json"))
      assert.include(e.message, "rope_parameters.rope_type")
      assert.include(e.message, "yarn")
    }).pipe(Effect.provide(NodeServices.layer)), 120_000)

  it.live("the Trainer with LoRA trains only the adapter, emits device/dtype/params, exports GGUF each version; llama.cpp scores it like the worker; the HF export loads back", () =>
    Effect.scoped(Effect.gen(function*() {
      const g = golden("qwen2-tiny")
      const seqs = g.sequences.map((s) => s.tokens)
      const syncDir = path.join(dir, "sync")
      const trainer = yield* makeHf({
        ...base,
        hfModel: path.join(fixtures, "qwen2-tiny"),
        lora: { r: 4, alpha: 8, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"] },
        adam: { lr: 2e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
        sync: { format: "gguf", dir: syncDir },
        train: { miniBatches: 2, epochs: 1, microBatchRows: 2, maxPolicyLag: 1 }
      })
      assert.include(trainer.name, "LoRA r 4")
      assert.strictEqual(trainer.worker.info.trainableParams, 2 * 4 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 160)))
      const before = (yield* trainer.worker.logprobs(seqs)).logprobs
      assert.isBelow(maxDiff(before, g.sequences.map((s) => s.logprobs)), 1e-4) // B = 0: the base's log-probs
      for (let v = 0; v < 2; v++) {
        const lp = (yield* trainer.worker.logprobs(seqs)).logprobs
        const report = yield* trainer.train(batchOf(seqs, lp, false, v))
        assert.strictEqual(report.weights.version, v + 1)
        assert.strictEqual(report.steps.length, 2)
      }
      const after = (yield* trainer.worker.logprobs(seqs)).logprobs
      assert.isAbove(maxDiff(after, before), 1e-3)
      const steps = (yield* Events.use((e) => e.recorded)).map((e) => e.event).filter((e) => e._tag === "train.step") as unknown as ReadonlyArray<Record<string, unknown>>
      assert.strictEqual(steps.length, 4)
      assert.strictEqual(steps[0]!["device"], "cpu")
      assert.strictEqual(steps[0]!["dtype"], "float32")
      assert.strictEqual(steps[0]!["params"], trainer.worker.info.params)
      assert.strictEqual(steps[0]!["trainableParams"], trainer.worker.info.trainableParams)
      const latest = yield* trainer.latestWeights
      assert.deepStrictEqual(latest, { path: path.join(syncDir, "v2.gguf"), format: "gguf", policyVersion: 2 })
      assert.isFalse(fs.existsSync(path.join(syncDir, "v0.gguf"))) // keeps 2
      if (llamaUnavailable === undefined) {
        const engine = yield* LlamaCpp.make({ model: latest!.path, tokenizer: "model" })
        const scored = yield* engine.score(seqs.map((s) => tokenIds(s)))
        const dl = maxDiff(scored.map((s) => Array.from(s.logprobs)), after)
        console.log(`hf tier: llama.cpp on the trained LoRA model's GGUF vs the worker: max |dlogp| = ${dl.toExponential(2)}`)
        assert.isBelow(dl, 1e-4)
        assert.deepStrictEqual(Array.from(engine.tokenizer.encode("<|im_start|>user\nWhat is 17*23?")), g.sequences[0]!.tokens.slice(0, 14))
      }
      // the merged HF export loads back into a fresh worker with the trained log-probs
      const out = path.join(dir, "merged")
      const e = yield* trainer.worker.exportWeights(out, "hf", 2)
      assert.includeMembers([...e.files], ["config.json", "model.safetensors", "tokenizer.json"])
      const w = yield* openHfWorker({ ...base, hfModel: out })
      assert.isNull(w.info.lora)
      assert.isBelow(maxDiff((yield* w.logprobs(seqs)).logprobs, after), 1e-4)
    }).pipe(Effect.provide([NodeServices.layer, Events.layerMemory]))), 300_000)
})
