/**
 * Incremental evaluation with a KV cache of a fixed length bucket S (64, 128, … up to the context, so
 * each shape compiles once and memory stays flat). Prefill (`makeStep`) feeds C tokens per slot at
 * per-slot start positions and writes them into the cache [B,H,S,h] with a one-hot scatter + `where`;
 * writes at positions ≥ S are dropped, so an idle slot is parked at position `context`. Decoding
 * (`makeDecodeStep`) leaves the main cache untouched: each step writes its key/value into a small
 * side block [B,H,J,h] (column j, the same for every slot) and attends over both; `makeFlush` moves a
 * full block into the main cache once every J steps, so a step costs O(S) reads and O(J) writes
 * instead of rewriting the whole cache. It does not sample (sample.ts) nor manage slots (generate.ts).
 */
import { jit, nn, numpy as np, type OwnedFunction } from "@jax-js/jax"
import { headDim, type ModelConfig } from "./config.ts"
import { applyRope, embed, logitsOf, maskedScore, rmsNorm } from "./forward.ts"
import type { LayerParams, Params } from "./params.ts"

/** Per-layer key and value caches, each [B,H,context,h]. */
export type KvCache = { k: Array<np.Array>; v: Array<np.Array> }

/** Zeroed caches of `length` positions (a bucket; the context by default). */
export const emptyCache = (c: ModelConfig, slots: number, dtype: np.DType = np.float32, length = c.context): KvCache => {
  const shape = [slots, c.heads, length, headDim(c)]
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
  rows: np.Array, // [B,H,S] int32: row of the chunk's [B·H·C, h] keys/values that cache slot s takes (consumed)
  written: np.Array, // [B,1,S,1] bool (consumed)
  allowed: np.Array // [B,1,C,S] bool (consumed)
): { out: np.Array; k: np.Array; v: np.Array } => {
  const [b, ch] = x.shape as [number, number, number]
  const q = applyRope(heads(np.matmul(x.ref, p.wq.ref), c.heads), cos.ref, sin.ref)
  const k = applyRope(heads(np.matmul(x.ref, p.wk.ref), c.heads), cos, sin)
  const v = heads(np.matmul(x, p.wv.ref), c.heads)
  const hd = headDim(c)
  const kNew = np.where(written.ref, np.take(k.reshape([b * c.heads * ch, hd]), rows.ref, 0), kc)
  const vNew = np.where(written, np.take(v.reshape([b * c.heads * ch, hd]), rows, 0), vc)
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
  const s = cache.k[0]!.shape[2]!
  const h = headDim(c)
  const positions = start.ref.reshape([b, 1]).add(np.arange(ch, undefined, undefined, { dtype: np.int32 }).reshape([1, ch]))
  // positions ≥ context (parked slots) clamp to a valid rope row; their writes are dropped below
  const clamped = np.minimum(positions.ref, c.context - 1)
  const cos = np.take(cosTable, clamped.ref.reshape([b * ch]), 0).reshape([b, 1, ch, h])
  const sin = np.take(sinTable, clamped.reshape([b * ch]), 0).reshape([b, 1, ch, h])
  const cachePos = np.arange(s, undefined, undefined, { dtype: np.int32 })
  // cache slot s takes chunk position s − start[b] when that is in [0, C): a gather, O(S·h) per row
  const rel = cachePos.ref.reshape([1, s]).sub(start.reshape([b, 1])) // [B,S]
  const written = np.logicalAnd(np.greaterEqual(rel.ref, 0), np.less(rel.ref, ch)).reshape([b, 1, s, 1])
  const rowBase = np.arange(b * c.heads, undefined, undefined, { dtype: np.int32 }).mul(ch).reshape([b, c.heads, 1])
  const rows = rowBase.add(np.clip(rel, 0, ch - 1).reshape([b, 1, s])) // [B,H,S]
  const allowed = np.lessEqual(cachePos.reshape([1, 1, s]), positions.reshape([b, ch, 1])).reshape([b, 1, ch, s])
  let x = embed(p, tokens)
  const k: Array<np.Array> = []
  const v: Array<np.Array> = []
  p.layers.forEach((layer, l) => {
    const r = layerStep(
      c, layer, rmsNorm(x.ref, layer.attnNorm, c.normEps), cache.k[l]!, cache.v[l]!,
      cos.ref, sin.ref, rows.ref, written.ref, allowed.ref
    )
    x = x.add(r.out)
    x = x.ref.add(mlpStep(rmsNorm(x, layer.mlpNorm, c.normEps), layer))
    k.push(r.k)
    v.push(r.v)
  })
  cos.dispose()
  sin.dispose()
  rows.dispose()
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

/** Length of the side block of a decode step (one flush into the main cache every `sideBlock` steps). */
export const sideBlock = 16

/**
 * Decode-time weights, rebuilt once per weight generation: q, rotate_half(q), k, rotate_half(k) and v
 * come from one fused projection [d, 5d] (rotate_half of x·W is x·W with its columns permuted and
 * negated, so rotary positions become one elementwise step), gate and up from one [d, 2m], and the
 * head is materialized ([d, V], embedᵀ when tied). Fewer, larger kernels per decode step.
 */
export type DecodeLayer = {
  attnNorm: np.Array
  wProj: np.Array
  wo: np.Array
  mlpNorm: np.Array
  wGateUp: np.Array
  wDown: np.Array
}
export type DecodeParams = { embed: np.Array; layers: Array<DecodeLayer>; finalNorm: np.Array; head: np.Array }

/** Columns of w ([d, heads·h]) such that x·result = rotate_half(x·w) per head (consumes w). */
const rotateColumns = (w: np.Array, nHeads: number): np.Array => {
  const [d, n] = w.shape as [number, number]
  const h = n / nHeads
  const w3 = w.reshape([d, nHeads, h])
  const lo = w3.ref.slice([], [], [0, h / 2])
  const hi = w3.slice([], [], [h / 2, h])
  return np.concatenate([hi.neg(), lo], 2).reshape([d, n])
}

export type DecodeParamsFn = OwnedFunction<(p: Params) => DecodeParams>

/** Builds the decode weights from the model weights (consumes them: pass `refParams(p)`). */
export const makeDecodeParams = (c: ModelConfig): DecodeParamsFn =>
  jit((p: Params) => {
    const layers = p.layers.map((l): DecodeLayer => ({
      attnNorm: l.attnNorm,
      wProj: np.concatenate([l.wq.ref, rotateColumns(l.wq, c.heads), l.wk.ref, rotateColumns(l.wk, c.heads), l.wv], 1),
      wo: l.wo,
      mlpNorm: l.mlpNorm,
      wGateUp: np.concatenate([l.wGate, l.wUp], 1),
      wDown: l.wDown
    }))
    const head = p.head.length > 0 ? p.head[0]! : p.embed.ref.transpose().mul(1)
    return { embed: p.embed, layers, finalNorm: p.finalNorm, head }
  }) as unknown as DecodeParamsFn

export const disposeDecodeParams = (p: DecodeParams): void => {
  for (const a of [p.embed, p.finalNorm, p.head]) a.dispose()
  for (const l of p.layers) for (const a of Object.values(l)) a.dispose()
}

export const refDecodeParams = (p: DecodeParams): DecodeParams => ({
  embed: p.embed.ref,
  layers: p.layers.map((l) => ({
    attnNorm: l.attnNorm.ref, wProj: l.wProj.ref, wo: l.wo.ref, mlpNorm: l.mlpNorm.ref, wGateUp: l.wGateUp.ref, wDown: l.wDown.ref
  })),
  finalNorm: p.finalNorm.ref,
  head: p.head.ref
})

const decodeLayer = (
  c: ModelConfig,
  p: DecodeLayer,
  x: np.Array, // [B,1,d] normed input (consumed)
  kc: np.Array, // [B,H,S,h] main cache (consumed: pass a ref)
  vc: np.Array,
  sk: np.Array, // [B,H,J,h] side block (consumed)
  sv: np.Array,
  cos: np.Array, // [B,1,1,h] (consumed)
  sin: np.Array,
  column: np.Array, // [1,1,J,1] bool, true at this step's column (consumed)
  mainAllowed: np.Array, // [B,1,1,S] bool (consumed)
  sideAllowed: np.Array // [1,1,1,J] bool (consumed)
): { out: np.Array; k: np.Array; v: np.Array } => {
  const b = x.shape[0]!
  const d = c.dModel
  const hd = headDim(c)
  const s = kc.shape[2]!
  const scale = 1 / Math.sqrt(hd)
  const proj = np.matmul(x, p.wProj.ref) // [B,1,5d]
  // with one token per slot, [B,1,H,h] → [B,H,1,h] is a reshape
  const part = (i: number) => proj.ref.slice([], [], [i * d, (i + 1) * d]).reshape([b, c.heads, 1, hd])
  const q = part(0).mul(cos.ref).add(part(1).mul(sin.ref))
  const k = part(2).mul(cos).add(part(3).mul(sin))
  const v = part(4)
  proj.dispose()
  const skNew = np.where(column.ref, k, sk)
  const svNew = np.where(column, v, sv)
  const mainScores = np.where(mainAllowed, np.matmul(q.ref, kc.transpose([0, 1, 3, 2])).mul(scale), maskedScore)
  const sideScores = np.where(sideAllowed, np.matmul(q, skNew.ref.transpose([0, 1, 3, 2])).mul(scale), maskedScore)
  const probs = nn.softmax(np.concatenate([mainScores, sideScores], -1), -1)
  const att = np.matmul(probs.ref.slice([], [], [], [0, s]), vc)
    .add(np.matmul(probs.slice([], [], [], [s, s + sideBlock]), svNew.ref))
    .reshape([b, 1, d])
  return { out: np.matmul(att, p.wo.ref), k: skNew, v: svNew }
}

/** SwiGLU on the fused gate/up projection (consumes x). */
const decodeMlp = (x: np.Array, p: DecodeLayer, m: number): np.Array => {
  const gu = np.matmul(x, p.wGateUp.ref)
  const gate = nn.silu(gu.ref.slice([], [], [0, m]))
  return np.matmul(gate.mul(gu.slice([], [], [m, 2 * m])), p.wDown.ref)
}

export type DecodeFn = OwnedFunction<
  (p: DecodeParams, cache: KvCache, side: KvCache, tokens: np.Array, base: np.Array, column: np.Array, cos: np.Array, sin: np.Array) => {
    side: KvCache
    logits: np.Array
  }
>

/**
 * The jit-compiled decode step: tokens [B,1] at positions base[b] + j, where the main cache holds
 * positions < base[b] and side column j' ≤ j holds position base[b] + j'. Returns the side block with
 * column j written and the logits [B,1,V]. Consumes every argument (pass refs of the main cache and
 * of the decode weights).
 */
export const makeDecodeStep = (c: ModelConfig): DecodeFn =>
  jit((p: DecodeParams, cache: KvCache, side: KvCache, tokens: np.Array, base: np.Array, column: np.Array, cosTable: np.Array, sinTable: np.Array) => {
    const b = tokens.shape[0]!
    const s = cache.k[0]!.shape[2]!
    const h = headDim(c)
    const cols = np.arange(sideBlock, undefined, undefined, { dtype: np.int32 })
    const j = column.reshape([1, 1])
    const positions = np.minimum(base.ref.reshape([b, 1]).add(j.ref), c.context - 1).reshape([b])
    const cos = np.take(cosTable, positions.ref, 0).reshape([b, 1, 1, h])
    const sin = np.take(sinTable, positions, 0).reshape([b, 1, 1, h])
    const at = np.equal(cols.ref.reshape([1, sideBlock]), j.ref).reshape([1, 1, sideBlock, 1])
    const sideAllowed = np.lessEqual(cols.reshape([1, sideBlock]), j).reshape([1, 1, 1, sideBlock])
    const mainAllowed = np.less(np.arange(s, undefined, undefined, { dtype: np.int32 }).reshape([1, s]), base.reshape([b, 1])).reshape([b, 1, 1, s])
    let x = np.take(p.embed, tokens, 0)
    const k: Array<np.Array> = []
    const v: Array<np.Array> = []
    p.layers.forEach((layer, l) => {
      const r = decodeLayer(
        c, layer, rmsNorm(x.ref, layer.attnNorm, c.normEps), cache.k[l]!, cache.v[l]!, side.k[l]!, side.v[l]!,
        cos.ref, sin.ref, at.ref, mainAllowed.ref, sideAllowed.ref
      )
      x = x.add(r.out)
      x = x.ref.add(decodeMlp(rmsNorm(x, layer.mlpNorm, c.normEps), layer, c.mlpWidth))
      k.push(r.k)
      v.push(r.v)
    })
    for (const a of [cos, sin, at, mainAllowed, sideAllowed]) a.dispose()
    const logits = np.matmul(rmsNorm(x, p.finalNorm, c.normEps), p.head)
    p.finalNorm.dispose()
    for (const l of p.layers) for (const a of Object.values(l)) a.dispose()
    return { side: { k, v }, logits }
  }) as unknown as DecodeFn

export type FlushFn = OwnedFunction<(cache: KvCache, side: KvCache, base: np.Array, limit: np.Array) => KvCache>

/**
 * Moves side columns into the main cache: column j' of row b goes to position base[b] + j' when that
 * is < limit[b] (and < S). Each cache position reads its column with a gather (`np.take` of the side
 * block's rows), so a flush costs O(S·h) per row, not the O(S·J·h) of a one-hot matmul; a copy, so the
 * values are bit-identical to the matmul's (one 1·x and zeros). Consumes the main cache and its
 * arguments (pass refs of the side block).
 */
export const makeFlush = (): FlushFn =>
  jit((cache: KvCache, side: KvCache, base: np.Array, limit: np.Array) => {
    const b = base.shape[0]!
    const [, nHeads, s, hd] = cache.k[0]!.shape as [number, number, number, number]
    const cachePos = np.arange(s, undefined, undefined, { dtype: np.int32 }).reshape([1, s])
    const rel = cachePos.ref.sub(base.reshape([b, 1])) // [B,S]: the side column position s would come from
    const written = np.logicalAnd(
      np.logicalAnd(np.greaterEqual(rel.ref, 0), np.less(rel.ref, sideBlock)),
      np.less(cachePos, limit.reshape([b, 1]))
    ).reshape([b, 1, s, 1])
    // row of the side block [B·H·J, h] that position s of (slot b, head h) reads
    const column = np.clip(rel, 0, sideBlock - 1).reshape([b, 1, s])
    const rowBase = np.arange(b * nHeads, undefined, undefined, { dtype: np.int32 }).mul(sideBlock).reshape([b, nHeads, 1])
    const rows = rowBase.add(column)
    const move = (main: np.Array, blk: np.Array) =>
      np.where(written.ref, np.take(blk.reshape([b * nHeads * sideBlock, hd]), rows.ref, 0), main)
    const out = { k: cache.k.map((a, l) => move(a, side.k[l]!)), v: cache.v.map((a, l) => move(a, side.v[l]!)) }
    written.dispose()
    rows.dispose()
    return out
  }) as unknown as FlushFn
