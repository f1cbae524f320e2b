/**
 * The seam between the rollout runner and a sampler: a `Policy` says how many global samples each
 * prompt starts with and, after every round, which branches and fresh samples to start (and which
 * decisions to record). Shared helpers build the common "decide at every post-tool probe" policy and
 * the "top up an exhausted prompt" rule. It runs nothing itself (see `runner.ts`).
 */
import type { WindowForm } from "../core/deltaH.ts"
import { deltaH as deltaHOf, type WindowEntropy } from "../core/entropy.ts"
import { derive, type Key, uniform } from "../core/random.ts"
import type { BranchRecord } from "../core/tree.ts"

/** The interval of a window entropy sum (nats), from a top-k engine's per-token bounds. */
export type WindowBounds = Pick<WindowEntropy, "lower" | "upper">

/**
 * The window of the first k tokens generated right after a tool result, by the trajectory that
 * received it (paper timing: these tokens stay in that trajectory). One per tool result that the
 * trajectory continued from, measured in the round after the result was appended.
 */
export interface Probe {
  readonly prompt: number
  /** the trajectory (index within its prompt, in creation order) that received the result */
  readonly trajectory: number
  /** the tool node (the branch point: new continuations start right after it) */
  readonly node: number
  /** 1-based index of this tool call in the trajectory */
  readonly call: number
  /** the tool that answered this call (its call tag: "python", "search", …) */
  readonly tool: string
  /** window entropy sum (nats) of the first k tokens after the result */
  readonly hAfterTool: number
  /** window entropy sum (nats) of the first k tokens of the trajectory's root response */
  readonly hInitial: number
  /** (hAfterTool − hInitial) / ln V */
  readonly deltaH: number
  /** the interval of `hAfterTool` when the engine gave per-token entropy bounds (top-k engines) */
  readonly hAfterToolBounds?: WindowBounds
  /** the interval of `hInitial`, the same way */
  readonly hInitialBounds?: WindowBounds
  /** the window form when not the paper's (`rollout.deltaHWindow`), and the model tokens each window held */
  readonly form?: WindowForm
  readonly windowTokens?: number
  readonly initialTokens?: number
}

/**
 * A tool result appended this round to a trajectory that goes on (the released code's `keep`), with
 * the window of the segment that made the call (reference timing: decided one round late).
 */
export interface ToolStep {
  readonly prompt: number
  readonly trajectory: number
  readonly node: number
  readonly call: number
  /** window sum (nats) of the segment generated this round (the one that ended with this call) */
  readonly segmentWindow: number
  /** window sum (nats) of the first segment this trajectory generated itself */
  readonly firstWindow: number
  /** the interval of `segmentWindow` when the engine gave per-token entropy bounds (top-k engines) */
  readonly segmentBounds?: WindowBounds
  /** the interval of `firstWindow`, the same way */
  readonly firstBounds?: WindowBounds
  /** entropySource "top10": the released code's windows of the same two segments (top-10 truncated sums, nats) */
  readonly segmentTop10?: number
  readonly firstTop10?: number
}

/** What a policy sees after each round. Counts are per prompt, before this round's actions. */
export interface RoundView {
  readonly round: number
  /** the batch key (`derive(options.key, "step", step)`); derive decision draws from it */
  readonly key: Key
  readonly vocabSize: number
  readonly budget: number
  readonly probes: ReadonlyArray<Probe>
  readonly toolSteps: ReadonlyArray<ToolStep>
  /** trajectories started so far, per prompt */
  readonly started: ReadonlyArray<number>
  /** trajectories still running, per prompt */
  readonly active: ReadonlyArray<number>
}

export type Action =
  /** start `children` new continuations of trajectory `from` right after its tool node `node` */
  | { readonly _tag: "Branch"; readonly prompt: number; readonly from: number; readonly node: number; readonly children: number }
  /** start `count` fresh global samples from the prompt */
  | { readonly _tag: "Fresh"; readonly prompt: number; readonly count: number }

/** A decision to record on a tool node (and emit as a `rollout.branch` event). */
export interface Decision {
  readonly prompt: number
  readonly trajectory: number
  readonly node: number
  /** 1-based index of the tool call in the deciding trajectory */
  readonly call: number
  readonly record: BranchRecord
}

export interface RoundPlan {
  readonly actions: ReadonlyArray<Action>
  readonly decisions: ReadonlyArray<Decision>
}

export const emptyPlan: RoundPlan = { actions: [], decisions: [] }

/** A sampler's strategy, made fresh for each batch (it may keep per-batch state). */
export interface Policy {
  /** global samples each prompt starts with (clipped to the budget) */
  readonly initial: (prompt: number) => number
  /** after a round: branches and fresh samples to start; the runner clips both to the budget */
  readonly afterRound: (view: RoundView) => RoundPlan
}

/** The uniform draw of the decision at a trajectory's `call`-th tool result. */
export const decisionDraw = (key: Key, prompt: number, trajectory: number, call: number): number =>
  uniform(derive(key, "prompt", prompt, "traj", trajectory, "branch", call), 0)

/**
 * The optional interval fields of a BranchRecord: each window's bounds when the engine gave them, nothing
 * for exact engines (so their records and events are unchanged). Decisions still use the point.
 */
export const intervalFields = (
  hAfterTool: WindowBounds | undefined,
  hInitial: WindowBounds | undefined
): Pick<BranchRecord, "hAfterToolLower" | "hAfterToolUpper" | "hInitialLower" | "hInitialUpper"> => ({
  ...(hAfterTool !== undefined ? { hAfterToolLower: hAfterTool.lower, hAfterToolUpper: hAfterTool.upper } : {}),
  ...(hInitial !== undefined ? { hInitialLower: hInitial.lower, hInitialUpper: hInitial.upper } : {})
})

/** A probe's window form and token counts as BranchRecord fields (nothing for the paper form). */
export const windowFields = (probe: Probe): Pick<BranchRecord, "deltaHWindow" | "windowTokens" | "initialTokens"> =>
  probe.form === undefined
    ? {}
    : {
      deltaHWindow: probe.form,
      ...(probe.windowTokens !== undefined ? { windowTokens: probe.windowTokens } : {}),
      ...(probe.initialTokens !== undefined ? { initialTokens: probe.initialTokens } : {})
    }

/** ΔH of a window pair on the project's scale. */
export const deltaH = (hAfterTool: number, hInitial: number, vocabSize: number): number =>
  deltaHOf(hAfterTool, hInitial, vocabSize)

/**
 * Paper-timing branching: at every probe (in prompt/trajectory order) whose prompt still has budget,
 * draw u and ask `rule` for the probability and the decision; a branch starts `min(Z, slots)`
 * continuations. Returns the actions, the decisions and how many trajectories each prompt created.
 */
export const branchAtProbes = (
  view: RoundView,
  branchFactor: number,
  rule: (probe: Probe, u: number) => { readonly probability: number; readonly branched: boolean },
  eligible: (prompt: number) => boolean = () => true
): { readonly actions: Array<Action>; readonly decisions: Array<Decision>; readonly created: Array<number> } => {
  const created = view.started.map(() => 0)
  const actions: Array<Action> = []
  const decisions: Array<Decision> = []
  for (const probe of view.probes) {
    if (!eligible(probe.prompt)) continue
    const slots = view.budget - view.started[probe.prompt]! - created[probe.prompt]!
    if (slots <= 0) continue
    const u = decisionDraw(view.key, probe.prompt, probe.trajectory, probe.call)
    const { branched, probability } = rule(probe, u)
    const children = branched ? Math.min(branchFactor, slots) : 0
    if (children > 0) {
      actions.push({ _tag: "Branch", prompt: probe.prompt, from: probe.trajectory, node: probe.node, children })
      created[probe.prompt]! += children
    }
    decisions.push({
      prompt: probe.prompt,
      trajectory: probe.trajectory,
      node: probe.node,
      call: probe.call,
      record: {
        hAfterTool: probe.hAfterTool,
        hInitial: probe.hInitial,
        ...intervalFields(probe.hAfterToolBounds, probe.hInitialBounds),
        deltaH: probe.deltaH,
        probability,
        u,
        branched,
        children,
        ...windowFields(probe)
      }
    })
  }
  return { actions, decisions, created }
}

/**
 * Fill unused budget with fresh global samples once nothing of a prompt is running (and nothing was
 * just created for it), so every prompt ends with exactly M trajectories. `perRound` caps how many
 * start per round (the released code starts one per round; paper mode all at once).
 */
export const topUp = (
  view: RoundView,
  created: ReadonlyArray<number>,
  perRound = Number.POSITIVE_INFINITY,
  eligible: (prompt: number) => boolean = () => true
): Array<Action> => {
  const out: Array<Action> = []
  view.started.forEach((started, p) => {
    if (!eligible(p) || view.active[p]! > 0 || created[p]! > 0) return
    const missing = view.budget - started
    if (missing > 0) out.push({ _tag: "Fresh", prompt: p, count: Math.min(missing, perRound) })
  })
  return out
}
