/**
 * Summarize a run's events (pure): per-arm per-step series aggregated over seeds (mean and 95%
 * Student-t confidence interval), branching and tool statistics, the time split, evaluations, and the
 * headline comparison of arms with its tool-call cost. Input is the StampedEvents of events.jsonl only.
 * It does not render (markdown.ts, html.ts) nor read files (RunStore).
 */
import type { EventBody, StampedEvent } from "../events/Event.ts"

// ---------------------------------------------------------------------------------------------------
// statistics

/** Two-sided 95% Student-t quantiles t(0.975, df) for df = 1…30. */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042
]

/** t(0.975, df); fractional df (Welch) round down, which widens the interval (conservative). */
export const tQuantile975 = (df: number): number => {
  if (!(df >= 1)) return Number.POSITIVE_INFINITY
  const d = Math.floor(df)
  if (d <= 30) return T975[d - 1]!
  if (d <= 40) return 2.021
  if (d <= 60) return 2.0
  if (d <= 120) return 1.98
  return 1.96
}

/** Mean with a 95% CI over independent replicates (seeds). `halfWidth` is null for fewer than 2. */
export interface Stat {
  readonly mean: number
  readonly halfWidth: number | null
  readonly n: number
}

export const mean = (xs: ReadonlyArray<number>): number => xs.reduce((a, b) => a + b, 0) / xs.length

/** Unbiased sample variance (n − 1). */
export const sampleVariance = (xs: ReadonlyArray<number>): number => {
  const m = mean(xs)
  return xs.reduce((a, x) => a + (x - m) * (x - m), 0) / (xs.length - 1)
}

/** mean ± t(0.975, n−1)·s/√n */
export const stat = (xs: ReadonlyArray<number>): Stat => {
  const n = xs.length
  if (n === 0) return { mean: Number.NaN, halfWidth: null, n }
  if (n === 1) return { mean: xs[0]!, halfWidth: null, n }
  return { mean: mean(xs), halfWidth: tQuantile975(n - 1) * Math.sqrt(sampleVariance(xs) / n), n }
}

export const lower = (s: Stat): number => s.mean - (s.halfWidth ?? 0)
export const upper = (s: Stat): number => s.mean + (s.halfWidth ?? 0)

/** Welch's 95% CI of mean(a) − mean(b); null when either side has fewer than 2 replicates. */
export const welchDifference = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): Stat => {
  const diff = mean(a) - mean(b)
  if (a.length < 2 || b.length < 2) return { mean: diff, halfWidth: null, n: Math.min(a.length, b.length) }
  const va = sampleVariance(a) / a.length
  const vb = sampleVariance(b) / b.length
  const se = Math.sqrt(va + vb)
  if (se === 0) return { mean: diff, halfWidth: 0, n: Math.min(a.length, b.length) }
  const df = (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1))
  return { mean: diff, halfWidth: tQuantile975(df) * se, n: Math.min(a.length, b.length) }
}

/**
 * The paired 95% CI of mean(a_i − b_i) over seeds both arms ran. Arms of one experiment share each seed's
 * cold start and prompts, so seed-to-seed variation cancels in the differences: this is far tighter
 * than comparing the arms' own intervals. `undefined` unless both arms have the same ≥ 2 seeds.
 */
export const pairedDifference = (
  a: { readonly seeds: ReadonlyArray<number>; readonly values: ReadonlyArray<number> },
  b: { readonly seeds: ReadonlyArray<number>; readonly values: ReadonlyArray<number> }
): { readonly stat: Stat; readonly diffs: ReadonlyArray<number> } | undefined => {
  if (a.seeds.length < 2 || a.seeds.length !== b.seeds.length || a.seeds.some((s, i) => s !== b.seeds[i])) return undefined
  const diffs = a.values.map((x, i) => x - b.values[i]!)
  return { stat: stat(diffs), diffs }
}

/** Do two 95% CIs overlap (the conservative "no significant difference" rule of the headline)? */
export const intervalsOverlap = (a: Stat, b: Stat): boolean => lower(a) <= upper(b) && lower(b) <= upper(a)

// ---------------------------------------------------------------------------------------------------
// the summary

/** One point of a series: the statistic over seeds at one step. */
export interface Point extends Stat {
  readonly step: number
}

export interface Series {
  readonly arm: string
  /** for eval series: the split */
  readonly split?: string
  readonly points: ReadonlyArray<Point>
}

export interface ArmTools {
  readonly arm: string
  readonly calls: number
  readonly byOutcome: Readonly<Record<string, number>>
  readonly meanToolMs: number
}

export interface ArmBranching {
  readonly arm: string
  /** branch decisions recorded (rollout.branch), or rollout.batch counts when there are none */
  readonly considered: number
  readonly taken: number
  readonly meanDeltaH: number
}

/** Mean over seeds of each seed's total wall time per phase (ms). */
export interface ArmTime {
  readonly arm: string
  readonly engineMs: number
  readonly toolMs: number
  readonly trainMs: number
  readonly evalMs: number
}

export interface Histogram {
  /** bin edges (counts.length + 1 of them) */
  readonly edges: ReadonlyArray<number>
  readonly series: ReadonlyArray<{ readonly arm: string; readonly counts: ReadonlyArray<number> }>
}

/** The final figure of one arm: per-seed values and their statistic. */
export interface ArmFinal {
  readonly arm: string
  readonly seeds: ReadonlyArray<number>
  readonly metric: Stat
  readonly metricPerSeed: ReadonlyArray<number>
  readonly toolCalls: Stat
  readonly toolCallsPerSeed: ReadonlyArray<number>
  /** the last step with a figure (over seeds) */
  readonly lastStep: number
}

export interface Comparison {
  readonly better: string
  readonly worse: string
  /** paired over seeds when both arms ran the same seeds (see `paired`), else Welch's */
  readonly difference: Stat
  /** whether `difference` is the paired per-seed difference */
  readonly paired: boolean
  /** seeds where `better` scored higher, lower (paired only) */
  readonly seedWins: { readonly higher: number; readonly lower: number } | null
  readonly overlap: boolean
  readonly verdict: "beats" | "no significant difference" | "cannot tell"
  /** tool calls of `better` ÷ tool calls of `worse` (null when `worse` made none) */
  readonly toolCallRatio: number | null
  readonly sentence: string
}

export interface Headline {
  /** what is compared, in words */
  readonly metric: string
  /** what the tool-call cost is, in words */
  readonly cost: string
  readonly arms: ReadonlyArray<ArmFinal>
  readonly comparisons: ReadonlyArray<Comparison>
  /** the answer, in a few sentences */
  readonly text: string
}

export interface Summary {
  readonly runs: ReadonlyArray<string>
  readonly arms: ReadonlyArray<string>
  readonly seeds: ReadonlyArray<number>
  readonly steps: { readonly first: number; readonly last: number } | null
  readonly events: number
  readonly eventsByKind: Readonly<Record<string, number>>
  readonly reward: ReadonlyArray<Series>
  readonly accuracy: ReadonlyArray<Series>
  readonly toolCallsPerTrajectory: ReadonlyArray<Series>
  readonly entropyInitial: ReadonlyArray<Series>
  readonly entropyAfterTool: ReadonlyArray<Series>
  readonly loss: ReadonlyArray<Series>
  /** mean |engine − trainer| log-prob of the batch's model tokens per step (the engine serves the trainer's weights when ≈ 0) */
  readonly logprobMismatch: ReadonlyArray<Series>
  /** truncated importance sampling's mean weight per step (runs with loss.tisCap > 0) */
  readonly tisWeight: ReadonlyArray<Series>
  readonly evaluation: ReadonlyArray<Series>
  readonly branching: ReadonlyArray<ArmBranching>
  readonly deltaH: Histogram
  readonly tools: ReadonlyArray<ArmTools>
  readonly time: ReadonlyArray<ArmTime>
  readonly headline: Headline
  /** warn/error notes from the run and notes about the summary itself */
  readonly notes: ReadonlyArray<string>
}

type Body<K extends EventBody["_tag"]> = Extract<EventBody, { readonly _tag: K }>

const armName = (arm: string): string => (arm === "" ? "default" : arm)

/** Group values by arm → seed → step, in first-appearance order of arms. */
class Cube {
  readonly data = new Map<string, Map<number, Map<number, { sum: number; weight: number }>>>()
  add(arm: string, seed: number, step: number, value: number, weight = 1) {
    if (!Number.isFinite(value) || !(weight > 0)) return
    let bySeed = this.data.get(arm)
    if (!bySeed) this.data.set(arm, (bySeed = new Map()))
    let byStep = bySeed.get(seed)
    if (!byStep) bySeed.set(seed, (byStep = new Map()))
    const cell = byStep.get(step) ?? { sum: 0, weight: 0 }
    cell.sum += value * weight
    cell.weight += weight
    byStep.set(step, cell)
  }
  /** weighted mean of (arm, seed, step) */
  value(arm: string, seed: number, step: number): number | undefined {
    const cell = this.data.get(arm)?.get(seed)?.get(step)
    return cell ? cell.sum / cell.weight : undefined
  }
  series(arms: ReadonlyArray<string>, split?: string): Array<Series> {
    const out: Array<Series> = []
    for (const arm of arms) {
      const bySeed = this.data.get(arm)
      if (!bySeed) continue
      const steps = [...new Set([...bySeed.values()].flatMap((m) => [...m.keys()]))].sort((a, b) => a - b)
      const points = steps.map((step) => {
        const xs = [...bySeed.values()].flatMap((m) => {
          const c = m.get(step)
          return c ? [c.sum / c.weight] : []
        })
        return { step, ...stat(xs) }
      })
      out.push(split === undefined ? { arm, points } : { arm, split, points })
    }
    return out
  }
}

/** Equal-width bins over [min, max] of all values (shared by every arm). */
export const histogram = (byArm: ReadonlyArray<{ arm: string; values: ReadonlyArray<number> }>, bins = 20): Histogram => {
  const all = byArm.flatMap((a) => a.values).filter(Number.isFinite)
  if (all.length === 0) return { edges: [], series: [] }
  let lo = Math.min(...all)
  let hi = Math.max(...all)
  if (lo === hi) {
    lo -= 0.5
    hi += 0.5
  }
  const width = (hi - lo) / bins
  const edges = Array.from({ length: bins + 1 }, (_, i) => lo + i * width)
  const series = byArm.map(({ arm, values }) => {
    const counts = new Array<number>(bins).fill(0)
    for (const v of values) {
      if (!Number.isFinite(v)) continue
      counts[Math.min(bins - 1, Math.floor((v - lo) / width))]! += 1
    }
    return { arm, counts }
  })
  return { edges, series }
}

const fmt = (x: number, digits = 3): string =>
  Number.isFinite(x) ? (Math.abs(x) >= 1000 ? x.toFixed(0) : x.toPrecision(digits).replace(/\.?0+$/, (m) => (m.includes(".") ? "" : m))) : "n/a"

/** "0.612 ± 0.031" (or "0.612 (1 seed)") */
export const formatStat = (s: Stat, digits = 3): string =>
  s.halfWidth === null ? `${fmt(s.mean, digits)} (${s.n} seed${s.n === 1 ? "" : "s"}, no CI)` : `${fmt(s.mean, digits)} ± ${fmt(s.halfWidth, 2)}`

const signed = (x: number, digits = 3) => (x > 0 ? "+" : "") + fmt(x, digits)

/** How many final training steps the headline averages over: the last 20% (at least 1). */
export const finalWindow = (steps: number): number => Math.max(1, Math.ceil(steps * 0.2))

export const summarize = (stamped: ReadonlyArray<StampedEvent>, extraNotes: ReadonlyArray<string> = []): Summary => {
  const arms: Array<string> = []
  const runs = new Set<string>()
  const seeds = new Set<number>()
  const byKind: Record<string, number> = {}
  const notes: Array<string> = [...extraNotes]
  let firstStep = Number.POSITIVE_INFINITY
  let lastStep = Number.NEGATIVE_INFINITY

  const reward = new Cube()
  const accuracy = new Cube()
  const toolsPerTraj = new Cube()
  const hInit = new Cube()
  const hTool = new Cube()
  const loss = new Cube()
  const mismatch = new Cube()
  const tisWeight = new Cube()
  const evals = new Map<string, Cube>()
  const evalTools = new Map<string, Cube>()
  const deltaH = new Map<string, Array<number>>()
  const decisions = new Map<string, { considered: number; taken: number }>()
  const batchBranch = new Map<string, { considered: number; taken: number }>()
  const tools = new Map<string, { calls: number; byOutcome: Record<string, number>; ms: number }>()
  const time = new Map<string, Map<number, { engineMs: number; toolMs: number; trainMs: number; evalMs: number }>>()

  const timeCell = (arm: string, seed: number) => {
    let bySeed = time.get(arm)
    if (!bySeed) time.set(arm, (bySeed = new Map()))
    let cell = bySeed.get(seed)
    if (!cell) bySeed.set(seed, (cell = { engineMs: 0, toolMs: 0, trainMs: 0, evalMs: 0 }))
    return cell
  }

  for (const { stamp, event } of stamped) {
    byKind[event._tag] = (byKind[event._tag] ?? 0) + 1
    const arm = armName(stamp.arm)
    const { seed, step } = stamp
    if (stamp.run !== "") runs.add(stamp.run)
    if (event._tag === "note") {
      if (event.level !== "info") notes.push(`${event.level} (${arm}, seed ${seed}, step ${step}): ${event.message}`)
      continue
    }
    if (!arms.includes(arm)) arms.push(arm)
    seeds.add(seed)
    firstStep = Math.min(firstStep, step)
    lastStep = Math.max(lastStep, step)
    switch (event._tag) {
      case "reward.batch": {
        const e: Body<"reward.batch"> = event
        const w = Math.max(1, e.trajectories)
        reward.add(arm, seed, step, e.mean, w)
        accuracy.add(arm, seed, step, e.accuracy, w)
        toolsPerTraj.add(arm, seed, step, e.toolCallsPerTrajectory, w)
        break
      }
      case "rollout.batch": {
        const w = Math.max(1, event.trajectories)
        hInit.add(arm, seed, step, event.meanEntropyInitial, w)
        hTool.add(arm, seed, step, event.meanEntropyAfterTool, w)
        const b = batchBranch.get(arm) ?? { considered: 0, taken: 0 }
        b.considered += event.branchConsidered
        b.taken += event.branchTaken
        batchBranch.set(arm, b)
        break
      }
      case "rollout.branch": {
        const d = decisions.get(arm) ?? { considered: 0, taken: 0 }
        d.considered += 1
        if (event.branched) d.taken += 1
        decisions.set(arm, d)
        const xs = deltaH.get(arm) ?? []
        xs.push(event.deltaH)
        deltaH.set(arm, xs)
        break
      }
      case "tool.call": {
        const t = tools.get(arm) ?? { calls: 0, byOutcome: {}, ms: 0 }
        t.calls += 1
        t.byOutcome[event.outcome] = (t.byOutcome[event.outcome] ?? 0) + 1
        t.ms += event.toolMs
        tools.set(arm, t)
        timeCell(arm, seed).toolMs += event.toolMs
        break
      }
      case "engine.call":
        timeCell(arm, seed).engineMs += event.engineMs
        break
      case "train.step":
        loss.add(arm, seed, step, event.loss)
        mismatch.add(arm, seed, step, event.logprobMismatch, Math.max(1, event.tokens))
        if (event.tisWeightMean !== undefined) tisWeight.add(arm, seed, step, event.tisWeightMean, Math.max(1, event.tokens))
        timeCell(arm, seed).trainMs += event.trainMs
        break
      case "sft.step":
        timeCell(arm, seed).trainMs += event.trainMs
        break
      case "eval": {
        const cube = evals.get(event.split) ?? new Cube()
        evals.set(event.split, cube)
        cube.add(arm, seed, step, event.accuracyGreedy)
        const tc = evalTools.get(event.split) ?? new Cube()
        evalTools.set(event.split, tc)
        tc.add(arm, seed, step, event.toolCallsPerQuestion)
        timeCell(arm, seed).evalMs += event.evalMs
        break
      }
      default:
        break
    }
  }

  const evaluation = [...evals.entries()].sort(([a], [b]) => a.localeCompare(b)).flatMap(([split, cube]) => cube.series(arms, split))

  const branching: Array<ArmBranching> = arms.flatMap((arm) => {
    const d = decisions.get(arm) ?? batchBranch.get(arm)
    if (!d) return []
    const xs = deltaH.get(arm) ?? []
    return [{ arm, considered: d.considered, taken: d.taken, meanDeltaH: xs.length > 0 ? mean(xs) : Number.NaN }]
  })

  const timeSplit: Array<ArmTime> = arms.flatMap((arm) => {
    const bySeed = time.get(arm)
    if (!bySeed) return []
    const cells = [...bySeed.values()]
    const avg = (k: keyof (typeof cells)[number]) => mean(cells.map((c) => c[k]))
    return [{ arm, engineMs: avg("engineMs"), toolMs: avg("toolMs"), trainMs: avg("trainMs"), evalMs: avg("evalMs") }]
  })

  const headline = makeHeadline(arms, accuracy, toolsPerTraj, evals, evalTools)
  if (stamped.length === 0) notes.push("events.jsonl holds no events yet")

  return {
    runs: [...runs],
    arms,
    seeds: [...seeds].sort((a, b) => a - b),
    steps: Number.isFinite(firstStep) ? { first: firstStep, last: lastStep } : null,
    events: stamped.length,
    eventsByKind: byKind,
    reward: reward.series(arms),
    accuracy: accuracy.series(arms),
    toolCallsPerTrajectory: toolsPerTraj.series(arms),
    entropyInitial: hInit.series(arms),
    entropyAfterTool: hTool.series(arms),
    loss: loss.series(arms),
    logprobMismatch: mismatch.series(arms),
    tisWeight: tisWeight.series(arms),
    evaluation,
    branching,
    deltaH: histogram(arms.flatMap((arm) => (deltaH.has(arm) ? [{ arm, values: deltaH.get(arm)! }] : []))),
    tools: arms.flatMap((arm) => {
      const t = tools.get(arm)
      return t ? [{ arm, calls: t.calls, byOutcome: t.byOutcome, meanToolMs: t.ms / t.calls }] : []
    }),
    time: timeSplit,
    headline,
    notes
  }
}

/** Per-seed final values of `cube` for `arm`: mean over the seed's last `window` steps (or its last one). */
const finalPerSeed = (cube: Cube, arm: string, window: (steps: number) => number) => {
  const bySeed = cube.data.get(arm)
  if (!bySeed) return { seeds: [] as Array<number>, values: [] as Array<number>, lastStep: 0 }
  const seeds: Array<number> = []
  const values: Array<number> = []
  let lastStep = Number.NEGATIVE_INFINITY
  for (const [seed, byStep] of [...bySeed.entries()].sort(([a], [b]) => a - b)) {
    const sorted = [...byStep.keys()].sort((a, b) => a - b)
    lastStep = Math.max(lastStep, sorted[sorted.length - 1]!)
    const last = sorted.slice(-window(sorted.length))
    seeds.push(seed)
    values.push(mean(last.map((s) => cube.value(arm, seed, s)!)))
  }
  return { seeds, values, lastStep }
}

const makeHeadline = (
  arms: ReadonlyArray<string>,
  accuracy: Cube,
  toolsPerTraj: Cube,
  evals: ReadonlyMap<string, Cube>,
  evalTools: ReadonlyMap<string, Cube>
): Headline => {
  // Prefer held-out evaluation (the split evaluated for the most arms, then by name); else training accuracy.
  const split = [...evals.entries()]
    .map(([name, cube]) => ({ name, cube, arms: arms.filter((a) => cube.data.has(a)).length }))
    .sort((a, b) => b.arms - a.arms || a.name.localeCompare(b.name))[0]
  const useEval = split !== undefined && split.arms === arms.filter((a) => accuracy.data.has(a) || split.cube.data.has(a)).length
  const metricCube = useEval ? split.cube : accuracy
  const costCube = useEval ? evalTools.get(split.name)! : toolsPerTraj
  const window = useEval ? () => 1 : finalWindow
  const metric = useEval
    ? `greedy accuracy on the "${split.name}" split at each seed's last evaluation`
    : `training accuracy, mean over each seed's last 20% of steps`
  const cost = useEval ? "tool calls per question in that evaluation" : "tool calls per trajectory over the same steps"

  const finals: Array<ArmFinal> = arms.flatMap((arm) => {
    const m = finalPerSeed(metricCube, arm, window)
    if (m.values.length === 0) return []
    const c = finalPerSeed(costCube, arm, window)
    return [{
      arm,
      seeds: m.seeds,
      metric: stat(m.values),
      metricPerSeed: m.values,
      toolCalls: stat(c.values),
      toolCallsPerSeed: c.values,
      lastStep: m.lastStep
    }]
  })
  const ranked = [...finals].sort((a, b) => b.metric.mean - a.metric.mean)
  const comparisons: Array<Comparison> = []
  const best = ranked[0]
  if (best !== undefined) {
    for (const other of ranked.slice(1)) comparisons.push(compare(best, other))
  }
  const text = finals.length === 0
    ? "No accuracy figures in events.jsonl yet (no reward.batch or eval events), so no arm can be compared."
    : finals.length === 1
    ? `Only one arm (${finals[0]!.arm}): ${metric} ${formatStat(finals[0]!.metric)} at ${formatStat(finals[0]!.toolCalls)} ${cost}; nothing to compare with.`
    : comparisons.map((c) => c.sentence).join(" ")
  return { metric, cost, arms: finals, comparisons, text }
}

/**
 * The verdict: "beats" only when the 95% CI of the difference excludes 0 and is not degenerate (a
 * zero-width interval, e.g. the same difference in every one of 3 seeds, is reported as such but not
 * called significant: a t-interval with no spread tests nothing). Paired over seeds when possible.
 */
const compare = (a: ArmFinal, b: ArmFinal): Comparison => {
  const paired = pairedDifference({ seeds: a.seeds, values: a.metricPerSeed }, { seeds: b.seeds, values: b.metricPerSeed })
  const difference = paired?.stat ?? welchDifference(a.metricPerSeed, b.metricPerSeed)
  const seedWins = paired
    ? { higher: paired.diffs.filter((d) => d > 0).length, lower: paired.diffs.filter((d) => d < 0).length }
    : null
  const overlap = intervalsOverlap(a.metric, b.metric)
  const hw = difference.halfWidth
  const verdict: Comparison["verdict"] = hw === null || (hw === 0 && difference.mean !== 0)
    ? "cannot tell"
    : difference.mean - hw > 0
    ? "beats"
    : "no significant difference"
  const toolCallRatio = b.toolCalls.mean > 0 && Number.isFinite(a.toolCalls.mean) ? a.toolCalls.mean / b.toolCalls.mean : null
  const kind = paired ? "paired" : "Welch"
  const diffText = hw === null
    ? `difference ${signed(difference.mean)}`
    : `difference ${signed(difference.mean)}, ${kind} 95% CI [${signed(difference.mean - hw)}, ${signed(difference.mean + hw)}]`
  const winsText = seedWins ? `; ${a.arm} higher in ${seedWins.higher} of ${a.seeds.length} seeds, lower in ${seedWins.lower}` : ""
  const verdictText = verdict === "beats"
    ? `${a.arm} beats ${b.arm} (the ${kind} 95% CI of the difference excludes 0)`
    : verdict === "no significant difference"
    ? `no significant difference between ${a.arm} and ${b.arm} (the ${kind} 95% CI of the difference contains 0)`
    : hw === null
    ? `cannot tell whether ${a.arm} beats ${b.arm} (fewer than 2 seeds, no CI)`
    : `cannot tell whether ${a.arm} beats ${b.arm} (the same difference in every seed: an interval with no spread tests nothing; run more seeds)`
  const costText = toolCallRatio === null
    ? `Tool calls: ${formatStat(a.toolCalls)} vs ${formatStat(b.toolCalls)}.`
    : `Tool-call cost: ${formatStat(a.toolCalls)} vs ${formatStat(b.toolCalls)} (${fmt(toolCallRatio, 3)}× ${b.arm}'s).`
  const sentence = `${a.arm} vs ${b.arm}: ${formatStat(a.metric)} vs ${formatStat(b.metric)} (${diffText}${winsText}); ${verdictText}. ${costText}`
  return { better: a.arm, worse: b.arm, difference, paired: paired !== undefined, seedWins, overlap, verdict, toolCallRatio, sentence }
}

/** The headline figures for summary.json (no per-step series). */
export const summaryJson = (s: Summary) => ({
  runs: s.runs,
  arms: s.arms,
  seeds: s.seeds,
  steps: s.steps,
  events: s.events,
  eventsByKind: s.eventsByKind,
  headline: s.headline,
  branching: s.branching,
  tools: s.tools,
  time: s.time,
  evaluation: s.evaluation.map((e) => ({ arm: e.arm, split: e.split, last: e.points[e.points.length - 1] })),
  notes: s.notes
})

export { fmt as formatNumber }
