/**
 * Per-batch rollout figures: what the runner counts while it works (`BatchStats`) and the
 * `rollout.batch` event derived from them (means, the ΔH distribution, tool calls per trajectory and
 * per prompt, wall time split engine/tools). Pure; emitting is the runner's job.
 * `tokensComputed` is the compute the runner asked for under the engine's declared prefix reuse
 * (context nodes not sent before + new tokens); the engine's own `engine.call` events carry what it measured.
 */
import type { EventBody } from "../events/Event.ts"

export interface BatchStats {
  readonly sampler: string
  readonly prompts: number
  trajectories: number
  failedTrajectories: number
  tokensGenerated: number
  tokensComputed: number
  uniqueTreeTokens: number
  branchConsidered: number
  branchTaken: number
  toolCalls: number
  toolFailures: number
  /** calls found past the call limit (the trajectory ended without running them) */
  callLimitReached: number
  /** H_initial of every root response (window sums, nats) */
  readonly initialWindows: Array<number>
  /** the window after every tool result a trajectory continued from (nats) */
  readonly probeWindows: Array<number>
  readonly deltaHs: Array<number>
  readonly toolCallsPerPrompt: Array<number>
  engineMs: number
  toolMs: number
  wallMs: number
  rounds: number
}

const mean = (xs: ReadonlyArray<number>): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length)

const std = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return 0
  const m = mean(xs)
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) * (x - m), 0) / xs.length)
}

/** The `rollout.batch` event of a batch (empty distributions report 0). */
export const batchEvent = (s: BatchStats): EventBody => ({
  _tag: "rollout.batch",
  sampler: s.sampler,
  prompts: s.prompts,
  trajectories: s.trajectories,
  failedTrajectories: s.failedTrajectories,
  tokensGenerated: s.tokensGenerated,
  tokensComputed: s.tokensComputed,
  uniqueTreeTokens: s.uniqueTreeTokens,
  branchConsidered: s.branchConsidered,
  branchTaken: s.branchTaken,
  toolCalls: s.toolCalls,
  toolFailures: s.toolFailures,
  meanEntropyInitial: mean(s.initialWindows),
  meanEntropyAfterTool: mean(s.probeWindows),
  engineMs: s.engineMs,
  toolMs: s.toolMs,
  deltaHMean: mean(s.deltaHs),
  deltaHStd: std(s.deltaHs),
  deltaHMin: s.deltaHs.length === 0 ? 0 : Math.min(...s.deltaHs),
  deltaHMax: s.deltaHs.length === 0 ? 0 : Math.max(...s.deltaHs),
  probes: s.deltaHs.length,
  toolCallsPerTrajectory: s.trajectories === 0 ? 0 : s.toolCalls / s.trajectories,
  toolCallsPerPromptMean: mean(s.toolCallsPerPrompt),
  toolCallsPerPromptMax: s.toolCallsPerPrompt.length === 0 ? 0 : Math.max(...s.toolCallsPerPrompt),
  callLimitReached: s.callLimitReached,
  rounds: s.rounds,
  wallMs: s.wallMs
})
