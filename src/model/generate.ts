/**
 * Batched generation and scoring on the embedded policy. Requests run in waves of up to `maxSlots`
 * slots (a power-of-two bucket, so each shape compiles once). Per wave: contexts are matched against
 * the prefix cache and against earlier requests of the same wave; leaders are prefilled in chunks,
 * followers copy their shared prefix from their leader's row on the device and prefill the rest; then
 * all slots decode one token per step, sampled on the host from uniform(key, i).
 * It is synchronous and knows nothing of Effect (the adapter in src/engine/embedded.ts wraps it).
 */
import { jit, numpy as np, type OwnedFunction } from "@jax-js/jax"
import { type Key, uniform } from "../core/random.ts"
import { headDim } from "./config.ts"
import {
  type DecodeFn,
  type DecodeParams,
  type DecodeParamsFn,
  disposeCache,
  disposeDecodeParams,
  emptyCache,
  type FlushFn,
  type KvCache,
  makeDecodeParams,
  makeDecodeStep,
  makeFlush,
  makeStep,
  refDecodeParams,
  sideBlock,
  type StepFn
} from "./decode.ts"
import { forwardLogits, ropePrefix, type RopeTables, ropeTables, tokenLogprobs } from "./forward.ts"
import { type Params, refParams } from "./params.ts"
import type { Policy } from "./policy.ts"
import { PrefixCache } from "./prefix.ts"
import { choose, topLogprobs } from "./sample.ts"

export interface GenRequest {
  readonly tokens: ReadonlyArray<number>
  readonly maxTokens: number
  readonly temperature: number
  readonly topP: number
  readonly stopTokens: ReadonlyArray<number>
  readonly key: Key
  /** k > 0: also report each new token's `topLogprobs` (vLLM's `logprobs = k`, sample.ts) */
  readonly topLogprobs?: number
}

export interface GenResult {
  readonly tokens: Array<number>
  readonly logprobs: Array<number>
  readonly entropies: Array<number>
  /** per new token, when the request asked for top-k log-probs */
  readonly topLogprobs?: Array<Array<number>>
  readonly finish: "stop" | "eos" | "length"
  readonly stopToken?: number
}

export interface GenStats {
  sequences: number
  newTokens: number
  /** context tokens prefilled + tokens fed while decoding */
  computedTokens: number
  /** context tokens whose KV came from the prefix cache or from another request of the wave */
  reusedTokens: number
}

export interface GeneratorOptions {
  /** most sequences decoded together (a power of two) */
  readonly maxSlots: number
  /** tokens per prefill step (a multiple of 16 keeps jax-js kernels fast) */
  readonly prefillChunk: number
  /** token budget of the host prefix cache (0 disables it) */
  readonly prefixCacheTokens: number
  /** shortest shared prefix worth reusing */
  readonly minReuse: number
  readonly eos: number
  readonly pad: number
  /** most sequences scored together */
  readonly scoreRows: number
}

export const defaultGeneratorOptions = (eos: number, pad: number): GeneratorOptions => ({
  maxSlots: 64,
  prefillChunk: 16,
  prefixCacheTokens: 65536,
  minReuse: 8,
  eos,
  pad,
  scoreRows: 16
})

/** Thrown (and mapped to a typed error by the adapter) when a context leaves no room to generate. */
export class ContextTooLong extends Error {
  readonly tokens: number
  readonly limit: number
  constructor(tokens: number, limit: number) {
    super(`context of ${tokens} tokens leaves no room in the model's context of ${limit}`)
    this.tokens = tokens
    this.limit = limit
  }
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)))

/** Sequence-length bucket for scoring/training: 16, 32, then multiples of 32 (jax-js wants multiples of 16). */
export const lengthBucket = (n: number): number => (n <= 16 ? 16 : Math.ceil(n / 32) * 32)

/**
 * KV-cache length bucket for a wave: the smallest of 64, 128, 192, 256, 384, 512, 768, 1024, … (capped at
 * the context) holding `need` positions: above 128, steps of a quarter of the next power of two, so
 * attention reads at most ~1/3 more than the longest sequence needs (powers of two alone: up to 2×)
 * while a context of n positions still compiles only O(log n) shapes.
 */
export const cacheBucket = (need: number, context: number): number => {
  const n = Math.max(need, 64)
  const pow2 = 2 ** Math.ceil(Math.log2(n))
  const step = Math.max(64, pow2 / 4)
  return Math.min(context, Math.ceil(n / step) * step)
}

const refCache = (cache: KvCache): KvCache => ({ k: cache.k.map((a) => a.ref), v: cache.v.map((a) => a.ref) })

const lcp = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

/** Throws (RangeError, ContextTooLong) for a request the model cannot serve. */
export const checkRequests = (c: { readonly context: number; readonly vocab: number }, requests: ReadonlyArray<GenRequest>): void => {
  for (const r of requests) {
    if (r.tokens.length === 0) throw new RangeError("generate: a request has an empty context")
    if (r.tokens.length + 1 > c.context) throw new ContextTooLong(r.tokens.length, c.context)
    for (const t of r.tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= c.vocab) throw new RangeError(`generate: token id ${t} is outside the vocabulary (${c.vocab})`)
    }
  }
}

/**
 * Both generators' `generate` after their checks: the requests in waves of at most `maxSlots` (a wave fills the
 * slots of one KV cache), results in request order, the waves' stats summed.
 */
export const inWaves = (
  requests: ReadonlyArray<GenRequest>,
  maxSlots: number,
  wave: (reqs: ReadonlyArray<GenRequest>, stats: GenStats) => Array<GenResult>
): { results: Array<GenResult>; stats: GenStats } => {
  const stats: GenStats = { sequences: requests.length, newTokens: 0, computedTokens: 0, reusedTokens: 0 }
  const results: Array<GenResult> = []
  for (let i = 0; i < requests.length; i += maxSlots) results.push(...wave(requests.slice(i, i + maxSlots), stats))
  return { results, stats }
}

type CopyFn = OwnedFunction<(cache: KvCache, src: np.Array, n: np.Array) => KvCache>
type ScoreFn = OwnedFunction<
  (p: Params, tokens: np.Array, cos: np.Array, sin: np.Array) => { logp: np.Array; entropy: np.Array }
>

/** A request's output while it decodes (GenResult without its finish). */
export interface SlotOutput {
  readonly tokens: Array<number>
  readonly logprobs: Array<number>
  readonly entropies: Array<number>
  readonly topLogprobs?: Array<Array<number>>
}

/** Empty outputs for a wave's requests (with a top-k list where the request asked for one). */
export const slotOutputs = (reqs: ReadonlyArray<GenRequest>): Array<SlotOutput> =>
  reqs.map((q) => ({
    tokens: [],
    logprobs: [],
    entropies: [],
    ...((q.topLogprobs ?? 0) > 0 ? { topLogprobs: [] } : {})
  }))

/**
 * One decode step of one slot on the host, shared by the jax-js and the native generators: draws the next
 * token from the logits row at `off` with the request's temperature, top-p and keyed uniform draw, records
 * it (log-prob, exact entropy, top-k when asked) and counts it in `stats`; returns how the slot finishes
 * (a stop token, EOS, its token budget, or the context of `context` positions after `prompt` tokens), or
 * undefined while it goes on.
 */
export const takeToken = (
  logits: ArrayLike<number>,
  off: number,
  vocab: number,
  q: GenRequest,
  g: SlotOutput,
  stats: GenStats,
  eos: number,
  prompt: number,
  context: number
): { readonly finish: GenResult["finish"]; readonly stopToken?: number } | undefined => {
  const ch = choose(logits, off, vocab, q.temperature, q.topP, uniform(q.key, g.tokens.length))
  g.tokens.push(ch.token)
  g.logprobs.push(ch.logprob)
  g.entropies.push(ch.entropy)
  if (g.topLogprobs !== undefined) g.topLogprobs.push(topLogprobs(logits, off, vocab, q.topLogprobs!, ch.token))
  stats.computedTokens += 1
  stats.newTokens += 1
  if (q.stopTokens.includes(ch.token)) return { finish: "stop", stopToken: ch.token }
  if (ch.token === eos) return { finish: "eos" }
  if (g.tokens.length >= q.maxTokens || prompt + g.tokens.length >= context) return { finish: "length" }
  return undefined
}

export class Generator {
  readonly prefix: PrefixCache
  private prefixVersion: number
  private readonly rope: RopeTables
  private readonly prefillStep: StepFn
  private readonly decodeStep: DecodeFn
  private readonly flush: FlushFn
  private readonly decodeParamsFn: DecodeParamsFn
  private decodeParams: { generation: number; params: DecodeParams } | undefined
  private readonly copyRows: CopyFn
  private readonly scoreFn: ScoreFn

  readonly policy: Policy
  readonly options: GeneratorOptions

  constructor(policy: Policy, options: GeneratorOptions) {
    this.policy = policy
    this.options = options
    const c = policy.config
    const dtype = policy.dtype === "float64" ? np.float64 : np.float32
    this.prefix = new PrefixCache(options.prefixCacheTokens)
    this.prefixVersion = policy.generation
    this.rope = ropeTables(c, dtype)
    this.prefillStep = makeStep(c, false)
    this.decodeStep = makeDecodeStep(c)
    this.flush = makeFlush()
    this.decodeParamsFn = makeDecodeParams(c)
    this.copyRows = jit((cache: KvCache, src: np.Array, n: np.Array) => {
      const b = src.shape[0]!
      const s = cache.k[0]!.shape[2]!
      const mask = np.less(np.arange(s, undefined, undefined, { dtype: np.int32 }).reshape([1, 1, s, 1]), n.reshape([b, 1, 1, 1]))
      const move = (a: np.Array) => np.where(mask.ref, np.take(a.ref, src.ref, 0), a)
      const out = { k: cache.k.map(move), v: cache.v.map(move) }
      mask.dispose()
      src.dispose()
      return out
    }) as unknown as CopyFn
    this.scoreFn = jit((p: Params, tokens: np.Array, cos: np.Array, sin: np.Array) => {
      const logits = forwardLogits(c, p, tokens.ref, cos, sin)
      const out = tokenLogprobs(logits, tokens, c.vocab)
      for (const a of [p.embed, p.finalNorm, ...p.head]) a.dispose()
      for (const l of p.layers) for (const a of Object.values(l)) a.dispose()
      return out
    }) as unknown as ScoreFn
  }

  /** The decode weights of the current policy weights (rebuilt after every replacement). */
  private decodeWeights(): DecodeParams {
    const g = this.policy.generation
    if (this.decodeParams?.generation !== g) {
      if (this.decodeParams) disposeDecodeParams(this.decodeParams.params)
      this.decodeParams = { generation: g, params: this.decodeParamsFn(refParams(this.policy.params)) }
    }
    return this.decodeParams.params
  }

  private syncVersion(): void {
    if (this.policy.generation !== this.prefixVersion) {
      this.prefix.clear()
      this.prefixVersion = this.policy.generation
    }
  }

  generate(requests: ReadonlyArray<GenRequest>): { results: Array<GenResult>; stats: GenStats } {
    checkRequests(this.policy.config, requests)
    this.syncVersion()
    return inWaves(requests, this.options.maxSlots, (reqs, stats) => this.wave(reqs, stats))
  }

  private wave(reqs: ReadonlyArray<GenRequest>, stats: GenStats): Array<GenResult> {
    const c = this.policy.config
    const o = this.options
    const S = c.context
    const H = c.heads
    const hd = headDim(c)
    const B = Math.min(o.maxSlots, Math.max(4, nextPow2(reqs.length)))
    const n = reqs.length
    const len = reqs.map((r) => r.tokens.length)
    // the cache holds the longest context plus one side block; it grows by buckets while decoding
    let Sb = cacheBucket(Math.max(...len) - 1 + sideBlock, S)
    // ---- plan: leaders (prefix cache) and followers (copy from an earlier leader of this wave)
    const start = new Int32Array(B).fill(S)
    const src = Int32Array.from({ length: B }, (_, b) => b)
    const copyLen = new Int32Array(B)
    const leader: Array<boolean> = []
    let host: { k: Array<Float32Array<ArrayBuffer>>; v: Array<Float32Array<ArrayBuffer>> } | undefined
    for (let i = 0; i < n; i++) {
      const toks = reqs[i]!.tokens
      const hit = o.prefixCacheTokens > 0 ? this.prefix.lookup(toks, o.minReuse) : undefined
      const fromCache = hit ? Math.min(hit.length, len[i]! - 1) : 0
      let bestJ = -1
      let best = 0
      for (let j = 0; j < i; j++) {
        if (!leader[j]) continue
        const l = Math.min(lcp(toks, reqs[j]!.tokens), len[i]! - 1, len[j]! - 1)
        if (l > best) {
          best = l
          bestJ = j
        }
      }
      if (bestJ >= 0 && best > fromCache && best >= o.minReuse) {
        leader.push(false)
        src[i] = bestJ
        copyLen[i] = best
        start[i] = best
        stats.reusedTokens += best
      } else {
        leader.push(true)
        start[i] = fromCache
        stats.reusedTokens += fromCache
        if (hit && fromCache > 0) {
          host ??= {
            k: Array.from({ length: c.layers }, () => new Float32Array(B * H * Sb * hd)),
            v: Array.from({ length: c.layers }, () => new Float32Array(B * H * Sb * hd))
          }
          const e = hit.entry
          const el = e.tokens.length
          for (let l = 0; l < c.layers; l++) {
            for (let h = 0; h < H; h++) {
              const from = h * el * hd
              const to = (i * H + h) * Sb * hd
              host.k[l]!.set(e.k[l]!.subarray(from, from + fromCache * hd), to)
              host.v[l]!.set(e.v[l]!.subarray(from, from + fromCache * hd), to)
            }
          }
        }
      }
    }
    const dtype = np.float32
    let cache: KvCache = host
      ? {
        k: host.k.map((d) => np.array(d, { shape: [B, H, Sb, hd], dtype })),
        v: host.v.map((d) => np.array(d, { shape: [B, H, Sb, hd], dtype }))
      }
      : emptyCache(c, B, dtype, Sb)

    // ---- prefill leaders, then copy + prefill followers
    const prefill = (rows: ReadonlyArray<number>) => {
      const from = new Int32Array(B)
      for (const i of rows) from[i] = start[i]!
      const C = o.prefillChunk
      for (;;) {
        const active = rows.filter((i) => from[i]! < len[i]! - 1)
        if (active.length === 0) return
        const toks = new Int32Array(B * C).fill(o.pad)
        const st = new Int32Array(B).fill(S)
        for (const i of active) {
          const ctx = reqs[i]!.tokens
          const end = len[i]! - 1
          st[i] = from[i]!
          for (let j = 0; j < C; j++) {
            const pos = from[i]! + j
            if (pos < end) toks[i * C + j] = ctx[pos]!
          }
          stats.computedTokens += Math.min(C, end - from[i]!)
          from[i] = from[i]! + C
        }
        cache = this.prefillStep(
          refParams(this.policy.params),
          cache,
          np.array(toks, { shape: [B, C], dtype: np.int32 }),
          np.array(st, { dtype: np.int32 }),
          this.rope.cos.ref,
          this.rope.sin.ref
        ).cache
      }
    }
    const leaders = [...Array(n).keys()].filter((i) => leader[i])
    const followers = [...Array(n).keys()].filter((i) => !leader[i])
    prefill(leaders)
    if (followers.length > 0) {
      cache = this.copyRows(cache, np.array(src, { dtype: np.int32 }), np.array(copyLen, { dtype: np.int32 }))
      prefill(followers)
    }

    // ---- decode: every active slot feeds one token per step into side column j; the block is flushed
    // into the main cache every `sideBlock` steps. Slot b's next token sits at position base[b] + j.
    const out = slotOutputs(reqs)
    const finish: Array<GenResult["finish"] | undefined> = reqs.map((r) => (r.maxTokens <= 0 ? "length" : undefined))
    const stopToken: Array<number | undefined> = []
    const base = Int32Array.from({ length: B }, (_, i) => (i < n ? len[i]! - 1 : S))
    const filled = new Int32Array(B)
    const cur = Int32Array.from({ length: B }, (_, i) => (i < n ? reqs[i]!.tokens[len[i]! - 1]! : o.pad))
    const V = c.vocab
    let side = emptyCache(c, B, dtype, sideBlock)
    const weights = this.decodeWeights()
    let j = 0
    const flushSide = () => {
      const limit = new Int32Array(B)
      for (let b = 0; b < B; b++) limit[b] = base[b]! + filled[b]!
      cache = this.flush(cache, refCache(side), np.array(base, { dtype: np.int32 }), np.array(limit, { dtype: np.int32 }))
      for (let b = 0; b < B; b++) base[b] = limit[b]!
      filled.fill(0)
      j = 0
    }
    for (;;) {
      const active = [...Array(n).keys()].filter((i) => finish[i] === undefined)
      if (active.length === 0) break
      if (j === 0) {
        const need = cacheBucket(Math.max(...active.map((i) => base[i]!)) + sideBlock, S)
        if (need > Sb) {
          const grow = (a: np.Array) => np.pad(a, [[0, 0], [0, 0], [0, need - Sb], [0, 0]])
          cache = { k: cache.k.map(grow), v: cache.v.map(grow) }
          Sb = need
        }
      }
      const r = this.decodeStep(
        refDecodeParams(weights),
        refCache(cache),
        side,
        np.array(cur, { shape: [B, 1], dtype: np.int32 }),
        np.array(base, { dtype: np.int32 }),
        np.array(new Int32Array([j]), { dtype: np.int32 }),
        this.rope.cos.ref,
        this.rope.sin.ref
      )
      side = r.side
      const logits = r.logits.dataSync() as Float32Array
      for (const i of active) {
        const g = out[i]!
        const end = takeToken(logits, i * V, V, reqs[i]!, g, stats, o.eos, len[i]!, S)
        if (end !== undefined) {
          finish[i] = end.finish
          stopToken[i] = end.stopToken
        }
        filled[i] = j + 1
        cur[i] = g.tokens[g.tokens.length - 1]!
      }
      j += 1
      if (j === sideBlock) flushSide()
    }
    if (j > 0) flushSide()
    disposeCache(side)

    // ---- keep every row's KV for later requests that share its prefix
    if (o.prefixCacheTokens > 0) {
      const kd = cache.k.map((a) => a.ref.dataSync() as Float32Array)
      const vd = cache.v.map((a) => a.ref.dataSync() as Float32Array)
      for (let i = 0; i < n; i++) {
        const all = [...reqs[i]!.tokens, ...out[i]!.tokens]
        // the cache holds positions < base[i] = all.length - 1 (the last sampled token was never fed)
        const valid = Math.min(all.length - 1, base[i]!, Sb)
        if (valid < o.minReuse) continue
        const slice = (d: Float32Array) => {
          const e = new Float32Array(H * valid * hd)
          for (let h = 0; h < H; h++) {
            const off = (i * H + h) * Sb * hd
            e.set(d.subarray(off, off + valid * hd), h * valid * hd)
          }
          return e
        }
        this.prefix.insert(Int32Array.from(all.slice(0, valid)), kd.map(slice), vd.map(slice))
      }
    }
    disposeCache(cache)
    return reqs.map((_, i) => {
      const f = finish[i]!
      const base = { ...out[i]!, finish: f }
      return stopToken[i] !== undefined ? { ...base, stopToken: stopToken[i]! } : base
    })
  }

  /** Per-token log-probs and entropies (entry 0 is 0) of whole sequences. */
  score(sequences: ReadonlyArray<ReadonlyArray<number>>): Array<{ logprobs: Float64Array; entropies: Float64Array }> {
    const c = this.policy.config
    const out: Array<{ logprobs: Float64Array; entropies: Float64Array }> = []
    for (const s of sequences) if (s.length > c.context) throw new ContextTooLong(s.length, c.context)
    const rows = this.options.scoreRows
    for (let i0 = 0; i0 < sequences.length; i0 += rows) {
      const group = sequences.slice(i0, i0 + rows)
      const B = Math.min(rows, Math.max(4, nextPow2(group.length)))
      const T = Math.min(c.context, lengthBucket(Math.max(2, ...group.map((s) => s.length))))
      const toks = new Int32Array(B * T).fill(this.options.pad)
      group.forEach((s, b) => toks.set(s, b * T))
      const [cos, sin] = ropePrefix(this.rope, T)
      const r = this.scoreFn(refParams(this.policy.params), np.array(toks, { shape: [B, T], dtype: np.int32 }), cos, sin)
      const lp = r.logp.dataSync()
      const en = r.entropy.dataSync()
      group.forEach((s, b) => {
        const logprobs = new Float64Array(s.length)
        const entropies = new Float64Array(s.length)
        for (let t = 1; t < s.length; t++) {
          logprobs[t] = lp[b * T + t]!
          entropies[t] = en[b * T + t]!
        }
        out.push({ logprobs, entropies })
      })
    }
    return out
  }

  dispose(): void {
    this.rope.cos.dispose()
    this.rope.sin.dispose()
    this.prefillStep.dispose()
    this.decodeStep.dispose()
    this.flush.dispose()
    this.decodeParamsFn.dispose()
    if (this.decodeParams) disposeDecodeParams(this.decodeParams.params)
    this.decodeParams = undefined
    this.copyRows.dispose()
    this.scoreFn.dispose()
    this.prefix.clear()
  }
}
