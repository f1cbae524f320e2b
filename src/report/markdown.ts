/**
 * The Markdown report of a run: the headline (does arm A beat arm B, at what tool-call cost), then
 * tables of the per-step series (subsampled to a readable number of rows), branching, tools, the time
 * split, evaluations and notes. Pure: Summary in, string out. Plots are in the HTML report only.
 */
import { formatCell, formatNumber as fmt, formatStat, type Point, type Series, type Summary } from "./summarize.ts"

/** At most `max` steps, evenly spaced, always including the first and the last. */
export const sampleSteps = (steps: ReadonlyArray<number>, max = 12): ReadonlyArray<number> => {
  if (steps.length <= max) return steps
  const out = new Set<number>()
  for (let i = 0; i < max; i++) out.add(steps[Math.round((i * (steps.length - 1)) / (max - 1))]!)
  return [...out]
}

const cell = (p: Point | undefined) => (p === undefined ? "" : formatCell(p))

export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
    ...rows.map((row) => `| ${row.map((c) => c.replace(/\|/g, "\\|")).join(" | ")} |`)
  ].join("\n")

/** Steps as rows, one column per series (label). */
export const seriesTable = (series: ReadonlyArray<Series>, label: (s: Series) => string = (s) => s.arm): string => {
  const steps = [...new Set(series.flatMap((s) => s.points.map((p) => p.step)))].sort((a, b) => a - b)
  const rows = sampleSteps(steps).map((step) => [String(step), ...series.map((s) => cell(s.points.find((p) => p.step === step)))])
  return table(["step", ...series.map(label)], rows)
}

const section = (title: string, body: string | undefined) => (body === undefined ? "" : `## ${title}\n\n${body}\n\n`)

const ms = (x: number) => (x >= 60_000 ? `${fmt(x / 60_000)} min` : x >= 1000 ? `${fmt(x / 1000)} s` : `${fmt(x)} ms`)

export const renderMarkdown = (s: Summary, options: { readonly title?: string } = {}): string => {
  const title = options.title ?? `Run report${s.runs.length > 0 ? `: ${s.runs.join(", ")}` : ""}`
  const h = s.headline
  let out = `# ${title}\n\n`
  out += `${s.arms.length} arm(s) (${s.arms.join(", ") || "none"}), seeds ${s.seeds.join(", ") || "none"}, ` +
    `steps ${s.steps ? `${s.steps.first}–${s.steps.last}` : "none"}, ${s.events} events. ` +
    `Intervals are 95% percentile bootstrap intervals over seeds (and held-out questions in the headline), clipped to each metric's range; a figure without one says why.\n\n`
  out += `## Headline\n\n${h.text.split("\n").map((l) => l.trim()).join("\n\n")}\n\n`
  if (h.arms.length > 0) {
    out += `Compared: ${h.metric}; cost: ${h.cost}.\n\n`
    out += table(
      ["arm", "seeds", "last step", "accuracy", "RL tool calls / trajectory", "RL generated tokens / trajectory"],
      h.arms.map((a) => [a.arm, String(a.seeds.length), String(a.lastStep), formatStat(a.metric), formatCell(a.toolCalls), formatCell(a.tokens)])
    ) + "\n\n"
  }
  out += section("Reward per step", s.reward.length > 0 ? seriesTable(s.reward) : undefined)
  out += section("Accuracy per step", s.accuracy.length > 0 ? seriesTable(s.accuracy) : undefined)
  out += section("Tool calls per trajectory", s.toolCallsPerTrajectory.length > 0 ? seriesTable(s.toolCallsPerTrajectory) : undefined)
  out += section(
    "Entropy after tool results vs H_initial",
    s.entropyAfterTool.length > 0
      ? seriesTable([
        ...s.entropyInitial.map((x) => ({ ...x, arm: `${x.arm} H_initial` })),
        ...s.entropyAfterTool.map((x) => ({ ...x, arm: `${x.arm} after tool` }))
      ])
      : undefined
  )
  out += section(
    "Branching",
    s.branching.length > 0
      ? table(
        ["arm", "considered", "taken", "rate", "mean ΔH"],
        s.branching.map((b) => [b.arm, String(b.considered), String(b.taken), b.considered > 0 ? fmt(b.taken / b.considered) : "n/a", fmt(b.meanDeltaH)])
      )
      : undefined
  )
  out += section(
    "Tool calls",
    s.tools.length > 0
      ? table(
        ["arm", "calls", "outcomes", "mean tool time"],
        s.tools.map((t) => [t.arm, String(t.calls), Object.entries(t.byOutcome).map(([k, v]) => `${k} ${v}`).join(", "), ms(t.meanToolMs)])
      )
      : undefined
  )
  out += section(
    "Time split (mean per seed)",
    s.time.length > 0
      ? table(["arm", "engine", "tools", "train", "eval"], s.time.map((t) => [t.arm, ms(t.engineMs), ms(t.toolMs), ms(t.trainMs), ms(t.evalMs)]))
      : undefined
  )
  out += section("Evaluation accuracy (greedy)", s.evaluation.length > 0 ? seriesTable(s.evaluation, (e) => `${e.arm} (${e.split})`) : undefined)
  out += section("Training loss", s.loss.length > 0 ? seriesTable(s.loss) : undefined)
  out += section("Engine vs trainer log-probs (mean |engine − trainer| per token)", s.logprobMismatch.length > 0 ? seriesTable(s.logprobMismatch) : undefined)
  out += section("TIS mean weight", s.tisWeight.length > 0 ? seriesTable(s.tisWeight) : undefined)
  out += section("Notes", s.notes.length > 0 ? s.notes.map((n) => `- ${n}`).join("\n") : undefined)
  out += `## Events\n\n${table(["kind", "count"], Object.entries(s.eventsByKind).map(([k, v]) => [k, String(v)]))}\n`
  return out
}
