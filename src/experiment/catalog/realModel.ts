/**
 * The experiment `real-model`: GRPO, ARPO and AEPO at an equal rollout budget (M trajectories per prompt)
 * on a real Hugging Face checkpoint (Llama / Qwen2 / Qwen3, `model.path`) and ARPO's own task (src/tasks/
 * arpo.ts: its data, prompt, real Python sandbox and offline search), with rollouts from the torch engine
 * colocated with the PyTorch trainer in one worker (no inference server; a weight sync is a version bump).
 * Profiles: `smoke` (alias `quick`; CPU, the tiny qwen2 fixture, a protocol cold start, 2 RL steps: proves
 * the plumbing in CI) and `gpu` (alias `full`; ARPO_SPEC §5.3's reasoning settings scaled to one GPU).
 * Runs resume (`arpo resume <dir>`) as the embedded experiments' do: at each checkpoint step the trainer's weights,
 * AdamW moments, optimizer step, policy version and torch RNG states go to checkpoints/<arm>.seed<k>.step-<n>/
 * (atomically), then state.json marks it complete; a resumed arm reloads it and continues at step n + 1.
 * It does not download checkpoints.
 */
import { NodeServices } from "@effect/platform-node"
import { Console, Context, Effect, Layer, Schema } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import type { TokenId } from "../../core/tokens.ts"
import { Engine, type Tokenizer } from "../../engine/Engine.ts"
import * as HfTokenizer from "../../engine/hfTokenizer.ts"
import * as Torch from "../../engine/torch.ts"
import { emit, Events, withScope } from "../../events/Events.ts"
import { defaultAdamW } from "../../model/train.ts"
import { writeReports } from "../../report/report.ts"
import {
  AdvantageSettings,
  applySet,
  checkPatchKeys,
  ConfigInvalid,
  EvalSettings,
  LossSettings,
  lossConfig,
  mergePatch,
  RlSettings,
  type RunConfig,
  type RunConfigJson,
  stableJson,
  tisOf
} from "../../run/config.ts"
import { Evaluator } from "../../run/evaluate.ts"
import { ArpoMode } from "../../rollout/config.ts"
import { CallFormatName } from "../../tools/callFormat.ts"
import { builtinRegistries, settingsOf } from "../registries.ts"
import { registryComponents } from "../resolve.ts"
import { runArm } from "../../run/loop.ts"
import { WeightSync } from "../../run/weightSync.ts"
import { writeFileAtomic, writeJsonAtomic } from "../../io/atomic.ts"
import { makeProgress } from "../../io/progress.ts"
import { RunStore } from "../../io/RunStore.ts"
import * as Arpo from "../../tasks/arpo.ts"
import { ParquetName } from "../../tasks/parquet.ts"
import type { TaskDefinition } from "../../tasks/Task.ts"
import { type Toolbox, Toolbox as ToolboxService } from "../../tools/Toolbox.ts"
import * as HfPytorch from "../../trainer/hfPytorch.ts"
import { type PolicyTrainOptions, Trainer } from "../../trainer/Trainer.ts"
import {
  checkpointName,
  conclusion,
  interruptedLines,
  lastCheckpoint,
  recordConfigHash,
  requireConfigUnchanged,
  RunNotResumable,
  trainingCost
} from "../define.ts"
import type { Experiment, RunOptions } from "../Experiment.ts"

const Int = (min: number) => Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(min)))
const Positive = Schema.Finite.pipe(Schema.check(Schema.isGreaterThan(0)))

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../../..")
/** The tiny Qwen2 fixture (random weights in the real checkpoint layout) the smoke profile runs on. */
export const smokeModel = NodePath.resolve(repoRoot, "../shared/data/hf-fixtures/qwen2-tiny")

/** The checkpoint and how the worker holds it. */
export const ModelSettings = Schema.Struct({
  /** `hf`: a Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json + tokenizer_config.json) */
  kind: Schema.Literals(["hf"]),
  path: Schema.String,
  device: Schema.Literals(["auto", "cpu", "cuda"]),
  /** training compute dtype ("auto": bfloat16 on CUDA, float32 on CPU); rollouts decode in it too */
  dtype: Schema.Literals(["auto", "float32", "bfloat16", "float16"]),
  /** torch CPU threads (0: torch's default) */
  threads: Int(0),
  /** LoRA rank (0: full fine-tuning) and alpha */
  loraRank: Int(0),
  loraAlpha: Positive,
  activationCheckpointing: Schema.Boolean
})

/** The task section: `arpo`'s settings (its call format and call limit are the rollout's). */
export const TaskSettings = Schema.Struct({
  name: Schema.Literals(["arpo"]),
  train: ParquetName,
  test: ParquetName,
  systemPrompt: Schema.Literals(["arpo", "short"]),
  maxQuestionChars: Int(0),
  pythonTimeoutMs: Int(1),
  searchCache: Schema.String,
  maxResults: Int(1),
  outputCapChars: Int(0),
  dataDir: Schema.String,
  keepTruncatedGolds: Schema.Boolean
})

/** Cold start: SFT on the task's protocol demonstrations (0 steps: RL from the checkpoint as it is). */
export const ColdStartSettings = Schema.Struct({ steps: Int(0), batchSize: Int(1), lr: Positive })

export const EngineSettings = Schema.Struct({
  /** rows the torch engine decodes together */
  maxBatch: Int(1),
  /** tokens of finished rows' KV kept for prefix reuse */
  cacheTokens: Int(0),
  /** prompt tokens per prefill forward */
  prefillTokens: Int(1)
})

/** Sampler settings shared by this experiment's arms (each arm's sampler takes the ones it has). */
export const RolloutSettings = Schema.Struct({
  budget: Int(1),
  callLimit: Int(0),
  maxResponseTokens: Int(1),
  temperature: Schema.Finite.pipe(Schema.check(Schema.isGreaterThan(0))),
  topP: Schema.Finite.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 }))),
  initial: Int(1),
  alpha: Schema.Finite,
  beta: Schema.Finite,
  window: Int(1),
  branchFactor: Int(1),
  mode: ArpoMode,
  /** random-branch: the constant branch probability */
  randomProbability: Schema.Finite.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 }))),
  callFormat: CallFormatName,
  /** arpo paper mode: β weighs the raw ΔH (default) or ΔH ÷ its running std ("standardized") */
  deltaHScale: Schema.optional(Schema.Literals(["raw", "standardized"])),
  /** the ΔH window form (docs/samplers.md "Window forms"; paper timing) */
  deltaHWindow: Schema.optional(Schema.Literals(["paper", "continued", "mean"])),
  /** arpo reference mode: the released code's top-10 truncated sums ("top10": engines that report top-10 log-probs only) */
  entropySource: Schema.optional(Schema.Literals(["exact", "top10"]))
})

/** The registered sampler `kind` with the settings of `c.rollout` it has. */
const samplerFor = (c: RealModelConfig, kind: string) => {
  const e = builtinRegistries.sampler.find((x) => x.name === kind)
  if (e === undefined) return Layer.effectDiscard(Effect.fail(new ConfigInvalid({ key: "sampler", message: `real-model: no sampler named ${kind}` }))) as never
  const r: Record<string, unknown> = { ...c.rollout, probability: c.rollout.randomProbability }
  const settings = settingsOf(e, Object.fromEntries(Object.entries(r).filter(([k]) => k in e.config.fields)))
  return e.layer(settings, { run: loopConfig(c) })
}

export const RealModelConfig = Schema.Struct({
  model: ModelSettings,
  task: TaskSettings,
  sft: ColdStartSettings,
  rl: RlSettings,
  advantage: AdvantageSettings,
  loss: LossSettings,
  rollout: RolloutSettings,
  eval: EvalSettings,
  engine: EngineSettings,
  /** save the trainer's checkpoint every this many RL steps and at the last (0: never) */
  checkpointEvery: Int(0),
  /** checkpoints kept per arm and seed, the newest (0: all); a full fine-tuning checkpoint is 12 bytes per parameter */
  checkpointKeep: Int(0)
})
export type RealModelConfig = typeof RealModelConfig.Type
export type RealModelConfigJson = typeof RealModelConfig.Encoded

/** The defaults: ARPO's reasoning recipe (ARPO_SPEC §1.3, §2.2, §5.3) on the smoke fixture's path. */
export const defaultConfig: RealModelConfigJson = {
  model: { kind: "hf", path: smokeModel, device: "auto", dtype: "auto", threads: 0, loraRank: 0, loraAlpha: 16, activationCheckpointing: false },
  task: {
    name: "arpo",
    train: "train_10k",
    test: "valid",
    systemPrompt: "arpo",
    maxQuestionChars: 0,
    pythonTimeoutMs: 20_000,
    searchCache: "",
    maxResults: 10,
    outputCapChars: 0,
    dataDir: "",
    keepTruncatedGolds: false
  },
  sft: { steps: 0, batchSize: 8, lr: 1e-5 },
  rl: { steps: 100, promptsPerStep: 16, promptPool: 10_000, lr: 1e-6, epochs: 1, miniBatches: 2, microBatchRows: 8, dynamicSampling: false, maxRefills: 0 },
  advantage: { estimator: { name: "grpo", eps: 1e-6 }, attribution: "soft", entropyAlpha: 0 },
  loss: { clipLow: 0.2, clipHigh: 0.2, dualClip: 3, balancedClip: false, klCoef: 0, klEstimator: "k3", aggregation: "token-mean", tisCap: 0 },
  rollout: {
    budget: 16,
    callLimit: 3,
    maxResponseTokens: 4096,
    temperature: 1,
    topP: 1,
    initial: 8,
    alpha: 0.5,
    beta: 0.2,
    window: 20,
    branchFactor: 1,
    mode: "paper",
    randomProbability: 0.5,
    callFormat: "arpo-tags"
  },
  eval: { every: 25, questions: 180, k: 1, maxResponseTokens: 4096 },
  engine: { maxBatch: 256, cacheTokens: 1 << 21, prefillTokens: 16_384 },
  checkpointEvery: 25,
  checkpointKeep: 0
}

type Patch = { readonly [K in keyof RealModelConfigJson]?: Partial<RealModelConfigJson[K]> }

/**
 * `smoke`: CPU, the tiny Qwen2 fixture (512 positions, so the short prompt and short questions), a protocol
 * cold start (80 SFT steps) so the random model makes tool calls ARPO can branch on, 2 RL steps of 2 prompts
 * × M = 4 (N = 2), 2 held-out questions at steps 0 and 2. Fits in about 3 minutes on 2 cores.
 */
export const smokeProfile: Patch = {
  model: { device: "cpu", dtype: "float32", threads: 2 },
  task: { systemPrompt: "short", maxQuestionChars: 120, maxResults: 1, outputCapChars: 80, pythonTimeoutMs: 10_000 },
  sft: { steps: 80, batchSize: 4, lr: 3e-3 },
  rl: { steps: 2, promptsPerStep: 2, promptPool: 64, lr: 1e-4, miniBatches: 1, microBatchRows: 8 },
  rollout: { budget: 4, initial: 2, callLimit: 2, maxResponseTokens: 160, window: 4, alpha: 0.8 },
  eval: { every: 2, questions: 2, k: 1, maxResponseTokens: 160 },
  engine: { maxBatch: 16, cacheTokens: 65_536, prefillTokens: 4096 },
  checkpointEvery: 0
}

/**
 * `gpu`: ARPO_SPEC §5.3 (Qwen2.5-7B reasoning: 128 prompts × M 16, N 8, Z 1, α 0.5, β 0.2, k 20, call limit 3,
 * 4,096 response tokens, lr 1e-6, 8 mini-batches) scaled to one GPU: 16 prompts × M 16 = 256 trajectories per
 * step (one decode batch), 2 mini-batches of 8 prompts, 300 steps (≈ half an epoch of train_10k), bfloat16
 * compute with float32 masters, activation checkpointing; evaluation on all 180 valid questions every 25 steps.
 * Give `--set model.path=<checkpoint dir>` (Qwen2.5-1.5B/3B-Instruct fit one 80 GB GPU at full fine-tuning; 7B with LoRA).
 */
export const gpuProfile: Patch = {
  model: { device: "cuda", dtype: "bfloat16", activationCheckpointing: true },
  rl: { steps: 300, promptsPerStep: 16, promptPool: 10_000, lr: 1e-6, miniBatches: 2, microBatchRows: 4 },
  rollout: { budget: 16, initial: 8, callLimit: 3, maxResponseTokens: 4096, window: 20, alpha: 0.5, beta: 0.2, branchFactor: 1 },
  eval: { every: 25, questions: 180, k: 1, maxResponseTokens: 4096 },
  engine: { maxBatch: 256, cacheTokens: 1 << 21, prefillTokens: 16_384 },
  checkpointEvery: 25,
  checkpointKeep: 2
}

export interface RealArm {
  readonly name: string
  readonly sampler: string
  readonly set?: Patch
}

/** GRPO (global samples only), ARPO (paper mode) and AEPO (its sampler and the entropy-balanced clip), equal M. */
export const arms: ReadonlyArray<RealArm> = [
  { name: "grpo", sampler: "global" },
  { name: "arpo", sampler: "arpo" },
  { name: "aepo", sampler: "aepo", set: { loss: { balancedClip: true } } }
]

const profileOf = (name: string): { readonly name: "smoke" | "gpu"; readonly patch: Patch; readonly seeds: ReadonlyArray<number> } | undefined =>
  name === "smoke" || name === "quick"
    ? { name: "smoke", patch: smokeProfile, seeds: [1] }
    : name === "gpu" || name === "full"
    ? { name: "gpu", patch: gpuProfile, seeds: [1] }
    : undefined

export interface ResolvedRealArm {
  readonly name: string
  readonly sampler: string
  readonly config: RealModelConfig
}

/** defaults → profile → arm → `--set`, each key checked against the defaults, the whole decoded by Schema. */
export const resolve = (options: Pick<RunOptions, "profile" | "set" | "sweep">): Effect.Effect<ReadonlyArray<ResolvedRealArm>, ConfigInvalid> =>
  Effect.gen(function*() {
    const profile = profileOf(options.profile)
    if (profile === undefined) return yield* new ConfigInvalid({ key: "profile", message: `real-model: profile ${options.profile} is not one of smoke (quick), gpu (full)` })
    if (Object.keys(options.sweep).length > 0) return yield* new ConfigInvalid({ key: "sweep", message: "real-model: --sweep is not supported; run one value per run" })
    yield* checkPatchKeys(defaultConfig, profile.patch, `real-model profile ${profile.name}`)
    const base = mergePatch(defaultConfig, profile.patch)
    const out: Array<ResolvedRealArm> = []
    for (const arm of arms) {
      let json = mergePatch(base, arm.set)
      for (const [key, value] of Object.entries(options.set)) {
        json = (yield* applySet(json as unknown as RunConfigJson, key, value)) as unknown as RealModelConfigJson
      }
      const config = yield* Schema.decodeUnknownEffect(RealModelConfig)(json, { errors: "all", onExcessProperty: "error" }).pipe(
        Effect.mapError((e) => new ConfigInvalid({ key: "", message: `real-model arm ${arm.name}: invalid config: ${e.message}` }))
      )
      if (config.rollout.initial > config.rollout.budget) {
        return yield* new ConfigInvalid({ key: "rollout.initial", message: `real-model arm ${arm.name}: rollout.initial (N) exceeds rollout.budget (M)` })
      }
      out.push({ name: arm.name, sampler: arm.sampler, config })
    }
    return out
  })

// ---------------------------------------------------------------------------------------------------------------------
// Components

/** The arpo task's config of a run config (its call format and call limit are the rollout's). */
export const taskConfigOf = (c: RealModelConfig): Arpo.ArpoTaskConfig => {
  const { name: _name, ...task } = c.task
  return { ...task, callFormat: c.rollout.callFormat, callLimit: c.rollout.callLimit }
}

/** How the trainer turns a batch into optimizer steps (as src/run/config.ts `trainOptionsOf` does for every trainer of an embedded run). */
export const trainOptionsOf = (c: RealModelConfig): PolicyTrainOptions => ({
  loss: lossConfig(c.loss),
  epochs: c.rl.epochs,
  miniBatches: c.rl.miniBatches,
  microBatchRows: c.rl.microBatchRows,
  maxPolicyLag: c.rl.epochs * c.rl.miniBatches,
  tis: tisOf(c.loss)
})

/** The shape the shared RL loop reads (it uses rl, advantage, eval, rollout and checkpointEvery; never the embedded `model`). */
const loopConfig = (c: RealModelConfig): RunConfig => c as unknown as RunConfig

const workerOptions = (c: RealModelConfig, hfModel: string, seed: number): HfPytorch.HfWorkerOptions => ({
  hfModel,
  python: Torch.defaultPython(),
  device: c.model.device,
  ...(c.model.dtype !== "auto" ? { dtype: c.model.dtype } : {}),
  ...(c.model.threads > 0 ? { threads: c.model.threads } : {}),
  ...(c.model.loraRank > 0 ? { lora: { r: c.model.loraRank, alpha: c.model.loraAlpha, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "gate_proj", "down_proj"] } } : {}),
  activationCheckpointing: c.model.activationCheckpointing,
  seed
})

/**
 * One worker holding the weights for both services: the PyTorch trainer on the checkpoint and the torch
 * engine decoding with the very same module (the trainer hands its weights over as a handle of this worker:
 * the run's WeightSync loading them is a version bump).
 */
export const colocated = (c: RealModelConfig, hfModel: string, tokenizer: Tokenizer, seed: number): Layer.Layer<Trainer | Engine, unknown, Events> =>
  Layer.effectContext(
    Effect.map(colocatedParts(c, hfModel, tokenizer, seed), ({ engine, trainer }) => Context.make(Trainer, trainer).pipe(Context.add(Engine, engine)))
  ).pipe(Layer.provide(NodeServices.layer))

/** The colocated trainer and engine, and the engine's controls (a checkpoint drops its kept KV). */
const colocatedParts = (c: RealModelConfig, hfModel: string, tokenizer: Tokenizer, seed: number) =>
  Effect.gen(function*() {
    const trainer = yield* HfPytorch.makeHf({
      ...workerOptions(c, hfModel, seed),
      adam: { ...defaultAdamW, lr: c.rl.lr, weightDecay: 0 },
      train: trainOptionsOf(c)
    })
    const { engine, control } = yield* Torch.makeWithControl(trainer.worker.session, {
      tokenizer,
      maxBatch: c.engine.maxBatch,
      cacheTokens: c.engine.cacheTokens,
      prefillTokens: c.engine.prefillTokens,
      dtype: c.model.dtype
    })
    return { trainer, engine, control }
  })


/** The model's tokenizer, listing the tools in the chat template when the call format needs it. */
export const tokenizerOf = (c: RealModelConfig) => {
  const tools = Arpo.chatTools(c.rollout.callFormat)
  return HfTokenizer.load(c.model.path, tools === undefined ? {} : { tools })
}

/** The checkpoint's context (config.json `max_position_embeddings`, 4096 when absent, as hf_model reads it). */
export const contextOf = (dir: string): number => {
  try {
    const raw = JSON.parse(fs.readFileSync(NodePath.join(dir, "config.json"), "utf8")) as { max_position_embeddings?: number }
    return raw.max_position_embeddings ?? 4096
  } catch {
    return 4096
  }
}

/** Where cold-start checkpoints are cached: `$ARPO_CACHE_DIR/sft-hf`, else `<repo>/.cache/sft-hf`. */
export const coldStartCacheDir = (): string => NodePath.join(process.env["ARPO_CACHE_DIR"] ?? NodePath.join(repoRoot, ".cache"), "sft-hf")

/** The checkpoint file's content hash part of the cache key (a changed checkpoint at the same path is another key). */
const checkpointStamp = (dir: string): string => {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".safetensors") || f === "config.json").sort()
  return files.map((f) => `${f}:${fs.statSync(NodePath.join(dir, f)).size}:${fs.statSync(NodePath.join(dir, f)).mtimeMs}`).join(",")
}

/**
 * The weights RL starts from: the checkpoint itself (no cold start), or the checkpoint after `sft.steps` SFT
 * steps on the task's protocol demonstrations (tool results from the real tools; prompt and results masked),
 * exported as a Hugging Face directory and cached per (checkpoint, task, SFT settings, seed).
 */
export const coldStart = (c: RealModelConfig, seed: number, task: TaskDefinition, toolbox: Layer.Layer<Toolbox, unknown, Events>, tokenizer: Tokenizer) =>
  Effect.gen(function*() {
    if (c.sft.steps === 0) return { dir: c.model.path, steps: 0, finalLoss: Number.NaN, cached: false }
    const key = createHash("sha256")
      .update(stableJson({ model: c.model, stamp: checkpointStamp(c.model.path), task: c.task, format: c.rollout.callFormat, sft: c.sft, seed, version: 1 }))
      .digest("hex")
      .slice(0, 16)
    const dir = NodePath.join(coldStartCacheDir(), key)
    const done = NodePath.join(dir, "sft.json")
    if (fs.existsSync(done)) {
      const info = JSON.parse(fs.readFileSync(done, "utf8")) as { steps: number; finalLoss: number }
      return { dir: NodePath.join(dir, "model"), steps: info.steps, finalLoss: info.finalLoss, cached: true }
    }
    const losses: Array<number> = []
    const bar = yield* makeProgress({ label: `cold-start SFT of ${NodePath.basename(c.model.path)} (seed ${seed})`, total: c.sft.steps })
    yield* Effect.gen(function*() {
      const worker = yield* HfPytorch.openHfWorker({ ...workerOptions(c, c.model.path, seed), adam: { ...defaultAdamW, lr: c.sft.lr, weightDecay: 0 } })
      const context = contextOf(c.model.path)
      // each distinct call runs once (the demonstrations repeat their program)
      const box = yield* ToolboxService
      const results = new Map<string, string>()
      const resultOf = (tool: string, content: string) =>
        Effect.gen(function*() {
          const key = `${tool}\u0000${content}`
          const hit = results.get(key)
          if (hit !== undefined) return hit
          const text = box.formatResult((yield* box.run({ tool, content })).output)
          results.set(key, text)
          return text
        })
      for (let s = 0; s < c.sft.steps; s++) {
        const demos = task.demonstrations("train", { start: s * c.sft.batchSize, count: c.sft.batchSize })
        const sequences = []
        for (const demo of demos) {
          const segments = []
          for (const seg of demo.segments) segments.push(seg.role === "model" ? seg : { ...seg, text: yield* resultOf(seg.tool, seg.content) })
          const rendered = { ...demo, segments }
          const tokens: Array<TokenId> = []
          const lossMask: Array<0 | 1> = []
          const push = (ids: ReadonlyArray<TokenId>, m: 0 | 1) => ids.forEach((t) => (tokens.push(t), lossMask.push(m)))
          push(tokenizer.chat !== undefined ? tokenizer.chat(demo.problem.messages) : tokenizer.encode(demo.problem.prompt), 0)
          for (const seg of rendered.segments) push(tokenizer.encode(seg.text), seg.role === "model" ? 1 : 0)
          push([tokenizer.eos], 1)
          sequences.push({ tokens: tokens.slice(0, context), lossMask: lossMask.slice(0, context) })
        }
        const r = yield* worker.sftStep({ sequences }, c.rl.microBatchRows)
        losses.push(r.loss)
        yield* bar.update(s + 1, `loss ${r.loss.toFixed(3)}`)
      }
      fs.rmSync(dir, { recursive: true, force: true })
      fs.mkdirSync(dir, { recursive: true })
      yield* worker.exportWeights(NodePath.join(dir, "model"), "hf", c.sft.steps)
      // the tokenizer files travel with the weights, so the directory is a complete checkpoint
      for (const f of fs.readdirSync(c.model.path)) {
        if (/^(tokenizer.*|chat_template.*|special_tokens_map\.json|generation_config\.json)$/.test(f) && !fs.existsSync(NodePath.join(dir, "model", f))) {
          fs.copyFileSync(NodePath.join(c.model.path, f), NodePath.join(dir, "model", f))
        }
      }
    }).pipe(Effect.provide(Layer.mergeAll(toolbox, NodeServices.layer).pipe(Layer.provideMerge(Events.layerDiscard))), Effect.scoped)
    const tail = losses.slice(-Math.max(1, Math.ceil(losses.length / 10)))
    const finalLoss = tail.reduce((a, b) => a + b, 0) / tail.length
    // the marker that the cached cold start is complete, written last and atomically
    yield* writeFileAtomic(done, JSON.stringify({ steps: losses.length, finalLoss, losses }) + "\n").pipe(Effect.provide(NodeServices.layer))
    yield* bar.finish(`cold-start SFT: ${losses.length} steps, final loss ${finalLoss.toFixed(3)}`)
    return { dir: NodePath.join(dir, "model"), steps: losses.length, finalLoss, cached: false }
  })

// ---------------------------------------------------------------------------------------------------------------------
// The run

const stateFile = "state.json"

/** The checkpoint directory of (arm, seed, step): the HF trainer's save (weights, optimizer, counters, RNG) + state.json. */
const checkpointDir = (store: RunStore["Service"], arm: string, seed: number, step: number) => store.checkpointPath(checkpointName(arm, seed, step))

/** A safetensors file whose header reads and whose data the file holds whole (a cheap check: the data is not read). */
const safetensorsWhole = (file: string): string | undefined => {
  let fd: number
  try {
    fd = fs.openSync(file, "r")
  } catch (e) {
    return `unreadable (${(e as Error).message})`
  }
  try {
    const size = fs.fstatSync(fd).size
    const len = Buffer.alloc(8)
    if (size < 8 || fs.readSync(fd, len, 0, 8, 0) !== 8) return "shorter than its header"
    const n = Number(len.readBigUInt64LE(0))
    if (8 + n > size) return "header longer than the file"
    const head = Buffer.alloc(n)
    fs.readSync(fd, head, 0, n, 8)
    const header = JSON.parse(head.toString("utf8")) as Record<string, { data_offsets?: [number, number] }>
    const end = Object.entries(header).reduce((a, [k, t]) => (k === "__metadata__" ? a : Math.max(a, t.data_offsets?.[1] ?? 0)), 0)
    return 8 + n + end > size ? `truncated (${size} bytes, the header needs ${8 + n + end})` : undefined
  } catch (e) {
    return `unreadable header (${(e as Error).message})`
  } finally {
    fs.closeSync(fd)
  }
}

/** A checkpoint to resume from must be whole: state.json for this arm, seed and step, the trainer state, whole safetensors files. */
const checkCheckpoint = (dir: string, path: string, arm: string, seed: number, step: number) =>
  Effect.gen(function*() {
    const bad = (why: string) =>
      new RunNotResumable({ dir, message: `checkpoint ${path} is damaged (${why}); nothing was changed. Delete it to resume from the checkpoint before it` })
    const read = (file: string) =>
      Effect.try({ try: () => JSON.parse(fs.readFileSync(NodePath.join(path, file), "utf8")) as Record<string, unknown>, catch: (e) => bad(`${file}: ${(e as Error).message}`) })
    const s = yield* read(stateFile)
    if (s["arm"] !== arm || s["seed"] !== seed || s["step"] !== step) return yield* bad(`${stateFile} says arm ${String(s["arm"])} seed ${String(s["seed"])} step ${String(s["step"])}`)
    yield* read("arpo_trainer_state.json")
    for (const f of fs.readdirSync(path).filter((f) => f.endsWith(".safetensors")).sort()) {
      const why = safetensorsWhole(NodePath.join(path, f))
      if (why !== undefined) return yield* bad(`${f}: ${why}`)
    }
  })

/** Run (or continue from step `from`: checkpoint `from − 1` reloaded) one arm and seed. */
const runOne = (run: string, arm: ResolvedRealArm, seed: number, from: number, tasks: Map<string, TaskDefinition>) =>
  Effect.gen(function*() {
    const c = arm.config
    const store = yield* RunStore
    const taskConfig = taskConfigOf(c)
    const taskKey = stableJson(taskConfig)
    const task = tasks.get(taskKey) ?? (yield* Arpo.definition(taskConfig))
    tasks.set(taskKey, task)
    const toolbox = Arpo.toolboxLocal(taskConfig)
    const tokenizer = yield* tokenizerOf(c)
    const coldStarted = performance.now()
    // a resumed arm needs it too: the worker starts from it (a LoRA run's base), then loads the checkpoint
    const cold = yield* coldStart(c, seed, task, toolbox, tokenizer)
    const coldMs = cold.cached || cold.steps === 0 ? 0 : performance.now() - coldStarted
    const started = performance.now()
    const held: { control?: Torch.TorchEngineControl } = {}
    const services = Layer.unwrap(Effect.gen(function*() {
      const parts = yield* colocatedParts(c, cold.dir, tokenizer, seed).pipe(Effect.provide(NodeServices.layer))
      held.control = parts.control
      const engine = Layer.succeed(Engine, parts.engine)
      // WeightSync negotiates the format (the trainer's in-worker handle) and loads it after every step
      return WeightSync.layer.pipe(Layer.provideMerge(Layer.mergeAll(
        samplerFor(c, arm.sampler).pipe(Layer.provideMerge(Layer.mergeAll(engine, toolbox))),
        registryComponents(builtinRegistries).estimator(loopConfig(c)),
        Layer.succeed(Trainer, parts.trainer),
        Evaluator.layer({ task, settings: c.eval, rollout: { ...c.rollout, name: "global" }, engine, toolbox })
      )))
    }))
    const progress = yield* makeProgress({ label: `${arm.name} seed ${seed}`, total: c.rl.steps })
    // the arm's wall times, emitted once: inside its last checkpoint before state.json (a resume skips an
    // arm whose last checkpoint is complete, so they must be on disk by then), or after the loop without one
    let wallMs: number | undefined
    const events = yield* Events
    const emitWalls = Effect.gen(function*() {
      if (wallMs !== undefined) return
      wallMs = performance.now() - started
      yield* emit({ _tag: "metric", name: "arm.wallMs", value: wallMs }).pipe(withScope({ run, arm: arm.name, seed, step: c.rl.steps }))
      // the cold start is shared by the arms: its time is recorded once, by the arm that trained it (0 from the cache)
      yield* emit({ _tag: "metric", name: "coldStart.wallMs", value: coldMs }).pipe(withScope({ run, arm: arm.name, seed, step: c.rl.steps }))
    }).pipe(Effect.provideService(Events, events))
    yield* Effect.gen(function*() {
      const trainer = yield* Trainer
      if (from > 0) {
        yield* trainer.load(checkpointDir(store, arm.name, seed, from - 1))
        // the checkpoint's weights to the engine; no event (a run continued equals one run straight through)
        yield* (yield* WeightSync).sync(yield* trainer.weights(), { emit: false })
      }
      const checkpoint = (step: number) =>
        Effect.gen(function*() {
          const dir = checkpointDir(store, arm.name, seed, step)
          // the worker writes the directory atomically (a temp sibling renamed into place)
          yield* trainer.save(dir)
          // the engine's kept KV goes too: a resumed run starts with none, so must the run that continues
          if (held.control !== undefined) yield* held.control.release
          if (step === c.rl.steps) yield* emitWalls
          yield* store.syncEvents
          // state.json is written last: a checkpoint directory without it is incomplete and ignored
          yield* writeJsonAtomic(NodePath.join(dir, stateFile), { arm: arm.name, seed, step, policyVersion: yield* trainer.policyVersion }).pipe(
            Effect.provide(NodeServices.layer)
          )
          // older checkpoints beyond checkpointKeep go once this one is complete (a resume needs only the newest)
          if (c.checkpointKeep > 0) {
            const prefix = `${arm.name}.seed${seed}.step-`
            const older = (yield* store.listCheckpoints).filter((n) => n.startsWith(prefix) && Number(n.slice(prefix.length)) < step)
            for (const n of older.slice(0, Math.max(0, older.length - (c.checkpointKeep - 1)))) {
              yield* Effect.sync(() => fs.rmSync(store.checkpointPath(n), { recursive: true, force: true }))
            }
          }
        })
      yield* runArm({
        run,
        arm: arm.name,
        seed,
        config: loopConfig(c),
        task,
        from,
        coldStart: { steps: cold.steps, finalLoss: cold.finalLoss },
        progress,
        ...(c.checkpointEvery > 0 ? { checkpoint } : {})
      })
    }).pipe(Effect.provide(services), Effect.scoped)
    yield* emitWalls
    yield* progress.finish(`${arm.name} seed ${seed}: RL steps ${from}…${c.rl.steps} in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  })

/** Seeds × arms in order (seed-major), each from its start step (0, or one past its last checkpoint); then the reports. */
const execute = (arms: ReadonlyArray<ResolvedRealArm>, seeds: ReadonlyArray<number>, starts: ReadonlyMap<string, number>) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const run = NodePath.basename(store.paths.dir)
    const tasks = new Map<string, TaskDefinition>()
    yield* Effect.gen(function*() {
      for (const seed of seeds) {
        for (const arm of arms) {
          const from = starts.get(`${arm.name}/${seed}`) ?? 0
          if (from <= arm.config.rl.steps) yield* runOne(run, arm, seed, from, tasks)
        }
      }
    }).pipe(Effect.onInterrupt(() => Effect.forEach(interruptedLines(store.paths.dir), (line) => Console.error(line), { discard: true })))
    const written = yield* writeReports
    const log = yield* store.readEvents
    const wall = new Map<string, number>([["", 0]])
    for (const { stamp, event } of log.events) {
      if (event._tag === "metric" && event.name === "arm.wallMs") wall.set(stamp.arm, event.value)
      if (event._tag === "metric" && event.name === "coldStart.wallMs") wall.set("", wall.get("")! + event.value)
    }
    for (const line of conclusion(written.summary, store.paths.dir, wall, trainingCost(log.events))) yield* Console.log(line)
    return store.paths.dir
  }).pipe(Effect.provide(RunStore.eventsLayer))

/** What config.json holds for a real-model run. */
interface StoredRealRun {
  readonly experiment: string
  readonly seeds: ReadonlyArray<number>
  readonly arms: ReadonlyArray<{ readonly name: string; readonly sampler: string; readonly config: unknown }>
}

/** The arms of a run directory's config.json, each config decoded again (a hand-edited one is refused by key). */
const readStored = (dir: string, config: unknown) =>
  Effect.gen(function*() {
    const stored = config as StoredRealRun
    if (typeof stored !== "object" || stored === null || !Array.isArray(stored.arms) || !Array.isArray(stored.seeds)) {
      return yield* new RunNotResumable({ dir, message: `${dir}/config.json does not describe a real-model run (no arms or seeds)` })
    }
    if (stored.experiment !== "real-model") return yield* new RunNotResumable({ dir, message: `${dir} is a run of ${String(stored.experiment)}, not real-model` })
    const arms: Array<ResolvedRealArm> = []
    for (const a of stored.arms) {
      const decoded = yield* Schema.decodeUnknownEffect(RealModelConfig)(a.config, { errors: "all", onExcessProperty: "error" }).pipe(
        Effect.mapError((e) => new ConfigInvalid({ key: "", message: `${dir}/config.json arm ${a.name}: invalid config: ${e.message}` }))
      )
      arms.push({ name: a.name, sampler: a.sampler, config: decoded })
    }
    return { seeds: stored.seeds, arms }
  })

/** The CLI experiment. */
export const realModel: Experiment = {
  name: "real-model",
  description: "GRPO vs ARPO vs AEPO on a Hugging Face checkpoint (model.path) and ARPO's own data, torch engine colocated with the PyTorch trainer (profiles smoke, gpu)",
  profiles: {
    quick: { seeds: [1], changes: "smoke: CPU float32 on model.path (default the qwen2-tiny fixture), short prompt, 80 SFT steps of protocol demonstrations, rl.steps=2 rl.promptsPerStep=2 rollout.budget=4 rollout.initial=2" },
    full: { seeds: [1], changes: "gpu: CUDA bfloat16 on model.path, rl.steps=300 rl.promptsPerStep=16 rollout.budget=16 rollout.initial=8 rollout.maxResponseTokens=4096 (ARPO_SPEC §5.3 on one GPU)" }
  },
  run: (options) =>
    Effect.gen(function*() {
      const resolved = yield* resolve(options)
      const seeds = options.seeds ?? profileOf(options.profile)!.seeds
      const stored = {
        experiment: "real-model",
        profile: options.profile,
        seeds,
        set: options.set,
        sweep: options.sweep,
        arms: resolved.map((a) => ({ name: a.name, sampler: a.sampler, config: Schema.encodeSync(RealModelConfig)(a.config) }))
      }
      return yield* Effect.andThen(RunStore.use((store) => recordConfigHash(store.paths.dir)), execute(resolved, seeds, new Map())).pipe(
        Effect.provide(RunStore.layerCreate({ root: options.out, experiment: "real-model", config: stored as never }))
      )
    }),
  resume: (dir, resumeOptions = {}) =>
    Effect.gen(function*() {
      const store = yield* RunStore
      const { seeds, arms: resolved } = yield* readStored(dir, yield* store.readConfig)
      // before anything is changed: config.json as the run started, and every checkpoint to resume from whole
      yield* requireConfigUnchanged(dir, resumeOptions.force === true)
      const starts = new Map<string, number>()
      for (const seed of seeds) {
        for (const arm of resolved) {
          const last = yield* lastCheckpoint(store, arm.name, seed)
          if (last >= 0) yield* checkCheckpoint(dir, checkpointDir(store, arm.name, seed, last), arm.name, seed, last)
          starts.set(`${arm.name}/${seed}`, last + 1)
        }
      }
      for (const seed of seeds) {
        for (const arm of resolved) {
          const last = starts.get(`${arm.name}/${seed}`)! - 1
          // events after the checkpoint are recomputed: drop them so nothing is recorded twice
          if (last < arm.config.rl.steps) yield* store.truncateAfterStep(last, { arm: arm.name, seed })
        }
      }
      // a save the kill cut short left a hidden temp directory (never a checkpoint): its space is freed
      const checkpoints = NodePath.join(dir, "checkpoints")
      if (fs.existsSync(checkpoints)) {
        for (const f of fs.readdirSync(checkpoints)) if (/^\..*\.tmp-\d+-\d+$/.test(f)) fs.rmSync(NodePath.join(checkpoints, f), { recursive: true, force: true })
      }
      return yield* execute(resolved, seeds, starts)
    }).pipe(Effect.provide(RunStore.layerOpen(dir)))
}
