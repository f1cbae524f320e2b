/**
 * The PyTorch worker on a Hugging Face checkpoint (Llama / Qwen2 / Qwen3; workers/hf_model.py): `openHfWorker`
 * starts the worker with `init {hfModel, lora?, loraAdapter?, dtype?, device?}` and exposes its ops as typed
 * effects, and `makeHf` / `layerHf` are the Trainer service over it (the same loss, mini-batch and stale-batch
 * semantics as the embedded-layout adapter in pytorch.ts). Weights (src/core/weights.ts): each train/sft returns
 * the native format — with `sync`, that export (a HF directory, a peft adapter or a GGUF file) written after every
 * call; without it, an in-worker `hf` / `hf-lora` handle for an engine colocated in the same worker — and
 * `weights(format)` exports any of `formats` on request (a run's WeightSync converts this way, e.g. to `gguf` for
 * llama.cpp). Large batches travel as a safetensors file, not inline JSON. It does not sample or tokenize
 * (see docs/hf-models.md).
 */
import { handleWeights, type PolicyWeights, pathWeights, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NodeServices } from "@effect/platform-node"
import { type Duration, Effect, Layer, Ref, Schema, type Scope, Semaphore } from "effect"
import type { ChildProcessSpawner } from "effect/process"
import type { TrainSequence } from "../core/batch.ts"
import { Events } from "../events/Events.ts"
import { encodeSafetensors } from "../model/checkpoint.ts"
import type { AdamWConfig } from "../model/train.ts"
import { defaultTrainOptions } from "./embedded.ts"
import {
  type CarrySequences,
  defaultWorkerScript,
  type PytorchWorker,
  workerBackend,
  workerFailure,
  workerOps,
  workerTrainerMethods
} from "./pytorch.ts"
import {
  CheckpointFailure,
  type PolicyTrainOptions,
  Trainer
} from "./Trainer.ts"
import { trainingLoop } from "./loop.ts"
import { spawnWorker, type WorkerError, type WorkerOptions, type WorkerSession } from "./workerSession.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Options and replies

/** A LoRA adapter to create: rank, alpha (scale alpha / r), the module names it wraps (peft's `target_modules`). */
export const LoraConfig = Schema.Struct({
  r: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))),
  alpha: Schema.Finite,
  /** names like "q_proj" (a module whose name ends with ".q_proj"), or "all-linear" */
  targetModules: Schema.Union([Schema.Array(Schema.String), Schema.Literal("all-linear")])
})
export type LoraConfig = typeof LoraConfig.Type

/** Compute precision: float32, or autocast to bfloat16 / float16 with float32 master weights and optimizer state. */
export type HfDtype = "float32" | "bfloat16" | "float16"
/** What an export writes: a transformers checkpoint directory, a peft adapter directory, a GGUF file. */
export type HfExportFormat = "hf" | "hf-lora" | "gguf"

export interface HfWorkerOptions extends Partial<WorkerOptions> {
  /** the checkpoint directory (config.json + model.safetensors or a sharded index, tokenizer files) */
  readonly hfModel: string
  /** train a new LoRA adapter (only the adapter trains) */
  readonly lora?: LoraConfig
  /** start from a saved peft adapter directory (adapter_config.json + adapter_model.safetensors) */
  readonly loraAdapter?: string
  /** default: bfloat16 on CUDA, float32 on CPU */
  readonly dtype?: HfDtype
  /** "auto" (CUDA when available), "cpu" or "cuda" */
  readonly device?: "auto" | "cpu" | "cuda"
  /** recompute each layer's activations in backward (less memory, ~1.3× the compute) */
  readonly activationCheckpointing?: boolean
  readonly adam?: AdamWConfig
  readonly seed?: number
  /** torch CPU threads */
  readonly threads?: number
  /** a request whose per-token numbers exceed this travels as a safetensors file (default 250,000 ≈ 4 MB of JSON) */
  readonly fileThreshold?: number
  /** where batch files go (default: a fresh temporary directory, removed with the scope) */
  readonly scratchDir?: string
  /** time limit of `init` (imports torch and reads the checkpoint; default 10 minutes) */
  readonly initTimeout?: Duration.Input
}

export const HfInitReply = Schema.Struct({
  params: Schema.Int,
  trainableParams: Schema.Int,
  device: Schema.String,
  dtype: Schema.String,
  architecture: Schema.String,
  policyVersion: Schema.Int,
  step: Schema.Int,
  torch: Schema.String,
  threads: Schema.Int,
  sourceDtypes: Schema.Array(Schema.String),
  lora: Schema.NullOr(Schema.Struct({ r: Schema.Int, alpha: Schema.Number, targetModules: Schema.Unknown }))
})
export const ExportReply = Schema.Struct({
  path: Schema.String,
  policyVersion: Schema.Int,
  format: Schema.String,
  files: Schema.Array(Schema.String),
  exportMs: Schema.Number
})
const SaveReply = Schema.Struct({ path: Schema.String, policyVersion: Schema.Int, step: Schema.Int })

/** A started worker holding a Hugging Face model: the ops both layouts share (pytorch.ts `workerOps`), save and export. */
export interface HfWorker extends Pick<PytorchWorker, "logprobs" | "loss" | "trainStep" | "sftStep" | "load"> {
  readonly session: WorkerSession
  readonly info: typeof HfInitReply.Type
  /** weights + optimizer state (a directory: the HF checkpoint or peft adapter in float32, optimizer.safetensors) */
  readonly save: (dir: string, policyVersion: number) => Effect.Effect<typeof SaveReply.Type, WorkerError>
  /** weights for an engine: `hf` (LoRA merged; the input's dtypes unless `dtype`), `hf-lora`, `gguf` (float32 unless dtype float16) */
  readonly exportWeights: (
    target: string,
    format: HfExportFormat,
    policyVersion: number,
    dtype?: HfDtype
  ) => Effect.Effect<typeof ExportReply.Type, WorkerError>
}

// ---------------------------------------------------------------------------------------------------------------------
// Batches on the wire: inline JSON, or a safetensors file above a size

const PER_TOKEN = ["lossMask", "advantages", "oldLogprobs", "refLogprobs"] as const

/** The sequences as the worker's `sequencesFile` (float32 tensors; token ids are exact below 2^24). */
export const encodeSequencesFile = (sequences: ReadonlyArray<Partial<TrainSequence> & { readonly tokens: ReadonlyArray<number> }>): Uint8Array => {
  const n = sequences.reduce((a, s) => a + s.tokens.length, 0)
  const flat = (pick: (s: (typeof sequences)[number]) => ReadonlyArray<number> | undefined) => {
    const out = new Float32Array(n)
    let at = 0
    for (const s of sequences) {
      const v = pick(s)
      if (v !== undefined) out.set(v, at)
      at += s.tokens.length
    }
    return out
  }
  const perSeq = (pick: (s: (typeof sequences)[number]) => number) => Float32Array.from(sequences.map(pick))
  const tensors = [
    { name: "tokens", shape: [n], data: flat((s) => s.tokens) },
    { name: "lengths", shape: [sequences.length], data: perSeq((s) => s.tokens.length) },
    { name: "responseStart", shape: [sequences.length], data: perSeq((s) => s.responseStart ?? 0) },
    { name: "weight", shape: [sequences.length], data: perSeq((s) => s.weight ?? 1) },
    { name: "hasRef", shape: [sequences.length], data: perSeq((s) => (s.refLogprobs !== undefined ? 1 : 0)) }
  ]
  for (const k of PER_TOKEN) {
    if (sequences.some((s) => s[k] !== undefined)) tensors.push({ name: k, shape: [n], data: flat((s) => s[k]) })
  }
  return encodeSafetensors(tensors, { format: "arpo-sequences-v1" })
}


/**
 * Starts the worker (scoped) on a Hugging Face checkpoint. Fails with the worker's typed error; a checkpoint it
 * cannot read or refuses (unknown architecture, a missing shard, a tensor of the wrong shape, a truncated file)
 * is a `WorkerProtocolError` whose message names the file and the field.
 */
export const openHfWorker = (
  options: HfWorkerOptions
): Effect.Effect<HfWorker, WorkerError, Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const scratch = options.scratchDir ?? (yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "arpo-hf-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    ))
    const session = yield* spawnWorker({ ...options, script: options.script ?? defaultWorkerScript })
    const info = yield* session.request("init", {
      hfModel: options.hfModel,
      device: options.device ?? "auto",
      ...(options.lora !== undefined ? { lora: options.lora } : {}),
      ...(options.loraAdapter !== undefined ? { loraAdapter: options.loraAdapter } : {}),
      ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
      ...(options.activationCheckpointing !== undefined ? { activationCheckpointing: options.activationCheckpointing } : {}),
      ...(options.adam !== undefined ? { adam: options.adam } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      seed: options.seed ?? 0
    }, HfInitReply, { timeout: options.initTimeout ?? "10 minutes" })
    const threshold = options.fileThreshold ?? 250_000
    let files = 0
    /** `sequences` inline, or `sequencesFile` when the batch is large */
    const carry: CarrySequences = (seqs, wire) =>
      Effect.sync(() => {
        const numbers = seqs.reduce((a, s) => a + s.tokens.length * 5, 0)
        if (numbers <= threshold) return { sequences: seqs.map(wire) }
        const file = path.join(scratch, `batch-${files++ % 2}.safetensors`)
        fs.writeFileSync(file, encodeSequencesFile(seqs as never))
        return { sequencesFile: file }
      })
    return {
      session,
      info,
      ...workerOps(session, carry),
      save: (dir, policyVersion) => session.request("save", { path: dir, policyVersion }, SaveReply),
      exportWeights: (target, format, policyVersion, dtype) =>
        session.request("export", { path: target, format, policyVersion, ...(dtype !== undefined ? { dtype } : {}) }, ExportReply)
    }
  })

// ---------------------------------------------------------------------------------------------------------------------
// The Trainer

export interface HfTrainerOptions extends HfWorkerOptions {
  readonly train?: Partial<PolicyTrainOptions>
  /**
   * Export after every train/sft/load for an engine to load: the format, and the directory under which
   * `v<version>` (a directory, or `v<version>.gguf`) is written. Absent: no export.
   */
  readonly sync?: {
    readonly format: HfExportFormat
    readonly dir: string
    readonly dtype?: HfDtype
    /** exports kept on disk (default 2: the newest and the one an engine may still be reading) */
    readonly keep?: number
  }
}

/** The Trainer over an HF worker, plus where the latest synced weights are. */
export type HfTrainer = Trainer["Service"] & {
  readonly worker: HfWorker
  /** the path of the latest export (`sync`), undefined before the first or without sync */
  readonly latestWeights: Effect.Effect<{ readonly path: string; readonly format: HfExportFormat; readonly policyVersion: number } | undefined>
}

const adapter = "pytorch-hf"
const trainerFailure = workerFailure(adapter, "pytorch trainer (hf)")
const checkpointFailure = (file: string, operation: "save" | "load") => (e: WorkerError) =>
  new CheckpointFailure({ path: file, operation, message: `${operation} ${file} (pytorch worker, hf): ${e._tag}: ${e.message}` })

/** Bytes of a file, or of the files in a directory (0 when it cannot be read). */
const sizeOf = (p: string): number => {
  try {
    const st = fs.statSync(p)
    if (!st.isDirectory()) return st.size
    return fs.readdirSync(p).reduce((a, f) => a + sizeOf(path.join(p, f)), 0)
  } catch {
    return 0
  }
}

/** The Trainer as an effect (scoped: the worker lives until the scope closes). */
export const makeHf = (
  options: HfTrainerOptions
): Effect.Effect<HfTrainer, WorkerError, Events | Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const events = yield* Events
    const worker = yield* openHfWorker(options)
    const info = worker.info
    const version = yield* Ref.make(info.policyVersion)
    const latest = yield* Ref.make<{ path: string; format: HfExportFormat; policyVersion: number } | undefined>(undefined)
    const lock = yield* Semaphore.make(1)
    const defaults: PolicyTrainOptions = { ...defaultTrainOptions, ...options.train }
    const sync = options.sync
    const describe = { device: info.device, dtype: info.dtype, params: info.params, trainableParams: info.trainableParams }

    // without `sync` the weights stay in the worker: they are handed over as an in-process handle (the
    // worker session), for an engine colocated in the same worker; other formats are exported on request
    const native: WeightsFormat = sync?.format ?? (info.lora !== null ? "hf-lora" : "hf")
    const formats: ReadonlyArray<WeightsFormat> = [native, ...(["hf", "gguf", ...(info.lora !== null ? ["hf-lora" as const] : [])] as const)]
      .filter((f, i, all) => all.indexOf(f) === i)
    const inWorker = (v: number): PolicyWeights => handleWeights(v, native, worker)
    const exportsDir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(options.scratchDir ?? os.tmpdir(), "arpo-hf-weights-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    /** on-demand exports of the current version, one per format (older versions' removed) */
    const exported = new Map<string, PolicyWeights>()
    const exportAs = (format: WeightsFormat) =>
      Effect.gen(function*() {
        const v = yield* Ref.get(version)
        const key = `${v}:${format}`
        const hit = exported.get(key)
        if (hit !== undefined) return hit
        const target = path.join(exportsDir, format === "gguf" ? `v${v}.gguf` : `v${v}-${format}`)
        yield* worker.exportWeights(target, format as HfExportFormat, v, format === "gguf" ? undefined : sync?.dtype)
        const w = pathWeights(v, format, target, sizeOf(target))
        for (const [k, old] of exported) {
          if (Number(k.split(":")[0]) < v - 1 && old.location._tag === "path") {
            const p = old.location.path
            yield* Effect.sync(() => fs.rmSync(p, { recursive: true, force: true }))
            exported.delete(k)
          }
        }
        exported.set(key, w)
        return w
      })
    const exportFor = (v: number) =>
      Effect.gen(function*() {
        if (sync === undefined) return inWorker(v)
        const target = path.join(sync.dir, sync.format === "gguf" ? `v${v}.gguf` : `v${v}`)
        yield* worker.exportWeights(target, sync.format, v, sync.dtype)
        yield* Ref.set(latest, { path: target, format: sync.format, policyVersion: v })
        const keep = sync.keep ?? 2
        const old = path.join(sync.dir, sync.format === "gguf" ? `v${v - keep}.gguf` : `v${v - keep}`)
        if (keep > 0 && v - keep >= 0) yield* Effect.sync(() => fs.rmSync(old, { recursive: true, force: true }))
        return pathWeights(v, sync.format, target, sizeOf(target))
      })
    yield* exportFor(info.policyVersion)

    const loop = trainingLoop(workerBackend(worker, version, trainerFailure, (v) => exportFor(v).pipe(Effect.mapError(trainerFailure)), describe), events, defaults)

    const trainer: HfTrainer = {
      name: `pytorch-hf(${info.architecture}, ${info.device}, ${info.dtype}, ${info.trainableParams}/${info.params} params${
        info.lora !== null ? `, LoRA r ${info.lora.r}` : ""
      })`,
      worker,
      latestWeights: Ref.get(latest),
      formats,
      weights: (format = native) =>
        !formats.includes(format)
          ? Effect.fail(new WeightsFormatUnsupported({ engine: "(asked)", accepts: [format], trainer: "pytorch-hf", produces: [...formats] }))
          : format !== native
          ? exportAs(format).pipe(Effect.mapError(trainerFailure), Semaphore.withPermit(lock))
          : Effect.flatMap(Ref.get(version), (v) =>
            Effect.flatMap(Ref.get(latest), (l) =>
              Effect.succeed(sync !== undefined && l !== undefined ? pathWeights(l.policyVersion, l.format, l.path, sizeOf(l.path)) : inWorker(v))
            )
          ),
      ...workerTrainerMethods({ worker, version, lock, events, loop, checkpointFailure, afterLoad: exportFor })
    }
    return trainer
  })

/** The Trainer as a layer (the worker stops when the layer's scope closes). */
export const layerHf = (options: HfTrainerOptions): Layer.Layer<Trainer, WorkerError, Events> =>
  Layer.effect(Trainer, makeHf(options)).pipe(Layer.provide(NodeServices.layer))
