/**
 * `NativeLearner`: the embedded trainer's learner (train.ts's `Learner` contract: policy and SFT steps,
 * value-and-grad, teacher-forced log-probs, AdamW state) on the hand-written model of model.ts instead of
 * jax-js's tape. It holds the weights, their gradient and the AdamW moments as float32 arrays, runs AdamW
 * exactly as `Learner.apply` does (global-norm clipping, bias correction, decoupled decay on matrices),
 * and after every step pushes the new weights into the shared `Policy` so the jax-js sampler serves them.
 * Plain micro-batches and packed trees (trainer.treePacking); with a GradPool of kind "native", steps on
 * several threads (parallel.ts). It does not train float64 policies (a typed error).
 */
import { Schema } from "effect"
import type { TrainSequence } from "../../core/batch.ts"
import { type Normalizer, type PolicyLossConfig } from "../../core/loss.ts"
import type { ModelConfig } from "../config.ts"
import { specs, toDevice } from "../params.ts"
import type { Policy } from "../policy.ts"
import {
  type AdamWConfig,
  type AnyMicroBatch,
  defaultAdamW,
  isTree,
  type MicroBatch,
  packMicroBatches,
  packPolicyBatches,
  packSftBatches,
  policyStepFigures,
  type SftSequence,
  type StepStats,
  type TreeMicroBatch,
  type TreePackingOptions
} from "../train.ts"
import { type GradPool, nativeValueAndGradParallel } from "../parallel.ts"
import { heapBackend, type NativeBackend, plainBackend } from "./backend.ts"
import { Heap } from "./heap.ts"
import { policyTokenLoss, sftTokenLoss, type TokenLoss, treeTokenLoss } from "./loss.ts"
import { backward, forward, type NativeWeights, nativeWeights, type Rope, ropeOf, workspaceFloats } from "./model.ts"

/** A feature or input the native learner does not take: float64 weights, SFT on packed trees, an empty step, a bad optimizer state. */
export class NativeTrainerUnsupported extends Schema.TaggedError<NativeTrainerUnsupported>()("NativeTrainerUnsupported", {
  feature: Schema.String,
  message: Schema.String
}) {}

/** Where the learner computes: on a wasm heap with the SIMD matmul (default), or in plain JS (a reference). */
export type NativeMemory = "heap" | "plain"

/** The learner's buffers: weights, gradient and AdamW moments, on one backend. */
interface State {
  readonly backend: NativeBackend
  readonly heap: Heap | undefined
  readonly weights: NativeWeights
  readonly grad: NativeWeights
  readonly m: ReadonlyArray<Float32Array>
  readonly v: ReadonlyArray<Float32Array>
}

/** bytes a heap keeps free beyond the model's workspace: the matmul's packing scratch and slack */
const HEAP_SLACK_BYTES = 4 << 20


/** Per real row of a plain micro-batch: one past its last loss position (the tokens the loss depends on). */
const lossLengths = (mb: MicroBatch): Int32Array =>
  Int32Array.from({ length: mb.realRows }, (_, b) => {
    for (let t = mb.length - 1; t >= 0; t--) if (mb.mask[b * mb.length + t] === 1) return t + 1
    return 0
  })

/** Per real row of a packed-tree micro-batch: one past the last row token a loss entry reads. */
const treeLengths = (mb: TreeMicroBatch): Int32Array => {
  const out = new Int32Array(mb.realRows)
  for (let e = 0; e < mb.index.length; e++) {
    if (mb.mask[e] !== 1) continue
    const b = Math.floor(mb.index[e]! / mb.length)
    out[b] = Math.max(out[b]!, (mb.index[e]! % mb.length) + 1)
  }
  return out
}

export interface NativeValueAndGrad {
  readonly value: number
  /** the summed gradient, leaves in checkpoint order (the learner's buffers: valid until its next call) */
  readonly grad: ReadonlyArray<Float32Array>
  /** per micro-batch [rows·T] (zero on padding rows) */
  readonly logp: Array<Float32Array>
  readonly entropy: Array<Float32Array>
  readonly clipActive: Array<Float32Array>
}

export class NativeLearner {
  readonly policy: Policy
  adam: AdamWConfig
  private readonly config: ModelConfig
  private readonly memory: NativeMemory
  private readonly rope: Rope
  private readonly sizes: ReadonlyArray<number>
  private state: State
  /** weight decay applies to matrices only (checkpoint order) */
  private readonly decays: ReadonlyArray<boolean>
  private t = 0
  /** the policy generation our weights were last read from or pushed as */
  private generation: number

  constructor(policy: Policy, adam: AdamWConfig = defaultAdamW, memory: NativeMemory = "heap") {
    if (policy.dtype !== "float32") {
      throw new NativeTrainerUnsupported({ feature: "float64", message: `native trainer: the policy is ${policy.dtype}; the native model computes in float32 only` })
    }
    this.policy = policy
    this.adam = adam
    this.config = policy.config
    this.memory = memory
    this.rope = ropeOf(policy.config)
    const ss = specs(policy.config)
    this.sizes = ss.map((s) => s.shape.reduce((a, b) => a * b, 1))
    this.decays = ss.map((s) => s.shape.length >= 2)
    // a heap for 16 rows of the full context to start with; `reserve` grows it when a micro-batch needs more
    this.state = this.build(workspaceFloats(policy.config, 16, policy.config.context), undefined)
    this.generation = -1
    this.pull()
  }

  /** Fresh buffers with room for `workspace` floats of activations, holding `from`'s values when given. */
  private build(workspace: number, from: State | undefined): State {
    const total = this.sizes.reduce((a, b) => a + b, 0)
    const heap = this.memory === "heap" ? Heap.create((4 * total + 8 * this.sizes.length + workspace) * 4 + HEAP_SLACK_BYTES) : undefined
    const backend = heap === undefined ? plainBackend : heapBackend(heap)
    const leavesOf = (old: ReadonlyArray<Float32Array> | undefined) =>
      this.sizes.map((n, i) => {
        const a = backend.alloc(n)
        if (old === undefined) a.fill(0)
        else a.set(old[i]!)
        return a
      })
    return {
      backend,
      heap,
      weights: nativeWeights(this.config, leavesOf(from?.weights.leaves)),
      grad: nativeWeights(this.config, leavesOf(from?.grad.leaves)),
      m: leavesOf(from?.m),
      v: leavesOf(from?.v)
    }
  }

  /** Makes sure the heap has room for a micro-batch of B rows of T tokens (a larger heap, same values, if not). */
  private reserve(B: number, T: number): void {
    const heap = this.state.heap
    if (heap === undefined) return
    const need = workspaceFloats(this.config, B, T) * 4 + HEAP_SLACK_BYTES
    if (heap.free >= need) return
    this.state = this.build(Math.ceil(workspaceFloats(this.config, B, T) * 1.25), this.state)
  }

  /** Bytes of the learner's wasm heap (0 in plain JS); it grows when a micro-batch needs more room. */
  get heapBytes(): number {
    return this.state.heap?.capacity ?? 0
  }

  /** The weight names in checkpoint order (for messages). */
  get leafNames(): ReadonlyArray<string> {
    return specs(this.config).map((s) => s.name)
  }

  get step(): number {
    return this.t
  }

  /** Reads the policy's weights when they changed since we last read or pushed them (a checkpoint load, a weight sync). */
  private pull(): void {
    if (this.generation === this.policy.generation) return
    this.policy.toHost().forEach((h, i) => this.state.weights.leaves[i]!.set(h.data))
    this.generation = this.policy.generation
  }

  /** Installs our weights in the policy (the sampler's copy). */
  private push(): void {
    const ss = specs(this.config)
    this.policy.replace(toDevice(this.config, ss.map((s, i) => ({ name: s.name, shape: s.shape, data: this.state.weights.leaves[i]! })), this.policy.dtype))
    this.generation = this.policy.generation
  }

  /** The current weights, leaves in checkpoint order (the learner's buffers; do not write). */
  hostWeights(): ReadonlyArray<Float32Array> {
    this.pull()
    return this.state.weights.leaves
  }

  optimizerState(): { step: number; m: ReadonlyArray<Float32Array>; v: ReadonlyArray<Float32Array> } {
    return { step: this.t, m: this.state.m.map((a) => Float32Array.from(a)), v: this.state.v.map((a) => Float32Array.from(a)) }
  }

  setOptimizerState(step: number, m: ReadonlyArray<ArrayLike<number>>, v: ReadonlyArray<ArrayLike<number>>): void {
    const set = (dst: ReadonlyArray<Float32Array>, src: ReadonlyArray<ArrayLike<number>>, what: string) => {
      if (src.length !== dst.length) throw new NativeTrainerUnsupported({ feature: "optimizer state", message: `optimizer state ${what}: ${src.length} tensors, expected ${dst.length}` })
      dst.forEach((a, i) => {
        if (src[i]!.length !== a.length) throw new NativeTrainerUnsupported({ feature: "optimizer state", message: `optimizer state ${what}: tensor ${i} has ${src[i]!.length} values, expected ${a.length}` })
      })
      dst.forEach((a, i) => a.set(src[i]!))
    }
    set(this.state.m, m, "m")
    set(this.state.v, v, "v")
    this.t = step
  }

  resetOptimizer(): void {
    for (const a of [...this.state.m, ...this.state.v]) a.fill(0)
    this.t = 0
  }

  /**
   * Value, aux and gradient of one objective summed over micro-batches (no update): aux per row token for
   * plain micro-batches (zero on padding rows), per loss entry for packed trees (zero on padding entries).
   */
  valueAndGrad(objective: PolicyLossConfig | "sft", mbs: ReadonlyArray<AnyMicroBatch>): NativeValueAndGrad {
    if (mbs.length === 0) throw new NativeTrainerUnsupported({ feature: "empty step", message: "native trainer: no micro-batches" })
    this.pull()
    for (const g of this.state.grad.leaves) g.fill(0)
    let value = 0
    const logp: Array<Float32Array> = []
    const entropy: Array<Float32Array> = []
    const clipActive: Array<Float32Array> = []
    mbs.forEach((any, k) => {
      if (isTree(any)) {
        if (objective === "sft") throw new NativeTrainerUnsupported({ feature: "sft on packed trees", message: `native trainer: micro-batch ${k} is a packed tree; SFT steps take plain micro-batches` })
        this.reserve(any.realRows, any.length)
        const tree = any
        const out = this.state.backend.scoped(() => {
          const rows = tree.realRows
          const f = forward(this.config, this.state.backend, this.state.weights, this.rope, tree.tokens, rows, tree.length, tree, treeLengths(tree))
          const loss = treeTokenLoss(objective, tree, f.logp, rows * tree.length)
          backward(this.config, this.state.backend, this.state.weights, this.rope, f, loss.dlogp, this.state.grad)
          const entropy = Float32Array.from(tree.index, (i, e) => (tree.mask[e] === 1 ? f.entropy[i]! : 0))
          return { value: loss.value, logp: loss.entryLogp, entropy, clipActive: loss.clipActive }
        })
        value += out.value
        logp.push(out.logp)
        entropy.push(out.entropy)
        clipActive.push(out.clipActive)
        return
      }
      const mb = any
      const rows = mb.realRows
      const T = mb.length
      this.reserve(rows, T)
      const out = this.state.backend.scoped(() => {
        const f = forward(this.config, this.state.backend, this.state.weights, this.rope, mb.tokens, rows, T, undefined, lossLengths(mb))
        const loss: TokenLoss = objective === "sft" ? sftTokenLoss(mb, f.logp, rows) : policyTokenLoss(objective, mb, f.logp, rows)
        backward(this.config, this.state.backend, this.state.weights, this.rope, f, loss.dlogp, this.state.grad)
        const pad = (x: Float32Array) => {
          const o = new Float32Array(mb.rows * T)
          o.set(x.subarray(0, rows * T))
          return o
        }
        return { value: loss.value, logp: pad(f.logp), entropy: pad(f.entropy), clipActive: pad(loss.clipActive) }
      })
      value += out.value
      logp.push(out.logp)
      entropy.push(out.entropy)
      clipActive.push(out.clipActive)
    })
    return { value, grad: this.state.grad.leaves, logp, entropy, clipActive }
  }

  /** Teacher-forced log-probs of each sequence under the current weights (entry 0 is 0), packed as policy steps pack. */
  logprobs(seqs: ReadonlyArray<{ readonly tokens: ReadonlyArray<number> }>, microRows: number, pad: number): Array<Float64Array> {
    this.pull()
    const mbs = packMicroBatches(seqs.map((s) => ({ tokens: s.tokens, lossMask: [] })), () => 0, microRows, this.config.context, pad)
    const out: Array<Float64Array> = []
    for (const mb of mbs) {
      this.reserve(mb.realRows, mb.length)
      this.state.backend.scoped(() => {
        const lengths = Int32Array.from({ length: mb.realRows }, (_, b) => seqs[out.length + b]!.tokens.length)
        const f = forward(this.config, this.state.backend, this.state.weights, this.rope, mb.tokens, mb.realRows, mb.length, undefined, lengths)
        for (let b = 0; b < mb.realRows; b++) {
          const n = seqs[out.length]!.tokens.length
          out.push(Float64Array.from(f.logp.subarray(b * mb.length, b * mb.length + n)))
        }
      })
    }
    return out
  }

  /**
   * Clips the gradient's global norm and takes one AdamW step (bias-corrected moments, decoupled weight
   * decay on matrices), as `Learner.apply`; pushes the new weights into the policy. Returns the pre-clip norm.
   */
  apply(grad: ReadonlyArray<Float32Array> = this.state.grad.leaves): number {
    this.pull()
    const a = this.adam
    let ss = 0
    for (const g of grad) for (let i = 0; i < g.length; i++) ss += g[i]! * g[i]!
    const norm = Math.sqrt(ss)
    const gs = Number.isFinite(a.maxGradNorm) && norm > a.maxGradNorm ? a.maxGradNorm / (norm + 1e-6) : 1
    this.t += 1
    const bc1 = 1 - a.beta1 ** this.t
    const bc2 = 1 - a.beta2 ** this.t
    grad.forEach((g, k) => {
      const p = this.state.weights.leaves[k]!
      const m = this.state.m[k]!
      const v = this.state.v[k]!
      const wd = this.decays[k] ? a.weightDecay : 0
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]! * gs
        const mi = (m[i] = m[i]! * a.beta1 + gi * (1 - a.beta1))
        const vi = (v[i] = v[i]! * a.beta2 + gi * gi * (1 - a.beta2))
        const update = mi / bc1 / (Math.sqrt(vi / bc2) + a.eps)
        p[i] = p[i]! - (update + p[i]! * wd) * a.lr
      }
    })
    this.push()
    return norm
  }

  /** One optimizer step of the policy loss over `seqs`, normalized by `norm` (the mini-batch's counts). */
  policyStep(seqs: ReadonlyArray<TrainSequence>, config: PolicyLossConfig, norm: Normalizer, microRows: number, pad: number, trees?: TreePackingOptions): StepStats {
    const t0 = performance.now()
    const mbs = this.packPolicy(seqs, config, norm, microRows, pad, trees)
    return this.finishPolicyStep(t0, seqs, config, mbs, this.valueAndGrad(config, mbs), microRows)
  }

  /** `policyStep` with the gradient computed data-parallel on the main thread and a GradPool started with kernels "native" (parallel.ts). */
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
    return this.finishPolicyStep(t0, seqs, config, mbs, await nativeValueAndGradParallel(this, pool, config, mbs), microRows)
  }

  private packPolicy(seqs: ReadonlyArray<TrainSequence>, config: PolicyLossConfig, norm: Normalizer, microRows: number, pad: number, trees?: TreePackingOptions): Array<AnyMicroBatch> {
    return packPolicyBatches(seqs, config, norm, microRows, this.config.context, pad, trees)
  }

  private finishPolicyStep(t0: number, seqs: ReadonlyArray<TrainSequence>, config: PolicyLossConfig, mbs: ReadonlyArray<AnyMicroBatch>, r: NativeValueAndGrad, microRows: number): StepStats {
    const figures = policyStepFigures(seqs, config, mbs, r, microRows)
    const gradNorm = this.apply(r.grad)
    return { loss: r.value, gradNorm, ...figures, trainMs: performance.now() - t0 }
  }

  /** One optimizer step of token-mean next-token cross-entropy over masked tokens. */
  sftStep(seqs: ReadonlyArray<SftSequence>, microRows: number, pad: number): { loss: number; tokens: number; gradNorm: number; trainMs: number } {
    const t0 = performance.now()
    const { mbs, total } = packSftBatches(seqs, microRows, this.config.context, pad)
    const r = this.valueAndGrad("sft", mbs)
    const gradNorm = this.apply(r.grad)
    return { loss: r.value, tokens: total, gradNorm, trainMs: performance.now() - t0 }
  }

  dispose(): void {}
}
