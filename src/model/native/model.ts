/**
 * The embedded model's forward and backward pass written out by hand over Float32Arrays (llm.c style):
 * exactly the network of src/model/forward.ts (token embedding; per layer RMSNorm → q,k,v → half-split
 * rotary positions → causal softmax attention → o projection + residual → RMSNorm → SwiGLU + residual;
 * final RMSNorm; tied or untied head; log-softmax, per-token log-prob and entropy) on the plain padded
 * micro-batches of train.ts (`packMicroBatches`), so the jax-js tape and its kernels are out of the loop.
 * With a `TreeLayout` it runs packed rollout trees instead (src/core/treePack.ts: positions by depth, a
 * tree attention mask, each token predicted by its parent's logits). Every matrix product goes through the
 * `NativeOps.matmul` it is given (the wasm SIMD kernel or a plain-JS one); the rest is loops here. It does
 * not compute losses (see loss.ts) nor run an optimizer (learner.ts).
 */
import { Schema } from "effect"
import { headDim, type ModelConfig } from "../config.ts"
import { ropeHost } from "../forward.ts"
import { specs } from "../params.ts"
import type { MatmulOptions } from "./matmul.ts"

/** Bad input to the native model (a weight of the wrong size, a token outside the vocabulary, a shape over the context). */
export class NativeModelInputInvalid extends Schema.TaggedError<NativeModelInputInvalid>()("NativeModelInputInvalid", {
  where: Schema.String,
  message: Schema.String
}) {}

/** The typed error, with the place repeated in its message (what a person reads first). */
const invalid = (where: string, message: string) => new NativeModelInputInvalid({ where, message: `${where}: ${message}` })

/**
 * What the model needs from its memory and its matmul: `alloc(n)` a Float32Array of n values, not
 * necessarily zeroed (views the matmul can read), `matmul(out, a, b, m, k, n, opts)` = out[m×n] (+)= op(a)[m×k] · op(b)[k×n],
 * row-major, op = transpose when asked (a is then stored [k×m], b [n×k]).
 */
export interface NativeOps {
  readonly alloc: (n: number) => Float32Array
  readonly matmul: (out: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number, opts?: MatmulOptions) => void
}

export interface NativeLayer {
  readonly attnNorm: Float32Array
  readonly wq: Float32Array
  readonly wk: Float32Array
  readonly wv: Float32Array
  readonly wo: Float32Array
  readonly mlpNorm: Float32Array
  readonly wGate: Float32Array
  readonly wUp: Float32Array
  readonly wDown: Float32Array
}

/** The weights (or a gradient of the same shape) as named views over flat leaves in checkpoint order. */
export interface NativeWeights {
  readonly leaves: ReadonlyArray<Float32Array>
  readonly embed: Float32Array
  readonly layers: ReadonlyArray<NativeLayer>
  readonly finalNorm: Float32Array
  /** [d, vocab], or undefined when the head is tied to `embed` */
  readonly head: Float32Array | undefined
}

const layerKeys = ["attnNorm", "wq", "wk", "wv", "wo", "mlpNorm", "wGate", "wUp", "wDown"] as const

/** Names the leaves (checkpoint order, `specs(c)`); each must have its tensor's size. */
export const nativeWeights = (c: ModelConfig, leaves: ReadonlyArray<Float32Array>): NativeWeights => {
  const ss = specs(c)
  if (leaves.length !== ss.length) {
    throw invalid("native weights", `expected ${ss.length} tensors, got ${leaves.length}`)
  }
  ss.forEach((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1)
    if (leaves[i]!.length !== n) {
      throw invalid(`native weights: tensor ${i} (${s.name})`, `${leaves[i]!.length} values, expected ${n} ([${s.shape}])`)
    }
  })
  let i = 0
  const next = () => leaves[i++]!
  const embed = next()
  const layers: Array<NativeLayer> = []
  for (let l = 0; l < c.layers; l++) {
    const layer = {} as Record<(typeof layerKeys)[number], Float32Array>
    for (const k of layerKeys) layer[k] = next()
    layers.push(layer)
  }
  const finalNorm = next()
  const head = c.tiedHead ? undefined : next()
  return { leaves, embed, layers, finalNorm, head }
}

/** Rotary tables [context, headDim] in float32, the values jax-js uses (`ropeTables`). */
export interface Rope {
  readonly cos: Float32Array
  readonly sin: Float32Array
}

export const ropeOf = (c: ModelConfig): Rope => {
  const { cos, sin } = ropeHost(c)
  return { cos: Float32Array.from(cos), sin: Float32Array.from(sin) }
}

/**
 * How the tokens of a packed-tree micro-batch relate (train.ts's `TreeMicroBatch`), per row token [B·T]:
 * its rotary position (depth), the end of its subtree (query i sees key j of its row iff j ≤ i < end[j]),
 * the flat index of the token whose logits predict it, and whether it is predicted at all (log-prob 0 if
 * not). Plain rows need none: token t sits at position t, sees keys ≤ t, and is predicted by t − 1.
 */
export interface TreeLayout {
  readonly positions: Int32Array
  readonly end: Int32Array
  readonly parent: Int32Array
  readonly predicted: ArrayLike<number>
}

/** One layer's saved activations ([N, ·] over the computed tokens; q, k, v per row as heads [H, L_b, hd]). */
interface LayerActs {
  /** the residual stream entering the layer [N, d] */
  readonly x: Float32Array
  readonly h1: Float32Array
  readonly rstd1: Float32Array
  /** after rotary positions */
  readonly q: Float32Array
  readonly k: Float32Array
  readonly v: Float32Array
  /** attention weights per (row, head): query blocks [s, e) × keys [0, e) (`causalFloats(L_b)` each; zero above the diagonal) */
  readonly probs: Float32Array
  /** attention output, heads merged [N, d] */
  readonly att: Float32Array
  /** the residual after attention [N, d] */
  readonly x1: Float32Array
  readonly h2: Float32Array
  readonly rstd2: Float32Array
  readonly gate: Float32Array
  /** σ(gate) */
  readonly sig: Float32Array
  readonly up: Float32Array
  /** silu(gate) · up [N, m] */
  readonly act: Float32Array
}

/** A forward pass's saved state: what the backward pass reads, and the per-token outputs. */
export interface Forward {
  readonly rows: Rows
  readonly layers: ReadonlyArray<LayerActs>
  /** the residual stream before the final norm [N, d] */
  readonly xF: Float32Array
  readonly hF: Float32Array
  readonly rstdF: Float32Array
  /** softmax of the logits [N, V] (the logits are overwritten) */
  readonly probs: Float32Array
  /** [B·T]: entry b·T + t is log p(token t | tokens < t) (given its ancestors, in a tree); 0 where nothing predicts it or it was not computed */
  readonly logp: Float32Array
  /** [B·T]: the entropy of the distribution that predicts token b·T + t (0 where none does) */
  readonly entropy: Float32Array
}

/**
 * An upper bound on the floats `forward` and `backward` allocate for B rows of T tokens (with 4 floats of
 * alignment slack per buffer): what a fixed-size heap must hold besides the weights. Kept in step with
 * the allocations below (a test checks a heap's use against it).
 */
export const workspaceFloats = (c: ModelConfig, B: number, T: number): number => {
  const N = B * T
  const d = c.dModel
  const m = c.mlpWidth
  const perLayer = 8 * N * d + 2 * N + 4 * N * m + B * c.heads * causalFloats(T)
  const fwd = 2 * N * d + c.layers * perLayer + N * d + 6 * N + N * c.vocab
  const bwd = N * c.vocab + N + 8 * N * d + 3 * N * m + Math.min(T, attentionBlock) * T
  const buffers = 10 + 15 * c.layers + 13
  return fwd + bwd + 4 * buffers
}

/** 2^k for k in [−1024, 1023], at index k + 1024 */
const POW2 = Float64Array.from({ length: 2048 }, (_, i) => Math.pow(2, i - 1024))
/** 1.5·2^52: adding and subtracting it rounds a double to an integer */
const ROUND = 6755399441055744

/**
 * e^x to float32 accuracy (relative error < 2e-7), about 2.5× faster than Math.exp in V8: x = k·ln 2 + r
 * with |r| ≤ ln2/2, e^r by its Taylor series to r⁶, times 2^k from a table. 0 below −100 (float32 has
 * nothing there but denormals), Infinity above 88 (float32 overflows); NaN stays NaN. For the softmaxes
 * and SiLU only: the loss keeps Math.exp.
 */
export const expF32 = (x: number): number => {
  if (x < -100) return 0
  if (x > 88) return Infinity
  const k = x * Math.LOG2E + ROUND - ROUND
  const r = x - k * 0.6931471803691238 - k * 1.9082149292705877e-10
  const p = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720))))))
  return p * POW2[(k | 0) + 1024]!
}

/** y = x · g / √(mean(x²) + eps) per row; saves 1/√(…) per row. */
export const rmsNorm = (y: Float32Array, rstd: Float32Array, x: Float32Array, g: Float32Array, rows: number, d: number, eps: number): void => {
  for (let n = 0; n < rows; n++) {
    const o = n * d
    let ss = 0
    for (let i = 0; i < d; i++) ss += x[o + i]! * x[o + i]!
    const r = 1 / Math.sqrt(ss / d + eps)
    rstd[n] = r
    for (let i = 0; i < d; i++) y[o + i] = x[o + i]! * r * g[i]!
  }
}

/**
 * Backward of `rmsNorm`: dx += r·(dy⊙g) − r³/d · x · Σ(dy⊙g⊙x), dg += Σ_rows dy⊙x·r.
 */
const rmsNormBackward = (dx: Float32Array, dg: Float32Array, dy: Float32Array, x: Float32Array, rstd: Float32Array, g: Float32Array, rows: number, d: number): void => {
  for (let n = 0; n < rows; n++) {
    const o = n * d
    const r = rstd[n]!
    let dot = 0
    for (let i = 0; i < d; i++) dot += dy[o + i]! * g[i]! * x[o + i]!
    const c = (r * r * r * dot) / d
    for (let i = 0; i < d; i++) {
      dx[o + i] = dx[o + i]! + r * dy[o + i]! * g[i]! - c * x[o + i]!
      dg[i] = dg[i]! + dy[o + i]! * x[o + i]! * r
    }
  }
}

/**
 * The tokens a pass computes: the first `lengths[b]` tokens of each row b, laid end to end (compact token
 * n is row token `padded[n]` = b·T + i). A row's later tokens cannot change the loss of earlier ones
 * (attention looks back only), so padding and tokens after a row's last loss position are not computed.
 */
interface Rows {
  readonly B: number
  readonly T: number
  readonly lengths: Int32Array
  /** [B + 1]: row b's compact tokens are [offsets[b], offsets[b + 1]) */
  readonly offsets: Int32Array
  readonly N: number
  /** [N]: b·T + i */
  readonly padded: Int32Array
  readonly tokens: Int32Array
  /** [N]: rotary position (i, or the token's depth in a packed tree) */
  readonly positions: Int32Array
  /** [N]: the compact index of the token whose logits predict this one (−1: none; log-prob 0) */
  readonly parent: Int32Array
  /** [B + 1]: row b's attention weights start at probOffsets[b] (H blocks of causalFloats(lengths[b])) */
  readonly probOffsets: Int32Array
}

/**
 * [N, d] (compact token n, head h at columns h·hd…) → per row b, heads [H, L_b, hd] from offsets[b]·d,
 * applying the rotary rotation when `rope` is given: per head, dims i and i + hd/2 form a pair
 * (a, b) ↦ (a·cos − b·sin, b·cos + a·sin) at angle t·θ_i, t the token's rotary position.
 */
const splitHeads = (out: Float32Array, x: Float32Array, rows: Rows, H: number, hd: number, rope: Rope | undefined): void => {
  const d = H * hd
  const half = hd / 2
  for (let b = 0; b < rows.B; b++) {
    const L = rows.lengths[b]!
    const o0 = rows.offsets[b]!
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < L; t++) {
        const src = (o0 + t) * d + h * hd
        const dst = o0 * d + (h * L + t) * hd
        if (rope === undefined) {
          for (let i = 0; i < hd; i++) out[dst + i] = x[src + i]!
          continue
        }
        const ro = rows.positions[o0 + t]! * hd
        for (let i = 0; i < half; i++) {
          const a = x[src + i]!
          const bb = x[src + i + half]!
          const c = rope.cos[ro + i]!
          const s = rope.sin[ro + i]!
          out[dst + i] = a * c - bb * s
          out[dst + i + half] = bb * c + a * s
        }
      }
    }
  }
}

/** Transpose of `splitHeads` (the inverse rotation when `rope` is given): per-row heads → [N, d]. */
const mergeHeads = (out: Float32Array, x: Float32Array, rows: Rows, H: number, hd: number, rope: Rope | undefined): void => {
  const d = H * hd
  const half = hd / 2
  for (let b = 0; b < rows.B; b++) {
    const L = rows.lengths[b]!
    const o0 = rows.offsets[b]!
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < L; t++) {
        const dst = (o0 + t) * d + h * hd
        const src = o0 * d + (h * L + t) * hd
        if (rope === undefined) {
          for (let i = 0; i < hd; i++) out[dst + i] = x[src + i]!
          continue
        }
        const ro = rows.positions[o0 + t]! * hd
        for (let i = 0; i < half; i++) {
          const da = x[src + i]!
          const db = x[src + i + half]!
          const c = rope.cos[ro + i]!
          const s = rope.sin[ro + i]!
          out[dst + i] = da * c + db * s
          out[dst + i + half] = db * c - da * s
        }
      }
    }
  }
}

/**
 * Query rows per block of causal attention (as jax-js's `attentionBlock`): queries [s, e) are scored
 * against keys [0, e) only, so the masked upper triangle is mostly skipped (at T = 208, 64% of T×T).
 */
export const attentionBlock = 64

/** The score floats of one head's blocks: Σ over blocks [s, e) of (e − s)·e. */
export const causalFloats = (T: number): number => {
  let n = 0
  for (let s = 0; s < T; s += attentionBlock) {
    const e = Math.min(T, s + attentionBlock)
    n += (e - s) * e
  }
  return n
}

/**
 * In place over the scores of queries [s, e) × keys [0, e) (row-major, e columns): softmax of scale · x
 * over the keys j ≤ i of each query i, zero for j > i; with a row's subtree ends `end`, also zero for
 * the keys j with end[j] ≤ i (not an ancestor of i).
 */
const causalSoftmax = (p: Float32Array, s: number, e: number, scale: number, end?: Int32Array): void => {
  for (let i = s; i < e; i++) {
    const o = (i - s) * e
    if (end !== undefined) for (let j = 0; j < i; j++) if (end[j]! <= i) p[o + j] = -Infinity
    let max = -Infinity
    for (let j = 0; j <= i; j++) max = Math.max(max, p[o + j]!)
    max *= scale
    let sum = 0
    for (let j = 0; j <= i; j++) {
      const x = expF32(p[o + j]! * scale - max)
      p[o + j] = x
      sum += x
    }
    const inv = 1 / sum
    for (let j = 0; j <= i; j++) p[o + j] = p[o + j]! * inv
    for (let j = i + 1; j < e; j++) p[o + j] = 0
  }
}


/** The computed tokens of B rows of T (`lengths[b]` of row b, default all), checked against the config and the layout. */
const rowsOf = (c: ModelConfig, tokens: Int32Array, B: number, T: number, layout: TreeLayout | undefined, lengths: ArrayLike<number> | undefined): Rows => {
  if (T > c.context) throw invalid("native forward", `${T} tokens per row exceed the context ${c.context}`)
  if (tokens.length < B * T) throw invalid("native forward", `${tokens.length} tokens for ${B} rows of ${T}`)
  const ls = Int32Array.from({ length: B }, (_, b) => (lengths === undefined ? T : lengths[b]!))
  const offsets = new Int32Array(B + 1)
  const probOffsets = new Int32Array(B + 1)
  for (let b = 0; b < B; b++) {
    const L = ls[b]!
    if (!(Number.isInteger(L) && L >= 0 && L <= T)) throw invalid(`native forward: row ${b}`, `length ${L} is not in [0, ${T}]`)
    offsets[b + 1] = offsets[b]! + L
    probOffsets[b + 1] = probOffsets[b]! + c.heads * causalFloats(L)
  }
  const N = offsets[B]!
  const padded = new Int32Array(N)
  const toks = new Int32Array(N)
  const positions = new Int32Array(N)
  const parent = new Int32Array(N).fill(-1)
  for (let b = 0; b < B; b++) {
    const o0 = offsets[b]!
    for (let i = 0; i < ls[b]!; i++) {
      const n = o0 + i
      const q = b * T + i
      const where = `native forward: row ${b} token ${i}`
      const tok = tokens[q]!
      if (!(tok >= 0 && tok < c.vocab)) throw invalid(where, `token ${tok} is outside the vocabulary of ${c.vocab}`)
      padded[n] = q
      toks[n] = tok
      if (layout === undefined) {
        positions[n] = i
        parent[n] = i > 0 ? n - 1 : -1
        continue
      }
      const pos = layout.positions[q]!
      const end = layout.end[q]!
      if (!(pos >= 0 && pos < c.context)) throw invalid(`${where} (packed tree)`, `position ${pos} is outside the context ${c.context}`)
      if (!(end > i && end <= T)) throw invalid(`${where} (packed tree)`, `subtree end ${end} is not in (${i}, ${T}]`)
      positions[n] = pos
      if (layout.predicted[q] === 1) {
        const from = layout.parent[q]! - b * T
        if (!(from >= 0 && from < i)) throw invalid(`${where} (packed tree)`, `parent ${layout.parent[q]} is not an earlier token of row ${b}`)
        parent[n] = o0 + from
      }
    }
  }
  return { B, T, lengths: ls, offsets, N, padded, tokens: toks, positions, parent, probOffsets }
}

/**
 * The forward pass of `B` rows of `T` tokens (`tokens[b·T + t]`; a packed tree's with `layout`), computing
 * only the first `lengths[b]` tokens of row b (default: all T), saving what the backward pass needs.
 * Every buffer comes from `ops.alloc`, so a caller that scopes the arena frees them all at once.
 */
export const forward = (
  c: ModelConfig,
  ops: NativeOps,
  w: NativeWeights,
  rope: Rope,
  tokens: Int32Array,
  B: number,
  T: number,
  layout?: TreeLayout,
  lengths?: ArrayLike<number>
): Forward => {
  const d = c.dModel
  const m = c.mlpWidth
  const H = c.heads
  const hd = headDim(c)
  const V = c.vocab
  const rows = rowsOf(c, tokens, B, T, layout, lengths)
  const N = rows.N
  const { alloc, matmul } = ops
  const scale = 1 / Math.sqrt(hd)

  let x = alloc(N * d)
  for (let n = 0; n < N; n++) {
    const tok = rows.tokens[n]!
    x.set(w.embed.subarray(tok * d, tok * d + d), n * d)
  }
  const tmp = alloc(N * d)
  const layers: Array<LayerActs> = []
  for (const p of w.layers) {
    const h1 = alloc(N * d)
    const rstd1 = alloc(N)
    rmsNorm(h1, rstd1, x, p.attnNorm, N, d, c.normEps)
    const q = alloc(N * d)
    const k = alloc(N * d)
    const v = alloc(N * d)
    matmul(tmp, h1, p.wq, N, d, d)
    splitHeads(q, tmp, rows, H, hd, rope)
    matmul(tmp, h1, p.wk, N, d, d)
    splitHeads(k, tmp, rows, H, hd, rope)
    matmul(tmp, h1, p.wv, N, d, d)
    splitHeads(v, tmp, rows, H, hd, undefined)
    const probs = alloc(rows.probOffsets[B]!)
    for (let b = 0; b < B; b++) {
      const L = rows.lengths[b]!
      const block = causalFloats(L)
      const ends = layout?.end.subarray(b * T, b * T + L)
      for (let h = 0; h < H; h++) {
        const base = rows.offsets[b]! * d + h * L * hd
        const span = (x: Float32Array, from: number, to: number) => x.subarray(base + from * hd, base + to * hd)
        let at = rows.probOffsets[b]! + h * block
        for (let s0 = 0; s0 < L; s0 += attentionBlock) {
          const e = Math.min(L, s0 + attentionBlock)
          const P = probs.subarray(at, at + (e - s0) * e)
          at += (e - s0) * e
          matmul(P, span(q, s0, e), span(k, 0, e), e - s0, hd, e, { transB: true })
          causalSoftmax(P, s0, e, scale, ends)
          matmul(span(tmp, s0, e), P, span(v, 0, e), e - s0, e, hd)
        }
      }
    }
    const att = alloc(N * d)
    mergeHeads(att, tmp, rows, H, hd, undefined)
    const x1 = alloc(N * d)
    x1.set(x)
    matmul(x1, att, p.wo, N, d, d, { accumulate: true })
    const h2 = alloc(N * d)
    const rstd2 = alloc(N)
    rmsNorm(h2, rstd2, x1, p.mlpNorm, N, d, c.normEps)
    const gate = alloc(N * m)
    const up = alloc(N * m)
    const act = alloc(N * m)
    const sig = alloc(N * m)
    matmul(gate, h2, p.wGate, N, d, m)
    matmul(up, h2, p.wUp, N, d, m)
    // σ(gate) is kept for the backward pass: act = gate·σ(gate)·up
    for (let i = 0; i < N * m; i++) {
      const g = gate[i]!
      const sg = 1 / (1 + expF32(-g))
      act[i] = g * sg * up[i]!
      sig[i] = sg
    }
    const x2 = alloc(N * d)
    x2.set(x1)
    matmul(x2, act, p.wDown, N, m, d, { accumulate: true })
    layers.push({ x, h1, rstd1, q, k, v, probs, att, x1, h2, rstd2, gate, sig, up, act })
    x = x2
  }
  const hF = alloc(N * d)
  const rstdF = alloc(N)
  rmsNorm(hF, rstdF, x, w.finalNorm, N, d, c.normEps)
  const probs = alloc(N * V)
  if (w.head !== undefined) matmul(probs, hF, w.head, N, d, V)
  else matmul(probs, hF, w.embed, N, d, V, { transB: true })
  // token n is predicted by the logits of token parent[n] (n − 1 in a plain row), if at all; the target
  // logits are read first, then every token's softmax replaces its logits in place
  const target = alloc(N)
  for (let n = 0; n < N; n++) {
    const r = rows.parent[n]!
    target[n] = r >= 0 ? probs[r * V + rows.tokens[n]!]! : 0
  }
  const lse = alloc(N)
  const ent = alloc(N)
  for (let n = 0; n < N; n++) {
    const o = n * V
    let max = -Infinity
    for (let j = 0; j < V; j++) max = Math.max(max, probs[o + j]!)
    // one exp per logit: e_j = exp(l_j − max); lse = max + log Σe; entropy = lse − Σ e_j·l_j / Σe
    let sum = 0
    let dot = 0
    for (let j = 0; j < V; j++) {
      const l = probs[o + j]!
      const e = expF32(l - max)
      probs[o + j] = e
      sum += e
      dot += e * l
    }
    const inv = 1 / sum
    lse[n] = max + Math.log(sum)
    ent[n] = lse[n]! - dot * inv
    for (let j = 0; j < V; j++) probs[o + j] = probs[o + j]! * inv
  }
  // per row token (padded layout; 0 where not computed or not predicted)
  const logp = alloc(B * T).fill(0)
  const entropy = alloc(B * T).fill(0)
  for (let n = 0; n < N; n++) {
    const r = rows.parent[n]!
    if (r < 0) continue
    logp[rows.padded[n]!] = target[n]! - lse[r]!
    entropy[rows.padded[n]!] = ent[r]!
  }
  return { rows, layers, xF: x, hF, rstdF, probs, logp, entropy }
}

/**
 * The backward pass: given dL/d logp per token (`dlogp[b·T + t]`; ignored where nothing predicts it), ADDS every
 * weight's gradient into `grad` (same layout as the weights). Scratch buffers come from `ops.alloc`.
 */
export const backward = (c: ModelConfig, ops: NativeOps, w: NativeWeights, rope: Rope, f: Forward, dlogp: ArrayLike<number>, grad: NativeWeights): void => {
  const d = c.dModel
  const m = c.mlpWidth
  const H = c.heads
  const hd = headDim(c)
  const V = c.vocab
  const rows = f.rows
  const { B, T, N } = rows
  const { alloc, matmul } = ops
  const scale = 1 / Math.sqrt(hd)

  // d logp[n] / d logits[r, j] = onehot(token n)_j − softmax_j for the token r that predicts n (in a
  // tree a branching token predicts several children: their terms add up)
  const dlogits = alloc(N * V).fill(0)
  const gsum = alloc(N).fill(0)
  for (let n = 0; n < N; n++) {
    const r = rows.parent[n]!
    const g = dlogp[rows.padded[n]!]!
    if (r < 0 || g === 0) continue
    gsum[r] = gsum[r]! + g
    dlogits[r * V + rows.tokens[n]!] += g
  }
  for (let r = 0; r < N; r++) {
    const g = gsum[r]!
    if (g === 0) continue
    const o = r * V
    for (let j = 0; j < V; j++) dlogits[o + j] = dlogits[o + j]! - g * f.probs[o + j]!
  }
  const dh = alloc(N * d)
  if (w.head !== undefined) {
    matmul(dh, dlogits, w.head, N, V, d, { transB: true })
    matmul(grad.head!, f.hF, dlogits, d, N, V, { transA: true, accumulate: true })
  } else {
    matmul(dh, dlogits, w.embed, N, V, d)
    matmul(grad.embed, dlogits, f.hF, V, N, d, { transA: true, accumulate: true })
  }
  const dx = alloc(N * d).fill(0)
  rmsNormBackward(dx, grad.finalNorm, dh, f.xF, f.rstdF, w.finalNorm, N, d)

  const dact = alloc(N * m)
  const dgate = alloc(N * m)
  const dup = alloc(N * m)
  const datt = alloc(N * d)
  const dout = alloc(N * d)
  const dq = alloc(N * d)
  const dk = alloc(N * d)
  const dv = alloc(N * d)
  const dqm = alloc(N * d)
  const dP = alloc(Math.min(T, attentionBlock) * T)
  for (let l = c.layers - 1; l >= 0; l--) {
    const p = w.layers[l]!
    const gp = grad.layers[l]!
    const a = f.layers[l]!
    // MLP: x2 = x1 + (silu(h2·Wg) ⊙ h2·Wu)·Wd
    matmul(dact, dx, p.wDown, N, d, m, { transB: true })
    matmul(gp.wDown, a.act, dx, m, N, d, { transA: true, accumulate: true })
    for (let i = 0; i < N * m; i++) {
      const g = a.gate[i]!
      const sg = a.sig[i]!
      dgate[i] = dact[i]! * a.up[i]! * sg * (1 + g * (1 - sg))
      dup[i] = dact[i]! * g * sg
    }
    matmul(dh, dgate, p.wGate, N, m, d, { transB: true })
    matmul(dh, dup, p.wUp, N, m, d, { transB: true, accumulate: true })
    matmul(gp.wGate, a.h2, dgate, d, N, m, { transA: true, accumulate: true })
    matmul(gp.wUp, a.h2, dup, d, N, m, { transA: true, accumulate: true })
    rmsNormBackward(dx, gp.mlpNorm, dh, a.x1, a.rstd2, p.mlpNorm, N, d)
    // attention: x1 = x + attention(…)·Wo
    matmul(datt, dx, p.wo, N, d, d, { transB: true })
    matmul(gp.wo, a.att, dx, d, N, d, { transA: true, accumulate: true })
    splitHeads(dout, datt, rows, H, hd, undefined)
    dv.fill(0)
    dk.fill(0)
    for (let b = 0; b < B; b++) {
      const L = rows.lengths[b]!
      const block = causalFloats(L)
      for (let h = 0; h < H; h++) {
        const base = rows.offsets[b]! * d + h * L * hd
        const span = (x: Float32Array, from: number, to: number) => x.subarray(base + from * hd, base + to * hd)
        let at = rows.probOffsets[b]! + h * block
        for (let s0 = 0; s0 < L; s0 += attentionBlock) {
          const e = Math.min(L, s0 + attentionBlock)
          const size = (e - s0) * e
          const P = a.probs.subarray(at, at + size)
          at += size
          const dS = dP.subarray(0, size)
          const dO = span(dout, s0, e)
          // dP = dO · vᵀ; dv += Pᵀ · dO
          matmul(dS, dO, span(a.v, 0, e), e - s0, hd, e, { transB: true })
          matmul(span(dv, 0, e), P, dO, e, e - s0, hd, { transA: true, accumulate: true })
          // softmax backward: dS = P ⊙ (dP − Σ_j P·dP), times the score scale
          for (let i = s0; i < e; i++) {
            const o = (i - s0) * e
            let dot = 0
            for (let j = 0; j <= i; j++) dot += P[o + j]! * dS[o + j]!
            for (let j = 0; j <= i; j++) dS[o + j] = P[o + j]! * (dS[o + j]! - dot) * scale
            for (let j = i + 1; j < e; j++) dS[o + j] = 0
          }
          // dq = dS · k; dk += dSᵀ · q
          matmul(span(dq, s0, e), dS, span(a.k, 0, e), e - s0, e, hd)
          matmul(span(dk, 0, e), dS, span(a.q, s0, e), e, e - s0, hd, { transA: true, accumulate: true })
        }
      }
    }
    // back through the rotation and the head split; dh = dq·Wqᵀ + dk·Wkᵀ + dv·Wvᵀ
    mergeHeads(dqm, dq, rows, H, hd, rope)
    matmul(dh, dqm, p.wq, N, d, d, { transB: true })
    matmul(gp.wq, a.h1, dqm, d, N, d, { transA: true, accumulate: true })
    mergeHeads(dqm, dk, rows, H, hd, rope)
    matmul(dh, dqm, p.wk, N, d, d, { transB: true, accumulate: true })
    matmul(gp.wk, a.h1, dqm, d, N, d, { transA: true, accumulate: true })
    mergeHeads(dqm, dv, rows, H, hd, undefined)
    matmul(dh, dqm, p.wv, N, d, d, { transB: true, accumulate: true })
    matmul(gp.wv, a.h1, dqm, d, N, d, { transA: true, accumulate: true })
    rmsNormBackward(dx, gp.attnNorm, dh, a.x, a.rstd1, p.attnNorm, N, d)
  }
  // the embedding: a scatter-add of each token's gradient
  for (let n = 0; n < N; n++) {
    const o = rows.tokens[n]! * d
    for (let i = 0; i < d; i++) grad.embed[o + i] = grad.embed[o + i]! + dx[n * d + i]!
  }
}
