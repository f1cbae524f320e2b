/**
 * Incremental evaluation with a fixed-size KV cache: a jit-compiled step that feeds C tokens per slot
 * (C = 1 for decoding, a chunk for prefill) at per-slot start positions, writes their keys/values into
 * the cache [B,H,context,h] with a one-hot scatter + `where` (shapes never change, so each step size
 * compiles once and memory stays flat), and attends with a position mask. Writes at positions
 * ≥ context are dropped, so an idle slot is parked at position `context`.
 * It does not sample (sample.ts) nor manage which slot holds which request (generate.ts).
 */
import { jit, nn, numpy as np, type OwnedFunction } from "@jax-js/jax"
import { headDim, type ModelConfig } from "./config.ts"
import { applyRope, embed, logitsOf, maskedScore, rmsNorm } from "./forward.ts"
import type { LayerParams, Params } from "./params.ts"

/** Per-layer key and value caches, each [B,H,context,h]. */
export type KvCache = { k: Array<np.Array>; v: Array<np.Array> }

export const emptyCache = (c: ModelConfig, slots: number, dtype: np.DType = np.float32): KvCache => {
  const shape = [slots, c.heads, c.context, headDim(c)]
  return {
    k: Array.from({ length: c.layers }, () => np.zeros(shape, { dtype })),
    v: Array.from({ length: c.layers }, () => np.zeros(shape, { dtype }))
  }
}

export const disposeCache = (cache: KvCache): void => {
  for (const a of cache.k) a.dispose()
  for (const a of cache.v) a.dispose()
}

/** [B,C,d] → [B,H,C,h] */
const heads = (x: np.Array, n: number): np.Array => {
  const [b, t, d] = x.shape as [number, number, number]
  return x.reshape([b, t, n, d / n]).transpose([0, 2, 1, 3])
}

const layerStep = (
  c: ModelConfig,
  p: LayerParams,
  x: np.Array, // [B,C,d] normed input (consumed)
  kc: np.Array, // [B,H,S,h] (consumed)
  vc: np.Array,
  cos: np.Array, // [B,1,C,h] (consumed)
  sin: np.Array,
  scatter: np.Array, // [B,1,S,C] one-hot of cache slot ← chunk position (consumed)
  written: np.Array, // [B,1,S,1] bool (consumed)
  allowed: np.Array // [B,1,C,S] bool (consumed)
): { out: np.Array; k: np.Array; v: np.Array } => {
  const [b, ch] = x.shape as [number, number, number]
  const q = applyRope(heads(np.matmul(x.ref, p.wq.ref), c.heads), cos.ref, sin.ref)
  const k = applyRope(heads(np.matmul(x.ref, p.wk.ref), c.heads), cos, sin)
  const v = heads(np.matmul(x, p.wv.ref), c.heads)
  const kNew = np.where(written.ref, np.matmul(scatter.ref, k), kc)
  const vNew = np.where(written, np.matmul(scatter, v), vc)
  const scores = np.matmul(q, kNew.ref.transpose([0, 1, 3, 2])).mul(1 / Math.sqrt(headDim(c)))
  const probs = nn.softmax(np.where(allowed, scores, maskedScore), -1)
  const att = np.matmul(probs, vNew.ref).transpose([0, 2, 1, 3]).reshape([b, ch, c.dModel])
  return { out: np.matmul(att, p.wo.ref), k: kNew, v: vNew }
}

/**
 * One step: tokens [B,C] int32 at positions start[b] + j. Returns the new cache and, when
 * `withLogits`, the logits [B,C,V]. Consumes every argument.
 */
const step = (
  c: ModelConfig,
  withLogits: boolean,
  p: Params,
  cache: KvCache,
  tokens: np.Array,
  start: np.Array, // [B] int32
  cosTable: np.Array, // [S,h]
  sinTable: np.Array
): { cache: KvCache; logits: Array<np.Array> } => {
  const [b, ch] = tokens.shape as [number, number]
  const s = c.context
  const h = headDim(c)
  const positions = start.reshape([b, 1]).add(np.arange(ch, undefined, undefined, { dtype: np.int32 }).reshape([1, ch]))
  // positions ≥ context (parked slots) clamp to a valid rope row; their writes are dropped below
  const clamped = np.minimum(positions.ref, s - 1)
  const cos = np.take(cosTable, clamped.ref.reshape([b * ch]), 0).reshape([b, 1, ch, h])
  const sin = np.take(sinTable, clamped.reshape([b * ch]), 0).reshape([b, 1, ch, h])
  const cachePos = np.arange(s, undefined, undefined, { dtype: np.int32 })
  const hit = np.equal(cachePos.ref.reshape([1, s, 1]), positions.ref.reshape([b, 1, ch])) // [B,S,C]
  const written = np.any(hit.ref, -1, { keepdims: true }).reshape([b, 1, s, 1])
  const scatter = hit.astype(cosTable.dtype).reshape([b, 1, s, ch])
  const allowed = np.lessEqual(cachePos.reshape([1, 1, s]), positions.reshape([b, ch, 1])).reshape([b, 1, ch, s])
  let x = embed(p, tokens)
  const k: Array<np.Array> = []
  const v: Array<np.Array> = []
  p.layers.forEach((layer, l) => {
    const r = layerStep(
      c, layer, rmsNorm(x.ref, layer.attnNorm, c.normEps), cache.k[l]!, cache.v[l]!,
      cos.ref, sin.ref, scatter.ref, written.ref, allowed.ref
    )
    x = x.add(r.out)
    x = x.ref.add(mlpStep(rmsNorm(x, layer.mlpNorm, c.normEps), layer))
    k.push(r.k)
    v.push(r.v)
  })
  cos.dispose()
  sin.dispose()
  scatter.dispose()
  written.dispose()
  allowed.dispose()
  const logits = withLogits ? [logitsOf(c, p, x)] : (x.dispose(), [])
  return { cache: { k, v }, logits }
}

const mlpStep = (x: np.Array, p: LayerParams): np.Array => {
  const gate = nn.silu(np.matmul(x.ref, p.wGate.ref))
  return np.matmul(gate.mul(np.matmul(x, p.wUp.ref)), p.wDown.ref)
}

export type StepFn = OwnedFunction<
  (p: Params, cache: KvCache, tokens: np.Array, start: np.Array, cos: np.Array, sin: np.Array) => {
    cache: KvCache
    logits: Array<np.Array>
  }
>

/** The jit-compiled step (params are consumed: pass `refParams(p)`). */
export const makeStep = (c: ModelConfig, withLogits: boolean): StepFn =>
  jit((p: Params, cache: KvCache, tokens: np.Array, start: np.Array, cos: np.Array, sin: np.Array) => {
    const out = step(c, withLogits, p, cache, tokens, start, cos, sin)
    for (const a of [p.embed, p.finalNorm, ...p.head]) a.dispose()
    for (const l of p.layers) for (const a of Object.values(l)) a.dispose()
    return out
  }) as unknown as StepFn
