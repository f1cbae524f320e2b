/**
 * Summarize a run's events (pure): per-arm per-step series over seeds (mean, per-seed values and a
 * bootstrap 95% interval clipped to the metric's range), branching and tool statistics, the time split,
 * evaluations (greedy accuracy, pass@k), and the headline comparison of arms: a paired bootstrap over
 * seeds × held-out questions, with the cost during RL (tool calls and generated tokens per trajectory).
 * Input is the StampedEvents of events.jsonl only. It does not render (markdown.ts, html.ts) nor read
 * files (RunStore).
 */
import type { EventBody, StampedEvent } from "../events/Event.ts"
import { bootstrap, differenceRange, lower, nonNegative, pairedTable, type Range, type Stat, unbounded, unit, upper } from "./bootstrap.ts"

// ---------------------------------------------------------------------------------------------------
// statistics (the bootstrap itself is in bootstrap.ts)

export type { Range, Stat } from "./bootstrap.ts"
export { hasInterval, lower, upper } from "./bootstrap.ts"

export const mean = (xs: ReadonlyArray<number>): number => xs.reduce((a, b) => a + b, 0) / xs.length

/** The mean over independent replicates (seeds) with its bootstrap 95% interval, clipped to `range`. */
export const stat = (xs: ReadonlyArray<number>, range: Range = unbounded, label = "stat"): Stat =>
  bootstrap(xs.map((x) => [x]), { label, range })

/**
 * The paired 95% interval of the mean difference a − b over the seeds both arms ran, each seed's
 * units (held-out questions) paired too. Arms of one experiment share each seed's cold start, prompts
 * and questions, so seed-to-seed and question-to-question variation cancels in the differences.
 * `undefined` when the arms share no seed.
 */
export const pairedDifference = (
  a: ReadonlyMap<number, ReadonlyArray<number>>,
  b: ReadonlyMap<number, ReadonlyArray<number>>,
  options: { readonly label?: string; readonly range?: Range } = {}
): { readonly stat: Stat; readonly seeds: ReadonlyArray<number>; readonly diffs: ReadonlyArray<number> } | undefined => {
  const t = pairedTable(a, b)
  if (t === null) return undefined
  const s = bootstrap(t.table, { label: options.label ?? "paired", range: options.range ?? unbounded })
  return { stat: s, seeds: t.seeds, diffs: t.table.map((row) => mean(row)) }
}

/** Do two intervals overlap (figures without an interval count as their point)? */
export const intervalsOverlap = (a: Stat, b: Stat): boolean => lower(a) <= upper(b) && lower(b) <= upper(a)

// ---------------------------------------------------------------------------------------------------
// the summary

/** One point of a series: the statistic over seeds at one step. */
export interface Point extends Stat {
  readonly step: number
}

export interface SeedLine {
  readonly seed: number
  readonly points: ReadonlyArray<{ readonly step: number; readonly value: number }>
}

export interface Series {
  readonly arm: string
  /** for eval series: the split */
  readonly split?: string
  /** for pass@k series: the k */
  readonly k?: number
  /** the range the metric can take (plots and intervals stay inside it) */
  readonly range: Range
  readonly points: ReadonlyArray<Point>
  /** each seed's own values (drawn as thin lines under the mean) */
  readonly seeds: ReadonlyArray<SeedLine>
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

/** The final figure of one arm: per-seed values and their statistic, and its cost during RL. */
export interface ArmFinal {
  readonly arm: string
  readonly seeds: ReadonlyArray<number>
  readonly metric: Stat
  readonly metricPerSeed: ReadonlyArray<number>
  /** executed tool calls per trajectory during RL: each seed's mean over its RL steps */
  readonly toolCalls: Stat
  readonly toolCallsPerSeed: ReadonlyArray<number>
  /** generated tokens per trajectory during RL: each seed's total over its RL steps ÷ its trajectories */
  readonly tokens: Stat
  /** tool calls per question in the greedy evaluation the metric comes from (eval headlines only) */
  readonly evalToolCalls: Stat | null
  /** the last step with a figure (over seeds) */
  readonly lastStep: number
}

export interface Comparison {
  readonly better: string
  readonly worse: string
  /** the paired bootstrap difference better − worse over the seeds (and questions) both ran */
  readonly difference: Stat
  /** whether the arms shared seeds to pair on */
  readonly paired: boolean
  /** seeds where `better` scored higher, lower (paired only) */
  readonly seedWins: { readonly higher: number; readonly lower: number } | null
  readonly overlap: boolean
  readonly verdict: "beats" | "no significant difference" | "cannot tell"
  /** why "cannot tell" (null otherwise) */
  readonly why: string | null
  /** RL tool calls per trajectory of `better` ÷ those of `worse` (null when `worse` made none) */
  readonly toolCallRatio: number | null
  /** RL generated tokens per trajectory of `better` ÷ those of `worse` */
  readonly tokenRatio: number | null
  /** the comparison of accuracies, one line */
  readonly sentence: string
  /** the cost line, labelled */
  readonly costSentence: string
}

export interface Headline {
  /** what is compared, in words */
  readonly metric: string
  /** what the cost is, in words */
  readonly cost: string
  readonly arms: ReadonlyArray<ArmFinal>
  readonly comparisons: ReadonlyArray<Comparison>
  /** the answer: one line per comparison, each followed by its cost line */
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
  /** generated tokens per trajectory (rollout.batch) */
  readonly responseLength: ReadonlyArray<Series>
  readonly loss: ReadonlyArray<Series>
  readonly kl: ReadonlyArray<Series>
  readonly clipFraction: ReadonlyArray<Series>
  readonly gradNorm: ReadonlyArray<Series>
  /** the trainer's mean token entropy per step (train.step) */
  readonly policyEntropy: ReadonlyArray<Series>
  /** mean |engine − trainer| log-prob of the batch's model tokens per step (the engine serves the trainer's weights when ≈ 0) */
  readonly logprobMismatch: ReadonlyArray<Series>
  /** truncated importance sampling's mean weight per step (runs with loss.tisCap > 0) */
  readonly tisWeight: ReadonlyArray<Series>
  /** greedy held-out accuracy, one series per (split, arm) */
  readonly evaluation: ReadonlyArray<Series>
  /** held-out pass@k, one series per (split, k, arm) */
  readonly passAt: ReadonlyArray<Series>
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

/** Replicates of a per-step band (a per-step band is drawn, not tested; the headline uses the default). */
const seriesReplicates = 1000

/** Group values by arm → seed → step, in first-appearance order of arms. */
class Cube {
  readonly data = new Map<string, Map<number, Map<number, { sum: number; weight: number }>>>()
  readonly name: string
  readonly range: Range
  constructor(name: string, range: Range) {
    this.name = name
    this.range = range
  }
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
  series(arms: ReadonlyArray<string>, extra: { readonly split?: string; readonly k?: number } = {}): Array<Series> {
    const out: Array<Series> = []
    for (const arm of arms) {
      const bySeed = this.data.get(arm)
      if (!bySeed) continue
      const steps = [...new Set([...bySeed.values()].flatMap((m) => [...m.keys()]))].sort((a, b) => a - b)
      const points = steps.map((step) => {
        const xs = [...bySeed.values()].flatMap((m) => {
          const c = m.get(step)
          return c ? [[c.sum / c.weight]] : []
        })
        const label = `${this.name}|${arm}|${extra.split ?? ""}|${extra.k ?? ""}|${step}`
        return { step, ...bootstrap(xs, { label, range: this.range, replicates: seriesReplicates }) }
      })
      const seeds = [...bySeed.entries()].sort(([a], [b]) => a - b).map(([seed, m]) => ({
        seed,
        points: [...m.entries()].sort(([a], [b]) => a - b).map(([step, c]) => ({ step, value: c.sum / c.weight }))
      }))
      out.push({ arm, ...extra, range: this.range, points, seeds })
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

const signed = (x: number, digits = 3) => (x > 0 ? "+" : x < 0 ? "−" : "") + fmt(Math.abs(x), digits)

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/** What the interval rests on: "2 seeds × 64 questions" or "3 seeds". */
export const basis = (s: Stat): string => (s.units > 1 ? `${plural(s.n, "seed")} × ${plural(s.units, "question")}` : plural(s.n, "seed"))

/** "[0.58, 0.64]" or "" when there is no interval */
export const formatInterval = (s: Stat, sign = false): string =>
  s.lo === null || s.hi === null ? "" : sign ? `[${signed(s.lo, 2)}, ${signed(s.hi, 2)}]` : `[${fmt(s.lo, 2)}, ${fmt(s.hi, 2)}]`

/** "0.612 [0.58, 0.64] (3 seeds × 64 questions)" or "0.612 (1 seed; no interval: …)" */
export const formatStat = (s: Stat, digits = 3): string =>
  s.lo === null ? `${fmt(s.mean, digits)} (${basis(s)}; no interval: ${s.why})` : `${fmt(s.mean, digits)} ${formatInterval(s)} (${basis(s)})`

/** A table cell: "0.612 [0.58, 0.64]" or "0.612" */
export const formatCell = (s: Stat, digits = 3): string => (s.lo === null ? fmt(s.mean, digits) : `${fmt(s.mean, digits)} ${formatInterval(s)}`)

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

  const reward = new Cube("reward", unbounded)
  const accuracy = new Cube("accuracy", unit)
  const toolsPerTraj = new Cube("toolCallsPerTrajectory", nonNegative)
  const hInit = new Cube("entropyInitial", nonNegative)
  const hTool = new Cube("entropyAfterTool", nonNegative)
  const length = new Cube("responseLength", nonNegative)
  const loss = new Cube("loss", unbounded)
  const kl = new Cube("kl", unbounded)
  const clipFraction = new Cube("clipFraction", unit)
  const gradNorm = new Cube("gradNorm", nonNegative)
  const policyEntropy = new Cube("policyEntropy", nonNegative)
  const mismatch = new Cube("logprobMismatch", nonNegative)
  const tisWeight = new Cube("tisWeight", nonNegative)
  const evals = new Map<string, Cube>()
  const passAt = new Map<string, { split: string; k: number; cube: Cube }>()
  const evalTools = new Map<string, Cube>()
  /** split → arm → seed → { step, per-question greedy accuracies } of the seed's last evaluation */
  const lastEval = new Map<string, Map<string, Map<number, { step: number; perQuestion: ReadonlyArray<number> | undefined; accuracy: number; toolCalls: number }>>>()
  const deltaH = new Map<string, Array<number>>()
  const decisions = new Map<string, { considered: number; taken: number }>()
  const batchBranch = new Map<string, { considered: number; taken: number }>()
  const tools = new Map<string, { calls: number; byOutcome: Record<string, number>; ms: number }>()
  const time = new Map<string, Map<number, { engineMs: number; toolMs: number; trainMs: number; evalMs: number }>>()
  /** arm → seed → RL cost sums */
  const cost = new Map<string, Map<number, { calls: number; trajectories: number; tokens: number; batchTrajectories: number; steps: Set<number> }>>()

  const timeCell = (arm: string, seed: number) => {
    let bySeed = time.get(arm)
    if (!bySeed) time.set(arm, (bySeed = new Map()))
    let cell = bySeed.get(seed)
    if (!cell) bySeed.set(seed, (cell = { engineMs: 0, toolMs: 0, trainMs: 0, evalMs: 0 }))
    return cell
  }
  const costCell = (arm: string, seed: number) => {
    let bySeed = cost.get(arm)
    if (!bySeed) cost.set(arm, (bySeed = new Map()))
    let cell = bySeed.get(seed)
    if (!cell) bySeed.set(seed, (cell = { calls: 0, trajectories: 0, tokens: 0, batchTrajectories: 0, steps: new Set() }))
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
        const c = costCell(arm, seed)
        if (Number.isFinite(e.toolCallsPerTrajectory)) {
          c.calls += e.toolCallsPerTrajectory * w
          c.trajectories += w
          c.steps.add(step)
        }
        break
      }
      case "rollout.batch": {
        const w = Math.max(1, event.trajectories)
        hInit.add(arm, seed, step, event.meanEntropyInitial, w)
        hTool.add(arm, seed, step, event.meanEntropyAfterTool, w)
        if (event.trajectories > 0) length.add(arm, seed, step, event.tokensGenerated / event.trajectories, w)
        const c = costCell(arm, seed)
        c.tokens += event.tokensGenerated
        c.batchTrajectories += event.trajectories
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
        kl.add(arm, seed, step, event.kl)
        clipFraction.add(arm, seed, step, event.clipFraction)
        gradNorm.add(arm, seed, step, event.gradNorm)
        policyEntropy.add(arm, seed, step, event.entropy, Math.max(1, event.tokens))
        mismatch.add(arm, seed, step, event.logprobMismatch, Math.max(1, event.tokens))
        if (event.tisWeightMean !== undefined) tisWeight.add(arm, seed, step, event.tisWeightMean, Math.max(1, event.tokens))
        timeCell(arm, seed).trainMs += event.trainMs
        break
      case "sft.step":
        timeCell(arm, seed).trainMs += event.trainMs
        break
      case "eval": {
        const cube = evals.get(event.split) ?? new Cube(`eval.${event.split}`, unit)
        evals.set(event.split, cube)
        cube.add(arm, seed, step, event.accuracyGreedy)
        const tc = evalTools.get(event.split) ?? new Cube(`evalTools.${event.split}`, nonNegative)
        evalTools.set(event.split, tc)
        tc.add(arm, seed, step, event.toolCallsPerQuestion)
        const ks: Record<string, number> = event.passAt ?? { [String(event.k)]: event.passAtK }
        for (const [kText, value] of Object.entries(ks)) {
          const k = Number(kText)
          const id = `${event.split}|${k}`
          const entry = passAt.get(id) ?? { split: event.split, k, cube: new Cube(`passAt.${id}`, unit) }
          passAt.set(id, entry)
          entry.cube.add(arm, seed, step, value)
        }
        let byArm = lastEval.get(event.split)
        if (!byArm) lastEval.set(event.split, (byArm = new Map()))
        let bySeed = byArm.get(arm)
        if (!bySeed) byArm.set(arm, (bySeed = new Map()))
        const prev = bySeed.get(seed)
        if (prev === undefined || step >= prev.step) {
          bySeed.set(seed, { step, perQuestion: event.greedyPerQuestion, accuracy: event.accuracyGreedy, toolCalls: event.toolCallsPerQuestion })
        }
        timeCell(arm, seed).evalMs += event.evalMs
        break
      }
      default:
        break
    }
  }

  const bySplit = <A>(m: ReadonlyMap<string, A>) => [...m.entries()].sort(([a], [b]) => a.localeCompare(b))
  const evaluation = bySplit(evals).flatMap(([split, cube]) => cube.series(arms, { split }))
  const passAtSeries = [...passAt.values()]
    .sort((a, b) => a.split.localeCompare(b.split) || a.k - b.k)
    .flatMap((p) => p.cube.series(arms, { split: p.split, k: p.k }))

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

  const headline = makeHeadline(arms, accuracy, lastEval, cost)
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
    responseLength: length.series(arms),
    loss: loss.series(arms),
    kl: kl.series(arms),
    clipFraction: clipFraction.series(arms),
    gradNorm: gradNorm.series(arms),
    policyEntropy: policyEntropy.series(arms),
    logprobMismatch: mismatch.series(arms),
    tisWeight: tisWeight.series(arms),
    evaluation,
    passAt: passAtSeries,
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

/** Per-seed final values of `cube` for `arm`: mean over the seed's last `window` steps. */
const finalPerSeed = (cube: Cube, arm: string, window: (steps: number) => number) => {
  const bySeed = cube.data.get(arm)
  const out = new Map<number, ReadonlyArray<number>>()
  let lastStep = Number.NEGATIVE_INFINITY
  if (!bySeed) return { values: out, lastStep: 0 }
  for (const [seed, byStep] of [...bySeed.entries()].sort(([a], [b]) => a - b)) {
    const sorted = [...byStep.keys()].sort((a, b) => a - b)
    lastStep = Math.max(lastStep, sorted[sorted.length - 1]!)
    const last = sorted.slice(-window(sorted.length))
    out.set(seed, [mean(last.map((s) => cube.value(arm, seed, s)!))])
  }
  return { values: out, lastStep }
}

type LastEval = ReadonlyMap<string, ReadonlyMap<string, ReadonlyMap<number, { step: number; perQuestion: ReadonlyArray<number> | undefined; accuracy: number; toolCalls: number }>>>
type CostSums = ReadonlyMap<string, ReadonlyMap<number, { calls: number; trajectories: number; tokens: number; batchTrajectories: number; steps: ReadonlySet<number> }>>

const makeHeadline = (arms: ReadonlyArray<string>, accuracy: Cube, lastEval: LastEval, cost: CostSums): Headline => {
  // Prefer held-out evaluation (the split evaluated for the most arms, then by name) when every arm with
  // figures has it; else training accuracy over each seed's last 20% of steps.
  const split = [...lastEval.entries()]
    .map(([name, byArm]) => ({ name, byArm, arms: arms.filter((a) => byArm.has(a)).length }))
    .sort((a, b) => b.arms - a.arms || a.name.localeCompare(b.name))[0]
  const useEval = split !== undefined && split.arms === arms.filter((a) => accuracy.data.has(a) || split.byArm.has(a)).length

  // per arm: seed → observations (per-question greedy accuracies when every seed of every arm has them)
  const tables = new Map<string, { values: Map<number, ReadonlyArray<number>>; lastStep: number; evalCalls: Map<number, number> }>()
  let perQuestion = false
  if (useEval) {
    const all = arms.flatMap((a) => [...(split.byArm.get(a)?.values() ?? [])])
    const lengths = new Set(all.map((e) => e.perQuestion?.length ?? -1))
    perQuestion = all.length > 0 && lengths.size === 1 && !lengths.has(-1) && !lengths.has(0)
    for (const arm of arms) {
      const bySeed = split.byArm.get(arm)
      if (!bySeed) continue
      const values = new Map<number, ReadonlyArray<number>>()
      const evalCalls = new Map<number, number>()
      let lastStep = 0
      for (const [seed, e] of [...bySeed.entries()].sort(([a], [b]) => a - b)) {
        values.set(seed, perQuestion ? e.perQuestion! : [e.accuracy])
        evalCalls.set(seed, e.toolCalls)
        lastStep = Math.max(lastStep, e.step)
      }
      tables.set(arm, { values, lastStep, evalCalls })
    }
  } else {
    for (const arm of arms) {
      const f = finalPerSeed(accuracy, arm, finalWindow)
      if (f.values.size > 0) tables.set(arm, { values: f.values, lastStep: f.lastStep, evalCalls: new Map() })
    }
  }
  const metric = useEval
    ? `greedy accuracy on the held-out "${split.name}" split at each seed's last evaluation${perQuestion ? ", paired by question" : ""}`
    : "training accuracy, mean over each seed's last 20% of steps"
  const costText = "during RL, per trajectory: executed tool calls and generated tokens (each seed's mean over its RL steps)"

  const finals: Array<ArmFinal> = arms.flatMap((arm) => {
    const t = tables.get(arm)
    if (t === undefined) return []
    const seedList = [...t.values.keys()]
    const c = cost.get(arm)
    const calls = seedList.flatMap((s) => {
      const x = c?.get(s)
      return x && x.trajectories > 0 ? [x.calls / x.trajectories] : []
    })
    const tokens = seedList.flatMap((s) => {
      const x = c?.get(s)
      return x && x.batchTrajectories > 0 ? [x.tokens / x.batchTrajectories] : []
    })
    const evalCalls = [...t.evalCalls.values()]
    return [{
      arm,
      seeds: seedList,
      metric: bootstrap([...t.values.values()], { label: `headline|${arm}`, range: unit }),
      metricPerSeed: [...t.values.values()].map((xs) => mean(xs)),
      toolCalls: stat(calls, nonNegative, `cost.calls|${arm}`),
      toolCallsPerSeed: calls,
      tokens: stat(tokens, nonNegative, `cost.tokens|${arm}`),
      evalToolCalls: evalCalls.length > 0 ? stat(evalCalls, nonNegative, `cost.eval|${arm}`) : null,
      lastStep: t.lastStep
    }]
  })
  const ranked = [...finals].sort((a, b) => b.metric.mean - a.metric.mean)
  const comparisons: Array<Comparison> = []
  const best = ranked[0]
  if (best !== undefined) {
    for (const other of ranked.slice(1)) comparisons.push(compare(best, other, tables.get(best.arm)!.values, tables.get(other.arm)!.values, metric))
  }
  const steps = (arm: string) => {
    const c = cost.get(arm)
    return c ? Math.max(0, ...[...c.values()].map((x) => x.steps.size)) : 0
  }
  const text = finals.length === 0
    ? "No accuracy figures in events.jsonl yet (no reward.batch or eval events), so no arm can be compared."
    : finals.length === 1
    ? `Only one arm (${finals[0]!.arm}): ${metric} ${formatStat(finals[0]!.metric)}; during RL ${fmt(finals[0]!.toolCalls.mean)} tool calls and ${fmt(finals[0]!.tokens.mean)} generated tokens per trajectory (${steps(finals[0]!.arm)} steps); nothing to compare with.`
    : comparisons.map((c) => `${c.sentence}\n  ${c.costSentence}`).join("\n")
  return { metric, cost: costText, arms: finals, comparisons, text }
}

/** "0.76×" of a ratio, or "n/a" */
const ratioText = (a: number, b: number, of: string): { ratio: number | null; text: string } => {
  if (!(b > 0) || !Number.isFinite(a)) return { ratio: null, text: "" }
  const ratio = a / b
  return { ratio, text: ` (${fmt(ratio, 3)}× ${of}'s)` }
}

/**
 * The verdict: "beats" only when the paired bootstrap 95% interval of the difference excludes 0;
 * "no significant difference" when it contains 0; "cannot tell" when there is no interval, with the reason.
 */
const compare = (
  a: ArmFinal,
  b: ArmFinal,
  aValues: ReadonlyMap<number, ReadonlyArray<number>>,
  bValues: ReadonlyMap<number, ReadonlyArray<number>>,
  metric: string
): Comparison => {
  const paired = pairedDifference(aValues, bValues, { label: `headline|${a.arm}|${b.arm}`, range: differenceRange(unit) })
  const difference: Stat = paired?.stat ?? { mean: a.metric.mean - b.metric.mean, lo: null, hi: null, n: 0, units: 0, why: "the arms share no seed to pair on" }
  const seedWins = paired
    ? { higher: paired.diffs.filter((d) => d > 0).length, lower: paired.diffs.filter((d) => d < 0).length }
    : null
  const overlap = intervalsOverlap(a.metric, b.metric)
  const verdict: Comparison["verdict"] = difference.lo === null
    ? "cannot tell"
    : difference.lo > 0
    ? "beats"
    : "no significant difference"
  const diffText = `difference ${signed(difference.mean)}` +
    (difference.lo === null ? "" : `, paired bootstrap 95% CI ${formatInterval(difference, true)} over ${basis(difference)}`)
  const winsText = seedWins && paired!.seeds.length > 1 ? `; ${a.arm} higher in ${seedWins.higher} of ${paired!.seeds.length} seeds, lower in ${seedWins.lower}` : ""
  const verdictText = verdict === "beats"
    ? `${a.arm} beats ${b.arm} (the interval of the difference excludes 0)`
    : verdict === "no significant difference"
    ? `no significant difference between ${a.arm} and ${b.arm} (the interval of the difference contains 0)`
    : `cannot tell whether ${a.arm} beats ${b.arm}: ${difference.why}`
  const arm = (s: Stat) => (s.lo === null ? fmt(s.mean) : `${fmt(s.mean)} ${formatInterval(s)}`)
  const sentence = `${a.arm} vs ${b.arm}, ${metric}: ${arm(a.metric)} vs ${arm(b.metric)} (${diffText}${winsText}); ${verdictText}.`
  const calls = ratioText(a.toolCalls.mean, b.toolCalls.mean, b.arm)
  const tokens = ratioText(a.tokens.mean, b.tokens.mean, b.arm)
  const parts: Array<string> = []
  if (Number.isFinite(a.toolCalls.mean) && Number.isFinite(b.toolCalls.mean)) {
    parts.push(`tool calls per trajectory ${fmt(a.toolCalls.mean)} vs ${fmt(b.toolCalls.mean)}${calls.text}`)
  }
  if (Number.isFinite(a.tokens.mean) && Number.isFinite(b.tokens.mean)) {
    parts.push(`generated tokens per trajectory ${fmt(a.tokens.mean)} vs ${fmt(b.tokens.mean)}${tokens.text}`)
  }
  if (a.evalToolCalls !== null && b.evalToolCalls !== null) {
    parts.push(`(held-out greedy: ${fmt(a.evalToolCalls.mean)} vs ${fmt(b.evalToolCalls.mean)} tool calls per question)`)
  }
  const costSentence = parts.length === 0
    ? `Cost: no RL reward.batch or rollout.batch events to compare.`
    : `Cost during RL (${a.arm} vs ${b.arm}, means over ${plural(Math.min(a.toolCallsPerSeed.length || a.seeds.length, b.toolCallsPerSeed.length || b.seeds.length), "seed")}): ${parts.join("; ")}.`
  return {
    better: a.arm,
    worse: b.arm,
    difference,
    paired: paired !== undefined,
    seedWins,
    overlap,
    verdict,
    why: verdict === "cannot tell" ? difference.why : null,
    toolCallRatio: calls.ratio,
    tokenRatio: tokens.ratio,
    sentence,
    costSentence
  }
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
