/**
 * The embedded Trainer adapter: PPO-family and SFT steps on the in-process jax-js policy (see
 * src/model/train.ts), checkpoints in safetensors layout, and `train.step` / `sft.step` / `checkpoint`
 * events. It owns its weights (a model `Policy` nobody else holds) and hands them over as PolicyWeights:
 * natively an in-process `embedded` handle (the embedded engine takes its own references: a load is a
 * version bump), or a GGUF file it exports for llama.cpp engines. With `workers: n > 1`, policy steps compute gradients data-parallel on the main thread and
 * n − 1 worker threads (scoped: closing the layer terminates them); SFT steps stay on the main thread.
 * With `kernels: "native"` the gradients come from the hand-written model of src/model/native/ instead of jax-js.
 */
import { Effect, Layer, type Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { type PolicyWeights, pathWeights, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import { defaultPolicyLossConfig } from "../core/loss.ts"
import { Events } from "../events/Events.ts"
import { readCheckpoint, writeCheckpoint } from "../model/checkpoint.ts"
import { GradPool } from "../model/parallel.ts"
import { disposeParams, specs, toDevice } from "../model/params.ts"
import { writeGguf } from "../model/gguf.ts"
import { Policy } from "../model/policy.ts"
import { ensureBackend } from "../model/runtime.ts"
import { padId } from "../model/tokenizer.ts"
import { type AdamWConfig, defaultAdamW, Learner, type TreePackingOptions } from "../model/train.ts"
import { embeddedWeights } from "../model/weightsHandle.ts"
import { NativeLearner } from "../model/native/learner.ts"
import {
  CheckpointFailure,
  type InitialWeights,
  type PolicyTrainOptions,
  Trainer,
  TrainerFailure
} from "./Trainer.ts"
import { trainingLoop } from "./loop.ts"

export interface EmbeddedTrainerOptions {
  readonly adam?: AdamWConfig
  readonly train?: Partial<PolicyTrainOptions>
  readonly pad?: number
  /**
   * Threads computing each policy step's gradients: the main thread plus `workers − 1` worker threads,
   * each with its own jax-js heap (default 1: no workers). Results equal the single-thread step up to
   * float rounding and are deterministic for a fixed count. Worth it on a machine with that many idle cores.
   */
  readonly workers?: number
  /**
   * Train each policy step on packed trees (docs/tree-packing.md): trajectories sharing a prefix are laid
   * out as one token trie with a tree attention mask, so a shared token is computed once forward and
   * backward. Same loss and gradient as unpacked up to float rounding. Default off.
   */
  readonly treePacking?: boolean | TreePackingOptions
  /**
   * Which kernels compute gradients: "jax" (jax-js's jit-compiled tape, the default) or "native" (the
   * hand-written forward and backward of src/model/native/, docs/native-trainer.md; equal up to float
   * rounding; with `treePacking` and with `workers` > 1 too, each worker running its own native model).
   */
  readonly kernels?: "jax" | "native"
  /** where GGUF exports are written (default: a private temporary directory removed with the scope) */
  readonly exportDir?: string
}

export const defaultTrainOptions: PolicyTrainOptions = {
  loss: defaultPolicyLossConfig,
  epochs: 1,
  miniBatches: 1,
  microBatchRows: 16,
  maxPolicyLag: 1
}

const adapter = "embedded"
const fail = (e: unknown) => new TrainerFailure({ adapter, message: `embedded trainer: ${e instanceof Error ? e.message : String(e)}` })

/** The formats the embedded trainer hands over: its in-process handle, or a GGUF export. */
export const formats: ReadonlyArray<WeightsFormat> = ["embedded", "gguf"]

/**
 * The trainer over `initial` weights: host tensors (copied to the device here), or a model `Policy` that
 * the caller gives up (the trainer updates it in place; nothing else may sample from it).
 */
export const make = (initial: Policy | InitialWeights, options: EmbeddedTrainerOptions = {}): Effect.Effect<Trainer["Service"], never, Events | Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.promise(ensureBackend)
    const policy = initial instanceof Policy ? initial : Policy.fromHost(initial.config, initial.params, initial.version ?? 0)
    // weights it uploaded itself are its own to free (an engine that loaded them holds its own references)
    if (!(initial instanceof Policy)) yield* Effect.addFinalizer(() => Effect.sync(() => disposeParams(policy.params)))
    const events = yield* Events
    const native = options.kernels === "native"
    const learner: Learner | NativeLearner = native ? new NativeLearner(policy, options.adam ?? defaultAdamW) : new Learner(policy, options.adam ?? defaultAdamW)
    yield* Effect.addFinalizer(() => Effect.sync(() => learner.dispose()))
    const workers = Math.max(1, Math.floor(options.workers ?? 1))
    const pool = workers > 1
      ? yield* Effect.acquireRelease(
        Effect.sync(() => GradPool.start(policy.config, policy.dtype, workers - 1, native ? "native" : "jax")),
        (p) => Effect.promise(() => p.terminate())
      )
      : undefined
    const defaults: PolicyTrainOptions = { ...defaultTrainOptions, ...options.train }
    const pad = options.pad ?? padId
    const trees = options.treePacking === true ? {} : options.treePacking || undefined
    const name = `embedded(${policy.config.layers}x${policy.config.dModel})`
    const handle = () => embeddedWeights(policy.version, { config: policy.config, dtype: policy.dtype, params: policy.params })

    // GGUF exports: one file per version in a private directory; a file is kept until the next-but-one
    // export, so an engine still loading the previous version finds it
    let exportDir = options.exportDir
    const exported: Array<string> = []
    let exports = 0
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (options.exportDir === undefined && exportDir !== undefined) fs.rmSync(exportDir, { recursive: true, force: true })
      })
    )
    const exportGguf = Effect.try({
      try: (): PolicyWeights => {
        if (exportDir === undefined) exportDir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-weights-"))
        else fs.mkdirSync(exportDir, { recursive: true })
        const file = NodePath.join(exportDir, `policy-v${policy.version}-${exports++}.gguf`)
        writeGguf(file, policy.config, policy.toHost())
        exported.push(file)
        while (exported.length > 2) fs.rmSync(exported.shift()!, { force: true })
        return pathWeights(policy.version, "gguf", file, fs.statSync(file).size)
      },
      catch: (e) => new TrainerFailure({ adapter, message: `embedded trainer: exporting GGUF weights: ${e instanceof Error ? e.message : String(e)}` })
    })
    const weights = (format: WeightsFormat = "embedded"): Effect.Effect<PolicyWeights, TrainerFailure | WeightsFormatUnsupported> =>
      format === "embedded"
        ? Effect.sync(handle)
        : format === "gguf"
        ? exportGguf
        : Effect.fail(new WeightsFormatUnsupported({ engine: "(asked)", accepts: [format], trainer: name, produces: [...formats] }))

    const loop = trainingLoop({
      fail,
      version: Effect.sync(() => policy.version),
      setVersion: (v) => Effect.sync(() => policy.setVersion(v)),
      logprobs: (sequences, microBatchRows) => Effect.try({ try: () => learner.logprobs(sequences, microBatchRows, pad), catch: fail }),
      policyStep: (mini, loss, norm, microBatchRows) =>
        pool
          ? Effect.tryPromise({ try: () => learner.policyStepParallel(pool, mini, loss, norm, microBatchRows, pad, trees), catch: fail })
          : Effect.try({ try: () => learner.policyStep(mini, loss, norm, microBatchRows, pad, trees), catch: fail }),
      sftStep: (batch, microBatchRows) => Effect.try({ try: () => learner.sftStep(batch.sequences, microBatchRows, pad), catch: fail }),
      weightsAt: () => Effect.sync(handle)
    }, events, defaults)

    return Trainer.of({
      name,
      policyVersion: Effect.sync(() => policy.version),
      formats,
      weights,
      train: loop.train,
      sft: loop.sft,
      save: (file) =>
        Effect.gen(function*() {
          yield* Effect.try({
            try: () => {
              const names = specs(policy.config)
              const st = learner.optimizerState()
              const named = (xs: ReadonlyArray<Float32Array | Float64Array>) => xs.map((data, i) => ({ name: names[i]!.name, shape: names[i]!.shape, data }))
              writeCheckpoint(file, { config: policy.config, policyVersion: policy.version, step: st.step, params: policy.toHost(), optimizer: { m: named(st.m), v: named(st.v) } })
            },
            catch: (e) => new CheckpointFailure({ path: file, operation: "save", message: `saving checkpoint ${file}: ${e instanceof Error ? e.message : String(e)}` })
          })
          yield* events.emit({ _tag: "checkpoint", path: file, policyVersion: policy.version })
        }),
      load: (file) =>
        Effect.try({
          try: () => {
            const ck = readCheckpoint(file)
            if (JSON.stringify(ck.config) !== JSON.stringify(policy.config)) {
              throw new RangeError(`its model config ${JSON.stringify(ck.config)} differs from the running one ${JSON.stringify(policy.config)}`)
            }
            policy.replace(toDevice(policy.config, ck.params, policy.dtype))
            policy.setVersion(ck.policyVersion)
            if (ck.optimizer) learner.setOptimizerState(ck.step, ck.optimizer.m.map((t) => t.data), ck.optimizer.v.map((t) => t.data))
            else learner.resetOptimizer()
          },
          catch: (e) => new CheckpointFailure({ path: file, operation: "load", message: `loading checkpoint ${file}: ${e instanceof Error ? e.message : String(e)}` })
        })
    })
  })

/** The embedded Trainer as a layer (requires Events). */
export const layerEmbedded = (initial: Policy | InitialWeights, options: EmbeddedTrainerOptions = {}): Layer.Layer<Trainer, never, Events> =>
  Layer.effect(Trainer, make(initial, options))
