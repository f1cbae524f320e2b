/**
 * The premise of ARPO, tested where it can hold: three tasks whose tool results carry uncertainty (a
 * flaky calculator, noisy search, an ambiguous pointer chase), each beside its deterministic control.
 * - `premise-entropy`: no training. From each variant's cold start, global sampling (M trajectories per
 *   prompt) on the same prompts and keys; every tool result of every trajectory is classified by the
 *   task (ok / error / missing / ambiguous) and its post-result window measured in the three forms of
 *   core/deltaH.ts (paper, continued, mean), with cluster-bootstrap intervals over prompts (over several
 *   seeds, each its own cold start: nested, seeds then prompts within seeds, and per seed as well) and the
 *   entropy profile −k…+k around the result. It answers: does entropy rise after uncertain results and
 *   not after certain ones? Its unit is a variant × seed (cold start, then sampling): each finished one is
 *   kept in `<run>/entropy-units/<variant>.seed<n>.json`, written atomically after its events are synced
 *   (the file is its completion marker), so `arpo resume <dir>` reads finished units back, drops the events
 *   of the one a kill cut short and samples the rest: the records, events, trees and tables equal a run
 *   straight through (wall times aside; the setup line's wall is the resuming process's).
 * - `premise`: RL. GRPO, ARPO, random-branch and AEPO at an equal rollout budget on every variant, with
 *   paired comparisons over seeds × held-out questions (see `premiseTables`). Each variant and seed is a part
 *   run in its own lane (src/experiment/lanes.ts: `--lanes n` child processes, default the CPU cores), which
 *   also evaluates its arms; the parts merge into one run directory, the same whatever the number of lanes.
 * It does not change the samplers: the ΔH the samplers decide on is still the runner's paper form.
 */
import { serving } from "../../run/weightSync.ts"
import { Console, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { deltaHOf, initialWindow, profileOf, resultWindows, type WindowForm, windowForms, windowValue } from "../../core/deltaH.ts"
import { derive, root, uniform } from "../../core/random.ts"
import type { TokenId } from "../../core/tokens.ts"
import { trajectories } from "../../core/tree.ts"
import type { RolloutTree } from "../../core/tree.ts"
import { Engine, promptTokens } from "../../engine/Engine.ts"
import type { StampedEvent } from "../../events/Event.ts"
import { emit, Events, withScope } from "../../events/Events.ts"
import { readCheckpoint } from "../../model/checkpoint.ts"
import type { HostTensor } from "../../model/params.ts"
import { bootstrap, differenceRange, pairedTable, type Stat, unit } from "../../report/bootstrap.ts"
import { linePlot, type LineSeries, palette } from "../../report/svg.ts"
import type { Summary } from "../../report/summarize.ts"
import { globalPolicy } from "../../rollout/global.ts"
import { runRollout } from "../../rollout/runner.ts"
import { Toolbox } from "../../tools/Toolbox.ts"
import { Sampler } from "../../rollout/Sampler.ts"
import { writeFileAtomic, writeJsonAtomic } from "../../io/atomic.ts"
import { mergePatch, type RunConfigJson, stableJson } from "../../run/config.ts"
import { builtinRegistries } from "../registries.ts"
import { type Components, registryComponents } from "../resolve.ts"
import { batchFigures, promptIndices, rewardEvent, scoreTree } from "../../run/loop.ts"
import { readEventsFile, RunStore } from "../../io/RunStore.ts"
import { coldStart } from "../coldStart.ts"
import { defaultSftCacheDir, sftKey } from "../../run/sft.ts"
import { createHash } from "node:crypto"
import type { PremiseTask, ResultOutcome } from "../../tasks/premiseCommon.ts"
import type { TaskDefinition } from "../../tasks/Task.ts"
import type { Experiment, ResumeOptions, RunOptions } from "../Experiment.ts"
import {
  type ArmSpec,
  checkpointName,
  define,
  type ExperimentSpec,
  finishRun,
  interruptedLines,
  order,
  readStoredRun,
  recordConfigHash,
  requireConfigUnchanged,
  type ResolvedArm,
  resolveArms,
  RunNotResumable,
  type StoredRun,
  storedRunOf
} from "../define.ts"
import { defaultLanes, LaneFailed, type LanePart, laneParts, lanesDir, partDir, partDoneFile, runPartRl, runParts, mergeLanes } from "../lanes.ts"
import { fileURLToPath } from "node:url"
import { baseConfig } from "./defaults.ts"

// ---------------------------------------------------------------------------------------------------
// configuration

/** The six task variants: each uncertain task and its deterministic control (same task seed). */
export const premiseVariants = [
  { name: "flaky", task: { name: "flaky-arithmetic", seed: 11, failureRate: 0.3 } },
  { name: "flaky-control", task: { name: "flaky-arithmetic", seed: 11, failureRate: 0 } },
  // the target's page last when shown (a miss shows one page fewer), and demonstrations that answer after 70% of misses: the cold
  // start answers after a miss more often than it searches again, which RL can learn (docs/results.md §4 "RL on noisy search")
  { name: "noisy", task: { name: "noisy-search", seed: 12, lookalikes: 2, missingRate: 0.25, ranked: "last", missWrongShare: 0.7 } },
  { name: "noisy-control", task: { name: "noisy-search", seed: 12, lookalikes: 0, missingRate: 0 } },
  // the chase the embedded model can learn (docs/results.md §4 "RL on the pointer chase"): 2 hops, 1–2 candidates, 5,000 names of 4 letters
  { name: "chase", task: { name: "pointer-chase", seed: 13, maxCandidates: 2, minHops: 2, maxHops: 2, names: 5000, nameLength: 4 } },
  { name: "chase-control", task: { name: "pointer-chase", seed: 13, maxCandidates: 1, minHops: 2, maxHops: 2, names: 5000, nameLength: 4 } }
] as const

/**
 * The flagship's defaults with room for the premise tasks: context 192 (the longest demonstration is 181
 * tokens), responses up to 150 tokens, 3 calls per trajectory (a retry, a second search, a third hop).
 */
export const premiseConfig: RunConfigJson = mergePatch(baseConfig, {
  task: { failureRate: 0.3, lookalikes: 2, missingRate: 0.25, maxCandidates: 3 },
  model: { context: 192 },
  sft: { steps: 600 },
  rollout: { callLimit: 3, maxResponseTokens: 150, deltaHScale: "raw" },
  eval: { maxResponseTokens: 150, every: 0, questions: 256, k: 1 }
})

/**
 * The premise profiles train (cold start and RL) and sample on the native kernels (docs/native-trainer.md,
 * docs/native-decode.md): equal to jax-js up to float rounding, about twice as fast. Runs from before they
 * were set here used jax-js (docs/results.md §6).
 */
const nativeKernels = { trainer: { kernels: "native" }, engine: { kernels: "native" } }

// ---------------------------------------------------------------------------------------------------
// the entropy study (no training)

/** One tool result of one trajectory, measured. */
export interface ResultRecord {
  readonly arm: string
  readonly seed: number
  readonly step: number
  readonly prompt: number
  readonly trajectory: number
  readonly call: number
  readonly tool: string
  readonly outcome: ResultOutcome
  /** window sums (nats) after the result, per form */
  readonly after: Readonly<Record<WindowForm, number>>
  /** H_initial (nats) of the trajectory, per form */
  readonly initial: Readonly<Record<WindowForm, number>>
  readonly deltaH: Readonly<Record<WindowForm, number>>
  /** model tokens of the first segment after the result (≤ k) */
  readonly firstSegment: number
  /** entropy at positions −k…−1, +1…+k (NaN where absent) */
  readonly profile: ReadonlyArray<number>
}

const stripResult = (text: string): string => text.replace(/^\s*<result>\n?/, "").replace(/\n?<\/result>\s*$/, "")

/** Every tool result of every trajectory of a batch's trees, measured with core/deltaH.ts. */
export const measureTrees = (
  task: PremiseTask,
  decode: (tokens: ReadonlyArray<TokenId>) => string,
  trees: ReadonlyArray<RolloutTree>,
  k: number,
  vocabSize: number,
  where: { readonly arm: string; readonly seed: number; readonly step: number }
): ReadonlyArray<ResultRecord> => {
  const out: Array<ResultRecord> = []
  trees.forEach((tree, prompt) => {
    trajectories(tree).forEach((t, trajectory) => {
      if (t.finish === "failed") return
      const init = initialWindow(t.roles, t.entropies, k)
      for (const w of resultWindows(t.roles, t.entropies, k)) {
        const toolNode = tree.nodes[t.nodeOf[w.at - 1]!]!
        const caller = tree.nodes[toolNode.parent]!
        const tool = caller.toolCall?.tool ?? "?"
        const content = caller.toolCall?.content ?? ""
        const outcome = task.outcomeOf(tool, content, stripResult(decode(toolNode.tokens)))
        const per = (f: (form: WindowForm) => number) => Object.fromEntries(windowForms.map((form) => [form, f(form)])) as Record<WindowForm, number>
        out.push({
          ...where,
          prompt,
          trajectory,
          call: w.call,
          tool,
          outcome,
          after: per((form) => windowValue(w.after, w.firstSegment, k, form)),
          initial: per((form) => windowValue(init.tokens, init.firstSegment, k, form)),
          deltaH: per((form) => deltaHOf(w, init, k, vocabSize, form)),
          firstSegment: w.firstSegment,
          profile: profileOf(w, k)
        })
      }
    })
  })
  return out
}

/** A mean with a 95% percentile interval from a cluster bootstrap (clusters resampled with a keyed stream). */
export interface Interval {
  readonly n: number
  readonly clusters: number
  readonly mean: number
  readonly lo: number
  readonly hi: number
  /** seeds (cold starts) behind the figure, where seeds were resampled too (nestedBootstrap) */
  readonly seeds?: number
}

const meanOf = (xs: ReadonlyArray<number>): number => (xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length)

/**
 * The mean of `values` with a 95% cluster-bootstrap interval: whole clusters (e.g. the trajectories of one
 * prompt, which share a policy state) are resampled, `resamples` times, from a keyed stream.
 */
export const clusterBootstrap = (
  values: ReadonlyArray<{ readonly cluster: string; readonly value: number }>,
  resamples = 1000,
  seed = 1
): Interval => {
  const byCluster = new Map<string, Array<number>>()
  for (const v of values) {
    const c = byCluster.get(v.cluster)
    if (c === undefined) byCluster.set(v.cluster, [v.value])
    else c.push(v.value)
  }
  const clusters = [...byCluster.values()].map((xs) => ({ sum: xs.reduce((a, b) => a + b, 0), n: xs.length }))
  const mean = meanOf(values.map((v) => v.value))
  if (clusters.length < 2) return { n: values.length, clusters: clusters.length, mean, lo: Number.NaN, hi: Number.NaN }
  const key = derive(root(seed), "cluster-bootstrap")
  const means: Array<number> = []
  for (let r = 0; r < resamples; r++) {
    let s = 0
    let n = 0
    for (let i = 0; i < clusters.length; i++) {
      const c = clusters[Math.min(clusters.length - 1, Math.floor(uniform(key, r * clusters.length + i) * clusters.length))]!
      s += c.sum
      n += c.n
    }
    means.push(s / n)
  }
  means.sort((a, b) => a - b)
  return { n: values.length, clusters: clusters.length, mean, lo: means[Math.floor(0.025 * resamples)]!, hi: means[Math.ceil(0.975 * resamples) - 1]! }
}

/**
 * The difference of two cluster means (a − b) with a 95% bootstrap interval, clusters of each side
 * resampled independently (the two sides may come from different policies or tasks).
 */
export const differenceBootstrap = (
  a: ReadonlyArray<{ readonly cluster: string; readonly value: number }>,
  b: ReadonlyArray<{ readonly cluster: string; readonly value: number }>,
  resamples = 1000,
  seed = 2
): Interval => {
  const group = (vs: typeof a) => {
    const m = new Map<string, { sum: number; n: number }>()
    for (const v of vs) {
      const c = m.get(v.cluster) ?? { sum: 0, n: 0 }
      c.sum += v.value
      c.n++
      m.set(v.cluster, c)
    }
    return [...m.values()]
  }
  const ca = group(a)
  const cb = group(b)
  const mean = meanOf(a.map((v) => v.value)) - meanOf(b.map((v) => v.value))
  if (ca.length < 2 || cb.length < 2) return { n: a.length + b.length, clusters: ca.length + cb.length, mean, lo: Number.NaN, hi: Number.NaN }
  const key = derive(root(seed), "difference-bootstrap")
  const draw = (cs: typeof ca, r: number, side: number) => {
    let s = 0
    let n = 0
    for (let i = 0; i < cs.length; i++) {
      const c = cs[Math.min(cs.length - 1, Math.floor(uniform(derive(key, side, r), i) * cs.length))]!
      s += c.sum
      n += c.n
    }
    return s / n
  }
  const diffs: Array<number> = []
  for (let r = 0; r < resamples; r++) diffs.push(draw(ca, r, 0) - draw(cb, r, 1))
  diffs.sort((x, y) => x - y)
  return { n: a.length + b.length, clusters: ca.length + cb.length, mean, lo: diffs[Math.floor(0.025 * resamples)]!, hi: diffs[Math.ceil(0.975 * resamples) - 1]! }
}

/** A value measured at one tool result, with its seed (its own cold start and prompts) and its cluster within that seed (a prompt). */
export interface Measured {
  readonly seed: number
  readonly cluster: string
  readonly value: number
}

type Clusters = ReadonlyArray<{ readonly sum: number; readonly n: number }>

const clustersBySeed = (values: ReadonlyArray<Measured>): Map<number, Clusters> => {
  const m = new Map<number, Map<string, { sum: number; n: number }>>()
  for (const v of values) {
    const seed = m.get(v.seed) ?? new Map<string, { sum: number; n: number }>()
    const c = seed.get(v.cluster) ?? { sum: 0, n: 0 }
    c.sum += v.value
    c.n++
    seed.set(v.cluster, c)
    m.set(v.seed, seed)
  }
  return new Map([...m].map(([seed, cs]) => [seed, [...cs.values()]]))
}

/** One replicate of a seed's clusters (as many as it has, drawn with replacement): added to `acc`. */
const drawClusters = (cs: Clusters | undefined, next: () => number, acc: { sum: number; n: number }) => {
  if (cs === undefined) return
  for (let i = 0; i < cs.length; i++) {
    const c = cs[Math.min(cs.length - 1, Math.floor(next() * cs.length))]!
    acc.sum += c.sum
    acc.n += c.n
  }
}

const cursor = (key: ReturnType<typeof root>) => {
  let i = 0
  return () => uniform(key, i++)
}

/**
 * The mean of values from several seeds with a 95% nested (two-stage) cluster-bootstrap interval: each
 * replicate draws the seeds with replacement (each seed is its own cold start, so seeds vary as whole
 * models), then within every drawn seed its prompts with replacement (a prompt's trajectories share a
 * policy state). The mean is over results, as the point estimate is. With one seed it is exactly
 * `clusterBootstrap` over prompts. With few seeds the seed stage is coarse (3 seeds: 10 distinct draws),
 * so read it beside the per-seed figures (entropyTables prints both).
 */
export const nestedBootstrap = (values: ReadonlyArray<Measured>, resamples = 1000, seed = 3): Interval => {
  const bySeed = clustersBySeed(values)
  const seeds = [...bySeed.keys()].sort((a, b) => a - b)
  if (seeds.length <= 1) return { ...clusterBootstrap(values.map((v) => ({ cluster: `${v.seed}/${v.cluster}`, value: v.value })), resamples), seeds: seeds.length }
  const mean = meanOf(values.map((v) => v.value))
  const clusters = [...bySeed.values()].reduce((a, cs) => a + cs.length, 0)
  const key = derive(root(seed), "nested-bootstrap")
  const means: Array<number> = []
  for (let r = 0; r < resamples; r++) {
    const next = cursor(derive(key, r))
    const acc = { sum: 0, n: 0 }
    for (let i = 0; i < seeds.length; i++) drawClusters(bySeed.get(seeds[Math.min(seeds.length - 1, Math.floor(next() * seeds.length))]!), next, acc)
    means.push(acc.sum / acc.n)
  }
  means.sort((a, b) => a - b)
  return { n: values.length, clusters, seeds: seeds.length, mean, lo: means[Math.floor(0.025 * resamples)]!, hi: means[Math.ceil(0.975 * resamples) - 1]! }
}

/**
 * a − b over several seeds with a 95% nested bootstrap interval: each replicate draws seeds with replacement
 * once for both sides (the two sides of a seed share its prompts and tool-result keys), then each side's
 * prompts within every drawn seed independently. A replicate where a side drew no result is skipped (a side
 * absent at some seeds); with fewer than half the replicates left there is no interval. One seed: exactly
 * `differenceBootstrap`.
 */
export const nestedDifference = (a: ReadonlyArray<Measured>, b: ReadonlyArray<Measured>, resamples = 1000, seed = 4): Interval => {
  const sa = clustersBySeed(a)
  const sb = clustersBySeed(b)
  const seeds = [...new Set([...sa.keys(), ...sb.keys()])].sort((x, y) => x - y)
  const flat = (vs: ReadonlyArray<Measured>) => vs.map((v) => ({ cluster: `${v.seed}/${v.cluster}`, value: v.value }))
  if (seeds.length <= 1) return { ...differenceBootstrap(flat(a), flat(b), resamples), seeds: seeds.length }
  const mean = meanOf(a.map((v) => v.value)) - meanOf(b.map((v) => v.value))
  const clusters = [...sa.values(), ...sb.values()].reduce((x, cs) => x + cs.length, 0)
  const key = derive(root(seed), "nested-difference")
  const diffs: Array<number> = []
  for (let r = 0; r < resamples; r++) {
    const next = cursor(derive(key, r))
    const accA = { sum: 0, n: 0 }
    const accB = { sum: 0, n: 0 }
    for (let i = 0; i < seeds.length; i++) {
      const s = seeds[Math.min(seeds.length - 1, Math.floor(next() * seeds.length))]!
      drawClusters(sa.get(s), next, accA)
      drawClusters(sb.get(s), next, accB)
    }
    if (accA.n > 0 && accB.n > 0) diffs.push(accA.sum / accA.n - accB.sum / accB.n)
  }
  if (diffs.length < resamples / 2) return { n: a.length + b.length, clusters, seeds: seeds.length, mean, lo: Number.NaN, hi: Number.NaN }
  diffs.sort((x, y) => x - y)
  return { n: a.length + b.length, clusters, seeds: seeds.length, mean, lo: diffs[Math.floor(0.025 * diffs.length)]!, hi: diffs[Math.ceil(0.975 * diffs.length) - 1]! }
}

const f = (x: number, d = 3) => (Number.isNaN(x) ? "–" : x.toFixed(d))
const iv = (i: Interval, d = 4) => `${f(i.mean, d)} [${f(i.lo, d)}, ${f(i.hi, d)}]`

/** "rises", "falls" or "cannot tell" from an interval. */
export const verdict = (i: Interval): string =>
  Number.isNaN(i.lo) ? "cannot tell (too few prompts)" : i.lo > 0 ? "rises" : i.hi < 0 ? "falls" : "cannot tell (interval spans 0)"

/** One variant's cold start and sampling at one seed (premise-entropy.json's `timing`). */
export interface EntropyTiming {
  readonly arm: string
  readonly seed: number
  readonly coldStartMs: number
  readonly samplingMs: number
  /** the cold start's final SFT loss (runs from before it was kept have none) */
  readonly finalLoss?: number
}

const seedsOf = (records: ReadonlyArray<ResultRecord>) => [...new Set(records.map((r) => r.seed))].sort((a, b) => a - b)

/** The study's figures (what premise-entropy.md renders; premise-entropy.figures.json keeps them without the records). */
export interface EntropyFigures {
  readonly k: number
  readonly seeds: ReadonlyArray<number>
  /** per variant and outcome ("all": every result of the variant), pooled over seeds and per seed */
  readonly outcomes: ReadonlyArray<{
    readonly variant: string
    readonly outcome: string
    readonly results: number
    readonly share: number
    readonly hAfterPaper: number
    readonly hInitialPaper: number
    readonly deltaH: Readonly<Record<WindowForm, Interval>>
    /** ΔH (mean form) per seed, intervals over that seed's prompts (n 0: no such result at that seed) */
    readonly perSeed: ReadonlyArray<Interval & { readonly seed: number }>
  }>
  /** mean form, a − b */
  readonly contrasts: ReadonlyArray<{ readonly contrast: string; readonly pooled: Interval; readonly perSeed: ReadonlyArray<Interval & { readonly seed: number }> }>
  /** mean entropy (nats) at positions −k…−1, +1…+k, all seeds and per seed (in `seeds` order) */
  readonly profile: ReadonlyArray<{
    readonly variant: string
    readonly outcome: string
    readonly results: number
    readonly entropy: ReadonlyArray<number>
    readonly perSeed: ReadonlyArray<ReadonlyArray<number>>
  }>
  readonly timing: ReadonlyArray<EntropyTiming>
}

/**
 * The study's figures from the records. Pooled figures take every seed's results; their intervals resample
 * seeds (each its own cold start) and prompts within seeds (`nestedBootstrap`, `nestedDifference`; one seed:
 * prompts only). The ΔH (mean form) of every outcome and contrast is also given per seed, with intervals
 * over that seed's prompts.
 */
export const entropyFigures = (records: ReadonlyArray<ResultRecord>, k: number, timing: ReadonlyArray<EntropyTiming> = []): EntropyFigures => {
  const measured = (rs: ReadonlyArray<ResultRecord>, g: (r: ResultRecord) => number): ReadonlyArray<Measured> =>
    rs.map((r) => ({ seed: r.seed, cluster: `${r.arm}/${r.step}/${r.prompt}`, value: g(r) }))
  const dmean = (r: ResultRecord) => r.deltaH.mean
  const arms = [...new Set(records.map((r) => r.arm))]
  const seeds = seedsOf(records)
  const outcomes: Array<EntropyFigures["outcomes"][number]> = []
  const profile: Array<EntropyFigures["profile"][number]> = []
  for (const arm of arms) {
    const mine = records.filter((r) => r.arm === arm)
    for (const o of ["all", ...new Set(mine.map((r) => r.outcome))]) {
      const rs = o === "all" ? mine : mine.filter((r) => r.outcome === o)
      outcomes.push({
        variant: arm,
        outcome: o,
        results: rs.length,
        share: rs.length / Math.max(1, mine.length),
        hAfterPaper: meanOf(rs.map((r) => r.after.paper)),
        hInitialPaper: meanOf(rs.map((r) => r.initial.paper)),
        deltaH: Object.fromEntries(windowForms.map((form) => [form, nestedBootstrap(measured(rs, (r) => r.deltaH[form]))])) as Record<WindowForm, Interval>,
        perSeed: seeds.map((seed) => ({ seed, ...nestedBootstrap(measured(rs.filter((r) => r.seed === seed), dmean)) }))
      })
      const positions = (xs: ReadonlyArray<ResultRecord>) => Array.from({ length: 2 * k }, (_, i) => meanOf(xs.map((r) => r.profile[i]!).filter((x) => !Number.isNaN(x))))
      if (o !== "all") profile.push({ variant: arm, outcome: o, results: rs.length, entropy: positions(rs), perSeed: seeds.map((seed) => positions(rs.filter((r) => r.seed === seed))) })
    }
  }
  // the contrasts: each uncertain outcome against the variant's certain results (or its control's), and the variant against its control
  const contrasts: Array<EntropyFigures["contrasts"][number]> = []
  const contrast = (label: string, a: ReadonlyArray<ResultRecord>, b: ReadonlyArray<ResultRecord>) =>
    contrasts.push({
      contrast: label,
      pooled: nestedDifference(measured(a, dmean), measured(b, dmean)),
      perSeed: seeds.map((seed) => ({ seed, ...nestedDifference(measured(a.filter((r) => r.seed === seed), dmean), measured(b.filter((r) => r.seed === seed), dmean)) }))
    })
  for (const arm of arms.filter((a) => !a.endsWith("-control"))) {
    const mine = records.filter((r) => r.arm === arm)
    const control = records.filter((r) => r.arm === `${arm}-control`)
    // the baseline: this variant's certain results, or (a variant without any, e.g. noisy search) its control's
    const ownOk = mine.filter((r) => r.outcome === "ok")
    const [ok, okLabel] = ownOk.length > 0 ? [ownOk, "after ok"] : [control.filter((r) => r.outcome === "ok"), `${arm}-control after ok`]
    for (const o of [...new Set(mine.map((r) => r.outcome))].filter((x) => x !== "ok")) contrast(`${arm}: after ${o} − ${okLabel}`, mine.filter((r) => r.outcome === o), ok)
    if (control.length > 0) contrast(`${arm} (all results) − ${arm}-control`, mine, control)
  }
  return { k, seeds, outcomes, contrasts, profile, timing }
}

/** The study's tables (markdown lines) from its figures; with several seeds also per seed, and in how many seeds each figure rises. */
export const entropyTables = (records: ReadonlyArray<ResultRecord>, k: number, timing: ReadonlyArray<EntropyTiming> = []): ReadonlyArray<string> =>
  renderEntropyFigures(entropyFigures(records, k, timing))

export const renderEntropyFigures = (fig: EntropyFigures): ReadonlyArray<string> => {
  const { k, seeds } = fig
  const several = seeds.length > 1
  const lines: Array<string> = [
    several
      ? `ΔH = (H_after − H_initial) / ln V per tool result, pooled over seeds ${seeds.join(", ")} (each seed its own cold start and prompts); 95% nested cluster-bootstrap intervals (seeds resampled, then prompts within each drawn seed), window k = ${k}, three forms:`
      : `ΔH = (H_after − H_initial) / ln V per tool result (95% cluster-bootstrap intervals over prompts), window k = ${k}, three forms:`,
    "paper = first segment after the result (fewer than k tokens when it is shorter); continued = the first k model tokens across",
    "later segments; mean = k × per-token mean of the first segment.",
    "",
    "| variant | outcome | results | share | H_after paper | H_initial paper | ΔH paper | ΔH continued | ΔH mean | verdict (mean form) |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
  ]
  for (const o of fig.outcomes) {
    lines.push(
      `| ${o.variant} | ${o.outcome} | ${o.results} | ${f(o.share, 2)} | ${f(o.hAfterPaper)} | ${f(o.hInitialPaper)} | ${iv(o.deltaH.paper)} | ${iv(o.deltaH.continued)} | ${iv(o.deltaH.mean)} | ${
        verdict(o.deltaH.mean)
      } |`
    )
  }
  lines.push("", `Contrasts (mean form; a − b with 95% ${several ? "nested bootstrap intervals: seeds drawn once for both sides, prompts within seeds for each side" : "bootstrap intervals"}):`, "")
  lines.push("| contrast | a − b | verdict |", "|---|---:|---|")
  for (const c of fig.contrasts) lines.push(`| ${c.contrast} | ${iv(c.pooled)} | ${verdict(c.pooled)} |`)
  if (several) {
    const risesIn = (xs: ReadonlyArray<Interval>) => {
      const up = xs.filter((x) => x.lo > 0).length
      const down = xs.filter((x) => x.hi < 0).length
      return `${up}/${xs.length}${down > 0 ? ` (falls in ${down})` : ""}`
    }
    const head = `| ${seeds.map((s) => `seed ${s}`).join(" | ")} | rises in |`
    const rule = `${"---:|".repeat(seeds.length)}---|`
    lines.push("", "ΔH (mean form) per seed: each seed its own cold start and prompts; 95% cluster-bootstrap intervals over that seed's prompts (n results in parentheses):", "")
    lines.push(`| variant | outcome ${head}`, `|---|---|${rule}`)
    for (const o of fig.outcomes) {
      lines.push(`| ${o.variant} | ${o.outcome} | ${o.perSeed.map((x) => (x.n === 0 ? "–" : `${iv(x)} (${x.n})`)).join(" | ")} | ${risesIn(o.perSeed.filter((x) => x.n > 0))} |`)
    }
    lines.push("", "Contrasts per seed (mean form; a − b, 95% bootstrap intervals over that seed's prompts):", "")
    lines.push(`| contrast ${head}`, `|---|${rule}`)
    for (const c of fig.contrasts) {
      lines.push(`| ${c.contrast} | ${c.perSeed.map((x) => (Number.isNaN(x.mean) ? "–" : iv(x))).join(" | ")} | ${risesIn(c.perSeed.filter((x) => !Number.isNaN(x.mean)))} |`)
    }
  }
  lines.push("", `Mean entropy (nats) per model-token position around the result (−${k}…−1: the call's tail; +1…+${k}: after the result${several ? "; all seeds" : ""}):`, "")
  lines.push(`| variant | outcome | ${Array.from({ length: 2 * k }, (_, i) => (i < k ? `${i - k}` : `+${i - k + 1}`)).join(" | ")} |`)
  lines.push(`|---|---|${"---:|".repeat(2 * k)}`)
  for (const p of fig.profile) lines.push(`| ${p.variant} | ${p.outcome} | ${p.entropy.map((x) => f(x, 2)).join(" | ")} |`)
  if (fig.timing.length > 0) {
    lines.push("", "Cold starts and sampling (seconds; cold start 0: loaded from the cache):", "")
    lines.push("| variant | seed | final SFT loss | cold start wall | sampling wall |", "|---|---:|---:|---:|---:|")
    for (const t of fig.timing) lines.push(`| ${t.arm} | ${t.seed} | ${t.finalLoss === undefined ? "–" : f(t.finalLoss, 4)} | ${f(t.coldStartMs / 1000, 1)} | ${f(t.samplingMs / 1000, 1)} |`)
  }
  return lines
}

/**
 * The figure behind the windows: mean entropy per model-token position around the result (−k…−1: the call's
 * tail; +1…+k: after it), one panel per task with its control, a line per outcome with at least `minResults`
 * results (thin lines: each seed). One SVG, the panels stacked.
 */
export const entropyProfilePlot = (fig: EntropyFigures, minResults = 100): string => {
  const xs = Array.from({ length: 2 * fig.k }, (_, i) => (i < fig.k ? i - fig.k : i - fig.k + 1))
  const tasks = [...new Set(fig.profile.map((p) => p.variant.replace(/-control$/, "")))]
  const height = 280
  const panels = tasks.map((task, t) => {
    const rows = fig.profile.filter((p) => (p.variant === task || p.variant === `${task}-control`) && p.results >= minResults)
    const series: Array<LineSeries> = rows.map((p, i) => ({
      name: p.variant === task ? p.outcome : `control ${p.outcome}`,
      color: palette[i % palette.length]!,
      ...(p.variant.endsWith("-control") ? { dashed: true } : {}),
      points: xs.map((x, j) => ({ x, y: p.entropy[j]! })),
      seeds: p.perSeed.map((e) => xs.map((x, j) => ({ x, y: e[j]! })))
    }))
    const svg = linePlot({
      title: `${task}: entropy per token around a tool result (seeds ${fig.seeds.join(", ")}; thin: each seed)`,
      xLabel: `model-token position (−${fig.k}…−1 the call, +1…+${fig.k} after the result)`,
      yLabel: "entropy (nats)",
      series,
      range: { lo: 0, hi: null },
      height
    })
    return svg.replace("<svg ", `<svg y="${t * height}" `)
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="960" height="${tasks.length * height}" viewBox="0 0 960 ${tasks.length * height}">${panels.join("")}</svg>\n`
}

const padStep = (n: number) => String(n).padStart(6, "0")

/** Global sampling of `rl.steps` batches from one arm's cold start; the measured tool results. */
const sampleVariant = (spec: ExperimentSpec, run: string, arm: ResolvedArm, seed: number) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const components: Components = { ...registryComponents(builtinRegistries), ...spec.components }
    const config = arm.config
    const task = (yield* components.task(config)) as TaskDefinition & Partial<PremiseTask>
    if (task.outcomeOf === undefined) return yield* Effect.die(new Error(`premise-entropy: task ${task.name} has no outcomeOf (not a premise task)`))
    const premise = task as PremiseTask
    const toolbox = components.toolbox(config, task)
    const cold = yield* coldStart({ config, seed, task, toolbox, label: `cold-start SFT ${arm.name} (seed ${seed})` })
    const engine = serving(components.engine(config), components.trainer(config, { config: config.model, params: cold.params }))
    const services = components.sampler(config).pipe(Layer.provideMerge(Layer.mergeAll(engine, toolbox)))
    const pool = Math.min(config.rl.promptPool, task.sizes.train ?? Number.MAX_SAFE_INTEGER)
    const records: Array<ResultRecord> = []
    const started = performance.now()
    yield* Effect.gen(function*() {
      const sampler = yield* Sampler
      const tok = (yield* Engine).tokenizer
      for (let step = 1; step <= config.rl.steps; step++) {
        yield* Effect.gen(function*() {
          const problems = promptIndices(seed, step, 0, config.rl.promptsPerStep, pool).flatMap((i) => {
            const p = task.problem("train", i)
            return p === undefined ? [] : [p]
          })
          const trees = yield* sampler.sample(problems.map((p) => promptTokens(tok, p)), { step, key: derive(root(seed), "rollout", 0) })
          yield* emit(rewardEvent(batchFigures(trees.map((tree, i) => scoreTree(task, tok.decode, problems[i]!, tree)))))
          const measured = measureTrees(premise, tok.decode, trees, config.rollout.window, tok.vocabSize, { arm: arm.name, seed, step })
          for (const r of measured) records.push(r)
          if (step === 1) yield* store.writeTrees(`${arm.name}.seed${seed}.step-${padStep(step)}`, trees)
        }).pipe(withScope({ run, arm: arm.name, seed, step }))
      }
    }).pipe(Effect.provide(services), Effect.scoped)
    const wall = (performance.now() - started) / 1000
    yield* Console.error(`${arm.name} seed ${seed}: ${records.length} tool results measured in ${wall.toFixed(1)} s (cold start ${cold.cached ? "cached" : `${(cold.wallMs / 1000).toFixed(1)} s`}, final SFT loss ${cold.finalLoss.toFixed(4)})`)
    return { records, coldStartMs: cold.wallMs, samplingMs: wall * 1000, finalLoss: cold.finalLoss }
  })

const entropyArms: ReadonlyArray<ArmSpec> = premiseVariants.map((v) => ({ name: v.name, sampler: "global", set: { task: v.task } }))

export const premiseEntropySpec: ExperimentSpec = {
  name: "premise-entropy",
  description: "No training: does entropy rise after uncertain tool results (flaky calculator, noisy search, ambiguous pointer chase) and not after certain ones (their controls)?",
  config: premiseConfig,
  profiles: {
    quick: { seeds: [1], set: { ...nativeKernels, sft: { steps: 400 }, rl: { steps: 3, promptsPerStep: 8 } } },
    full: { seeds: [1, 2, 3], set: { ...nativeKernels, rl: { steps: 8, promptsPerStep: 16 } } }
  },
  arms: entropyArms
}

/** The tables of a finished (or partial) entropy run, recomputed from its premise-entropy.json records. */
export const entropyTablesOfRun = (dir: string): ReadonlyArray<string> => {
  const file = fs.existsSync(NodePath.join(dir, "premise-entropy.json")) ? "premise-entropy.json" : "premise-entropy.partial.json"
  const data = JSON.parse(fs.readFileSync(NodePath.join(dir, file), "utf8")) as { records: ReadonlyArray<ResultRecord>; timing?: ReadonlyArray<EntropyTiming> }
  // NaN profile entries are stored as null
  const records = data.records.map((r) => ({ ...r, profile: r.profile.map((x) => (x === null ? Number.NaN : x)) }))
  const config = JSON.parse(fs.readFileSync(NodePath.join(dir, "config.json"), "utf8")) as { arms: ReadonlyArray<{ config: RunConfigJson }> }
  return entropyTables(records, Number(config.arms[0]?.config.rollout["window"] ?? 8), data.timing ?? [])
}

/** Where the entropy study keeps its finished units (variant × seed), one file each: `<arm>.seed<seed>.json`. */
export const entropyUnitsDir = "entropy-units"

/** The file of a finished unit; it is written atomically, last, after the unit's events are synced and its trees written: it exists only when the unit is done. */
export const entropyUnitFile = (dir: string, arm: string, seed: number): string => NodePath.join(dir, entropyUnitsDir, `${arm}.seed${seed}.json`)

/** A finished unit as stored (numbers that are not finite, e.g. NaN profile entries, kept as the strings "NaN", "Infinity", "-Infinity"). */
interface EntropyUnit {
  readonly arm: string
  readonly seed: number
  readonly timing: EntropyTiming
  readonly records: ReadonlyArray<ResultRecord>
}

const encodeUnit = (unit: EntropyUnit): string =>
  JSON.stringify(unit, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)) + "\n"

const decodeUnit = (text: string): EntropyUnit =>
  JSON.parse(text, (_k, v: unknown) => (v === "NaN" ? Number.NaN : v === "Infinity" ? Number.POSITIVE_INFINITY : v === "-Infinity" ? Number.NEGATIVE_INFINITY : v)) as EntropyUnit

/** A finished unit's file, read back; a damaged one (not whole JSON of that unit) is refused with the path and why. */
const readEntropyUnit = (dir: string, arm: string, seed: number) =>
  Effect.try({
    try: () => {
      const unit = decodeUnit(fs.readFileSync(entropyUnitFile(dir, arm, seed), "utf8"))
      if (unit.arm !== arm || unit.seed !== seed || !Array.isArray(unit.records)) throw new Error(`it says arm ${String(unit.arm)} seed ${String(unit.seed)}`)
      return unit
    },
    catch: (e) =>
      new RunNotResumable({ dir, message: `${entropyUnitFile(dir, arm, seed)} is damaged (${e instanceof Error ? e.message : String(e)}); nothing was changed. Delete it to sample that variant and seed again` })
  })

/**
 * Every seed × variant of the entropy study in the open run (RunStore), then the tables (stdout,
 * premise-entropy.md/json). A unit whose file is in entropy-units/ is done: its records and timing are read
 * back, not sampled again; any other unit's events are dropped from events.jsonl first (a run killed in the
 * middle of it left some) and it is sampled anew. Keyed randomness makes a resumed run's records, trees,
 * events and tables those of a run straight through (wall times aside).
 */
const executeEntropy = (spec: ExperimentSpec, arms: ReadonlyArray<ResolvedArm>, seeds: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const dir = store.paths.dir
    const run = NodePath.basename(dir)
    const units = seeds.flatMap((seed) => arms.map((arm) => ({ arm, seed })))
    // before anything is changed: every finished unit readable
    const done = new Map<string, EntropyUnit>()
    for (const { arm, seed } of units) if (fs.existsSync(entropyUnitFile(dir, arm.name, seed))) done.set(`${arm.name}/${seed}`, yield* readEntropyUnit(dir, arm.name, seed))
    // events of unfinished units are recomputed: drop them so nothing is recorded twice (before the Events layer numbers on)
    for (const { arm, seed } of units) if (!done.has(`${arm.name}/${seed}`)) yield* store.truncateAfterStep(-1, { arm: arm.name, seed })
    if (done.size > 0) yield* Console.error(`premise-entropy: ${done.size} of ${units.length} units done already (${[...done.keys()].join(", ")}); ${units.length - done.size} to sample`)
    fs.mkdirSync(NodePath.join(dir, entropyUnitsDir), { recursive: true })
    return yield* Effect.gen(function*() {
      const records: Array<ResultRecord> = []
      const timing: Array<EntropyTiming> = []
      const started = performance.now()
      for (const { arm, seed } of units) {
        let unit = done.get(`${arm.name}/${seed}`)
        if (unit === undefined) {
          const r = yield* sampleVariant(spec, run, arm, seed)
          unit = {
            arm: arm.name,
            seed,
            timing: { arm: arm.name, seed, coldStartMs: r.coldStartMs, samplingMs: r.samplingMs, ...(Number.isFinite(r.finalLoss) ? { finalLoss: r.finalLoss } : {}) },
            records: r.records
          }
          const outcomes = [...new Set(r.records.map((x) => x.outcome))]
          yield* Console.error(
            `${arm.name} seed ${seed}: mean ΔH (mean form) ` +
              outcomes.map((o) => `${o} ${meanOf(r.records.filter((x) => x.outcome === o).map((x) => x.deltaH.mean)).toFixed(4)} (n ${r.records.filter((x) => x.outcome === o).length})`).join(", ")
          )
          // the unit's events on disk before it is declared done; its file (the completion marker) last
          yield* store.syncEvents
          yield* writeFileAtomic(entropyUnitFile(dir, arm.name, seed), encodeUnit(unit))
        }
        for (const x of unit.records) records.push(x)
        timing.push(unit.timing)
        // a partial table after every variant, so an interrupted run still answers for what it measured
        yield* writeJsonAtomic(NodePath.join(dir, "premise-entropy.partial.json"), { seeds, timing, records })
      }
      const c = arms[0]!.config
      const k = c.rollout.window
      const figures = entropyFigures(records, k, timing)
      const lines = [
        `Global sampling from each variant's cold start (${c.sft.steps} SFT steps), no training; seeds ${seeds.join(",")}, ` +
        `${c.rl.steps} batches × ${c.rl.promptsPerStep} prompts × M = ${c.rollout.budget}, temperature ${c.rollout.temperature}, k = ${k}, ` +
        `call limit ${c.rollout.callLimit}; wall ${((performance.now() - started) / 1000).toFixed(0)} s`,
        "",
        ...renderEntropyFigures(figures)
      ]
      yield* writeFileAtomic(NodePath.join(dir, "premise-entropy.md"), `# Premise: entropy after tool results\n\n${lines.join("\n")}\n\n![Entropy per token position around tool results](premise-entropy.svg)\n`)
      yield* writeJsonAtomic(NodePath.join(dir, "premise-entropy.json"), { setup: lines[0], seeds, timing, records })
      // the figures without the records (a few hundred kB against tens of MB): what docs/results.md cites
      yield* writeJsonAtomic(NodePath.join(dir, "premise-entropy.figures.json"), { setup: lines[0], ...figures })
      yield* writeFileAtomic(NodePath.join(dir, "premise-entropy.svg"), entropyProfilePlot(figures))
      for (const line of [...lines, "", `Tables: ${NodePath.join(dir, "premise-entropy.md")} (records in premise-entropy.json; plot: premise-entropy.svg)`]) yield* Console.log(line)
      return dir
    }).pipe(Effect.provide(RunStore.eventsLayer))
  })

/** Run the entropy study: every seed × variant, then the tables (stdout, premise-entropy.md/json). */
export const runPremiseEntropy = (spec: ExperimentSpec, options: RunOptions) =>
  Effect.gen(function*() {
    const arms = yield* resolveArms(spec, options)
    const seeds = options.seeds ?? spec.profiles[options.profile].seeds
    const stored = storedRunOf(spec, options, arms, seeds)
    return yield* Effect.andThen(RunStore.use((store) => recordConfigHash(store.paths.dir)), executeEntropy(spec, arms, seeds)).pipe(
      Effect.provide(RunStore.layerCreate({ root: options.out, experiment: spec.name, config: stored }))
    )
  })

/**
 * `arpo resume <dir>` of an entropy run: config.json as the run started (else refused, or `force`), every
 * finished unit readable, then the units not finished and the tables. The arms and seeds are config.json's.
 */
export const resumePremiseEntropy = (spec: ExperimentSpec, dir: string, resumeOptions: ResumeOptions = {}) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const { stored, arms } = yield* readStoredRun(dir, yield* store.readConfig)
    if (stored.experiment !== spec.name) return yield* new RunNotResumable({ dir, message: `${dir} is a run of ${stored.experiment}, not ${spec.name}` })
    yield* requireConfigUnchanged(dir, resumeOptions.force === true)
    return yield* executeEntropy(spec, arms, stored.seeds)
  }).pipe(Effect.provide(RunStore.layerOpen(dir)))

export const premiseEntropy: Experiment = {
  name: premiseEntropySpec.name,
  description: premiseEntropySpec.description,
  run: (options) => runPremiseEntropy(premiseEntropySpec, options),
  resume: (dir, options) => resumePremiseEntropy(premiseEntropySpec, dir, options)
}

/** The entropy study over some variants only (names from `premiseVariants`), e.g. one task and its control. */
export const premiseEntropyOf = (variants: ReadonlyArray<string>): Experiment => {
  const unknown = variants.filter((v) => !premiseVariants.some((p) => p.name === v))
  if (unknown.length > 0) throw new Error(`premise-entropy: unknown variants ${unknown.join(", ")} (known: ${premiseVariants.map((p) => p.name).join(", ")})`)
  const spec: ExperimentSpec = { ...premiseEntropySpec, arms: entropyArms.filter((a) => variants.includes(a.name)) }
  return { ...premiseEntropy, run: (options) => runPremiseEntropy(spec, options), resume: (dir, options) => resumePremiseEntropy(spec, dir, options) }
}

// ---------------------------------------------------------------------------------------------------
// the RL experiment

/** The samplers compared on every variant, at an equal rollout budget M. */
const coreArms = (v: typeof premiseVariants[number]): ReadonlyArray<ArmSpec> => [
  { name: `${v.name}.grpo`, sampler: "global", set: { task: v.task } },
  { name: `${v.name}.arpo`, sampler: "arpo", set: { task: v.task } },
  // random-branch at α: ARPO's branch probability when ΔH ≈ 0; the report shows both measured branch rates
  { name: `${v.name}.random`, sampler: "random-branch", set: { task: v.task } },
  // AEPO end to end: its sampler, its balanced clip and its entropy-aware advantage (α = 0.2, token entropies from the trees)
  { name: `${v.name}.aepo`, sampler: "aepo", set: { task: v.task, loss: { balancedClip: true }, advantage: { entropyAlpha: 0.2 } } }
]

/** Full profile only: a compute-matched GRPO (fewer trajectories, about ARPO's computed tokens) and β on the raw scale. */
const fullExtraArms = (v: typeof premiseVariants[number]): ReadonlyArray<ArmSpec> => [
  { name: `${v.name}.grpo-m6`, sampler: "global", set: { task: v.task, rollout: { budget: 6 } } },
  ...[2, 8, 32].map((beta): ArmSpec => ({ name: `${v.name}.arpo-b${beta}`, sampler: "arpo", set: { task: v.task, rollout: { beta } } })),
  // β on the standardised scale (ΔH ÷ its running std): 0.2 there moves P_t by ±0.2 per std
  { name: `${v.name}.arpo-std`, sampler: "arpo", set: { task: v.task, rollout: { deltaHScale: "standardized" } } }
]

const rlProfiles: ExperimentSpec["profiles"] = {
  // minutes on 2 cores: one seed, a short cold start, 3 RL steps, 64 held-out questions
  quick: { seeds: [1], set: { ...nativeKernels, sft: { steps: 400 }, rl: { steps: 3, promptsPerStep: 8 }, eval: { questions: 64 }, checkpointEvery: 3 } },
  // ≥ 10 seeds, 40 RL steps, 256 held-out questions per seed (hours on 2 cores; see docs/results.md)
  full: { seeds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], set: { ...nativeKernels, rl: { steps: 40 }, eval: { questions: 256 }, checkpointEvery: 10 } }
}

/** One evaluated policy: per held-out question, greedy correctness, tool calls and response tokens. */
export interface Evaluated {
  readonly arm: string
  readonly seed: number
  readonly questions: ReadonlyArray<{ readonly id: string; readonly accuracy: number; readonly toolCalls: number; readonly tokens: number }>
  readonly evalMs: number
}

const variantOf = (arm: string): string => arm.split(".")[0]!

/**
 * Evaluate weights greedily on the arm's first `eval.questions` held-out questions, per question: one greedy
 * trajectory each (no sampled pass: the comparison is greedy accuracy), tool results keyed by `evalSeed`
 * (the same flaky failures for every arm and RL seed evaluated with the same key).
 */
/**
 * The premise studies' greedy held-out rollouts of `params` under `arm`'s config: the first `eval.questions`
 * test problems, one trajectory each (temperature 0), tool results keyed by `evalSeed`, so every arm, seed
 * and step meets the same tool results. Returns the trees with the task and tokenizer that read them;
 * `evaluateWeights` and premise-coldstart's per-outcome evaluator both score these.
 */
export const greedyEvalRollouts = (arm: ResolvedArm, evalSeed: number, params: ReadonlyArray<HostTensor>) =>
  Effect.gen(function*() {
    const components: Components = registryComponents(builtinRegistries)
    const task = yield* components.task(arm.config)
    const engine = serving(components.engine(arm.config), components.trainer(arm.config, { config: arm.config.model, params }))
    const services = Layer.mergeAll(engine, components.toolbox(arm.config, task)).pipe(
      Layer.provideMerge(Events.layerDiscard)
    )
    const started = performance.now()
    const problems = task.problems("test", { start: 0, count: arm.config.eval.questions })
    const { trees, decode } = yield* Effect.gen(function*() {
      const env = { engine: yield* Engine, toolbox: yield* Toolbox, events: yield* Events }
      const tok = env.engine.tokenizer
      const settings = {
        sampler: "eval-greedy",
        budget: 1,
        callLimit: arm.config.rollout.callLimit,
        maxResponseTokens: arm.config.eval.maxResponseTokens,
        temperature: 0,
        topP: 1,
        toolConcurrency: 8,
        toolTimeoutMs: 10_000,
        engineRetries: 0,
        window: arm.config.rollout.window,
        emitEvents: false
      }
      const run = yield* runRollout(env, settings, globalPolicy(1), problems.map((p) => promptTokens(tok, p)), { step: 0, key: derive(root(evalSeed), "eval", "test") })
      return { trees: run.trees, decode: tok.decode }
    }).pipe(Effect.provide(services), Effect.scoped)
    return { task, problems, trees, decode, started }
  })

export const evaluateWeights = (arm: ResolvedArm, evalSeed: number, params: ReadonlyArray<HostTensor>, label: string, seed = evalSeed) =>
  Effect.gen(function*() {
    const { task, problems, trees, decode, started } = yield* greedyEvalRollouts(arm, evalSeed, params)
    const out: Evaluated = {
      arm: label,
      seed,
      questions: problems.map((problem, i) => {
        const tree = trees[i]!
        const t = trajectories(tree)[0]
        const response = t === undefined ? "" : decode(t.tokens.slice(t.responseStart))
        return {
          id: problem.id,
          accuracy: t === undefined || t.finish === "failed" ? 0 : task.accuracy(response, problem).accuracy,
          toolCalls: tree.nodes.filter((n) => n.kind === "tool").length,
          tokens: t === undefined ? 0 : t.roles.filter((r) => r === "model").length
        }
      }),
      evalMs: performance.now() - started
    }
    return out
  })

/**
 * A report bootstrap (src/report/bootstrap.ts: seeds × questions resampled crossed, keyed) as an Interval;
 * NaN ends when there is none (`why` says why).
 */
const asInterval = (s: Stat): Interval & { readonly why: string | null } => ({
  n: s.n * s.units,
  clusters: s.units,
  mean: s.mean,
  lo: s.lo ?? Number.NaN,
  hi: s.hi ?? Number.NaN,
  why: s.why
})

/** Per seed, the arm's per-question values in question order (the evaluator keeps the split's order). */
const perSeed = (all: ReadonlyArray<Evaluated>, arm: string, value: (q: Evaluated["questions"][number]) => number) =>
  new Map(all.filter((e) => e.arm === arm).map((e) => [e.seed, e.questions.map(value)] as const))

/** Paired differences a − b over the same seeds × questions, with the report's bootstrap. */
const pairedDifference = (all: ReadonlyArray<Evaluated>, armA: string, armB: string) => {
  const t = pairedTable(perSeed(all, armA, (q) => q.accuracy), perSeed(all, armB, (q) => q.accuracy))
  return asInterval(t === null ? bootstrap([], { label: "none" }) : bootstrap(t.table, { label: `premise ${armA} − ${armB}`, range: differenceRange(unit) }))
}

/** Training cost and branching of one arm and seed, from events.jsonl. */
export interface ArmCost {
  readonly arm: string
  readonly seed: number
  tokensGenerated: number
  tokensComputed: number
  trajectories: number
  toolCalls: number
  considered: number
  taken: number
  wallMs: number
  deltaH: Array<number>
  probability: Array<number>
  callIndex: Array<number>
  /** per RL step: the share of fresh groups whose rewards vary (metric `groups.rewardsVary`) */
  groupsVary: Array<number>
}

/** Per arm and seed: training cost and branching figures from events.jsonl. */
const armCosts = (events: ReadonlyArray<StampedEvent>): ReadonlyArray<ArmCost> => {
  const m = new Map<string, ArmCost>()
  const at = (arm: string, seed: number) => {
    let c = m.get(`${arm}\u0000${seed}`)
    if (c === undefined) {
      c = { arm, seed, tokensGenerated: 0, tokensComputed: 0, trajectories: 0, toolCalls: 0, considered: 0, taken: 0, wallMs: 0, deltaH: [], probability: [], callIndex: [], groupsVary: [] }
      m.set(`${arm}\u0000${seed}`, c)
    }
    return c
  }
  for (const { stamp, event } of events) {
    if (event._tag === "rollout.batch") {
      const c = at(stamp.arm, stamp.seed)
      c.tokensGenerated += event.tokensGenerated
      c.tokensComputed += event.tokensComputed
      c.trajectories += event.trajectories
      c.toolCalls += event.toolCalls
      c.considered += event.branchConsidered
      c.taken += event.branchTaken
    } else if (event._tag === "rollout.branch") {
      const c = at(stamp.arm, stamp.seed)
      c.deltaH.push(event.deltaH)
      c.probability.push(event.probability)
      if (event.call !== undefined) c.callIndex.push(event.call)
    } else if (event._tag === "metric" && event.name === "arm.wallMs") {
      at(stamp.arm, stamp.seed).wallMs += event.value
    } else if (event._tag === "metric" && event.name === "groups.rewardsVary") {
      at(stamp.arm, stamp.seed).groupsVary.push(event.value)
    }
  }
  return [...m.values()]
}

const quantile = (xs: ReadonlyArray<number>, q: number): number => {
  if (xs.length === 0) return Number.NaN
  const s = xs.slice().sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}

/** The comparisons the report makes per variant (a − b), where both arms exist. */
const premisePairs: ReadonlyArray<readonly [string, string]> = [
  ["arpo", "grpo"],
  ["arpo", "grpo-m6"],
  ["arpo", "random"],
  ["arpo-b8", "grpo"],
  ["arpo-b8", "grpo-m6"],
  ["arpo-b8", "random"],
  ["arpo-b8", "arpo"],
  ["arpo-std", "random"],
  ["random", "grpo"],
  ["random", "grpo-m6"],
  ["grpo", "grpo-m6"],
  ["aepo", "grpo"],
  ["aepo", "arpo"],
  ["aepo", "random"],
  ["grpo", "cold-start"],
  ["grpo-m6", "cold-start"],
  ["arpo", "cold-start"],
  ["arpo-b8", "cold-start"],
  ["random", "cold-start"],
  ["aepo", "cold-start"]
]

/** A per-seed figure as the report's bootstrap over seeds (units 1): mean and 95% interval. */
const overSeeds = (values: ReadonlyArray<number>, label: string) => asInterval(bootstrap(values.map((v) => [v]), { label }))

const histogram = (xs: ReadonlyArray<number>, edges: ReadonlyArray<number>): string => {
  const counts = Array.from({ length: edges.length + 1 }, () => 0)
  for (const x of xs) {
    let i = 0
    while (i < edges.length && x >= edges[i]!) i++
    counts[i]!++
  }
  return counts.map((c) => (xs.length === 0 ? "–" : f(c / xs.length, 2))).join(" | ")
}

/**
 * The report's tables from evaluated policies and per-seed training costs: held-out accuracy with intervals,
 * paired differences (seeds × questions), cost against accuracy, the share of groups whose rewards vary,
 * and the distributions of ΔH, P_t and the branch call index. Shared by `premise` (one run) and
 * `premise-power` (one run per seed, merged).
 */
export const premiseTables = (evaluated: ReadonlyArray<Evaluated>, costs: ReadonlyArray<ArmCost>, seeds: ReadonlyArray<number>): ReadonlyArray<string> => {
  const labels = [...new Set(evaluated.map((e) => e.arm))]
  const questions = evaluated[0]?.questions.length ?? 0
  const lines: Array<string> = [
    `Held-out greedy accuracy (token F1 of the boxed answer; mean over seeds ${seeds.join(",")} × ${questions} test questions, the same questions and tool-result keys for every arm and seed; 95% bootstrap interval over seeds × questions, src/report/bootstrap.ts), tool calls and generated tokens per question at evaluation:`,
    "",
    "| arm | seeds | accuracy | tool calls / question | generated tokens / question |",
    "|---|---:|---:|---:|---:|"
  ]
  for (const label of labels) {
    const es = evaluated.filter((e) => e.arm === label)
    const qs = es.flatMap((e) => e.questions)
    const acc = asInterval(bootstrap([...perSeed(evaluated, label, (q) => q.accuracy).values()], { label: `premise ${label}`, range: unit }))
    lines.push(`| ${label} | ${es.length} | ${iv(acc, 3)} | ${f(meanOf(qs.map((q) => q.toolCalls)), 2)} | ${f(meanOf(qs.map((q) => q.tokens)), 1)} |`)
  }
  lines.push("", "Paired differences in held-out accuracy (a − b over the same seeds × questions; 95% bootstrap interval, seeds and questions resampled crossed):", "")
  lines.push("| variant | a − b | seeds | difference | verdict |", "|---|---|---:|---:|---|")
  const armLabels = labels.filter((l) => !l.endsWith(".cold-start"))
  for (const v of [...new Set(armLabels.map(variantOf))]) {
    const has = (s: string) => labels.includes(`${v}.${s}`)
    for (const [a, b] of premisePairs) {
      if (!has(a) || !has(b)) continue
      const d = pairedDifference(evaluated, `${v}.${a}`, `${v}.${b}`)
      const word = Number.isNaN(d.lo) ? `cannot tell (${d.why ?? "no interval"})` : d.lo > 0 ? `${a} better` : d.hi < 0 ? `${b} better` : "cannot tell"
      lines.push(`| ${v} | ${a} − ${b} | ${d.clusters === 0 ? 0 : Math.round(d.n / d.clusters)} | ${iv(d, 3)} | ${word} |`)
    }
  }
  const arms = [...new Set(costs.map((c) => c.arm))]
  const of = (arm: string) => costs.filter((c) => c.arm === arm)
  lines.push(
    "",
    "Training cost against accuracy (per seed: means over seeds with 95% bootstrap intervals over seeds; ΔH is the runner's paper form; branch rate = taken / considered):",
    "",
    "| arm | held-out accuracy | RL wall s / seed | tokens generated / seed | tokens computed / seed | executed tool calls / trajectory | branch rate | P_t mean |",
    "|---|---:|---:|---:|---:|---:|---:|---:|"
  )
  for (const arm of arms) {
    const cs = of(arm)
    const acc = meanOf(evaluated.filter((e) => e.arm === arm).flatMap((e) => e.questions.map((q) => q.accuracy)))
    const considered = cs.reduce((a, c) => a + c.considered, 0)
    const probability = cs.flatMap((c) => c.probability)
    lines.push(
      `| ${arm} | ${f(acc)} | ${iv(overSeeds(cs.map((c) => c.wallMs / 1000), `wall ${arm}`), 1)} | ${iv(overSeeds(cs.map((c) => c.tokensGenerated), `gen ${arm}`), 0)} | ${
        iv(overSeeds(cs.map((c) => c.tokensComputed), `comp ${arm}`), 0)
      } | ${iv(overSeeds(cs.map((c) => c.toolCalls / Math.max(1, c.trajectories)), `calls ${arm}`), 3)} | ${
        considered === 0 ? "–" : f(cs.reduce((a, c) => a + c.taken, 0) / considered, 3)
      } | ${probability.length === 0 ? "–" : f(meanOf(probability), 3)} |`
    )
  }
  lines.push(
    "",
    "Share of groups whose rewards vary (the groups a group-relative advantage learns from; fresh groups of every RL step; mean over seeds × steps, 95% bootstrap interval over seeds × steps):",
    "",
    "| arm | share of groups with varying rewards |",
    "|---|---:|"
  )
  const varyTable = (arm: string) => new Map(of(arm).filter((c) => c.groupsVary.length > 0).map((c) => [c.seed, c.groupsVary] as const))
  for (const arm of arms) {
    const t = [...varyTable(arm).values()]
    if (t.length > 0) lines.push(`| ${arm} | ${iv(asInterval(bootstrap(t, { label: `vary ${arm}`, range: unit })), 3)} |`)
  }
  const varyPairs: Array<string> = []
  for (const v of [...new Set(arms.map(variantOf))]) {
    for (const [a, b] of [["arpo", "random"], ["arpo-b8", "random"], ["arpo-std", "random"], ["aepo", "random"], ["arpo", "grpo"], ["random", "grpo"], ["arpo-b8", "grpo"]] as const) {
      const t = pairedTable(varyTable(`${v}.${a}`), varyTable(`${v}.${b}`))
      if (t === null) continue
      const d = asInterval(bootstrap(t.table, { label: `vary ${v}.${a} − ${b}`, range: differenceRange(unit) }))
      varyPairs.push(`| ${v} | ${a} − ${b} | ${iv(d, 3)} | ${Number.isNaN(d.lo) ? `cannot tell (${d.why ?? "no interval"})` : d.lo > 0 ? `${a} more` : d.hi < 0 ? `${b} more` : "cannot tell"} |`)
    }
  }
  if (varyPairs.length > 0) {
    lines.push("", "Paired by seed and step (the same prompts), a − b:", "", "| variant | a − b | difference | verdict |", "|---|---|---:|---|", ...varyPairs)
  }
  const dEdges = [-0.05, 0, 0.05, 0.2, 0.4]
  const pEdges = [0.4, 0.5, 0.55, 0.7, 0.9]
  const branching = arms.filter((a) => of(a).some((c) => c.deltaH.length > 0))
  if (branching.length > 0) {
    lines.push(
      "",
      "Distributions over the branch points considered during RL (all seeds and steps): ΔH (paper form), P_t, and the tool call the branch point follows:",
      "",
      `| arm | branch points | ΔH p10 / p50 / p90 | ΔH < −0.05 | −0.05…0 | 0…0.05 | 0.05…0.2 | 0.2…0.4 | ≥ 0.4 | P_t < 0.4 | 0.4…0.5 | 0.5…0.55 | 0.55…0.7 | 0.7…0.9 | ≥ 0.9 | after call 1 / 2 / 3 |`,
      `|---|---:|---|${"---:|".repeat(12)}---|`
    )
    for (const arm of branching) {
      const dh = of(arm).flatMap((c) => c.deltaH)
      const pt = of(arm).flatMap((c) => c.probability)
      const ci = of(arm).flatMap((c) => c.callIndex)
      lines.push(
        `| ${arm} | ${dh.length} | ${f(quantile(dh, 0.1), 4)} / ${f(quantile(dh, 0.5), 4)} / ${f(quantile(dh, 0.9), 4)} | ${histogram(dh, dEdges)} | ${histogram(pt, pEdges)} | ${
          [1, 2, 3].map((i) => ci.filter((x) => x === i).length).join(" / ")
        } |`
      )
    }
  }
  return lines
}

/** The key under which an evaluation is kept: its label and RL seed. */
const evaluatedKey = (label: string, seed: number) => `${label}\u0000${seed}`

/**
 * Evaluate units (arm, seed) in run order: each unit's last checkpoint under `checkpoints`, and before the first
 * unit of a variant and seed, that variant's cold start (its evaluation cached beside the cold-start cache:
 * it depends only on the weights and the evaluation settings). `known` evaluations are taken, not recomputed.
 */
export const evaluateUnits = (
  checkpoints: string,
  units: ReadonlyArray<{ readonly arm: ResolvedArm; readonly seed: number }>,
  known: ReadonlyMap<string, Evaluated> = new Map()
) =>
  Effect.gen(function*() {
    const evaluated: Array<Evaluated> = []
    const seen = new Set<string>()
    for (const { arm, seed } of units) {
      const v = variantOf(arm.name)
      if (!seen.has(`${v}/${seed}`)) {
        seen.add(`${v}/${seed}`)
        const had = known.get(evaluatedKey(`${v}.cold-start`, seed))
        if (had !== undefined) evaluated.push(had)
        else {
          const task = yield* registryComponents(builtinRegistries).task(arm.config)
          const coldSeed = arm.config.sft.seed ?? seed
          const cold = yield* coldStart({
            config: arm.config,
            seed: coldSeed,
            task,
            toolbox: registryComponents(builtinRegistries).toolbox(arm.config, task),
            label: `cold start ${v} (seed ${coldSeed})`
          })
          // the cold start's evaluation depends only on its weights and the evaluation settings: cached (shared cold starts are evaluated once)
          const cacheFile = NodePath.join(defaultSftCacheDir(), "..", "premise-eval", `${sftKey(arm.config, coldSeed)}-${premiseEvalSeed}-${
            createHash("sha256").update(stableJson({ eval: arm.config.eval, callLimit: arm.config.rollout.callLimit, window: arm.config.rollout.window })).digest("hex").slice(0, 12)
          }.json`)
          const cached = fs.existsSync(cacheFile) ? (JSON.parse(fs.readFileSync(cacheFile, "utf8")) as Evaluated) : undefined
          const e = cached ?? (yield* evaluateWeights(arm, premiseEvalSeed, cold.params, `${v}.cold-start`, seed))
          if (cached === undefined) {
            fs.mkdirSync(NodePath.dirname(cacheFile), { recursive: true })
            yield* writeJsonAtomic(cacheFile, e)
          }
          evaluated.push({ ...e, seed })
        }
      }
      const had = known.get(evaluatedKey(arm.name, seed))
      if (had !== undefined) evaluated.push(had)
      else {
        const ck = readCheckpoint(NodePath.join(checkpoints, checkpointName(arm.name, seed, arm.config.rl.steps), "policy.safetensors"))
        evaluated.push(yield* evaluateWeights(arm, premiseEvalSeed, ck.params, arm.name, seed))
      }
    }
    return evaluated
  })

/** Evaluations the lanes of a run made (each part's `done.json`), by label and seed. */
const laneEvaluations = (dir: string): ReadonlyMap<string, Evaluated> => {
  const out = new Map<string, Evaluated>()
  if (!fs.existsSync(lanesDir(dir))) return out
  for (const part of fs.readdirSync(lanesDir(dir)).sort()) {
    const file = NodePath.join(partDir(dir, part), partDoneFile)
    if (!fs.existsSync(file)) continue
    const done = JSON.parse(fs.readFileSync(file, "utf8")) as { evaluated?: ReadonlyArray<Evaluated> }
    for (const e of done.evaluated ?? []) out.set(evaluatedKey(e.arm, e.seed), e)
  }
  return out
}

/**
 * Evaluate every arm's last checkpoint and each variant's cold start (per seed) of a finished run (taking
 * what its lanes evaluated already); the costs from its events.
 */
export const premiseEvaluate = (dir: string) =>
  Effect.gen(function*() {
    const config = JSON.parse(fs.readFileSync(NodePath.join(dir, "config.json"), "utf8")) as unknown
    const { stored, arms } = yield* readStoredRun(dir, config)
    const log = yield* readEventsFile(NodePath.join(dir, "events.jsonl"))
    const evaluated = yield* evaluateUnits(NodePath.join(dir, "checkpoints"), order(arms, stored.seeds), laneEvaluations(dir))
    return { seeds: stored.seeds, evaluated, costs: armCosts(log.events) }
  })

/** The key of the held-out tool results (flaky failures …): one for every arm and RL seed, so questions pair. */
export const premiseEvalSeed = 1

/** The report's lines for a finished run: evaluation, then premiseTables; written to premise.md / premise.json. */
export const premiseConclusion = (_summary: Summary, dir: string) =>
  Effect.gen(function*() {
    const { seeds, evaluated, costs } = yield* premiseEvaluate(dir)
    const lines = [...premiseTables(evaluated, costs, seeds), ...partTimingLines(dir)]
    yield* writeFileAtomic(NodePath.join(dir, "premise.md"), `# Premise: RL on the premise tasks\n\n${lines.join("\n")}\n`)
    yield* writeJsonAtomic(NodePath.join(dir, "premise.json"), { seeds, evaluated, costs })
    return [...lines, "", `Tables: ${NodePath.join(dir, "premise.md")}`]
  })

const rlSpec = (arms: ReadonlyArray<ArmSpec>): ExperimentSpec => ({
  name: "premise",
  description: "GRPO, ARPO, random-branch and AEPO at an equal rollout budget on three tasks whose tool results carry uncertainty and their deterministic controls",
  config: premiseConfig,
  profiles: rlProfiles,
  arms,
  conclude: premiseConclusion
})

/** Quick: GRPO, ARPO (β = 0.2), ARPO with β = 8 (where the entropy term can move P_t), random-branch and AEPO, per variant. */
export const premiseQuickSpec = rlSpec(premiseVariants.flatMap((v) => [
  ...coreArms(v),
  { name: `${v.name}.arpo-b8`, sampler: "arpo", set: { task: v.task, rollout: { beta: 8 } } } satisfies ArmSpec
]))
export const premiseFullSpec = rlSpec(premiseVariants.flatMap((v) => [...coreArms(v), ...fullExtraArms(v)]))

// ---------------------------------------------------------------------------------------------------
// lanes: the variants × seeds of a run at once (src/experiment/lanes.ts)

/** The parts of a premise run: one per variant and seed (its arms share the cold start), in run order. */
export const premiseParts = (arms: ReadonlyArray<ResolvedArm>, seeds: ReadonlyArray<number>): ReadonlyArray<LanePart> =>
  laneParts(arms, seeds, (arm, seed) => `${variantOf(arm.name)}.seed${seed}`)

/** Where a part's time went (this process's last run of it: a resumed part counts what it redid). */
export interface PartTiming {
  /** cold start (when not cached) and RL of its arms */
  readonly trainWallS: number
  readonly trainCpuS: number
  /** its arms' and cold start's held-out evaluations */
  readonly evalWallS: number
  readonly evalCpuS: number
  /** the cold start's SFT, when this run trained it (0: cached) */
  readonly coldStartWallS: number
  readonly load: ReadonlyArray<number>
}

const cpuSeconds = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** One part: its RL in lanes/<part>/, then its arms' and its cold start's evaluations, kept in done.json (written last) with its timing. */
const premisePart = (dir: string, part: LanePart) =>
  Effect.gen(function*() {
    const t0 = performance.now()
    const c0 = cpuSeconds()
    yield* runPartRl(premiseFullSpec, dir, part)
    const t1 = performance.now()
    const c1 = cpuSeconds()
    const evaluated = yield* evaluateUnits(NodePath.join(partDir(dir, part.id), "checkpoints"), part.units)
    const log = yield* readEventsFile(NodePath.join(partDir(dir, part.id), "events.jsonl"))
    const coldMs = log.events.reduce((a, e) => a + (e.event._tag === "metric" && e.event.name === "coldStart.wallMs" ? e.event.value : 0), 0)
    const timing: PartTiming = {
      trainWallS: (t1 - t0) / 1000,
      trainCpuS: c1 - c0,
      evalWallS: (performance.now() - t1) / 1000,
      evalCpuS: cpuSeconds() - c1,
      coldStartWallS: coldMs / 1000,
      load: os.loadavg()
    }
    yield* Console.error(
      `${part.id}: cold start + RL ${timing.trainWallS.toFixed(1)} s wall, ${timing.trainCpuS.toFixed(1)} s CPU (cold start ${timing.coldStartWallS.toFixed(1)} s wall); evaluation ${
        timing.evalWallS.toFixed(1)
      } s wall, ${timing.evalCpuS.toFixed(1)} s CPU; load ${timing.load.map((x) => x.toFixed(1)).join(" ")}`
    )
    yield* writeJsonAtomic(NodePath.join(partDir(dir, part.id), partDoneFile), { part: part.id, evaluated, timing })
  })

/** The report's lines on where each part's time went (runs in lanes only). */
const partTimingLines = (dir: string): ReadonlyArray<string> => {
  if (!fs.existsSync(lanesDir(dir))) return []
  const rows: Array<string> = []
  for (const part of fs.readdirSync(lanesDir(dir)).sort()) {
    const file = NodePath.join(partDir(dir, part), partDoneFile)
    if (!fs.existsSync(file)) continue
    const t = (JSON.parse(fs.readFileSync(file, "utf8")) as { timing?: PartTiming }).timing
    if (t === undefined) continue
    rows.push(`| ${part} | ${f(t.coldStartWallS, 1)} | ${f(t.trainWallS, 1)} | ${f(t.trainCpuS, 1)} | ${f(t.evalWallS, 1)} | ${f(t.evalCpuS, 1)} | ${t.load.map((x) => x.toFixed(1)).join(" ")} |`)
  }
  if (rows.length === 0) return []
  return [
    "",
    "Where each part's time went (its process, the last time it ran; seconds; CPU = user + system of the part's process; load = the machine's 1/5/15-minute load average as it ended):",
    "",
    "| part | cold start wall (0: cached) | cold start + RL wall | cold start + RL CPU | evaluation wall | evaluation CPU | load |",
    "|---|---:|---:|---:|---:|---:|---|",
    ...rows
  ]
}

/** A lane's process (premiseLane.ts) runs this: the part named `partId` of the run in `dir`. */
export const runPremisePart = (dir: string, partId: string) =>
  Effect.gen(function*() {
    const config = JSON.parse(fs.readFileSync(NodePath.join(dir, "config.json"), "utf8")) as unknown
    const { stored, arms } = yield* readStoredRun(dir, config)
    const parts = premiseParts(arms, stored.seeds)
    const part = parts.find((p) => p.id === partId)
    if (part === undefined) {
      return yield* new LaneFailed({ dir, part: partId, message: `${dir}/config.json has no part ${partId} (its parts: ${parts.map((p) => p.id).join(", ")})` })
    }
    yield* premisePart(dir, part)
  })

/** The module a lane's child process runs (the .ts sources, or the built .js). */
export const premiseLaneEntry = fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "./premiseLane.ts" : "./premiseLane.js", import.meta.url))

/** The parts not done yet in `lanes` lanes, merged, then the reports and the conclusion (premise.md). */
const runWithLanes = (spec: ExperimentSpec, dir: string, arms: ReadonlyArray<ResolvedArm>, seeds: ReadonlyArray<number>, lanes: number) =>
  Effect.gen(function*() {
    const parts = premiseParts(arms, seeds)
    yield* runParts({ dir, parts, lanes, entry: premiseLaneEntry, inProcess: (part) => premisePart(dir, part) }).pipe(
      Effect.onInterrupt(() => Effect.forEach(interruptedLines(dir), (line) => Console.error(line), { discard: true }))
    )
    yield* mergeLanes(dir, parts)
    return yield* finishRun(spec)
  })

/**
 * The premise experiment on a spec per profile: every variant and seed is a part (src/experiment/lanes.ts),
 * `lanes` of them at once (`--lanes`, default the CPU cores), each in its own process; `arpo resume`
 * continues the parts not done. A run directory without `lanes/` (made before lanes) resumes as before.
 */
export const premiseWithLanes = (specOf: (profile: "quick" | "full") => ExperimentSpec): Experiment => {
  const plain = define(premiseFullSpec)
  return {
    name: premiseFullSpec.name,
    description: premiseFullSpec.description,
    run: (options) =>
      Effect.gen(function*() {
        const spec = specOf(options.profile)
        const arms = yield* resolveArms(spec, options)
        const seeds = options.seeds ?? spec.profiles[options.profile].seeds
        const stored = storedRunOf(spec, options, arms, seeds)
        return yield* Effect.gen(function*() {
          const dir = (yield* RunStore).paths.dir
          fs.mkdirSync(lanesDir(dir), { recursive: true })
          yield* recordConfigHash(dir)
          return yield* runWithLanes(spec, dir, arms, seeds, options.lanes ?? defaultLanes())
        }).pipe(Effect.provide(RunStore.layerCreate({ root: options.out, experiment: spec.name, config: stored })))
      }),
    resume: (dir, resumeOptions = {}) =>
      fs.existsSync(lanesDir(dir))
        ? Effect.gen(function*() {
          const store = yield* RunStore
          const { stored, arms } = yield* readStoredRun(dir, yield* store.readConfig)
          if (stored.experiment !== premiseFullSpec.name) {
            return yield* new RunNotResumable({ dir, message: `${dir} is a run of ${stored.experiment}, not ${premiseFullSpec.name}` })
          }
          yield* requireConfigUnchanged(dir, resumeOptions.force === true)
          return yield* runWithLanes(premiseFullSpec, dir, arms, stored.seeds, resumeOptions.lanes ?? defaultLanes())
        }).pipe(Effect.provide(RunStore.layerOpen(dir)))
        : plain.resume!(dir, resumeOptions),
    evaluate: plain.evaluate!,
    report: plain.report!
  }
}

/** `premise`: the quick profile runs GRPO, ARPO, ARPO β = 8, random-branch and AEPO per variant; the full profile every arm (config.json lists them). */
export const premise: Experiment = premiseWithLanes((profile) => (profile === "quick" ? premiseQuickSpec : premiseFullSpec))

/** `premise` over some variants only (names from `premiseVariants`), with the profile's arms. */
export const premiseOf = (variants: ReadonlyArray<string>): Experiment => {
  const unknown = variants.filter((v) => !premiseVariants.some((p) => p.name === v))
  if (unknown.length > 0) throw new Error(`premise: unknown variants ${unknown.join(", ")} (known: ${premiseVariants.map((p) => p.name).join(", ")})`)
  const only = (spec: ExperimentSpec): ExperimentSpec => ({ ...spec, arms: spec.arms.filter((a) => variants.includes(variantOf(a.name))) })
  return premiseWithLanes((profile) => only(profile === "quick" ? premiseQuickSpec : premiseFullSpec))
}

// ---------------------------------------------------------------------------------------------------
// the power study (issue 15): enough seeds and questions to tell a few points apart on the flaky pair

/**
 * What `premise-power` runs: the flaky calculator (entropy rises after an error, §3 of docs/results.md) with
 * GRPO (M = 8), compute-matched GRPO (M = 6), ARPO at β = 0.2 and β = 8, random-branch and AEPO; its
 * control with GRPO and ARPO (ARPO there is random-branch: ΔH ≈ 0). Sized by measured costs on a loaded
 * 2-core machine: every RL seed starts from the variant's seed-1 cold start (`sft.seed`), 6 RL steps at
 * lr 5e-4 (2.5× the flagship's, so 6 steps move the policy about as far as 15 at 2e-4), 512 held-out
 * questions per evaluation, greedy, with the same tool-result keys for every arm and seed.
 */
export const premisePowerArms: ReadonlyArray<ArmSpec> = premiseVariants.filter((v) => v.name === "flaky").flatMap((v) => [
  ...coreArms(v),
  { name: `${v.name}.grpo-m6`, sampler: "global", set: { task: v.task, rollout: { budget: 6 } } } satisfies ArmSpec,
  { name: `${v.name}.arpo-b8`, sampler: "arpo", set: { task: v.task, rollout: { beta: 8 } } } satisfies ArmSpec
])

/** The control's arms, added with `control: true`: GRPO and ARPO (ARPO there branches like random-branch: ΔH ≈ 0). */
export const premisePowerControlArms: ReadonlyArray<ArmSpec> = premiseVariants.filter((v) => v.name === "flaky-control").flatMap((v) =>
  coreArms(v).filter((a) => a.name.endsWith(".grpo") || a.name.endsWith(".arpo"))
)

const powerSet = {
  sft: { steps: 400, seed: 1 },
  rl: { steps: 6, promptsPerStep: 8, lr: 5e-4 },
  eval: { questions: 512 },
  engine: { maxSlots: 256 },
  checkpointEvery: 6
}

/** The power study's spec; `control` adds the control's GRPO and ARPO arms. */
export const premisePowerSpecOf = (control: boolean): ExperimentSpec => ({
  ...rlSpec(control ? [...premisePowerArms, ...premisePowerControlArms] : premisePowerArms),
  name: "premise-power",
  description: "The power study on the flaky calculator: GRPO, compute-matched GRPO, ARPO (β 0.2 and 8), random-branch and AEPO, 10 RL seeds, 512 held-out questions",
  profiles: {
    quick: { seeds: [1], set: powerSet },
    full: { seeds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], set: powerSet }
  }
})
export const premisePowerSpec = premisePowerSpecOf(false)

/** The merged tables of the per-seed runs under `root` (each seed's premise.json), written to premise-power.md/json. */
export const premisePowerSummary = (root: string, wallS: number) =>
  Effect.gen(function*() {
    const dirs = fs.existsSync(NodePath.join(root, "premise-power"))
      ? fs.readdirSync(NodePath.join(root, "premise-power")).map((d) => NodePath.join(root, "premise-power", d)).filter((d) => fs.existsSync(NodePath.join(d, "premise.json")))
      : []
    const runs = dirs.map((d) => JSON.parse(fs.readFileSync(NodePath.join(d, "premise.json"), "utf8")) as { seeds: ReadonlyArray<number>; evaluated: ReadonlyArray<Evaluated>; costs: ReadonlyArray<ArmCost> })
    const seeds = runs.flatMap((r) => r.seeds).sort((a, b) => a - b)
    const evaluated = runs.flatMap((r) => r.evaluated)
    const costs = runs.flatMap((r) => r.costs)
    const lines = [`${seeds.length} seeds (${seeds.join(",")}), wall ${wallS.toFixed(0)} s so far; runs: ${dirs.map((d) => NodePath.basename(d)).join(", ")}`, "", ...premiseTables(evaluated, costs, seeds)]
    yield* writeFileAtomic(NodePath.join(root, "premise-power.md"), `# Premise: the power study (flaky pair)\n\n${lines.join("\n")}\n`)
    yield* writeJsonAtomic(NodePath.join(root, "premise-power.json"), { seeds, wallS, dirs: dirs.map((d) => NodePath.basename(d)), evaluated, costs })
    return lines
  })

/**
 * `premise-power`: one `premise` run per seed (each evaluated as soon as it ends) under one directory, and
 * the merged tables after every seed, so a study stopped early still answers for the seeds it finished.
 * `root`: continue a study in its directory (more seeds); `control`: add the control's arms.
 */
export const premisePowerOf = (options: { readonly control?: boolean; readonly root?: string } = {}): Experiment => ({
  name: "premise-power",
  description: premisePowerSpec.description,
  run: (run) =>
    Effect.gen(function*() {
      const spec = premisePowerSpecOf(options.control ?? false)
      const seeds = run.seeds ?? spec.profiles[run.profile].seeds
      const root = options.root ?? NodePath.join(run.out, "premise-power", new Date().toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z"))
      fs.mkdirSync(root, { recursive: true })
      const started = performance.now()
      let lines: ReadonlyArray<string> = []
      // a continued study: seeds whose RL finished but whose evaluation did not are evaluated, not rerun
      const done = new Set<number>()
      const runsDir = NodePath.join(root, "premise-power")
      for (const d of fs.existsSync(runsDir) ? fs.readdirSync(runsDir).map((x) => NodePath.join(runsDir, x)) : []) {
        if (!fs.existsSync(NodePath.join(d, "config.json"))) continue
        const stored = JSON.parse(fs.readFileSync(NodePath.join(d, "config.json"), "utf8")) as StoredRun
        const finished = stored.arms.every((a) => stored.seeds.every((sd) => fs.existsSync(NodePath.join(d, "checkpoints", checkpointName(a.name, sd, Number(a.config.rl["steps"])), "state.json"))))
        if (!fs.existsSync(NodePath.join(d, "premise.json")) && finished) yield* premiseConclusion(undefined as never, d)
        if (fs.existsSync(NodePath.join(d, "premise.json"))) for (const sd of stored.seeds) done.add(sd)
      }
      for (const seed of seeds.filter((x) => !done.has(x))) {
        yield* define(spec).run({ ...run, seeds: [seed], out: root })
        lines = yield* premisePowerSummary(root, (performance.now() - started) / 1000)
        yield* Console.error(`premise-power: seed ${seed} done, ${((performance.now() - started) / 1000).toFixed(0)} s; tables in ${NodePath.join(root, "premise-power.md")}`)
      }
      for (const line of [...lines, "", `Tables: ${NodePath.join(root, "premise-power.md")}`, root]) yield* Console.log(line)
      return root
    })
})
export const premisePower: Experiment = premisePowerOf()
