/**
 * Training the embedded policy: packs sequences into padded micro-batches, runs a jit-compiled
 * value-and-grad of the policy loss (PPO family, see loss.ts) or of next-token cross-entropy (SFT),
 * accumulates gradients over micro-batches (the loss is normalized by the whole mini-batch's counts,
 * so the sum equals the full-batch loss), clips the global gradient norm and takes an AdamW step.
 * Synchronous and Effect-free; the Trainer adapter (src/trainer/embedded.ts) wraps it.
 */
import { jit, lax, nn, numpy as np, type OwnedFunction, tree, valueAndGrad } from "@jax-js/jax"
import type { OptimizerStepFigures, TrainSequence } from "../core/batch.ts"
import { packTree } from "../core/treePack.ts"
import { aggregationScale, klEstimators, type Normalizer, type PolicyLossConfig } from "../core/loss.ts"
import type { ModelConfig } from "./config.ts"
import { forwardLogits, ropeTables, type RopeTables, ropePrefix, tokenLogprobs } from "./forward.ts"
import { policyLossValue, policyTokenLoss, sftLossValue } from "./loss.ts"
import type { GradPool, GradShare } from "./parallel.ts"
import { disposeParams, fromLeaves, leaves, type Params, refParams } from "./params.ts"
import type { Policy } from "./policy.ts"

export interface AdamWConfig {
  readonly lr: number
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  /** decoupled weight decay, applied to matrices only (not norm gains) */
  readonly weightDecay: number
  /** global gradient-norm clip (Infinity: off) */
  readonly maxGradNorm: number
}

export const defaultAdamW: AdamWConfig = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }

/** One padded micro-batch on the host. */
export interface MicroBatch {
  readonly rows: number
  readonly length: number
  readonly realRows: number
  readonly tokens: Int32Array<ArrayBuffer>
  readonly mask: Float64Array<ArrayBuffer>
  readonly advantages: Float64Array<ArrayBuffer>
  readonly oldLogprobs: Float64Array<ArrayBuffer>
  readonly refLogprobs: Float64Array<ArrayBuffer>
  /** per row: aggregation scale × weight */
  readonly scale: Float64Array<ArrayBuffer>
}

/** A supervised sequence: train on tokens where the mask is 1 (entry t: token t given tokens < t). */
export interface SftSequence {
  readonly tokens: ReadonlyArray<number>
  readonly lossMask: ReadonlyArray<number>
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)))

/**
 * Training length bucket: the next multiple of 16. Finer than the sampler's buckets (multiples of 32):
 * a micro-batch costs in proportion to its length (attention to its square), and padding is masked out,
 * so 208-token sequences train at 208 rather than 224 (−9% step time) for a few more compiled shapes.
 */
export const trainLengthBucket = (n: number): number => Math.max(16, Math.ceil(n / 16) * 16)

/** Splits sequences into micro-batches of at most `rows` rows (power-of-two row buckets, `trainLengthBucket` lengths). */
export const packMicroBatches = (
  seqs: ReadonlyArray<{
    readonly tokens: ReadonlyArray<number>
    readonly lossMask: ReadonlyArray<number>
    readonly advantages?: ReadonlyArray<number>
    readonly oldLogprobs?: ReadonlyArray<number>
    readonly refLogprobs?: ReadonlyArray<number> | undefined
  }>,
  scaleOf: (index: number, maskedTokens: number) => number,
  rows: number,
  context: number,
  pad: number
): Array<MicroBatch> => {
  const out: Array<MicroBatch> = []
  for (let i0 = 0; i0 < seqs.length; i0 += rows) {
    const group = seqs.slice(i0, i0 + rows)
    const B = Math.min(rows, nextPow2(group.length))
    const maxLen = Math.max(2, ...group.map((s) => s.tokens.length))
    if (maxLen > context) throw new RangeError(`train: a sequence of ${maxLen} tokens exceeds the context ${context}`)
    const T = Math.min(context, trainLengthBucket(maxLen))
    const mb = {
      rows: B, length: T, realRows: group.length,
      tokens: new Int32Array(B * T).fill(pad),
      mask: new Float64Array(B * T),
      advantages: new Float64Array(B * T),
      oldLogprobs: new Float64Array(B * T),
      refLogprobs: new Float64Array(B * T),
      scale: new Float64Array(B)
    }
    group.forEach((s, b) => {
      let masked = 0
      for (let t = 0; t < s.tokens.length; t++) {
        mb.tokens[b * T + t] = s.tokens[t]!
        if (s.lossMask[t] !== 1) continue // values under mask 0 are never read (they may be anything)
        masked++
        mb.mask[b * T + t] = 1
        mb.advantages[b * T + t] = s.advantages?.[t] ?? 0
        mb.oldLogprobs[b * T + t] = s.oldLogprobs?.[t] ?? 0
        mb.refLogprobs[b * T + t] = s.refLogprobs?.[t] ?? 0
      }
      mb.scale[b] = scaleOf(i0 + b, masked)
    })
    out.push(mb)
  }
  return out
}

/**
 * One micro-batch of packed trees (src/core/treePack.ts): rows of trie tokens with their positions,
 * parents and subtree ends, and one loss entry per (sequence, masked token) pointing at its row token,
 * with that sequence's advantage, old/ref log-prob and aggregation scale × weight. Entries are padded to
 * a power of two (mask 0, weight 0).
 */
export interface TreeMicroBatch {
  readonly kind: "tree"
  readonly rows: number
  readonly length: number
  readonly realRows: number
  readonly tokens: Int32Array<ArrayBuffer>
  readonly positions: Int32Array<ArrayBuffer>
  readonly end: Int32Array<ArrayBuffer>
  /** per row token: the flat index (row · length + i) of the token whose logits predict it (itself for a first token or padding) */
  readonly parent: Int32Array<ArrayBuffer>
  /** per row token: 0 for a first token or padding (log-prob 0), else 1 */
  readonly predicted: Float64Array<ArrayBuffer>
  /** per entry: flat row-token index */
  readonly index: Int32Array<ArrayBuffer>
  /** per entry: 1 for a real entry */
  readonly mask: Float64Array<ArrayBuffer>
  readonly advantages: Float64Array<ArrayBuffer>
  readonly oldLogprobs: Float64Array<ArrayBuffer>
  readonly refLogprobs: Float64Array<ArrayBuffer>
  /** per entry: aggregation scale × weight of its sequence */
  readonly scale: Float64Array<ArrayBuffer>
  /** per entry: its sequence (batch index; −1 for padding) */
  readonly sequence: Int32Array<ArrayBuffer>
}

export type AnyMicroBatch = MicroBatch | TreeMicroBatch

export const isTree = (mb: AnyMicroBatch): mb is TreeMicroBatch => (mb as TreeMicroBatch).kind === "tree"

/** How policy steps lay out their sequences: one row each (default) or packed trees. */
export interface TreePackingOptions {
  /**
   * most tokens of a packed row (default: the length bucket of the longest sequence, so no row is longer
   * than an unpacked one and no token pays for a longer attention row than unpacked)
   */
  readonly rowTokens?: number
}

/**
 * Packs sequences as trees (`packTree`) into micro-batches of at most `rows` rows: each shared prefix
 * once per row. Lengths use `trainLengthBucket`; loss entries are those of `packMicroBatches`.
 */
export const packTreeMicroBatches = (
  seqs: ReadonlyArray<{
    readonly tokens: ReadonlyArray<number>
    readonly lossMask: ReadonlyArray<number>
    readonly advantages: ReadonlyArray<number>
    readonly oldLogprobs: ReadonlyArray<number>
    readonly refLogprobs?: ReadonlyArray<number> | undefined
  }>,
  scaleOf: (index: number, maskedTokens: number) => number,
  rows: number,
  context: number,
  pad: number,
  rowTokens?: number
): Array<TreeMicroBatch> => {
  for (const s of seqs) if (s.tokens.length > context) throw new RangeError(`train: a sequence of ${s.tokens.length} tokens exceeds the context ${context}`)
  const limit = rowTokens ?? trainLengthBucket(Math.max(2, ...seqs.map((s) => s.tokens.length)))
  const packing = packTree(seqs, Math.max(limit, 2))
  const out: Array<TreeMicroBatch> = []
  for (let r0 = 0; r0 < packing.rows.length; r0 += rows) {
    const group = packing.rows.slice(r0, r0 + rows)
    const B = Math.min(rows, nextPow2(group.length))
    const T = trainLengthBucket(Math.max(2, ...group.map((r) => r.tokens.length)))
    const tokens = new Int32Array(B * T).fill(pad)
    const positions = new Int32Array(B * T)
    const end = new Int32Array(B * T)
    const parent = Int32Array.from({ length: B * T }, (_, i) => i)
    const predicted = new Float64Array(B * T)
    for (let i = 0; i < B * T; i++) end[i] = (i % T) + 1
    const entries: Array<{ index: number; seq: number; t: number; scale: number }> = []
    group.forEach((row, b) => {
      const n = row.tokens.length
      tokens.set(row.tokens, b * T)
      positions.set(row.positions, b * T)
      end.set(row.end, b * T)
      for (let i = 0; i < n; i++) {
        if (row.parent[i]! >= 0) {
          parent[b * T + i] = b * T + row.parent[i]!
          predicted[b * T + i] = 1
        }
      }
      for (const s of row.sequences) {
        const q = seqs[s]!
        let masked = 0
        for (let t = 0; t < q.tokens.length; t++) if (q.lossMask[t] === 1) masked++
        const scale = scaleOf(s, masked)
        const slot = packing.slots[s]!
        for (let t = 0; t < q.tokens.length; t++) if (q.lossMask[t] === 1) entries.push({ index: b * T + slot[t]!, seq: s, t, scale })
      }
    })
    const C = Math.max(16, nextPow2(entries.length))
    const mb: TreeMicroBatch = {
      kind: "tree", rows: B, length: T, realRows: group.length, tokens, positions, end, parent, predicted,
      index: new Int32Array(C), mask: new Float64Array(C), advantages: new Float64Array(C), oldLogprobs: new Float64Array(C),
      refLogprobs: new Float64Array(C), scale: new Float64Array(C), sequence: new Int32Array(C).fill(-1)
    }
    entries.forEach((e, k) => {
      const q = seqs[e.seq]!
      mb.index[k] = e.index
      mb.mask[k] = 1
      mb.advantages[k] = q.advantages[e.t]!
      mb.oldLogprobs[k] = q.oldLogprobs[e.t]!
      mb.refLogprobs[k] = q.refLogprobs?.[e.t] ?? 0
      mb.scale[k] = e.scale
      mb.sequence[k] = e.seq
    })
    out.push(mb)
  }
  return out
}

type Aux = { logp: np.Array; entropy: np.Array; clipActive: np.Array }
type GradFn = OwnedFunction<
  (p: Params, tokens: np.Array, mask: np.Array, adv: np.Array, old: np.Array, ref: np.Array, scale: np.Array, cos: np.Array, sin: np.Array) => [
    [np.Array, Aux],
    Params
  ]
>

/** The jit-compiled value-and-grad of one objective (one compile per micro-batch shape). */
const makeGradFn = (c: ModelConfig, objective: PolicyLossConfig | "sft"): GradFn => {
  const f = (p: Params, tokens: np.Array, mask: np.Array, adv: np.Array, old: np.Array, ref: np.Array, scale: np.Array, cos: np.Array, sin: np.Array): [np.Array, Aux] => {
    const logits = forwardLogits(c, p, tokens.ref, cos, sin)
    const { logp, entropy } = tokenLogprobs(logits, tokens, c.vocab)
    disposeParams(p)
    if (objective === "sft") {
      adv.dispose()
      old.dispose()
      ref.dispose()
      const value = sftLossValue(logp.ref, mask, scale)
      return [value, { logp: lax.stopGradient(logp), entropy: lax.stopGradient(entropy), clipActive: np.zeros([1]) }]
    }
    const { value, clipActive } = policyLossValue(objective, logp.ref, { mask, advantages: adv, oldLogprobs: old, refLogprobs: ref, scale })
    return [value, { logp: lax.stopGradient(logp), entropy: lax.stopGradient(entropy), clipActive }]
  }
  return jit(valueAndGrad(f, { hasAux: true })) as unknown as GradFn
}

type TreeGradFn = OwnedFunction<
  (
    p: Params, tokens: np.Array, positions: np.Array, end: np.Array, parent: np.Array, predicted: np.Array,
    index: np.Array, adv: np.Array, old: np.Array, ref: np.Array, scale: np.Array, cos: np.Array, sin: np.Array
  ) => [[np.Array, Aux], Params]
>

/**
 * The jit-compiled value-and-grad of the policy loss on packed trees: rotary positions by depth, the
 * tree attention mask, each row token's log-prob read from its parent's logits, then the loss of
 * `policyTokenLoss` per entry (the aux is per entry too). One compile per (rows, length, entries) shape.
 */
const makeTreeGradFn = (c: ModelConfig, config: PolicyLossConfig): TreeGradFn => {
  const f = (
    p: Params, tokens: np.Array, positions: np.Array, end: np.Array, parent: np.Array, predicted: np.Array,
    index: np.Array, adv: np.Array, old: np.Array, ref: np.Array, scale: np.Array, cosTable: np.Array, sinTable: np.Array
  ): [np.Array, Aux] => {
    const [b, t] = tokens.shape as [number, number]
    const h = cosTable.shape[1]!
    const flat = positions.reshape([b * t])
    const cos = np.take(cosTable, flat.ref, 0).reshape([b, 1, t, h])
    const sin = np.take(sinTable, flat, 0).reshape([b, 1, t, h])
    const logits = forwardLogits(c, p, tokens.ref, cos, sin, end)
    disposeParams(p)
    const lsm = nn.logSoftmax(logits, -1).reshape([b * t, c.vocab])
    const pred = np.take(lsm, parent, 0)
    const targets = nn.oneHot(tokens.reshape([b * t]), c.vocab).astype(pred.dtype)
    const logpTok = np.sum(pred.ref.mul(targets), -1).mul(predicted.ref)
    const entTok = np.sum(np.exp(pred.ref).mul(pred), -1).neg().mul(predicted)
    const logp = np.take(logpTok, index.ref, 0)
    const entropy = np.take(lax.stopGradient(entTok), index, 0)
    const { loss, clipActive } = policyTokenLoss(config, logp.ref, adv, old, ref)
    const value = np.sum(loss.mul(scale))
    return [value, { logp: lax.stopGradient(logp), entropy, clipActive }]
  }
  return jit(valueAndGrad(f, { hasAux: true })) as unknown as TreeGradFn
}

type ScoreFn = OwnedFunction<(p: Params, tokens: np.Array, cos: np.Array, sin: np.Array) => np.Array>

/** The jit-compiled teacher-forced log-probs [B,T] of a batch (no gradient; one compile per shape). */
const makeScoreFn = (c: ModelConfig): ScoreFn =>
  jit((p: Params, tokens: np.Array, cos: np.Array, sin: np.Array) => {
    const logits = forwardLogits(c, p, tokens.ref, cos, sin)
    const { logp, entropy } = tokenLogprobs(logits, tokens, c.vocab)
    disposeParams(p)
    entropy.dispose()
    return logp
  }) as unknown as ScoreFn

type NormFn = OwnedFunction<(g: Params) => np.Array>
type AdamFn = OwnedFunction<(p: Params, g: Params, m: Params, v: Params, hyper: np.Array) => { p: Params; m: Params; v: Params }>

/** Σ of squares of every gradient leaf (consumes). */
const makeNormFn = (): NormFn =>
  jit((g: Params) => {
    const parts = leaves(g).map((a) => np.sum(np.square(a)))
    return parts.reduce((acc, x) => acc.add(x))
  }) as unknown as NormFn

/**
 * AdamW with bias correction; hyper = [lr, β1, β2, ε, weightDecay, gradScale, 1 − β1^t, 1 − β2^t]
 * (a runtime array, so changing the learning rate or the step never recompiles). Consumes everything.
 */
const makeAdamFn = (c: ModelConfig): AdamFn =>
  jit((p: Params, g: Params, m: Params, v: Params, hyper: np.Array) => {
    const h = (i: number) => hyper.ref.slice([i, i + 1]).reshape([])
    const [lr, b1, b2, eps, wd, gs, bc1, bc2] = [0, 1, 2, 3, 4, 5, 6, 7].map(h) as [np.Array, np.Array, np.Array, np.Array, np.Array, np.Array, np.Array, np.Array]
    const ps = leaves(p)
    const gsl = leaves(g)
    const ms = leaves(m)
    const vs = leaves(v)
    const np_: Array<np.Array> = []
    const nm: Array<np.Array> = []
    const nv: Array<np.Array> = []
    ps.forEach((pi, i) => {
      const gi = gsl[i]!.mul(gs.ref)
      const mi = ms[i]!.mul(b1.ref).add(gi.ref.mul(np.subtract(1, b1.ref)))
      const vi = vs[i]!.mul(b2.ref).add(np.square(gi).mul(np.subtract(1, b2.ref)))
      const update = mi.ref.div(bc1.ref).div(np.sqrt(vi.ref.div(bc2.ref)).add(eps.ref))
      const decay = pi.ndim >= 2 ? pi.ref.mul(wd.ref) : np.zerosLike(pi.ref)
      np_.push(pi.sub(update.add(decay).mul(lr.ref)))
      nm.push(mi)
      nv.push(vi)
    })
    for (const a of [lr, b1, b2, eps, wd, gs, bc1, bc2, hyper]) a.dispose()
    return { p: fromLeavesLike(c, np_), m: fromLeavesLike(c, nm), v: fromLeavesLike(c, nv) }
  }) as unknown as AdamFn

const fromLeavesLike = (c: ModelConfig, xs: Array<np.Array>): Params => fromLeaves(c, xs)

/** Figures of one optimizer step (the core's shape, shared with every trainer). */
export type StepStats = OptimizerStepFigures

/** Optimizer state + compiled functions for one policy. */
/**
 * A policy step's micro-batches: each sequence's tokens scaled by the aggregation's normalizer and its
 * weight, as plain rows or (with `trees`) packed rollout trees. Shared by jax-js's and the native learner.
 */
export const packPolicyBatches = (
  seqs: ReadonlyArray<TrainSequence>,
  config: PolicyLossConfig,
  norm: Normalizer,
  microRows: number,
  context: number,
  pad: number,
  trees?: TreePackingOptions
): Array<AnyMicroBatch> => {
  const scaleOf = (i: number, masked: number) => aggregationScale(config.aggregation, norm, masked) * seqs[i]!.weight
  return trees === undefined
    ? packMicroBatches(seqs, scaleOf, microRows, context, pad)
    : packTreeMicroBatches(seqs, scaleOf, microRows, context, pad, trees.rowTokens)
}

/** An SFT step's micro-batches, token-mean over every loss token of the step (`total` of them). */
export const packSftBatches = (seqs: ReadonlyArray<SftSequence>, microRows: number, context: number, pad: number): { mbs: Array<MicroBatch>; total: number } => {
  let total = 0
  for (const s of seqs) for (let t = 0; t < s.lossMask.length; t++) total += s.lossMask[t] === 1 ? 1 : 0
  return { mbs: packMicroBatches(seqs, () => (total > 0 ? 1 / total : 0), microRows, context, pad), total }
}

/**
 * The per-step figures a policy step reports besides its loss and gradient norm (clip fraction, KL,
 * entropy, token count, |π_old − π| log-prob mismatch), from the per-token aux of the micro-batches it
 * trained on. Shared by jax-js's `Learner` and the native learner, so both report the same figures.
 */
export const policyStepFigures = (
  seqs: ReadonlyArray<TrainSequence>,
  config: PolicyLossConfig,
  mbs: ReadonlyArray<AnyMicroBatch>,
  aux: {
    readonly logp: ReadonlyArray<ArrayLike<number>>
    readonly entropy: ReadonlyArray<ArrayLike<number>>
    readonly clipActive: ReadonlyArray<ArrayLike<number>>
  },
  microRows: number
): Omit<StepStats, "loss" | "gradNorm" | "trainMs"> => {
  let tokens = 0
  let clipped = 0
  let ent = 0
  let mismatch = 0
  let kl = 0
  let klTokens = 0
  mbs.forEach((mb, k) => {
    for (let i = 0; i < mb.mask.length; i++) {
      if (mb.mask[i] !== 1) continue
      tokens++
      clipped += aux.clipActive[k]![i]!
      ent += aux.entropy[k]![i]!
      const lp = aux.logp[k]![i]!
      mismatch += Math.abs(mb.oldLogprobs[i]! - lp)
      const s = isTree(mb) ? seqs[mb.sequence[i]!] : seqs[k * microRows + Math.floor(i / mb.length)]
      if (s?.refLogprobs !== undefined) {
        kl += klEstimators[config.klEstimator].value(lp, mb.refLogprobs[i]!)
        klTokens++
      }
    }
  })
  const d = (x: number, n: number) => (n > 0 ? x / n : 0)
  return { clipFraction: d(clipped, tokens), kl: d(kl, klTokens), entropy: d(ent, tokens), tokens, logprobMismatch: d(mismatch, tokens) }
}

export class Learner {
  readonly policy: Policy
  adam: AdamWConfig
  private m: Params
  private v: Params
  private t = 0
  private readonly rope: RopeTables
  private readonly gradFns = new Map<string, GradFn>()
  private readonly treeGradFns = new Map<string, TreeGradFn>()
  private readonly normFn: NormFn
  private readonly adamFn: AdamFn
  private scoreFn: ScoreFn | undefined
  private readonly dtype: np.DType
  private disposed = false

  constructor(policy: Policy, adam: AdamWConfig = defaultAdamW) {
    this.policy = policy
    this.adam = adam
    this.dtype = policy.dtype === "float64" ? np.float64 : np.float32
    this.m = tree.map((a: np.Array) => np.zerosLike(a.ref), policy.params) as Params
    this.v = tree.map((a: np.Array) => np.zerosLike(a.ref), policy.params) as Params
    this.rope = ropeTables(policy.config, this.dtype)
    this.normFn = makeNormFn()
    this.adamFn = makeAdamFn(policy.config)
  }

  get step(): number {
    return this.t
  }

  /** Optimizer moments on the host (checkpoint order), and the step count. */
  optimizerState(): { step: number; m: ReadonlyArray<Float32Array | Float64Array>; v: ReadonlyArray<Float32Array | Float64Array> } {
    const dl = (p: Params) => leaves(p).map((a) => {
      const d = a.ref.dataSync()
      return d instanceof Float64Array ? Float64Array.from(d) : Float32Array.from(d as ArrayLike<number>)
    })
    return { step: this.t, m: dl(this.m), v: dl(this.v) }
  }

  setOptimizerState(step: number, m: ReadonlyArray<ArrayLike<number>>, v: ReadonlyArray<ArrayLike<number>>): void {
    const up = (old: Params, xs: ReadonlyArray<ArrayLike<number>>) => {
      const ls = leaves(old)
      const arrays = ls.map((a, i) => {
        const data = this.dtype === np.float64 ? Float64Array.from(xs[i]!) : Float32Array.from(xs[i]!)
        if (data.length !== a.size) throw new RangeError(`optimizer state: tensor ${i} has ${data.length} values, expected ${a.size}`)
        return np.array(data, { shape: a.shape, dtype: this.dtype })
      })
      disposeParams(old)
      return fromLeaves(this.policy.config, arrays)
    }
    this.m = up(this.m, m)
    this.v = up(this.v, v)
    this.t = step
  }

  /** Re-zeroes the moments (after weights are replaced from outside). */
  resetOptimizer(): void {
    disposeParams(this.m)
    disposeParams(this.v)
    this.m = tree.map((a: np.Array) => np.zerosLike(a.ref), this.policy.params) as Params
    this.v = tree.map((a: np.Array) => np.zerosLike(a.ref), this.policy.params) as Params
    this.t = 0
  }

  private gradFn(objective: PolicyLossConfig | "sft"): GradFn {
    const key = JSON.stringify(objective === "sft" ? "sft" : { ...objective, dualClip: objective.dualClip ?? null })
    let f = this.gradFns.get(key)
    if (!f) {
      f = makeGradFn(this.policy.config, objective)
      this.gradFns.set(key, f)
    }
    return f
  }

  private treeGradFn(objective: PolicyLossConfig): TreeGradFn {
    const key = JSON.stringify({ tree: true, ...objective, dualClip: objective.dualClip ?? null })
    let f = this.treeGradFns.get(key)
    if (!f) {
      f = makeTreeGradFn(this.policy.config, objective)
      this.treeGradFns.set(key, f)
    }
    return f
  }

  /** Value, aux and gradient of one micro-batch (plain rows or packed trees). */
  private microBatchGrad(objective: PolicyLossConfig | "sft", mb: AnyMicroBatch): [[np.Array, Aux], Params] {
    const [B, T] = [mb.rows, mb.length]
    if (isTree(mb)) {
      if (objective === "sft") throw new RangeError("train: SFT steps take plain micro-batches, not packed trees")
      const C = mb.index.length
      const i32 = (d: Int32Array<ArrayBuffer>, shape: Array<number>) => np.array(d, { shape, dtype: np.int32 })
      return this.treeGradFn(objective)(
        refParams(this.policy.params),
        i32(mb.tokens, [B, T]),
        i32(mb.positions, [B, T]),
        i32(mb.end, [B, T]),
        i32(mb.parent, [B * T]),
        this.arr(mb.predicted, [B * T]),
        i32(mb.index, [C]),
        this.arr(mb.advantages, [C]),
        this.arr(mb.oldLogprobs, [C]),
        this.arr(mb.refLogprobs, [C]),
        this.arr(mb.scale, [C]),
        this.rope.cos.ref,
        this.rope.sin.ref
      )
    }
    const [cos, sin] = ropePrefix(this.rope, T)
    return this.gradFn(objective)(
      refParams(this.policy.params),
      np.array(mb.tokens, { shape: [B, T], dtype: np.int32 }),
      this.arr(mb.mask, [B, T]),
      this.arr(mb.advantages, [B, T]),
      this.arr(mb.oldLogprobs, [B, T]),
      this.arr(mb.refLogprobs, [B, T]),
      this.arr(mb.scale, [B, 1]),
      cos,
      sin
    )
  }

  private arr(data: Float64Array<ArrayBuffer>, shape: Array<number>): np.Array {
    return np.array(this.dtype === np.float64 ? data : Float32Array.from(data), { shape, dtype: this.dtype })
  }

  /**
   * Value and gradient summed over micro-batches, without an update. Returns the gradient tree (owned
   * by the caller) and the per-token aux on the host, aligned with the micro-batches.
   */
  valueAndGrad(objective: PolicyLossConfig | "sft", mbs: ReadonlyArray<AnyMicroBatch>): {
    value: number
    grad: Params
    logp: Array<Float32Array | Float64Array>
    entropy: Array<Float32Array | Float64Array>
    clipActive: Array<Float32Array | Float64Array>
  } {
    let acc: Params | undefined
    let value = 0
    const logp: Array<Float32Array | Float64Array> = []
    const entropy: Array<Float32Array | Float64Array> = []
    const clipActive: Array<Float32Array | Float64Array> = []
    for (const mb of mbs) {
      const [[v, aux], g] = this.microBatchGrad(objective, mb)
      value += v.item()
      logp.push(aux.logp.dataSync() as Float32Array)
      entropy.push(aux.entropy.dataSync() as Float32Array)
      clipActive.push(aux.clipActive.dataSync() as Float32Array)
      acc = acc === undefined ? g : (tree.map((a: np.Array, b: np.Array) => a.add(b), acc, g) as Params)
    }
    if (acc === undefined) throw new RangeError("train: no micro-batches")
    return { value, grad: acc, logp, entropy, clipActive }
  }

  /**
   * `valueAndGrad` split across the main thread and a worker pool: micro-batches are cut into
   * contiguous shares (the first for the main thread, the next ones for workers 1, 2, …), computed at
   * the same time, and summed in that order, so the result is deterministic for a fixed pool size and
   * equals the single-thread sum up to float rounding.
   */
  async valueAndGradParallel(pool: GradPool, objective: PolicyLossConfig | "sft", mbs: ReadonlyArray<AnyMicroBatch>): Promise<ReturnType<Learner["valueAndGrad"]>> {
    const per = Math.ceil(mbs.length / (pool.size + 1))
    const gen = this.policy.generation
    let host: ReadonlyArray<Float32Array | Float64Array> | undefined
    const weights = () => (host ??= this.policy.toHost().map((t) => t.data))
    const shares: Array<Promise<GradShare>> = []
    for (let w = 0; w < pool.size; w++) {
      const share = mbs.slice((w + 1) * per, (w + 2) * per)
      if (share.length > 0) shares.push(pool.request(w, objective, share, gen, weights))
    }
    const mine = this.valueAndGrad(objective, mbs.slice(0, per))
    let others: Array<GradShare>
    try {
      others = await Promise.all(shares)
    } catch (e) {
      disposeParams(mine.grad)
      throw e
    }
    if (this.disposed) {
      disposeParams(mine.grad)
      throw new Error("train: the learner was disposed during a step")
    }
    let grad = mine.grad
    let value = mine.value
    const specsOf = leaves(mine.grad).map((a) => a.shape)
    for (const o of others) {
      const g = fromLeaves(this.policy.config, o.grad.map((d, i) => np.array(this.dtype === np.float64 ? Float64Array.from(d) : Float32Array.from(d), { shape: specsOf[i]!, dtype: this.dtype })))
      grad = tree.map((a: np.Array, b: np.Array) => a.add(b), grad, g) as Params
      value += o.value
      mine.logp.push(...o.logp)
      mine.entropy.push(...o.entropy)
      mine.clipActive.push(...o.clipActive)
    }
    return { ...mine, grad, value }
  }

  /**
   * The current weights' teacher-forced log-probs of each sequence (entry t: token t given tokens < t;
   * entry 0 is 0), without a gradient: the trainer's own π_old for truncated importance sampling. The
   * rows are packed as `policyStep` packs them (same buckets, same compiled forward shapes).
   */
  logprobs(seqs: ReadonlyArray<{ readonly tokens: ReadonlyArray<number> }>, microRows: number, pad: number): Array<Float64Array> {
    const f = (this.scoreFn ??= makeScoreFn(this.policy.config))
    const rows = seqs.map((s) => ({ tokens: s.tokens, lossMask: [] }))
    const mbs = packMicroBatches(rows, () => 0, microRows, this.policy.config.context, pad)
    const out: Array<Float64Array> = []
    for (const mb of mbs) {
      const [B, T] = [mb.rows, mb.length]
      const [cos, sin] = ropePrefix(this.rope, T)
      const lp = f(refParams(this.policy.params), np.array(mb.tokens, { shape: [B, T], dtype: np.int32 }), cos, sin).dataSync()
      for (let b = 0; b < mb.realRows; b++) {
        const n = seqs[out.length]!.tokens.length
        out.push(Float64Array.from(lp.subarray(b * T, b * T + n) as ArrayLike<number>))
      }
    }
    return out
  }

  /** Clips and applies a gradient (consumes it); returns the pre-clip global norm. */
  apply(grad: Params): number {
    const a = this.adam
    const norm = Math.sqrt(this.normFn(tree.ref(grad)).item())
    const scale = Number.isFinite(a.maxGradNorm) && norm > a.maxGradNorm ? a.maxGradNorm / (norm + 1e-6) : 1
    this.t += 1
    const hyper = new Float64Array([a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, scale, 1 - a.beta1 ** this.t, 1 - a.beta2 ** this.t])
    const r = this.adamFn(refParams(this.policy.params), grad, this.m, this.v, this.arr(hyper, [8]))
    this.m = r.m
    this.v = r.v
    this.policy.replace(r.p)
    return norm
  }

  private packPolicy(seqs: ReadonlyArray<TrainSequence>, config: PolicyLossConfig, norm: Normalizer, microRows: number, pad: number, trees?: TreePackingOptions): Array<AnyMicroBatch> {
    return packPolicyBatches(seqs, config, norm, microRows, this.policy.config.context, pad, trees)
  }

  /**
   * One optimizer step of the policy loss over `seqs`, normalized by `norm` (the mini-batch's counts).
   */
  policyStep(seqs: ReadonlyArray<TrainSequence>, config: PolicyLossConfig, norm: Normalizer, microRows: number, pad: number, trees?: TreePackingOptions): StepStats {
    const t0 = performance.now()
    const mbs = this.packPolicy(seqs, config, norm, microRows, pad, trees)
    return this.finishPolicyStep(t0, seqs, config, mbs, this.valueAndGrad(config, mbs), microRows)
  }

  /** `policyStep` with the gradient computed data-parallel on the main thread and a worker pool. */
  async policyStepParallel(
    pool: GradPool,
    seqs: ReadonlyArray<TrainSequence>,
    config: PolicyLossConfig,
    norm: Normalizer,
    microRows: number,
    pad: number,
    trees?: TreePackingOptions
  ): Promise<StepStats> {
    const t0 = performance.now()
    const mbs = this.packPolicy(seqs, config, norm, microRows, pad, trees)
    const r = await this.valueAndGradParallel(pool, config, mbs)
    return this.finishPolicyStep(t0, seqs, config, mbs, r, microRows)
  }

  private finishPolicyStep(
    t0: number,
    seqs: ReadonlyArray<TrainSequence>,
    config: PolicyLossConfig,
    mbs: ReadonlyArray<AnyMicroBatch>,
    r: ReturnType<Learner["valueAndGrad"]>,
    microRows: number
  ): StepStats {
    const figures = policyStepFigures(seqs, config, mbs, r, microRows)
    const gradNorm = this.apply(r.grad)
    return { loss: r.value, gradNorm, ...figures, trainMs: performance.now() - t0 }
  }

  /** One optimizer step of token-mean next-token cross-entropy over masked tokens. */
  sftStep(seqs: ReadonlyArray<SftSequence>, microRows: number, pad: number): { loss: number; tokens: number; gradNorm: number; trainMs: number } {
    const t0 = performance.now()
    const { mbs, total } = packSftBatches(seqs, microRows, this.policy.config.context, pad)
    const r = this.valueAndGrad("sft", mbs)
    const gradNorm = this.apply(r.grad)
    return { loss: r.value, tokens: total, gradNorm, trainMs: performance.now() - t0 }
  }

  dispose(): void {
    this.disposed = true
    disposeParams(this.m)
    disposeParams(this.v)
    this.rope.cos.dispose()
    this.rope.sin.dispose()
    for (const f of this.gradFns.values()) f.dispose()
    for (const f of this.treeGradFns.values()) f.dispose()
    this.scoreFn?.dispose()
    this.normFn.dispose()
    this.adamFn.dispose()
  }
}
