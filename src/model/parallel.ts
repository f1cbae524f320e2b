/**
 * Data-parallel training helpers: a pool of worker threads (gradWorker.ts), each with its own heap and a
 * copy of the policy, that compute gradients of their share of a step's micro-batches while the main
 * thread computes its own, with jax-js's tape (`Learner`) or the native model (`NativeLearner`, kernels
 * "native"); the learner sums the shares in a fixed order (main, then worker 1, 2, …), so a step is
 * deterministic for a fixed worker count and equals the single-thread step up to float rounding.
 * Weights go to a worker only when they changed since its last request.
 * It does not apply updates (the learner on the main thread owns the optimizer).
 */
import { Worker } from "node:worker_threads"
import type { PolicyLossConfig } from "../core/loss.ts"
import type { ModelConfig } from "./config.ts"
import type { DTypeName } from "./params.ts"
import type { NativeLearner, NativeValueAndGrad } from "./native/learner.ts"
import type { AnyMicroBatch } from "./train.ts"

/** Which model computes a worker's gradients: jax-js's tape (train.ts) or the native model (native/learner.ts). */
export type GradKernels = "jax" | "native"

export interface GradRequest {
  readonly id: number
  readonly objective: PolicyLossConfig | "sft"
  readonly mbs: ReadonlyArray<AnyMicroBatch>
  /** the current weights in checkpoint order, when they changed since this worker's last request */
  readonly weights?: ReadonlyArray<Float32Array | Float64Array>
}

export type GradReply =
  | {
    readonly id: number
    readonly ok: true
    readonly value: number
    readonly grad: Array<Float32Array | Float64Array>
    readonly logp: Array<Float32Array | Float64Array>
    readonly entropy: Array<Float32Array | Float64Array>
    readonly clipActive: Array<Float32Array | Float64Array>
  }
  | { readonly id: number; readonly ok: false; readonly message: string }

export type GradShare = Extract<GradReply, { ok: true }>

/** The worker entry next to this module: .ts from source (Node's type stripping), .js from a build. */
const workerUrl = new URL(import.meta.url.endsWith(".ts") ? "./gradWorker.ts" : "./gradWorker.js", import.meta.url)

interface Slot {
  readonly worker: Worker
  /** policy generation whose weights this worker holds (-1: none yet) */
  generation: number
  pending: Map<number, { resolve: (r: GradShare) => void; reject: (e: Error) => void }>
  failed?: Error
}

/** Worker threads for data-parallel gradients; `terminate` releases them (idempotent). */
export class GradPool {
  private readonly slots: Array<Slot>
  readonly kernels: GradKernels
  private nextId = 0
  private closed = false

  private constructor(slots: Array<Slot>, kernels: GradKernels) {
    this.slots = slots
    this.kernels = kernels
  }

  /** Starts `count` workers for a model (each builds its policy on its first request). */
  static start(config: ModelConfig, dtype: DTypeName, count: number, kernels: GradKernels = "jax"): GradPool {
    const slots = Array.from({ length: count }, (): Slot => {
      const worker = new Worker(workerUrl, { workerData: { config, dtype, kernels } })
      const slot: Slot = { worker, generation: -1, pending: new Map() }
      const failAll = (e: Error) => {
        slot.failed ??= e
        for (const p of slot.pending.values()) p.reject(e)
        slot.pending.clear()
      }
      worker.on("message", (r: GradReply) => {
        const p = slot.pending.get(r.id)
        if (!p) return
        slot.pending.delete(r.id)
        if (r.ok) p.resolve(r)
        else p.reject(new Error(`grad worker: ${r.message}`))
      })
      worker.on("error", (e) => failAll(e instanceof Error ? e : new Error(String(e))))
      worker.on("exit", (code) => failAll(new Error(`grad worker exited (code ${code})`)))
      return slot
    })
    return new GradPool(slots, kernels)
  }

  get size(): number {
    return this.slots.length
  }

  /**
   * Gradient of `mbs` on worker `w`; `weights()` is called only when the worker's copy is older than
   * `generation`.
   */
  request(
    w: number,
    objective: PolicyLossConfig | "sft",
    mbs: ReadonlyArray<AnyMicroBatch>,
    generation: number,
    weights: () => ReadonlyArray<Float32Array | Float64Array>
  ): Promise<GradShare> {
    const slot = this.slots[w]!
    if (this.closed) return Promise.reject(new Error("grad pool: already terminated"))
    if (slot.failed) return Promise.reject(slot.failed)
    const id = this.nextId++
    const send = slot.generation !== generation
    const req: GradRequest = send ? { id, objective, mbs, weights: weights() } : { id, objective, mbs }
    slot.generation = generation
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject })
      slot.worker.postMessage(req)
    })
  }

  async terminate(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.all(this.slots.map((s) => s.worker.terminate()))
  }
}

/**
 * `NativeLearner.valueAndGrad` split across the main thread and a pool started with kernels "native":
 * contiguous shares of the micro-batches (the first on the main thread), computed at the same time and
 * summed in order into the learner's gradient buffers (the result's `grad`, valid until its next call).
 */
export const nativeValueAndGradParallel = async (
  learner: NativeLearner,
  pool: GradPool,
  objective: PolicyLossConfig | "sft",
  mbs: ReadonlyArray<AnyMicroBatch>
): Promise<NativeValueAndGrad> => {
  if (pool.kernels !== "native") throw new Error("grad pool: the native learner needs a pool started with kernels \"native\"")
  const per = Math.ceil(mbs.length / (pool.size + 1))
  // copies: a view on the learner's wasm heap would be cloned with the whole heap behind it
  const weights = () => learner.hostWeights().map((a) => Float32Array.from(a))
  const gen = learner.policy.generation
  const shares: Array<Promise<GradShare>> = []
  for (let w = 0; w < pool.size; w++) {
    const share = mbs.slice((w + 1) * per, (w + 2) * per)
    if (share.length > 0) shares.push(pool.request(w, objective, share, gen, weights))
  }
  const mine = learner.valueAndGrad(objective, mbs.slice(0, per))
  const others = await Promise.all(shares)
  let value = mine.value
  const logp = [...mine.logp]
  const entropy = [...mine.entropy]
  const clipActive = [...mine.clipActive]
  for (const o of others) {
    mine.grad.forEach((g, i) => {
      const d = o.grad[i]!
      for (let j = 0; j < g.length; j++) g[j] = g[j]! + d[j]!
    })
    value += o.value
    logp.push(...(o.logp as Array<Float32Array>))
    entropy.push(...(o.entropy as Array<Float32Array>))
    clipActive.push(...(o.clipActive as Array<Float32Array>))
  }
  return { value, grad: mine.grad, logp, entropy, clipActive }
}
