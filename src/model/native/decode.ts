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
import type { AttentionKernels } from "./decodeKernels.ts"
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
  N * (6 * c.dModel + 3 * c.mlpWidth + 1) + c.heads * c.context + R * (2 * c.dModel + 1 + c.vocab)

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

/** x[o, o + n) ← softmax(scale · x[o, o + n)) in place. */
const softmaxRow = (x: Float32Array, o: number, n: number, scale: number): void => {
  let max = -Infinity
  for (let j = 0; j < n; j++) if (x[o + j]! > max) max = x[o + j]!
  max *= scale
  let sum = 0
  for (let j = 0; j < n; j++) {
    const e = expF32(x[o + j]! * scale - max)
    x[o + j] = e
    sum += e
  }
  const inv = 1 / sum
  for (let j = 0; j < n; j++) x[o + j] = x[o + j]! * inv
}

/** `scores` of decodeKernels.ts in plain JS: out[h·L + j] = q_h · k_j (head h's slice of key row j). */
const scoresJs = (out: Float32Array, q: Float32Array, qo: number, k: Float32Array, ko: number, stride: number, L: number, H: number, hd: number): void => {
  for (let h = 0; h < H; h++) {
    for (let j = 0; j < L; j++) {
      let s = 0
      for (let i = 0; i < hd; i++) s += q[qo + h * hd + i]! * k[ko + j * stride + h * hd + i]!
      out[h * L + j] = s
    }
  }
}

/** `weighted` of decodeKernels.ts in plain JS: out[o + h·hd + i] = Σ_j p[h·L + j] · v[j·stride + h·hd + i]. */
const weightedJs = (out: Float32Array, o: number, p: Float32Array, v: Float32Array, vo: number, stride: number, L: number, H: number, hd: number): void => {
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < hd; i++) {
      let s = 0
      for (let j = 0; j < L; j++) s += p[h * L + j]! * v[vo + j * stride + h * hd + i]!
      out[o + h * hd + i] = s
    }
  }
}

/**
 * Runs tokens[n] at position positions[n] of slot slots[n] (n < N) through the model: writes their keys
 * and values into `cache`, and returns the logits [R, V] of the tokens listed in `logitRows` (R of them,
 * in that order). A token attends to positions ≤ its own of its slot: those of earlier calls and those
 * of this call (every key and value of a layer is written before its attention runs). Scratch comes from
 * `ops.alloc` (scope it). With `kernels` (the wasm attention of decodeKernels.ts on the memory of every
 * buffer here, and a head size that is a multiple of 4) attention runs there, else in plain JS. Throws NativeArgumentError for a token, slot or position out of range.
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
  logitRows: Int32Array,
  kernels?: AttentionKernels
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
  const wasm = hd % 4 === 0 ? kernels : undefined
  const scaleBits = new Int32Array(new Float32Array([scale]).buffer)[0]!

  const x = alloc(N * d)
  for (let n = 0; n < N; n++) x.set(w.embed.subarray(tokens[n]! * d, tokens[n]! * d + d), n * d)
  const h = alloc(N * d)
  const rstd = alloc(N)
  const qkv = alloc(N * 3 * d)
  const att = alloc(N * d)
  const gu = alloc(N * 2 * m)
  const act = alloc(N * m)
  const scoreBuf = alloc(H * (maxPos + 4))
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
    // attention of each token over positions [0, pos] of its slot: every head's scores [H, L = pos + 1]
    // (rows ld floats apart, the padding at −∞), softmax per head, every head's weighted sum of values,
    // written into att[n] (heads side by side)
    for (let n = 0; n < N; n++) {
      const L = positions[n]! + 1
      const base = slots[n]! * cache.length * d
      if (wasm !== undefined) {
        const ld = (L + 3) & ~3
        wasm.scores(qkv.byteOffset + n * 3 * d * 4, kc.byteOffset + base * 4, d * 4, L, H, hd, scoreBuf.byteOffset, ld)
        for (let hh = 0; hh < H; hh++) scoreBuf.fill(-Infinity, hh * ld + L, hh * ld + ld)
        wasm.softmax(scoreBuf.byteOffset, H, ld, scaleBits, 0, 0, 0, 0)
        wasm.weighted(scoreBuf.byteOffset, vc.byteOffset + base * 4, d * 4, L, H, hd, att.byteOffset + n * d * 4, ld)
        continue
      }
      scoresJs(scoreBuf, qkv, n * 3 * d, kc, base, d, L, H, hd)
      for (let hh = 0; hh < H; hh++) softmaxRow(scoreBuf, hh * L, L, scale)
      weightedJs(att, n * d, scoreBuf, vc, base, d, L, H, hd)
    }
    matmul(x, att, p.wo, N, d, d, { accumulate: true })
    rmsNorm(h, rstd, x, p.mlpNorm, N, d, c.normEps)
    matmul(gu, h, p.wGateUp, N, d, 2 * m)
    if (wasm !== undefined && m % 4 === 0) wasm.swiglu(gu.byteOffset, N, m, act.byteOffset, 0, 0, 0, 0)
    else for (let n = 0; n < N; n++) {
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
