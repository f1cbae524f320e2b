/**
 * The llama-style forward pass in jax-js: RMSNorm → causal self-attention with rotary positions →
 * RMSNorm → SwiGLU MLP, pre-norm residuals, final RMSNorm, tied or untied head.
 *
 * Rotary convention (for export): "half-split" (GPT-NeoX / Hugging Face `rotate_half`): in each head of
 * size h, dimension i < h/2 is paired with i + h/2 and rotated by angle pos · θ^(−2i/h). GGUF's llama
 * layout pairs adjacent dims (2i, 2i+1); an exporter permutes the rows of wq and wk as HF's
 * convert script does. Matrices are [in, out].
 *
 * Ownership: the model functions borrow `params` (they take `.ref`s) and consume their activations.
 * This file has no jit and no KV cache (see decode.ts) and no loss (see train.ts).
 */
import { nn, numpy as np } from "@jax-js/jax"
import { headDim, type ModelConfig } from "./config.ts"
import type { LayerParams, Params } from "./params.ts"

/** Large negative score for masked attention positions (finite so softmax of a fully masked row stays finite). */
export const maskedScore = -1e9

export interface RopeTables {
  /** [context, headDim] */
  readonly cos: np.Array
  readonly sin: np.Array
}

/** cos/sin tables for positions 0..context-1 (half-split pairing), computed in float64 on the host. */
export const ropeHost = (c: ModelConfig): { cos: Float64Array; sin: Float64Array } => {
  const h = headDim(c)
  const half = h / 2
  const cos = new Float64Array(c.context * h)
  const sin = new Float64Array(c.context * h)
  for (let t = 0; t < c.context; t++) {
    for (let i = 0; i < h; i++) {
      const angle = t * Math.pow(c.ropeTheta, (-2 * (i % half)) / h)
      cos[t * h + i] = Math.cos(angle)
      sin[t * h + i] = Math.sin(angle)
    }
  }
  return { cos, sin }
}

export const ropeTables = (c: ModelConfig, dtype: np.DType = np.float32): RopeTables => {
  const { cos, sin } = ropeHost(c)
  const h = headDim(c)
  const mk = (d: Float64Array) =>
    np.array(dtype === np.float64 ? Float64Array.from(d) : Float32Array.from(d), { shape: [c.context, h], dtype })
  return { cos: mk(cos), sin: mk(sin) }
}

/** x · g / sqrt(mean(x²) + eps) over the last axis (consumes x, borrows g). */
export const rmsNorm = (x: np.Array, g: np.Array, eps: number): np.Array => {
  const ms = np.mean(np.square(x.ref), -1, { keepdims: true })
  return x.mul(np.reciprocal(np.sqrt(ms.add(eps)))).mul(g.ref)
}

/** rotate_half: (x1, x2) ↦ (−x2, x1) on the last axis (consumes x). */
const rotateHalf = (x: np.Array): np.Array => {
  const h = x.shape[x.ndim - 1]!
  const idx = x.shape.map(() => [] as [])
  const lo = x.ref.slice(...idx.slice(0, -1), [0, h / 2])
  const hi = x.slice(...idx.slice(0, -1), [h / 2, h])
  return np.concatenate([hi.neg(), lo], x.ndim - 1)
}

/** x·cos + rotate_half(x)·sin; cos/sin broadcast against x [B,H,T,h] (all consumed). */
export const applyRope = (x: np.Array, cos: np.Array, sin: np.Array): np.Array =>
  x.ref.mul(cos).add(rotateHalf(x).mul(sin))

/** [B,T,d] → [B,H,T,h] (consumes). */
const splitHeads = (x: np.Array, heads: number): np.Array => {
  const [b, t, d] = x.shape as [number, number, number]
  return x.reshape([b, t, heads, d / heads]).transpose([0, 2, 1, 3])
}

/** [B,H,T,h] → [B,T,d] (consumes). */
const mergeHeads = (x: np.Array): np.Array => {
  const [b, h, t, hd] = x.shape as [number, number, number, number]
  return x.transpose([0, 2, 1, 3]).reshape([b, t, h * hd])
}

/** SwiGLU MLP on normed input (consumes x). */
const mlp = (x: np.Array, p: LayerParams): np.Array => {
  const gate = nn.silu(np.matmul(x.ref, p.wGate.ref))
  const up = np.matmul(x, p.wUp.ref)
  return np.matmul(gate.mul(up), p.wDown.ref)
}

/** Token embeddings [B,T] int32 → [B,T,d] (consumes tokens). */
export const embed = (p: Params, tokens: np.Array): np.Array => np.take(p.embed.ref, tokens, 0)

/** Final norm and head: [B,T,d] → [B,T,V] (consumes x). */
export const logitsOf = (c: ModelConfig, p: Params, x: np.Array): np.Array => {
  const h = rmsNorm(x, p.finalNorm, c.normEps)
  return p.head.length > 0 ? np.matmul(h, p.head[0]!.ref) : np.matmul(h, p.embed.ref.transpose())
}

/**
 * Query rows per block of causal attention. Queries [s, e) see keys [0, e) only, so the blocks skip
 * the masked upper triangle: at T = 208 they score 64% of the T×T pairs (the exp, the softmax and both
 * attention matmuls, forward and backward, shrink alike). Smaller blocks save a little more work for
 * more kernels; 32–128 measured within noise of each other, 64 has the fewest kernels among them.
 */
export const attentionBlock = 64

/**
 * softmax(q·kᵀ/√h + mask)·v for queries [s, e) against keys [0, e) (borrows q, k, v [B,H,T,h] and
 * treeEnd). The mask is causal; with `treeEnd` [B,T] (a packed tree, src/core/treePack.ts) query i also
 * needs i < treeEnd[j] to see key j, i.e. j is i or one of its ancestors.
 */
const causalBlock = (q: np.Array, k: np.Array, v: np.Array, s: number, e: number, scale: number, treeEnd?: np.Array): np.Array => {
  const qb = q.ref.slice([], [], [s, e], [])
  const kb = k.ref.slice([], [], [0, e], [])
  const vb = v.ref.slice([], [], [0, e], [])
  const scores = np.matmul(qb, kb.transpose([0, 1, 3, 2])).mul(scale)
  let allowed = np.tri(e - s, e, s, { dtype: np.bool })
  if (treeEnd !== undefined) {
    const b = treeEnd.shape[0]!
    const ends = treeEnd.ref.slice([], [0, e]).reshape([b, 1, 1, e])
    const rows = np.arange(s, e, 1, { dtype: np.int32 }).reshape([1, 1, e - s, 1])
    allowed = np.logicalAnd(allowed, np.less(rows, ends))
  }
  const probs = nn.softmax(np.where(allowed, scores, maskedScore), -1)
  return np.matmul(probs, vb)
}

/**
 * Causal attention over the whole sequence (consumes x, cos [T,h], sin [T,h]), in blocks of
 * `attentionBlock` query rows. Masked keys get exactly zero weight either way, so the blocks change
 * the result only by float rounding (shorter softmax sums and matmul reductions).
 */
const attentionFull = (c: ModelConfig, p: LayerParams, x: np.Array, cos: np.Array, sin: np.Array, treeEnd?: np.Array): np.Array => {
  const t = x.shape[1]!
  const q = applyRope(splitHeads(np.matmul(x.ref, p.wq.ref), c.heads), cos.ref, sin.ref)
  const k = applyRope(splitHeads(np.matmul(x.ref, p.wk.ref), c.heads), cos, sin)
  const v = splitHeads(np.matmul(x, p.wv.ref), c.heads)
  const scale = 1 / Math.sqrt(headDim(c))
  const blocks: Array<np.Array> = []
  for (let s = 0; s < t; s += attentionBlock) blocks.push(causalBlock(q, k, v, s, Math.min(t, s + attentionBlock), scale, treeEnd))
  q.dispose()
  k.dispose()
  v.dispose()
  const out = blocks.length === 1 ? blocks[0]! : np.concatenate(blocks, 2)
  return np.matmul(mergeHeads(out), p.wo.ref)
}

/**
 * Logits [B,T,V] of a batch of whole sequences (borrows params; consumes tokens, cos, sin: [T,h], or
 * [B,1,T,h] for per-token positions, and treeEnd). With `treeEnd` [B,T] int32 each row is a packed tree
 * (src/core/treePack.ts): token i attends to the tokens j ≤ i with i < treeEnd[j] (its ancestors).
 */
export const forwardLogits = (c: ModelConfig, p: Params, tokens: np.Array, cos: np.Array, sin: np.Array, treeEnd?: np.Array): np.Array => {
  let x = embed(p, tokens)
  for (const layer of p.layers) {
    x = x.ref.add(attentionFull(c, layer, rmsNorm(x, layer.attnNorm, c.normEps), cos.ref, sin.ref, treeEnd))
    x = x.ref.add(mlp(rmsNorm(x, layer.mlpNorm, c.normEps), layer))
  }
  cos.dispose()
  sin.dispose()
  treeEnd?.dispose()
  return logitsOf(c, p, x)
}

/**
 * Per-token log-prob and entropy from logits: entry t scores token t given tokens < t; entry 0 is 0.
 * Consumes logits [B,T,V] and tokens [B,T]. Returns [B,T] each.
 */
export const tokenLogprobs = (logits: np.Array, tokens: np.Array, vocab: number): { logp: np.Array; entropy: np.Array } => {
  const [, t] = tokens.shape as [number, number]
  const lsm = nn.logSoftmax(logits.slice([], [0, t - 1], []), -1)
  const targets = nn.oneHot(tokens.slice([], [1, t]), vocab).astype(lsm.dtype)
  const logp = np.sum(lsm.ref.mul(targets), -1)
  const entropy = np.sum(np.exp(lsm.ref).mul(lsm), -1).neg()
  return { logp: np.pad(logp, [[0, 0], [1, 0]]), entropy: np.pad(entropy, [[0, 0], [1, 0]]) }
}

/** Slices the rope tables to the first T positions (borrows them). */
export const ropePrefix = (r: RopeTables, t: number): [np.Array, np.Array] => [
  r.cos.ref.slice([0, t], []),
  r.sin.ref.slice([0, t], [])
]
