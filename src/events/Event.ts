/**
 * The typed metric events every layer emits (a Schema union tagged by `kind`). Reports are derived
 * from these alone. Wall-clock fields end in `Ms`; everything else is a pure function of the seed and
 * configuration on the embedded engine. This module defines data only; `Events.ts` is the service.
 */
import { Schema } from "effect"

const Count = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))
const Ms = Schema.Finite

/** One engine call (a batch of generate or score requests). */
export const EngineCall = Schema.TaggedStruct("engine.call", {
  adapter: Schema.String,
  op: Schema.Literals(["generate", "score"]),
  sequences: Count,
  newTokens: Count,
  /** tokens whose forward pass was computed (prompt tokens not found in the prefix cache + new tokens) */
  computedTokens: Count,
  /** prompt tokens served from a prefix cache */
  reusedTokens: Count,
  engineMs: Ms
})

/** One tool call. */
export const ToolCall = Schema.TaggedStruct("tool.call", {
  tool: Schema.String,
  outcome: Schema.Literals(["ok", "error", "timeout", "limit", "malformed"]),
  attempts: Count,
  inputChars: Count,
  outputChars: Count,
  toolMs: Ms
})

/** Per-batch rollout figures (issue: samplers). */
export const RolloutBatch = Schema.TaggedStruct("rollout.batch", {
  sampler: Schema.String,
  prompts: Count,
  trajectories: Count,
  failedTrajectories: Count,
  tokensGenerated: Count,
  tokensComputed: Count,
  uniqueTreeTokens: Count,
  branchConsidered: Count,
  branchTaken: Count,
  toolCalls: Count,
  toolFailures: Count,
  meanEntropyInitial: Schema.Finite,
  meanEntropyAfterTool: Schema.Finite,
  engineMs: Ms,
  toolMs: Ms,
  // optional (added by the samplers issue; additive): the ΔH distribution over post-tool probes,
  // tool calls per trajectory / per prompt, calls ended unrun at the call limit, rounds, wall time
  deltaHMean: Schema.optionalKey(Schema.Finite),
  deltaHStd: Schema.optionalKey(Schema.Finite),
  deltaHMin: Schema.optionalKey(Schema.Finite),
  deltaHMax: Schema.optionalKey(Schema.Finite),
  probes: Schema.optionalKey(Count),
  toolCallsPerTrajectory: Schema.optionalKey(Schema.Finite),
  toolCallsPerPromptMean: Schema.optionalKey(Schema.Finite),
  toolCallsPerPromptMax: Schema.optionalKey(Count),
  callLimitReached: Schema.optionalKey(Count),
  rounds: Schema.optionalKey(Count),
  wallMs: Schema.optionalKey(Ms),
  // optional (entropy intervals; additive): top-k engines only, the mean width (upper − lower, nats) of the
  // H_initial windows and of the after-tool windows; absent for exact engines
  meanEntropyInitialWidth: Schema.optionalKey(Schema.Finite),
  meanEntropyAfterToolWidth: Schema.optionalKey(Schema.Finite),
  /** top-k engines only: which point of each interval the entropies (and so the decisions) used */
  entropyPoint: Schema.optionalKey(Schema.Literals(["lower", "mid", "upper"])),
  // optional (ΔH measured right; additive): present only when not the defaults — the window form of the
  // probes' ΔH (src/core/deltaH.ts) and, for reference mode, the entropy its decisions used
  deltaHWindow: Schema.optionalKey(Schema.Literals(["paper", "continued", "mean"])),
  entropySource: Schema.optionalKey(Schema.Literals(["exact", "top10"]))
})

/** One branch decision of an entropy-triggered sampler. */
export const BranchDecision = Schema.TaggedStruct("rollout.branch", {
  prompt: Count,
  node: Schema.String,
  hInitial: Schema.Finite,
  hAfterTool: Schema.Finite,
  deltaH: Schema.Finite,
  probability: Schema.Finite,
  u: Schema.Finite,
  branched: Schema.Boolean,
  // optional (samplers issue; additive): which trajectory decided, at its how-many-th call, and how many
  // continuations it started
  trajectory: Schema.optionalKey(Count),
  call: Schema.optionalKey(Count),
  children: Schema.optionalKey(Count),
  // optional (entropy intervals; additive): only when the engine gave per-token top-k bounds, the window
  // intervals of hAfterTool and hInitial (same window, Σ lower / Σ upper); the decision used the points
  hAfterToolLower: Schema.optionalKey(Schema.Finite),
  hAfterToolUpper: Schema.optionalKey(Schema.Finite),
  hInitialLower: Schema.optionalKey(Schema.Finite),
  hInitialUpper: Schema.optionalKey(Schema.Finite),
  // optional (ΔH measured right; additive): only for a window form other than the paper's, the form and how
  // many model tokens the after-result and H_initial windows held (k unless the trajectory ended first)
  deltaHWindow: Schema.optionalKey(Schema.Literals(["paper", "continued", "mean"])),
  windowTokens: Schema.optionalKey(Count),
  initialTokens: Schema.optionalKey(Count),
  /** reference mode on the released code's top-10 truncated sums (absent: exact entropy) */
  entropySource: Schema.optionalKey(Schema.Literals(["exact", "top10"]))
})

/** Rewards of one batch. */
export const RewardBatch = Schema.TaggedStruct("reward.batch", {
  mean: Schema.Finite,
  accuracy: Schema.Finite,
  formatErrors: Count,
  toolCallsPerTrajectory: Schema.Finite,
  toolCallsPerSolved: Schema.Finite,
  trajectories: Count,
  // optional (additive): the batch's groups (prompts) and how many of them have rewards that vary (not all
  // equal over their non-failed trajectories: the groups a group-relative advantage learns from)
  groups: Schema.optionalKey(Count),
  groupsVarying: Schema.optionalKey(Count)
})

/** One optimizer step (or one PPO epoch summary). */
export const TrainStep = Schema.TaggedStruct("train.step", {
  loss: Schema.Finite,
  gradNorm: Schema.Finite,
  clipFraction: Schema.Finite,
  kl: Schema.Finite,
  entropy: Schema.Finite,
  tokens: Count,
  /** mean |engine logprob − trainer logprob| over model tokens */
  logprobMismatch: Schema.Finite,
  trainMs: Ms,
  /** truncated importance sampling (when on): mean weight min(π_trainer/π_engine, cap) over model tokens */
  tisWeightMean: Schema.optionalKey(Schema.Finite),
  /** truncated importance sampling (when on): share of model tokens whose weight was capped */
  tisTruncated: Schema.optionalKey(Schema.Finite),
  /** the trainer's device ("cpu", "cuda", "cuda:0") and compute dtype, when the adapter reports them (PyTorch worker, hf) */
  device: Schema.optionalKey(Schema.String),
  dtype: Schema.optionalKey(Schema.String),
  /** parameters of the model, and those this step trains (fewer with LoRA) */
  params: Schema.optionalKey(Count),
  trainableParams: Schema.optionalKey(Count)
})

/** One supervised (cold-start) step. */
export const SftStep = Schema.TaggedStruct("sft.step", {
  loss: Schema.Finite,
  tokens: Count,
  trainMs: Ms
})

/** One evaluation on a held-out split. */
export const Evaluation = Schema.TaggedStruct("eval", {
  split: Schema.String,
  questions: Count,
  accuracyGreedy: Schema.Finite,
  passAtK: Schema.Finite,
  k: Count,
  toolCallsPerQuestion: Schema.Finite,
  evalMs: Ms,
  /** unbiased pass@k for several k from n samples per question (`"1"`, `"4"`, …), when measured */
  passAt: Schema.optionalKey(Schema.Record(Schema.String, Schema.Finite)),
  /** samples per question behind `passAt` */
  samples: Schema.optionalKey(Count),
  /** each question's greedy accuracy, in the split's order (the paired observations of the report's bootstrap) */
  greedyPerQuestion: Schema.optionalKey(Schema.Array(Schema.Finite))
})

/** A checkpoint was written (atomically). */
export const Checkpoint = Schema.TaggedStruct("checkpoint", {
  path: Schema.String,
  policyVersion: Count
})

/** The trainer's new weights were loaded by the engine (src/run/weightSync.ts): which, how big, how long (export + load). */
export const WeightsSync = Schema.TaggedStruct("weights.sync", {
  version: Count,
  format: Schema.Literals(["embedded", "hf", "hf-lora", "gguf"]),
  /** the size of the loaded weights (tensor bytes of an in-process handle, file size of a path; 0 when unknown) */
  bytes: Count,
  syncMs: Ms
})

/** A named scalar that has no dedicated event yet. */
export const Metric = Schema.TaggedStruct("metric", {
  name: Schema.String,
  value: Schema.Finite
})

/** A line of text for a person (a warning, an excluded trajectory, …). */
export const Note = Schema.TaggedStruct("note", {
  level: Schema.Literals(["info", "warn", "error"]),
  message: Schema.String
})

/** Every event body. Tagged by `_tag`, serialized as `kind`. */
export const EventBody = Schema.Union([
  EngineCall,
  ToolCall,
  RolloutBatch,
  BranchDecision,
  RewardBatch,
  TrainStep,
  SftStep,
  Evaluation,
  Checkpoint,
  WeightsSync,
  Metric,
  Note
])
export type EventBody = typeof EventBody.Type

/** Where an event belongs: stamped by the Events layer from the current `EventScope`. */
export const Stamp = Schema.Struct({
  run: Schema.String,
  arm: Schema.String,
  seed: Schema.Int,
  step: Schema.Int,
  seq: Count
})
export type Stamp = typeof Stamp.Type

/** An event as stored: its stamp and its body. */
export const StampedEvent = Schema.Struct({
  stamp: Stamp,
  event: EventBody
})
export type StampedEvent = typeof StampedEvent.Type
