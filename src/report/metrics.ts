/**
 * The flat metric table of a run: one row per (arm, seed, step, metric) with the mean of that metric's
 * values at that step (a step with several optimizer steps or evaluations gives their mean), derived
 * from events.jsonl alone, plus its CSV form (`metrics.csv`, for pandas) . The TensorBoard export
 * (tensorboard.ts) writes the same rows. It does not summarize across seeds (summarize.ts).
 */
import type { StampedEvent } from "../events/Event.ts"

export interface MetricRow {
  readonly arm: string
  readonly seed: number
  readonly step: number
  readonly metric: string
  readonly value: number
}

const armName = (arm: string): string => (arm === "" ? "default" : arm)

/** Metric names and values of one event (none for notes, tool and engine calls, checkpoints). */
export const eventMetrics = (event: StampedEvent["event"]): ReadonlyArray<readonly [string, number]> => {
  switch (event._tag) {
    case "reward.batch":
      return [
        ["reward/mean", event.mean],
        ["reward/accuracy", event.accuracy],
        ["reward/tool_calls_per_trajectory", event.toolCallsPerTrajectory],
        ["reward/tool_calls_per_solved", event.toolCallsPerSolved],
        ["reward/format_errors", event.formatErrors]
      ]
    case "rollout.batch": {
      const out: Array<readonly [string, number]> = [
        ["rollout/entropy_initial", event.meanEntropyInitial],
        ["rollout/entropy_after_tool", event.meanEntropyAfterTool],
        ["rollout/trajectories", event.trajectories],
        ["rollout/tokens_generated", event.tokensGenerated],
        ["rollout/branch_considered", event.branchConsidered],
        ["rollout/branch_taken", event.branchTaken],
        ["rollout/tool_calls", event.toolCalls],
        ["rollout/tool_failures", event.toolFailures]
      ]
      if (event.trajectories > 0) out.push(["rollout/tokens_per_trajectory", event.tokensGenerated / event.trajectories])
      if (event.deltaHMean !== undefined) out.push(["rollout/delta_h_mean", event.deltaHMean])
      return out
    }
    case "train.step": {
      const out: Array<readonly [string, number]> = [
        ["train/loss", event.loss],
        ["train/kl", event.kl],
        ["train/clip_fraction", event.clipFraction],
        ["train/grad_norm", event.gradNorm],
        ["train/entropy", event.entropy],
        ["train/tokens", event.tokens],
        ["train/logprob_mismatch", event.logprobMismatch]
      ]
      if (event.tisWeightMean !== undefined) out.push(["train/tis_weight_mean", event.tisWeightMean])
      if (event.tisTruncated !== undefined) out.push(["train/tis_truncated", event.tisTruncated])
      return out
    }
    case "sft.step":
      return [["sft/loss", event.loss]]
    case "eval": {
      const out: Array<readonly [string, number]> = [
        [`eval/${event.split}/accuracy_greedy`, event.accuracyGreedy],
        [`eval/${event.split}/tool_calls_per_question`, event.toolCallsPerQuestion]
      ]
      const ks: Record<string, number> = event.passAt ?? { [String(event.k)]: event.passAtK }
      for (const [k, v] of Object.entries(ks)) out.push([`eval/${event.split}/pass@${k}`, v])
      return out
    }
    case "metric":
      return [[`metric/${event.name}`, event.value]]
    default:
      return []
  }
}

/** The rows of a run, in order of first appearance of (arm, seed), then step, then metric name. */
export const metricRows = (events: ReadonlyArray<StampedEvent>): ReadonlyArray<MetricRow> => {
  const cells = new Map<string, { arm: string; seed: number; step: number; metric: string; sum: number; count: number; order: number }>()
  const groupOrder = new Map<string, number>()
  for (const { stamp, event } of events) {
    const arm = armName(stamp.arm)
    const group = `${arm}\u0000${stamp.seed}`
    if (!groupOrder.has(group)) groupOrder.set(group, groupOrder.size)
    for (const [metric, value] of eventMetrics(event)) {
      if (!Number.isFinite(value)) continue
      const id = `${group}\u0000${stamp.step}\u0000${metric}`
      const cell = cells.get(id) ?? { arm, seed: stamp.seed, step: stamp.step, metric, sum: 0, count: 0, order: groupOrder.get(group)! }
      cell.sum += value
      cell.count += 1
      cells.set(id, cell)
    }
  }
  return [...cells.values()]
    .sort((a, b) => a.order - b.order || a.step - b.step || (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0))
    .map((c) => ({ arm: c.arm, seed: c.seed, step: c.step, metric: c.metric, value: c.sum / c.count }))
}

const csvField = (s: string): string => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s)

/** `arm,seed,step,metric,value` with a header line; values in full precision (shortest round-trip). */
export const metricsCsv = (rows: ReadonlyArray<MetricRow>): string =>
  "arm,seed,step,metric,value\n" +
  rows.map((r) => `${csvField(r.arm)},${r.seed},${r.step},${csvField(r.metric)},${String(r.value)}\n`).join("")
