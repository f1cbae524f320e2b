/**
 * The PyTorch Trainer adapter: the same Trainer service as the embedded one (train/sft/save/load/
 * policyVersion), computed by a Python worker process (workers/trainer.py, see docs/pytorch-worker.md)
 * that reproduces the embedded model and the core's loss in torch. Mini-batch splitting, stale-batch
 * checks, normalizers and events are the shared training loop's (loop.ts); the worker takes one optimizer
 * step per request. The ops both worker layouts speak alike (`workerOps`, `workerBackend`,
 * `workerTrainerMethods`) are here; the Hugging Face adapter (hfPytorch.ts) uses them too.
 * Every step hands the new weights over as a file the worker exports (`embedded` safetensors layout, or a
 * GGUF converted from it), so an engine loads them by path. It does not sample, tokenize, or talk to an
 * inference server.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { NodeServices } from "@effect/platform-node"
import { type Duration, Effect, Layer, Ref, Schema, type Scope, Semaphore } from "effect"
import type { ChildProcessSpawner } from "effect/process"
import type { TrainSequence } from "../core/batch.ts"
import { type PolicyWeights, pathWeights, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import type { Normalizer, PolicyLossConfig } from "../core/loss.ts"
import { Events } from "../events/Events.ts"
import { readCheckpoint, writeCheckpoint } from "../model/checkpoint.ts"
import { writeGguf } from "../model/gguf.ts"
import { padId } from "../model/tokenizer.ts"
import { type AdamWConfig, defaultAdamW } from "../model/train.ts"
import { defaultTrainOptions } from "./embedded.ts"
import {
  CheckpointFailure,
  type InitialWeights,
  type PolicyTrainOptions,
  type SftBatch,
  Trainer,
  TrainerFailure,
  type TrainStepReport
} from "./Trainer.ts"
import { type StepBackend, trainingLoop } from "./loop.ts"
import { spawnWorker, type WorkerError, type WorkerOptions, type WorkerSession } from "./workerSession.ts"

/** workers/trainer.py, resolved from this module (src/trainer/ and dist/trainer/ are both two levels down). */
export const defaultWorkerScript = fileURLToPath(new URL("../../workers/trainer.py", import.meta.url))

// ---------------------------------------------------------------------------------------------------------------------
// Reply schemas

const Num = Schema.Number
export const InitReply = Schema.Struct({
  params: Schema.Int,
  device: Schema.String,
  policyVersion: Schema.Int,
  step: Schema.Int,
  torch: Schema.String,
  threads: Schema.Int
})
export const LogprobsReply = Schema.Struct({ logprobs: Schema.Array(Schema.Array(Num)), entropies: Schema.Array(Schema.Array(Num)) })
const StepFigures = {
  loss: Num,
  clipFraction: Num,
  kl: Num,
  entropy: Num,
  tokens: Schema.Int,
  logprobMismatch: Num,
  gradNorm: Num
}
export const TrainStepReply = Schema.Struct({ ...StepFigures, trainMs: Num, step: Schema.Int })
export const LossReply = Schema.Struct({ ...StepFigures, tokenGrads: Schema.Array(Schema.Array(Num)) })
export const SftStepReply = Schema.Struct({ loss: Num, tokens: Schema.Int, gradNorm: Num, trainMs: Num, step: Schema.Int })
export const SaveReply = Schema.Struct({ path: Schema.String, policyVersion: Schema.Int })
export const LoadReply = Schema.Struct({ policyVersion: Schema.Int, step: Schema.Int })
export const VersionReply = Schema.Struct({
  protocol: Schema.Int,
  python: Schema.String,
  torch: Schema.NullOr(Schema.String)
})

// ---------------------------------------------------------------------------------------------------------------------
// Typed ops over a session

export interface PytorchWorkerOptions extends Partial<WorkerOptions> {
  /** "auto" (CUDA when available, else CPU), "cpu" or "cuda" */
  readonly device?: "auto" | "cpu" | "cuda"
  readonly adam?: AdamWConfig
  readonly pad?: number
  /** torch CPU threads (torch.set_num_threads) */
  readonly threads?: number
  /** time limit of `init` (imports torch: seconds on a loaded machine; default 2 minutes) */
  readonly initTimeout?: Duration.Input
}

/** A started worker holding a model: the protocol's ops as typed effects. */
export interface PytorchWorker {
  readonly session: WorkerSession
  readonly info: typeof InitReply.Type
  /** teacher-forced log-probs and entropies, entry t for token t given tokens < t (entry 0 is 0) */
  readonly logprobs: (sequences: ReadonlyArray<ReadonlyArray<number>>) => Effect.Effect<typeof LogprobsReply.Type, WorkerError>
  /** loss value, d loss / d logπ per token, optionally the parameter gradient written to `gradsPath`; no update */
  readonly loss: (
    sequences: ReadonlyArray<TrainSequence>,
    loss: PolicyLossConfig,
    norm: Normalizer,
    options?: { readonly microBatchRows?: number; readonly gradsPath?: string }
  ) => Effect.Effect<typeof LossReply.Type, WorkerError>
  /** one AdamW step (global-norm clip) of the policy loss over a mini-batch normalized by `norm` */
  readonly trainStep: (
    sequences: ReadonlyArray<TrainSequence>,
    loss: PolicyLossConfig,
    norm: Normalizer,
    options?: { readonly microBatchRows?: number; readonly debugDelayS?: number }
  ) => Effect.Effect<typeof TrainStepReply.Type, WorkerError>
  readonly sftStep: (batch: SftBatch, microBatchRows: number) => Effect.Effect<typeof SftStepReply.Type, WorkerError>
  /** weights + optimizer state (embedded checkpoint layout) */
  readonly save: (file: string, policyVersion: number) => Effect.Effect<typeof SaveReply.Type, WorkerError>
  /** weights only (what an engine loads) */
  readonly exportWeights: (file: string, policyVersion: number) => Effect.Effect<typeof SaveReply.Type, WorkerError>
  readonly load: (file: string) => Effect.Effect<typeof LoadReply.Type, WorkerError>
}

/** A TrainSequence as the worker's JSON protocol carries it (shared with the HF trainer). */
export const wireSequence = (s: TrainSequence) => ({
  tokens: s.tokens,
  responseStart: s.responseStart,
  lossMask: s.lossMask,
  advantages: s.advantages,
  oldLogprobs: s.oldLogprobs,
  ...(s.refLogprobs !== undefined ? { refLogprobs: s.refLogprobs } : {}),
  weight: s.weight
})

/** The loss config as the worker reads it (`dualClip` off is `null`). */
export const wireLoss = (c: PolicyLossConfig) => ({ ...c, dualClip: c.dualClip ?? null })

/** How a request carries its sequences: inline JSON (`{ sequences }`), or a file the worker reads (the HF trainer). */
export type CarrySequences = <S extends { readonly tokens: ReadonlyArray<number> }>(
  sequences: ReadonlyArray<S>,
  wire: (s: S) => unknown
) => Effect.Effect<Record<string, unknown>>

/** Every sequence inline in the request's JSON. */
export const inline: CarrySequences = (sequences, wire) => Effect.succeed({ sequences: sequences.map(wire) })

/** The ops both worker layouts (embedded, Hugging Face) speak the same way, over a session. */
export const workerOps = (session: WorkerSession, carry: CarrySequences): Pick<PytorchWorker, "logprobs" | "loss" | "trainStep" | "sftStep" | "load"> => {
  /** a policy-loss request: the sequences, the loss config, the normalizer, micro-batch rows (default 16), `extra` fields */
  const lossBody = (sequences: ReadonlyArray<TrainSequence>, loss: PolicyLossConfig, norm: Normalizer, microBatchRows: number | undefined, extra: object) =>
    carry(sequences, wireSequence).pipe(Effect.map((body) => ({ ...body, loss: wireLoss(loss), normalizer: norm, microBatchRows: microBatchRows ?? 16, ...extra })))
  return {
    logprobs: (sequences) =>
      carry(sequences.map((tokens) => ({ tokens })), (s) => s.tokens).pipe(Effect.flatMap((body) => session.request("logprobs", body, LogprobsReply))),
    loss: (sequences, loss, norm, o = {}) =>
      lossBody(sequences, loss, norm, o.microBatchRows, o.gradsPath !== undefined ? { gradsPath: o.gradsPath } : {}).pipe(
        Effect.flatMap((body) => session.request("loss", body, LossReply))
      ),
    trainStep: (sequences, loss, norm, o = {}) =>
      lossBody(sequences, loss, norm, o.microBatchRows, o.debugDelayS !== undefined ? { debugDelayS: o.debugDelayS } : {}).pipe(
        Effect.flatMap((body) => session.request("train_step", body, TrainStepReply))
      ),
    sftStep: (batch, microBatchRows) =>
      carry(batch.sequences, (s) => ({ tokens: s.tokens, lossMask: s.lossMask })).pipe(Effect.flatMap((body) =>
        session.request("sft_step", { ...body, microBatchRows }, SftStepReply)
      )),
    load: (file) => session.request("load", { path: file }, LoadReply)
  }
}

/** A failure of a worker-backed trainer: the worker's typed error (tag and message) or any other, named for the adapter. */
export const workerFailure = (adapter: string, label: string) => (e: unknown): TrainerFailure => {
  const o = typeof e === "object" && e !== null ? e as { readonly _tag?: unknown; readonly message?: unknown } : undefined
  const tag = o?._tag !== undefined ? `${String(o._tag)}: ` : ""
  return new TrainerFailure({ adapter, message: `${label}: ${tag}${o?.message !== undefined ? String(o.message) : String(e)}` })
}

/**
 * The shared training loop's backend over a worker (src/trainer/loop.ts): its log-probs, train and SFT ops, the
 * version in `version`, and `weightsAt` for the weights handed over after a step.
 */
export const workerBackend = (
  worker: Pick<PytorchWorker, "logprobs" | "trainStep" | "sftStep">,
  version: Ref.Ref<number>,
  fail: (e: unknown) => TrainerFailure,
  weightsAt: (v: number) => Effect.Effect<PolicyWeights, TrainerFailure>,
  stepFields?: Readonly<Record<string, string | number>>
): StepBackend => ({
  fail,
  version: Ref.get(version),
  setVersion: (v) => Ref.set(version, v),
  logprobs: (sequences) => worker.logprobs(sequences.map((s) => s.tokens)).pipe(Effect.map((r) => r.logprobs), Effect.mapError(fail)),
  policyStep: (mini, loss, norm, microBatchRows) =>
    worker.trainStep(mini, loss, norm, { microBatchRows }).pipe(
      Effect.map((r): TrainStepReport => ({
        loss: r.loss,
        gradNorm: r.gradNorm,
        clipFraction: r.clipFraction,
        kl: r.kl,
        entropy: r.entropy,
        tokens: r.tokens,
        logprobMismatch: r.logprobMismatch,
        trainMs: r.trainMs
      })),
      Effect.mapError(fail)
    ),
  sftStep: (batch, microBatchRows) => worker.sftStep(batch, microBatchRows).pipe(Effect.mapError(fail)),
  weightsAt,
  ...(stepFields !== undefined ? { stepFields } : {})
})

/**
 * The Trainer methods every worker-backed adapter shares, one request at a time (`lock`): train and SFT through the
 * shared loop, save and load through the worker (`afterLoad`: what follows a load, e.g. the HF trainer's re-export).
 */
export const workerTrainerMethods = (o: {
  readonly worker: {
    readonly save: (path: string, policyVersion: number) => Effect.Effect<unknown, WorkerError>
    readonly load: (path: string) => Effect.Effect<typeof LoadReply.Type, WorkerError>
  }
  readonly version: Ref.Ref<number>
  readonly lock: Semaphore.Semaphore
  readonly events: Events["Service"]
  readonly loop: ReturnType<typeof trainingLoop>
  readonly checkpointFailure: (path: string, operation: "save" | "load") => (e: WorkerError) => CheckpointFailure
  readonly afterLoad?: (policyVersion: number) => Effect.Effect<unknown, WorkerError>
}): Pick<Trainer["Service"], "policyVersion" | "train" | "sft" | "save" | "load"> => ({
  policyVersion: Ref.get(o.version),
  train: (batch, overrides) => o.loop.train(batch, overrides).pipe(Semaphore.withPermit(o.lock)),
  sft: (batch) => o.loop.sft(batch).pipe(Semaphore.withPermit(o.lock)),
  save: (file) =>
    Effect.gen(function*() {
      const v = yield* Ref.get(o.version)
      yield* o.worker.save(file, v).pipe(Effect.mapError(o.checkpointFailure(file, "save")))
      yield* o.events.emit({ _tag: "checkpoint", path: file, policyVersion: v })
    }).pipe(Semaphore.withPermit(o.lock)),
  load: (file) =>
    Effect.gen(function*() {
      const r = yield* o.worker.load(file).pipe(Effect.mapError(o.checkpointFailure(file, "load")))
      yield* Ref.set(o.version, r.policyVersion)
      if (o.afterLoad !== undefined) yield* o.afterLoad(r.policyVersion).pipe(Effect.mapError(o.checkpointFailure(file, "load")))
    }).pipe(Semaphore.withPermit(o.lock))
})

/**
 * Starts the worker (scoped) and initializes it from an embedded checkpoint file (weights, and the
 * optimizer state when the file has one).
 */
export const openWorker = (
  checkpoint: string,
  options: PytorchWorkerOptions = {}
): Effect.Effect<PytorchWorker, WorkerError, Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const session = yield* spawnWorker({ ...options, script: options.script ?? defaultWorkerScript })
    const info = yield* session.request("init", {
      weights: checkpoint,
      device: options.device ?? "auto",
      adam: options.adam ?? defaultAdamW,
      pad: options.pad ?? padId,
      ...(options.threads !== undefined ? { threads: options.threads } : {})
    }, InitReply, { timeout: options.initTimeout ?? "2 minutes" })
    return {
      session,
      info,
      ...workerOps(session, inline),
      save: (file, policyVersion) => session.request("save", { path: file, policyVersion }, SaveReply),
      exportWeights: (file, policyVersion) => session.request("export", { path: file, policyVersion }, SaveReply)
    }
  })

// ---------------------------------------------------------------------------------------------------------------------
// The Trainer

export interface PytorchTrainerOptions extends PytorchWorkerOptions {
  /** initial weights: an embedded checkpoint (safetensors, src/model/checkpoint.ts); or give `initial` */
  readonly checkpoint?: string
  /** initial weights on the host (a run's cold start) */
  readonly initial?: InitialWeights
  readonly train?: Partial<PolicyTrainOptions>
  /** directory for weight-sync files (default: a fresh temporary directory, removed with the scope) */
  readonly scratchDir?: string
}

const adapter = "pytorch"

/** The formats the PyTorch trainer hands over (files the worker exports): embedded safetensors, or GGUF. */
export const formats: ReadonlyArray<WeightsFormat> = ["embedded", "gguf"]
const trainerFailure = workerFailure(adapter, "pytorch trainer")
const checkpointFailure = (file: string, operation: "save" | "load") => (e: WorkerError | Error) =>
  new CheckpointFailure({
    path: file,
    operation,
    message: `${operation === "save" ? "saving" : "loading"} checkpoint ${file} (pytorch worker): ${"_tag" in e ? `${e._tag}: ` : ""}${e.message}`
  })

/** The PyTorch Trainer as an effect (scoped: the worker lives until the scope closes). */
export const make = (
  options: PytorchTrainerOptions
): Effect.Effect<Trainer["Service"], WorkerError, Events | Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const events = yield* Events
    const given = options.initial
    const scratch = options.scratchDir ?? (yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "arpo-pytorch-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    ))
    let initial = options.checkpoint
    if (initial === undefined) {
      if (given === undefined) {
        return yield* Effect.die(new RangeError("layerPytorch: give a checkpoint path or initial weights"))
      }
      initial = path.join(scratch, "initial.safetensors")
      const file = initial
      yield* Effect.sync(() => writeCheckpoint(file, { config: given.config, policyVersion: given.version ?? 0, step: 0, params: given.params }))
    }
    const worker = yield* openWorker(initial, options)
    const version = yield* Ref.make(given?.version ?? worker.info.policyVersion)
    const lock = yield* Semaphore.make(1)
    const defaults: PolicyTrainOptions = { ...defaultTrainOptions, ...options.train }

    const name = `pytorch(${worker.info.device}, ${worker.info.params} params, torch ${worker.info.torch})`
    // exported weights: one file per export; the two newest are kept (an engine may still be loading the previous)
    const exported: Array<string> = []
    let exports = 0
    const keep = (file: string) =>
      Effect.sync(() => {
        exported.push(file)
        while (exported.length > 4) fs.rmSync(exported.shift()!, { force: true })
      })
    const bytesOf = (file: string) => fs.statSync(file).size
    /** The worker's current weights as a file of `format` (embedded safetensors, or GGUF converted from it). */
    const exportAs = (v: number, format: WeightsFormat): Effect.Effect<PolicyWeights, WorkerError | WeightsFormatUnsupported | Error> =>
      Effect.gen(function*() {
        if (format !== "embedded" && format !== "gguf") {
          return yield* new WeightsFormatUnsupported({ engine: "(asked)", accepts: [format], trainer: name, produces: [...formats] })
        }
        const n = exports++
        const file = path.join(scratch, `weights-v${v}-${n}.safetensors`)
        yield* worker.exportWeights(file, v)
        yield* keep(file)
        if (format === "embedded") return pathWeights(v, "embedded", file, bytesOf(file))
        const gguf = path.join(scratch, `weights-v${v}-${n}.gguf`)
        yield* Effect.try({
          try: () => {
            const ck = readCheckpoint(file)
            writeGguf(gguf, ck.config, ck.params)
          },
          catch: (e) => (e instanceof Error ? e : new Error(String(e)))
        })
        yield* keep(gguf)
        return pathWeights(v, "gguf", gguf, bytesOf(gguf))
      })
    const asTrainerFailure = (e: WorkerError | WeightsFormatUnsupported | Error): TrainerFailure | WeightsFormatUnsupported =>
      e instanceof WeightsFormatUnsupported
        ? e
        : new TrainerFailure({ adapter, message: `pytorch trainer: exporting weights: ${"_tag" in e ? `${String(e._tag)}: ` : ""}${e.message}` })
    const native = (v: number) =>
      exportAs(v, "embedded").pipe(Effect.mapError((e) => {
        const f = asTrainerFailure(e)
        return f instanceof WeightsFormatUnsupported ? new TrainerFailure({ adapter, message: f.message }) : f
      }))

    const loop = trainingLoop(workerBackend(worker, version, trainerFailure, native), events, defaults)

    return Trainer.of({
      name,
      formats,
      weights: (format = "embedded") =>
        Effect.flatMap(Ref.get(version), (v) => exportAs(v, format).pipe(Effect.mapError(asTrainerFailure))).pipe(Semaphore.withPermit(lock)),
      ...workerTrainerMethods({ worker, version, lock, events, loop, checkpointFailure })
    })
  })

/** The PyTorch Trainer as a layer (the worker is stopped when the layer's scope closes). */
export const layerPytorch = (
  options: PytorchTrainerOptions
): Layer.Layer<Trainer, WorkerError, Events | ChildProcessSpawner.ChildProcessSpawner> => Layer.effect(Trainer, make(options))

/**
 * A drop-in for a run's `Components.trainer` (src/experiment/resolve.ts): the worker starts from the run's initial
 * weights, with Node's process spawner; a worker that cannot start fails the run with its typed error.
 */
export const trainerOf = (options: Omit<PytorchTrainerOptions, "initial" | "checkpoint"> = {}) =>
  (initial: InitialWeights, train?: Partial<PolicyTrainOptions>): Layer.Layer<Trainer, WorkerError, Events> =>
    layerPytorch({ ...options, initial, ...(train !== undefined ? { train: { ...options.train, ...train } } : {}) }).pipe(
      Layer.provide(NodeServices.layer)
    )
