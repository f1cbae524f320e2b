/**
 * Sampling on several threads: the main thread's Generator plus `threads − 1` worker threads
 * (samplerWorker.ts), each with its own copy of the policy, KV cache and prefix cache. A call's
 * requests are split over the threads: a request whose context extends what one thread holds (a branch
 * of a sequence it sampled, or of another request of this call it got) goes to that thread, so the
 * shared prefix is reused there, unless that thread already has its share (⌈n / threads⌉) of the call;
 * the others go to the least-loaded thread. Results come back in request order and, since every token
 * is drawn from uniform(request.key, i), the same requests give the same tokens as one thread (their
 * log-probs differ by float rounding only). Routing is deterministic. Weights go to a worker only when
 * they changed since its last request. Engine "native" samples with the native model's generator
 * (native/generator.ts) on every thread instead of jax-js's (with its own prefix cache per thread, routed
 * the same way). It does not train; scoring stays on the main thread.
 */
import { Worker } from "node:worker_threads"
import { checkRequests, type GenRequest, type GenResult, Generator, type GeneratorOptions, type GenStats } from "./generate.ts"
import { NativeGenerator } from "./native/generator.ts"
import type { Policy } from "./policy.ts"
import { PrefixCache } from "./prefix.ts"

/** Which model samples: jax-js's Generator (generate.ts) or the native model's (native/generator.ts). */
export type SamplerEngine = "jax" | "native"

export interface SampleRequest {
  readonly id: number
  readonly requests: ReadonlyArray<GenRequest>
  /** the current weights in checkpoint order, when they changed since this worker's last request */
  readonly weights?: ReadonlyArray<Float32Array | Float64Array>
}

export type SampleReply =
  | { readonly id: number; readonly ok: true; readonly results: Array<GenResult>; readonly stats: GenStats }
  | { readonly id: number; readonly ok: false; readonly message: string }

/** The worker entry next to this module: .ts from source (Node's type stripping), .js from a build. */
const workerUrl = new URL(import.meta.url.endsWith(".ts") ? "./samplerWorker.ts" : "./samplerWorker.js", import.meta.url)

interface WorkerSlot {
  readonly worker: Worker
  /** policy generation whose weights this worker holds (-1: none yet) */
  generation: number
  pending: Map<number, { resolve: (r: Extract<SampleReply, { ok: true }>) => void; reject: (e: Error) => void }>
  failed?: Error
}

const lcp = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

/**
 * Which thread serves each request: the thread holding the longest reusable prefix (≥ `minReuse`, from
 * `held[t]`, what thread t sampled before, or from requests of this call already given to t) while it
 * is under its share ⌈n / threads⌉, else the least-loaded thread (lowest index on ties).
 */
export const routeRequests = (
  requests: ReadonlyArray<{ readonly tokens: ReadonlyArray<number> }>,
  held: ReadonlyArray<{ peek(tokens: ArrayLike<number>): number }>,
  minReuse: number
): Int32Array => {
  const threads = held.length
  const share = Math.ceil(requests.length / threads)
  const load = new Int32Array(threads)
  const route = new Int32Array(requests.length)
  const given: Array<Array<ReadonlyArray<number>>> = held.map(() => [])
  requests.forEach((r, i) => {
    const usable = r.tokens.length - 1
    let best = -1
    let bestLen = 0
    for (let t = 0; t < threads; t++) {
      if (load[t]! >= share) continue
      let l = Math.min(held[t]!.peek(r.tokens), usable)
      for (const g of given[t]!) l = Math.max(l, Math.min(lcp(r.tokens, g), usable, g.length - 1))
      if (l > bestLen) {
        bestLen = l
        best = t
      }
    }
    if (best < 0 || bestLen < minReuse) {
      best = 0
      for (let t = 1; t < threads; t++) if (load[t]! < load[best]!) best = t
    }
    route[i] = best
    load[best]! += 1
    given[best]!.push(r.tokens)
  })
  return route
}

/** The main thread's Generator and `threads − 1` sampling workers; `dispose` releases all (idempotent). */
export class SamplerPool {
  readonly local: Generator | NativeGenerator
  private readonly source: Policy
  private readonly slots: Array<WorkerSlot>
  /** per thread, the token sequences it holds KV for (a mirror of its prefix cache, tokens only) */
  private readonly held: Array<PrefixCache>
  private heldGeneration: number
  private nextId = 0
  private closed = false

  private constructor(local: Generator | NativeGenerator, source: Policy, slots: Array<WorkerSlot>) {
    this.local = local
    this.source = source
    this.slots = slots
    this.held = Array.from({ length: slots.length + 1 }, () => new PrefixCache(local.options.prefixCacheTokens))
    this.heldGeneration = source.generation
  }

  /** A pool over `policy` with `threads` threads in all (1: the main thread alone, no worker). */
  static start(policy: Policy, options: GeneratorOptions, threads = 1, engine: SamplerEngine = "jax"): SamplerPool {
    const local = engine === "native" ? new NativeGenerator(policy, options) : new Generator(policy, options)
    const slots = Array.from({ length: Math.max(0, Math.floor(threads) - 1) }, (): WorkerSlot => {
      const worker = new Worker(workerUrl, { workerData: { config: policy.config, dtype: policy.dtype, options, engine } })
      const slot: WorkerSlot = { worker, generation: -1, pending: new Map() }
      const failAll = (e: Error) => {
        slot.failed ??= e
        for (const p of slot.pending.values()) p.reject(e)
        slot.pending.clear()
      }
      worker.on("message", (r: SampleReply) => {
        const p = slot.pending.get(r.id)
        if (!p) return
        slot.pending.delete(r.id)
        if (r.ok) p.resolve(r)
        else p.reject(new Error(`sampler worker: ${r.message}`))
      })
      worker.on("error", (e) => failAll(e instanceof Error ? e : new Error(String(e))))
      worker.on("exit", (code) => failAll(new Error(`sampler worker exited (code ${code})`)))
      return slot
    })
    return new SamplerPool(local, policy, slots)
  }

  get threads(): number {
    return this.slots.length + 1
  }

  get policy(): Policy {
    return this.source
  }

  private send(w: number, requests: ReadonlyArray<GenRequest>, weights: () => ReadonlyArray<Float32Array | Float64Array>): Promise<Extract<SampleReply, { ok: true }>> {
    const slot = this.slots[w]!
    if (slot.failed) return Promise.reject(slot.failed)
    const id = this.nextId++
    const gen = this.source.generation
    const req: SampleRequest = slot.generation !== gen ? { id, requests, weights: weights() } : { id, requests }
    slot.generation = gen
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject })
      slot.worker.postMessage(req)
    })
  }

  /** Generates on all threads at once; the same requests give the same tokens for any thread count. */
  async generate(requests: ReadonlyArray<GenRequest>): Promise<{ results: Array<GenResult>; stats: GenStats }> {
    if (this.closed) throw new Error("sampler pool: already disposed")
    if (this.slots.length === 0) return this.local.generate(requests)
    const policy = this.source
    checkRequests(policy.config, requests)
    if (this.heldGeneration !== policy.generation) {
      for (const h of this.held) h.clear()
      this.heldGeneration = policy.generation
    }
    const o = this.local.options
    const prefixes = o.prefixCacheTokens > 0
    const route = prefixes
      ? routeRequests(requests, this.held, o.minReuse)
      : routeRequests(requests, this.held.map(() => ({ peek: () => 0 })), o.minReuse)
    const parts = this.held.map((_, t) => [...route.keys()].filter((i) => route[i] === t))
    let host: ReadonlyArray<Float32Array | Float64Array> | undefined
    const weights = () => (host ??= policy.toHost().map((x) => x.data))
    const remote = this.slots.map((_, w) =>
      parts[w + 1]!.length > 0 ? this.send(w, parts[w + 1]!.map((i) => requests[i]!), weights) : undefined
    )
    // the main thread's share runs while the workers run theirs
    let mine: { results: Array<GenResult>; stats: GenStats } | undefined
    let failure: unknown
    try {
      mine = parts[0]!.length > 0 ? this.local.generate(parts[0]!.map((i) => requests[i]!)) : undefined
    } catch (e) {
      failure = e
    }
    const settled = await Promise.allSettled(remote.map((p) => p ?? Promise.resolve(undefined)))
    if (failure !== undefined) throw failure
    const bad = settled.find((s) => s.status === "rejected")
    if (bad) throw (bad as PromiseRejectedResult).reason
    const shares = [mine, ...settled.map((s) => (s as PromiseFulfilledResult<Extract<SampleReply, { ok: true }> | undefined>).value)]
    const results: Array<GenResult> = new Array(requests.length)
    const stats: GenStats = { sequences: requests.length, newTokens: 0, computedTokens: 0, reusedTokens: 0 }
    shares.forEach((share, t) => {
      if (share === undefined) return
      parts[t]!.forEach((i, k) => {
        const r = share.results[k]!
        results[i] = r
        if (prefixes) {
          const all = [...requests[i]!.tokens, ...r.tokens]
          if (all.length - 1 >= o.minReuse) this.held[t]!.insert(Int32Array.from(all.slice(0, all.length - 1)), [], [])
        }
      })
      stats.newTokens += share.stats.newTokens
      stats.computedTokens += share.stats.computedTokens
      stats.reusedTokens += share.stats.reusedTokens
    })
    return { results, stats }
  }

  /** Per-token log-probs and entropies of whole sequences (main thread). */
  score(sequences: ReadonlyArray<ReadonlyArray<number>>): ReturnType<Generator["score"]> {
    return this.local.score(sequences)
  }

  async dispose(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.local.dispose()
    await Promise.all(this.slots.map((s) => s.worker.terminate()))
  }
}
