/**
 * Data-parallel training helpers: a pool of worker threads (gradWorker.ts), each with its own jax-js
 * heap and a copy of the policy, that compute gradients of their share of a step's micro-batches while
 * the main thread computes its own; the Learner sums the shares in a fixed order (main, then worker 1,
 * 2, …), so a step is deterministic for a fixed worker count and equals the single-thread step up to
 * float rounding. Weights go to a worker only when they changed since its last request.
 * It does not apply updates (the Learner on the main thread owns the optimizer).
 */
import { Worker } from "node:worker_threads"
import type { PolicyLossConfig } from "../core/loss.ts"
import type { ModelConfig } from "./config.ts"
import type { DTypeName } from "./params.ts"
import type { AnyMicroBatch } from "./train.ts"

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
  private nextId = 0
  private closed = false

  private constructor(slots: Array<Slot>) {
    this.slots = slots
  }

  /** Starts `count` workers for a model (each builds its policy on its first request). */
  static start(config: ModelConfig, dtype: DTypeName, count: number): GradPool {
    const slots = Array.from({ length: count }, (): Slot => {
      const worker = new Worker(workerUrl, { workerData: { config, dtype } })
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
    return new GradPool(slots)
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
