/**
 * One incremental step of the native (hand-written, non-jax-js) model with a per-slot KV cache: `feed`
 * runs N tokens, each at its own (slot, position), through the network of model.ts (RMSNorm → fused
 * q,k,v projection → half-split rotary positions → softmax attention over the slot's cached positions →
 * o projection + residual → RMSNorm → SwiGLU + residual), writing each token's key and value into the
 * cache first, and returns the logits of the tokens asked for. One code path serves prefill (many
 * tokens per slot, packed end to end across slots) and decoding (one token per live slot). Every matrix
 * product is the wasm SIMD `matmul` on the heap; attention is plain loops (per token, head and cached
 * position). It does not sample (sample.ts), plan slots or waves (generator.ts), nor train.
 */
import { headDim, type ModelConfig } from "../config.ts"
import { NativeArgumentError } from "./heap.ts"
import { NR } from "./kernels.ts"
import { expF32, type NativeOps, type NativeWeights, rmsNorm, type Rope } from "./model.ts"

/** Decode-time weights: q, k, v fused into one [d, 3d] projection and gate, up into one [d, 2m]. */
export interface DecodeLayer {
  readonly attnNorm: Float32Array
  /** [d, 3d]: columns [0, d) of Wq, [d, 2d) of Wk, [2d, 3d) of Wv */
  readonly wQkv: Float32Array
  readonly wo: Float32Array
  readonly mlpNorm: Float32Array
  /** [d, 2m]: columns [0, m) of Wgate, [m, 2m) of Wup */
  readonly wGateUp: Float32Array
  readonly wDown: Float32Array
}

export interface DecodeWeights {
  /** [V, d] */
  readonly embed: Float32Array
  readonly layers: ReadonlyArray<DecodeLayer>
  readonly finalNorm: Float32Array
  /** [d, V], or undefined when the head is tied to `embed` (logits = h · embedᵀ) */
  readonly head: Float32Array | undefined
}

/** Concatenates the columns of row-major matrices [rows, n_i] into `out` [rows, Σn_i]. */
const concatColumns = (out: Float32Array, parts: ReadonlyArray<Float32Array>, rows: number): void => {
  const widths = parts.map((p) => p.length / rows)
  const total = widths.reduce((a, b) => a + b, 0)
  for (let r = 0; r < rows; r++) {
    let at = r * total
    parts.forEach((p, i) => {
      const w = widths[i]!
      out.set(p.subarray(r * w, r * w + w), at)
      at += w
    })
  }
}

/** Copies the named weights into decode weights allocated by `alloc` (a heap's, so the matmul can read them). */
export const decodeWeightsOf = (c: ModelConfig, alloc: (n: number) => Float32Array, w: NativeWeights): DecodeWeights => {
  const d = c.dModel
  const m = c.mlpWidth
  const copy = (x: Float32Array) => {
    const a = alloc(x.length)
    a.set(x)
    return a
  }
  return {
    embed: copy(w.embed),
    layers: w.layers.map((l): DecodeLayer => {
      const wQkv = alloc(d * 3 * d)
      concatColumns(wQkv, [l.wq, l.wk, l.wv], d)
      const wGateUp = alloc(d * 2 * m)
      concatColumns(wGateUp, [l.wGate, l.wUp], d)
      return { attnNorm: copy(l.attnNorm), wQkv, wo: copy(l.wo), mlpNorm: copy(l.mlpNorm), wGateUp, wDown: copy(l.wDown) }
    }),
    finalNorm: copy(w.finalNorm),
    head: w.head === undefined ? undefined : copy(w.head)
  }
}

/** Floats of the decode weights of `c` (what `decodeWeightsOf` allocates, without alignment slack). */
export const decodeWeightFloats = (c: ModelConfig): number => {
  const d = c.dModel
  const m = c.mlpWidth
  return c.vocab * d + c.layers * (2 * d + 4 * d * d + 3 * d * m) + d + (c.tiedHead ? 0 : d * c.vocab)
}

/**
 * Per-layer keys (after rotation) and values of `slots` slots of `length` positions each: position p of
 * slot s, head h at `k[l][(s·length + p)·d + h·hd …]`. Only the positions a slot was fed hold values.
 */
export interface KvCache {
  readonly slots: number
  readonly length: number
  readonly k: ReadonlyArray<Float32Array>
  readonly v: ReadonlyArray<Float32Array>
}

export const kvCache = (c: ModelConfig, alloc: (n: number) => Float32Array, slots: number, length: number): KvCache => ({
  slots,
  length,
  k: Array.from({ length: c.layers }, () => alloc(slots * length * c.dModel)),
  v: Array.from({ length: c.layers }, () => alloc(slots * length * c.dModel))
})

/** Floats of `kvCache(c, …, slots, length)`. */
export const kvCacheFloats = (c: ModelConfig, slots: number, length: number): number => 2 * c.layers * slots * length * c.dModel

/** Copies positions [0, n) of slot `from` to slot `to` in every layer (a follower taking its leader's shared prefix). */
export const copyPrefix = (c: ModelConfig, cache: KvCache, from: number, to: number, n: number): void => {
  const d = c.dModel
  for (const a of [...cache.k, ...cache.v]) a.copyWithin(to * cache.length * d, from * cache.length * d, (from * cache.length + n) * d)
}

/** Floats `feed` allocates for N tokens of which R want logits (without alignment slack). */
export const feedFloats = (c: ModelConfig, N: number, R: number): number =>
  N * (6 * c.dModel + 3 * c.mlpWidth + 1) + (Math.ceil(c.heads / NR) * NR) * (2 * c.dModel + c.context) + R * (2 * c.dModel + 1 + c.vocab)

/** Rotates the pairs (i, i + half) of x[o …] by the angles of table row `ro` (in place). */
const rotate = (x: Float32Array, o: number, cos: Float32Array, sin: Float32Array, ro: number, half: number): void => {
  for (let i = 0; i < half; i++) {
    const a = x[o + i]!
    const b = x[o + i + half]!
    const co = cos[ro + i]!
    const si = sin[ro + i]!
    x[o + i] = a * co - b * si
    x[o + i + half] = b * co + a * si
  }
}

/** Column `col` of x [rows, stride] ← softmax(scale · that column), in place. */
const softmaxColumn = (x: Float32Array, col: number, stride: number, rows: number, scale: number): void => {
  let max = -Infinity
  for (let j = 0, o = col; j < rows; j++, o += stride) if (x[o]! > max) max = x[o]!
  max *= scale
  let sum = 0
  for (let j = 0, o = col; j < rows; j++, o += stride) {
    const e = expF32(x[o]! * scale - max)
    x[o] = e
    sum += e
  }
  const inv = 1 / sum
  for (let j = 0, o = col; j < rows; j++, o += stride) x[o] = x[o]! * inv
}

/**
 * Runs tokens[n] at position positions[n] of slot slots[n] (n < N) through the model: writes their keys
 * and values into `cache`, and returns the logits [R, V] of the tokens listed in `logitRows` (R of them,
 * in that order). A token attends to positions ≤ its own of its slot: those of earlier calls and those
 * of this call (every key and value of a layer is written before its attention runs). Scratch comes from
 * `ops.alloc` (scope it). Throws NativeArgumentError for a token, slot or position out of range.
 */
export const feed = (
  c: ModelConfig,
  ops: NativeOps,
  w: DecodeWeights,
  rope: Rope,
  cache: KvCache,
  tokens: Int32Array,
  slots: Int32Array,
  positions: Int32Array,
  logitRows: Int32Array
): Float32Array => {
  const d = c.dModel
  const m = c.mlpWidth
  const H = c.heads
  const hd = headDim(c)
  const half = hd / 2
  const V = c.vocab
  const N = tokens.length
  const R = logitRows.length
  const { alloc, matmul } = ops
  if (slots.length !== N || positions.length !== N) {
    throw new NativeArgumentError({ argument: "slots", message: `native decode: ${N} tokens, ${slots.length} slots, ${positions.length} positions` })
  }
  let maxPos = 0
  for (let n = 0; n < N; n++) {
    const where = `native decode: token ${n}`
    if (!(tokens[n]! >= 0 && tokens[n]! < V)) throw new NativeArgumentError({ argument: "tokens", message: `${where}: id ${tokens[n]} is outside the vocabulary of ${V}` })
    if (!(slots[n]! >= 0 && slots[n]! < cache.slots)) throw new NativeArgumentError({ argument: "slots", message: `${where}: slot ${slots[n]} is not in [0, ${cache.slots})` })
    if (!(positions[n]! >= 0 && positions[n]! < Math.min(cache.length, c.context))) {
      throw new NativeArgumentError({ argument: "positions", message: `${where}: position ${positions[n]} is not in [0, ${Math.min(cache.length, c.context)})` })
    }
    maxPos = Math.max(maxPos, positions[n]!)
  }
  for (let r = 0; r < R; r++) {
    if (!(logitRows[r]! >= 0 && logitRows[r]! < N)) throw new NativeArgumentError({ argument: "logitRows", message: `native decode: logit row ${logitRows[r]} is not a token of this call (N = ${N})` })
  }
  const scale = 1 / Math.sqrt(hd)

  const x = alloc(N * d)
  for (let n = 0; n < N; n++) x.set(w.embed.subarray(tokens[n]! * d, tokens[n]! * d + d), n * d)
  const h = alloc(N * d)
  const rstd = alloc(N)
  const qkv = alloc(N * 3 * d)
  const att = alloc(N * d)
  const gu = alloc(N * 2 * m)
  const act = alloc(N * m)
  // heads padded to whole tiles of the matmul's NR columns (the padding columns stay zero)
  const HP = Math.ceil(H / NR) * NR
  const qbd = alloc(HP * d).fill(0)
  const scoreBuf = alloc(HP * (maxPos + 1))
  const heads = alloc(HP * d)
  cache.k.forEach((kc, l) => {
    const p = w.layers[l]!
    const vc = cache.v[l]!
    rmsNorm(h, rstd, x, p.attnNorm, N, d, c.normEps)
    matmul(qkv, h, p.wQkv, N, d, 3 * d)
    // rotate q and k per head (pairs i, i + hd/2 at angle pos·θ_i); k and v go into the cache
    for (let n = 0; n < N; n++) {
      const ro = positions[n]! * hd
      const row = n * 3 * d
      const at = (slots[n]! * cache.length + positions[n]!) * d
      for (let hh = 0; hh < 2 * H; hh++) rotate(qkv, row + hh * hd, rope.cos, rope.sin, ro, half)
      kc.set(qkv.subarray(row + d, row + 2 * d), at)
      vc.set(qkv.subarray(row + 2 * d, row + 3 * d), at)
    }
    // attention of each token over positions [0, pos] of its slot, all heads in two matmuls with the
    // cache as the left operand (read in place, never packed): the slot's keys [L = pos + 1, d] times the
    // block-diagonal Qᵀ [d, H] (column h holds q_h in head h's rows, zeros elsewhere) gives every head's
    // scores [L, H]; softmax down each column; the values transposed [d, L] times those [L, H] give
    // [d, H], whose column h in head h's rows is head h's output (H× the flops of per-head products, in
    // two wasm calls instead of 2H JS loops)
    for (let n = 0; n < N; n++) {
      const L = positions[n]! + 1
      const base = slots[n]! * cache.length * d
      for (let hh = 0; hh < H; hh++) qbd.set(qkv.subarray(n * 3 * d + hh * hd, n * 3 * d + hh * hd + hd), hh * d + hh * hd)
      const S = scoreBuf.subarray(0, L * HP)
      matmul(S, kc.subarray(base, base + L * d), qbd, L, d, HP, { transB: true })
      for (let hh = 0; hh < H; hh++) softmaxColumn(S, hh, HP, L, scale)
      matmul(heads, vc.subarray(base, base + L * d), S, d, L, HP, { transA: true })
      for (let hh = 0; hh < H; hh++) {
        const o = n * d + hh * hd
        for (let i = 0; i < hd; i++) att[o + i] = heads[(hh * hd + i) * HP + hh]!
      }
    }
    matmul(x, att, p.wo, N, d, d, { accumulate: true })
    rmsNorm(h, rstd, x, p.mlpNorm, N, d, c.normEps)
    matmul(gu, h, p.wGateUp, N, d, 2 * m)
    for (let n = 0; n < N; n++) {
      const g0 = n * 2 * m
      const a0 = n * m
      for (let i = 0; i < m; i++) {
        const g = gu[g0 + i]!
        act[a0 + i] = (g / (1 + expF32(-g))) * gu[g0 + m + i]!
      }
    }
    matmul(x, act, p.wDown, N, m, d, { accumulate: true })
  })
  const xr = alloc(R * d)
  for (let r = 0; r < R; r++) xr.set(x.subarray(logitRows[r]! * d, logitRows[r]! * d + d), r * d)
  const hr = alloc(R * d)
  rmsNorm(hr, alloc(R), xr, w.finalNorm, R, d, c.normEps)
  const logits = alloc(R * V)
  if (w.head !== undefined) matmul(logits, hr, w.head, R, d, V)
  else matmul(logits, hr, w.embed, R, d, V, { transB: true })
  return logits
}
