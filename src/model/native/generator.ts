/**
 * `NativeGenerator`: the embedded policy's sampler (generate.ts's `Generator` contract: generate, score,
 * dispose; the same requests, results, stats, stop tokens, EOS, maxTokens, temperature / top-p draws from
 * uniform(key, i) by sample.ts, exact entropies, top-k log-probs on request) on the native model of
 * decode.ts instead of jax-js. Per wave of up to `maxSlots` requests: leaders prefill their context
 * (all slots' tokens packed end to end, PREFILL tokens per call), followers copy the longest context prefix
 * they share with an earlier leader of the wave and prefill the rest, then one decode step feeds every live
 * slot's last token. Its weights are read from its `WeightSource` (a `Policy`, or a worker's host copy)
 * whenever the source's generation changes, into one wasm heap that grows when a call needs more room.
 * Across calls a host prefix cache (prefix.ts; entries hold each layer's keys and values as [tokens, d])
 * keeps every sampled row's KV, so a later request extending it (an ARPO branch) copies that prefix
 * instead of recomputing it, as generate.ts does; it is dropped on every weight change. It computes in
 * float32 only (a float64 source is a typed error) and is not thread-safe (one per thread).
 */
import { Schema } from "effect"
import type { ModelConfig } from "../config.ts"
import { checkRequests, ContextTooLong, inWaves, type GenRequest, type GenResult, type GeneratorOptions, type GenStats, slotOutputs, takeToken } from "../generate.ts"
import type { DTypeName, HostTensor } from "../params.ts"
import { PrefixCache } from "../prefix.ts"
import { logSumExp } from "../sample.ts"
import { heapBackend, type NativeBackend } from "./backend.ts"
import { copyPrefix, type DecodeWeights, decodeWeightFloats, decodeWeightsOf, feed, feedFloats, kvCache, kvCacheFloats } from "./decode.ts"
import { attentionKernelsFor, type AttentionKernels } from "./decodeKernels.ts"
import { Heap } from "./heap.ts"
import { nativeWeights, type Rope, ropeOf } from "./model.ts"

/** A source the native generator cannot serve (float64 weights). */
export class NativeSamplerUnsupported extends Schema.TaggedError<NativeSamplerUnsupported>()("NativeSamplerUnsupported", {
  feature: Schema.String,
  message: Schema.String
}) {}

/** Where the weights come from: a model `Policy` satisfies it; `generation` changes on every weight replacement. */
export interface WeightSource {
  readonly config: ModelConfig
  readonly dtype: DTypeName
  readonly generation: number
  toHost(): ReadonlyArray<HostTensor>
}

/** most tokens one prefill `feed` runs (bounds its scratch) */
const PREFILL = 256
/** heap bytes beyond what a call's buffers need: the matmul's packing scratch (≤ 1.5 MiB) and alignment */
const SLACK_BYTES = 4 << 20

const lcp = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

export class NativeGenerator {
  readonly policy: WeightSource
  readonly options: GeneratorOptions
  /** KV of earlier calls' rows, per layer [tokens, d] (cleared on every weight change) */
  readonly prefix: PrefixCache
  private prefixVersion: number
  private readonly rope: Rope
  private heap: Heap | undefined
  private backend: NativeBackend | undefined
  private kernels: AttentionKernels | undefined
  private weights: DecodeWeights | undefined
  /** the source generation the heap's weights were read from */
  private loaded = -1
  /** floats of scratch the current heap holds beyond its weights */
  private scratch = 0

  constructor(policy: WeightSource, options: GeneratorOptions) {
    if (policy.dtype !== "float32") {
      throw new NativeSamplerUnsupported({ feature: "float64", message: `native generator: the policy is ${policy.dtype}; the native model computes in float32 only` })
    }
    this.policy = policy
    this.options = options
    this.rope = ropeOf(policy.config)
    this.prefix = new PrefixCache(options.prefixCacheTokens)
    this.prefixVersion = policy.generation
  }

  /** The heap with the current weights and at least `floats` floats of scratch free above them. */
  private ready(floats: number): { backend: NativeBackend; weights: DecodeWeights } {
    const c = this.policy.config
    if (this.heap === undefined || floats > this.scratch) {
      this.scratch = Math.max(floats, Math.ceil(this.scratch * 1.25))
      this.heap = Heap.create((decodeWeightFloats(c) + 64 * (4 + 6 * c.layers) + this.scratch) * 4 + SLACK_BYTES)
      this.backend = heapBackend(this.heap)
      this.kernels = attentionKernelsFor(this.heap.memory)
      this.loaded = -1
    }
    if (this.loaded !== this.policy.generation) {
      const heap = this.heap
      heap.reset()
      const host = this.policy.toHost()
      const leaves = host.map((t) => (t.data instanceof Float32Array ? t.data : Float32Array.from(t.data)))
      this.weights = decodeWeightsOf(c, (n) => heap.allocUninit(n), nativeWeights(c, leaves))
      this.loaded = this.policy.generation
    }
    return { backend: this.backend!, weights: this.weights! }
  }

  generate(requests: ReadonlyArray<GenRequest>): { results: Array<GenResult>; stats: GenStats } {
    checkRequests(this.policy.config, requests)
    if (this.policy.generation !== this.prefixVersion) {
      this.prefix.clear()
      this.prefixVersion = this.policy.generation
    }
    return inWaves(requests, this.options.maxSlots, (reqs, stats) => this.wave(reqs, stats))
  }

  private wave(reqs: ReadonlyArray<GenRequest>, stats: GenStats): Array<GenResult> {
    const c = this.policy.config
    const o = this.options
    const S = c.context
    const V = c.vocab
    const n = reqs.length
    const len = reqs.map((r) => r.tokens.length)
    // positions a slot can use: its context, then one per new token but the last (never fed)
    const Lc = Math.min(S, Math.max(...reqs.map((r, i) => len[i]! + Math.max(0, r.maxTokens))))
    const { backend, weights } = this.ready(kvCacheFloats(c, n, Lc) + feedFloats(c, Math.max(PREFILL, n), n) + 64 * 16)
    return backend.scoped(() => {
      const cache = kvCache(c, backend.alloc, n, Lc)
      // ---- plan: a request reuses the longest context prefix (≥ minReuse) held by the prefix cache or
      // shared with an earlier leader of this wave (a follower copies it after the leaders' prefill)
      const start = new Int32Array(n)
      const source = new Int32Array(n).fill(-1)
      const d = c.dModel
      for (let i = 0; i < n; i++) {
        const toks = reqs[i]!.tokens
        const hit = o.prefixCacheTokens > 0 ? this.prefix.lookup(toks, o.minReuse) : undefined
        const fromCache = hit ? Math.min(hit.length, len[i]! - 1) : 0
        let best = 0
        let bestJ = -1
        for (let j = 0; j < i; j++) {
          if (source[j] !== -1) continue
          const l = Math.min(lcp(toks, reqs[j]!.tokens), len[i]! - 1, len[j]! - 1)
          if (l > best) {
            best = l
            bestJ = j
          }
        }
        if (bestJ >= 0 && best > fromCache && best >= o.minReuse) {
          source[i] = bestJ
          start[i] = best
          stats.reusedTokens += best
        } else if (hit !== undefined && fromCache > 0) {
          start[i] = fromCache
          stats.reusedTokens += fromCache
          for (let l = 0; l < c.layers; l++) {
            cache.k[l]!.set(hit.entry.k[l]!.subarray(0, fromCache * d), i * Lc * d)
            cache.v[l]!.set(hit.entry.v[l]!.subarray(0, fromCache * d), i * Lc * d)
          }
        }
      }
      // ---- prefill positions [start, len − 1) of the given slots, PREFILL tokens per call
      const prefill = (rows: ReadonlyArray<number>) => {
        const toks: Array<number> = []
        const sl: Array<number> = []
        const ps: Array<number> = []
        for (const i of rows) {
          for (let p = start[i]!; p < len[i]! - 1; p++) {
            toks.push(reqs[i]!.tokens[p]!)
            sl.push(i)
            ps.push(p)
          }
        }
        stats.computedTokens += toks.length
        for (let a = 0; a < toks.length; a += PREFILL) {
          const b = Math.min(toks.length, a + PREFILL)
          backend.scoped(() =>
            feed(c, backend, weights, this.rope, cache, Int32Array.from(toks.slice(a, b)), Int32Array.from(sl.slice(a, b)), Int32Array.from(ps.slice(a, b)), new Int32Array(0), this.kernels)
          )
        }
      }
      const all = [...Array(n).keys()]
      prefill(all.filter((i) => source[i] === -1))
      const followers = all.filter((i) => source[i] !== -1)
      for (const i of followers) copyPrefix(c, cache, source[i]!, i, start[i]!)
      prefill(followers)

      // ---- decode: each live slot feeds its last token at position len − 1 + (tokens generated so far)
      const out = slotOutputs(reqs)
      const finish: Array<GenResult["finish"] | undefined> = reqs.map((r) => (r.maxTokens <= 0 ? "length" : undefined))
      const stopToken: Array<number | undefined> = []
      const cur = Int32Array.from(reqs, (r, i) => r.tokens[len[i]! - 1]!)
      for (;;) {
        const active = all.filter((i) => finish[i] === undefined)
        if (active.length === 0) break
        const N = active.length
        const toks = Int32Array.from(active, (i) => cur[i]!)
        const sl = Int32Array.from(active)
        const ps = Int32Array.from(active, (i) => len[i]! - 1 + out[i]!.tokens.length)
        backend.scoped(() => {
          const logits = feed(c, backend, weights, this.rope, cache, toks, sl, ps, Int32Array.from({ length: N }, (_, r) => r), this.kernels)
          active.forEach((i, r) => {
            const g = out[i]!
            const end = takeToken(logits, r * V, V, reqs[i]!, g, stats, o.eos, len[i]!, S)
            if (end !== undefined) {
              finish[i] = end.finish
              stopToken[i] = end.stopToken
            }
            cur[i] = g.tokens[g.tokens.length - 1]!
          })
        })
      }
      // ---- keep every row's KV for later requests that share its prefix: positions < len − 1 + new
      // tokens were fed (the last sampled token never was)
      if (o.prefixCacheTokens > 0) {
        for (let i = 0; i < n; i++) {
          const valid = len[i]! - 1 + out[i]!.tokens.length
          if (valid < o.minReuse) continue
          const keep = (a: Float32Array) => a.slice(i * Lc * d, (i * Lc + valid) * d)
          this.prefix.insert(Int32Array.from([...reqs[i]!.tokens, ...out[i]!.tokens].slice(0, valid)), cache.k.map(keep), cache.v.map(keep))
        }
      }
      return reqs.map((_, i) => {
        const base = { ...out[i]!, finish: finish[i]! }
        return stopToken[i] !== undefined ? { ...base, stopToken: stopToken[i]! } : base
      })
    })
  }

  /** Per-token log-probs and entropies (entry 0 is 0) of whole sequences, teacher-forced. */
  score(sequences: ReadonlyArray<ReadonlyArray<number>>): Array<{ logprobs: Float64Array; entropies: Float64Array }> {
    const c = this.policy.config
    const V = c.vocab
    for (const s of sequences) {
      if (s.length > c.context) throw new ContextTooLong(s.length, c.context)
      for (const t of s) if (!Number.isInteger(t) || t < 0 || t >= V) throw new RangeError(`score: token id ${t} is outside the vocabulary (${V})`)
    }
    const out: Array<{ logprobs: Float64Array; entropies: Float64Array }> = []
    const rows = Math.max(1, this.options.scoreRows)
    for (let i0 = 0; i0 < sequences.length; i0 += rows) {
      const group = sequences.slice(i0, i0 + rows)
      const L = Math.max(1, ...group.map((s) => s.length))
      const { backend, weights } = this.ready(kvCacheFloats(c, group.length, L) + feedFloats(c, PREFILL, PREFILL) + 64 * 16)
      backend.scoped(() => {
        const cache = kvCache(c, backend.alloc, group.length, L)
        // every token but each sequence's last, whose logits predict the next one
        const toks: Array<number> = []
        const sl: Array<number> = []
        const ps: Array<number> = []
        group.forEach((s, b) => {
          for (let p = 0; p < s.length - 1; p++) {
            toks.push(s[p]!)
            sl.push(b)
            ps.push(p)
          }
        })
        const res = group.map((s) => ({ logprobs: new Float64Array(s.length), entropies: new Float64Array(s.length) }))
        for (let a = 0; a < toks.length; a += PREFILL) {
          const e = Math.min(toks.length, a + PREFILL)
          backend.scoped(() => {
            const logits = feed(c, backend, weights, this.rope, cache, Int32Array.from(toks.slice(a, e)), Int32Array.from(sl.slice(a, e)), Int32Array.from(ps.slice(a, e)), Int32Array.from({ length: e - a }, (_, r) => r), this.kernels)
            for (let r = 0; r < e - a; r++) {
              const b = sl[a + r]!
              const p = ps[a + r]!
              const off = r * V
              const lse = logSumExp(logits, off, V)
              let ent = 0
              for (let j = 0; j < V; j++) {
                const l = logits[off + j]! - lse
                ent -= Math.exp(l) * l
              }
              res[b]!.logprobs[p + 1] = logits[off + group[b]![p + 1]!]! - lse
              res[b]!.entropies[p + 1] = Math.max(0, ent)
            }
          })
        }
        out.push(...res)
      })
    }
    return out
  }

  dispose(): void {
    this.heap = undefined
    this.backend = undefined
    this.kernels = undefined
    this.weights = undefined
    this.loaded = -1
    this.prefix.clear()
  }
}
