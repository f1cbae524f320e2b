/**
 * The HTML report of a run: one self-contained file (inline CSS, inline SVG plots, no scripts, no
 * external assets) with the headline, full-width plots (mean, per-seed lines and the bootstrap band, y
 * axes fitted inside each metric's range) of reward, accuracy, held-out accuracy and pass@k, tool calls,
 * response length, entropy around tool calls, loss/KL/clip fraction/grad norm, branching (ΔH histogram),
 * one sampled rollout tree per arm, the time split and notes.
 * Pure: Summary in, string out.
 */
import { seriesTable } from "./markdown.ts"
import { formatCell, formatNumber as fmt, formatStat, lower, type Series, type Summary, upper } from "./summarize.ts"
import { barChart, escapeXml, histogramPlot, type LineSeries, linePlot, palette, treePlot } from "./svg.ts"
import { type EntropyProfile, type SampledTree, treeView } from "./trees.ts"

const css = `
body{font-family:system-ui,-apple-system,sans-serif;margin:24px auto;max-width:1200px;color:#222;line-height:1.45;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:3px}
.meta{color:#666;font-size:13px}.headline{background:#f5f8ff;border-left:4px solid #1f77b4;padding:10px 14px;margin:12px 0}
.verdict-beats{color:#1a7f37;font-weight:600}.verdict-none{color:#8a6d00;font-weight:600}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.plots{display:flex;flex-direction:column;gap:10px}
.plots svg{width:100%;height:auto;display:block}ul.notes li{font-size:13px}.why{color:#666;font-size:13px}
`

/** Series → plot lines: the mean with its band (where there is an interval) over each seed's thin line. */
export const band = (series: ReadonlyArray<Series>, options: { label?: (s: Series) => string; dashed?: boolean; colorOffset?: number; seeds?: boolean } = {}): Array<LineSeries> =>
  series.map((s, i) => ({
    name: options.label?.(s) ?? s.arm,
    color: palette[(i + (options.colorOffset ?? 0)) % palette.length]!,
    ...(options.dashed ? { dashed: true } : {}),
    points: s.points.map((p) => (p.lo === null ? { x: p.step, y: p.mean } : { x: p.step, y: p.mean, lo: lower(p), hi: upper(p) })),
    ...(options.seeds === false || s.seeds.length < 2 ? {} : { seeds: s.seeds.map((line) => line.points.map((q) => ({ x: q.step, y: q.value }))) })
  }))

/** The metric range of a group of series (they share one). */
const rangeOf = (series: ReadonlyArray<Series>) => series[0]?.range ?? { lo: null, hi: null }

/** A line plot of series with their range and bands. */
const seriesPlot = (title: string, yLabel: string, series: ReadonlyArray<Series>, options: { label?: (s: Series) => string } = {}) =>
  linePlot({ title, xLabel: "step", yLabel, range: rangeOf(series), series: band(series, options) })

/** The band caption: what the shaded area is. */
const bandNote = (series: ReadonlyArray<Series>): string => {
  const p = series.flatMap((s) => s.points)
  const why = p.find((x) => x.lo === null)?.why
  return `<p class="why">Thick line: mean over seeds; thin lines: each seed; shaded: 95% bootstrap interval over seeds` +
    (why !== undefined && why !== null && p.every((x) => x.lo === null) ? ` (none drawn: ${escapeXml(why)})` : "") + `.</p>`
}

/** Markdown table → HTML table (the tables are built once, in markdown.ts). */
const mdTable = (md: string): string => {
  const rows = md.split("\n").filter((_, i) => i !== 1).map((l) => l.slice(2, -2).split(" | "))
  const [head, ...body] = rows
  return `<table><thead><tr>${head!.map((h) => `<th>${escapeXml(h)}</th>`).join("")}</tr></thead><tbody>` +
    body.map((r) => `<tr>${r.map((c) => `<td>${escapeXml(c.replace(/\\\|/g, "|"))}</td>`).join("")}</tr>`).join("") + `</tbody></table>`
}

const section = (title: string, content: string | undefined) => (content === undefined ? "" : `<section><h2>${escapeXml(title)}</h2>${content}</section>\n`)

const ms = (x: number) => x / 1000

const meanOfPoints = (s: Series | undefined): number =>
  s === undefined || s.points.length === 0 ? Number.NaN : s.points.reduce((a, p) => a + p.mean, 0) / s.points.length

export interface HtmlOptions {
  readonly title?: string
  /** one sampled rollout tree per arm (reports of a run directory with trees/) */
  readonly trees?: ReadonlyArray<SampledTree>
  /** entropy by token position around tool calls, per arm, from the run's trees */
  readonly entropyProfiles?: ReadonlyArray<EntropyProfile>
}

export const renderHtml = (s: Summary, options: HtmlOptions = {}): string => {
  const title = options.title ?? `Run report${s.runs.length > 0 ? `: ${s.runs.join(", ")}` : ""}`
  const h = s.headline
  const headline = `<div class="headline">${h.text.split("\n").map((l) => `<p>${escapeXml(l.trim())}</p>`).join("")}` +
    h.comparisons.map((c) =>
      `<p class="${c.verdict === "beats" ? "verdict-beats" : "verdict-none"}">${escapeXml(c.verdict === "beats" ? `${c.better} beats ${c.worse}` : `${c.better} vs ${c.worse}: ${c.verdict}`)}</p>`
    ).join("") +
    (h.arms.length > 0
      ? `<p class="meta">Compared: ${escapeXml(h.metric)}; cost: ${escapeXml(h.cost)}.</p><table><thead><tr><th>arm</th><th>seeds</th><th>last step</th><th>accuracy</th><th>RL tool calls / trajectory</th><th>RL generated tokens / trajectory</th></tr></thead><tbody>` +
        h.arms.map((a) => `<tr><td>${escapeXml(a.arm)}</td><td>${a.seeds.length}</td><td>${a.lastStep}</td><td>${escapeXml(formatStat(a.metric))}</td><td>${escapeXml(formatCell(a.toolCalls))}</td><td>${escapeXml(formatCell(a.tokens))}</td></tr>`).join("") +
        `</tbody></table>`
      : "") +
    `</div>`

  const plots = (...svgs: ReadonlyArray<string>) => `<div class="plots">${svgs.join("")}</div>`
  let body = ""
  body += section(
    "Reward and accuracy per step",
    s.reward.length + s.accuracy.length > 0
      ? plots(seriesPlot("Reward per step", "reward", s.reward), seriesPlot("Training accuracy per step", "accuracy", s.accuracy)) +
        bandNote(s.accuracy) + mdTable(seriesTable(s.accuracy))
      : undefined
  )
  body += section(
    "Held-out evaluation",
    s.evaluation.length > 0
      ? plots(
        seriesPlot("Greedy accuracy on held-out questions", "accuracy", s.evaluation, { label: (e) => `${e.arm} (${e.split})` }),
        ...(s.passAt.length > 0 ? [seriesPlot("pass@k on held-out questions", "pass@k", s.passAt, { label: (e) => `${e.arm} pass@${e.k}` })] : [])
      ) + bandNote(s.evaluation) + mdTable(seriesTable(s.evaluation, (e) => `${e.arm} (${e.split})`))
      : undefined
  )
  body += section(
    "Tool calls and response length",
    s.toolCallsPerTrajectory.length > 0
      ? plots(
        seriesPlot("Executed tool calls per trajectory", "calls", s.toolCallsPerTrajectory),
        ...(s.responseLength.length > 0 ? [seriesPlot("Generated tokens per trajectory (response length)", "tokens", s.responseLength)] : [])
      ) +
        (s.tools.length > 0
          ? `<table><thead><tr><th>arm</th><th>calls</th><th>outcomes</th><th>mean tool ms</th></tr></thead><tbody>` +
            s.tools.map((t) => `<tr><td>${escapeXml(t.arm)}</td><td>${t.calls}</td><td>${escapeXml(Object.entries(t.byOutcome).map(([k, v]) => `${k} ${v}`).join(", "))}</td><td>${fmt(t.meanToolMs)}</td></tr>`).join("") +
            `</tbody></table>`
          : "")
      : undefined
  )
  body += section(
    "Entropy around tool calls",
    s.entropyAfterTool.length > 0
      ? plots(
        linePlot({
          title: "Window entropy after tool results (solid) vs H_initial at the response start (dashed)",
          xLabel: "step",
          yLabel: "entropy (nats)",
          range: rangeOf(s.entropyAfterTool),
          series: [
            ...band(s.entropyAfterTool, { label: (x) => `${x.arm} after tool`, seeds: false }),
            ...band(s.entropyInitial, { label: (x) => `${x.arm} H_init`, dashed: true, seeds: false })
          ]
        }),
        barChart({
          title: "Mean window entropy by position: response start vs right after a tool result",
          yLabel: "entropy (nats)",
          groups: s.entropyInitial.map((x) => x.arm),
          series: [
            { name: "H_initial (response start)", values: s.entropyInitial.map((x) => meanOfPoints(x)) },
            { name: "after tool result", values: s.entropyInitial.map((x) => meanOfPoints(s.entropyAfterTool.find((y) => y.arm === x.arm))) }
          ]
        })
        ,
        ...((options.entropyProfiles ?? []).length > 0
          ? [linePlot({
            title: "Entropy by token position around tool calls (−k: before the call, +k: after the result)",
            xLabel: "token position relative to the tool call",
            yLabel: "mean entropy (nats)",
            range: { lo: 0, hi: null },
            series: options.entropyProfiles!.map((p) => {
              const i = s.arms.indexOf(p.arm)
              return { name: p.arm, color: palette[(i < 0 ? 0 : i) % palette.length]!, points: p.points.map((q) => ({ x: q.position, y: q.mean })) }
            })
          })]
          : [])
      ) + `<p class="why">The first two plots are from events (the window entropy at the response start and right after each tool result); the position profile is from the sampled rollout trees of trees/ (one prompt per step), ` +
        `${(options.entropyProfiles ?? []).map((p) => `${escapeXml(p.arm)}: ${p.points.reduce((a, q) => Math.max(a, q.count), 0)} tool results`).join(", ") || "none in this run"}.</p>`
      : undefined
  )
  body += section(
    "Training",
    s.loss.length > 0
      ? plots(
        seriesPlot("Loss", "loss", s.loss),
        seriesPlot("KL to the reference policy", "KL", s.kl),
        seriesPlot("Clip fraction", "share of tokens", s.clipFraction),
        seriesPlot("Gradient norm", "‖g‖", s.gradNorm),
        seriesPlot("Policy entropy (trainer, per token)", "nats", s.policyEntropy)
      )
      : undefined
  )
  body += section(
    "Branching",
    s.branching.length > 0
      ? plots(
        barChart({
          title: "Branch decisions: considered vs taken",
          yLabel: "decisions",
          groups: s.branching.map((b) => b.arm),
          series: [{ name: "considered", values: s.branching.map((b) => b.considered) }, { name: "taken", values: s.branching.map((b) => b.taken) }]
        }),
        histogramPlot({ title: "ΔH at branch points", xLabel: "ΔH = (H_t − H_initial) / ln V", edges: s.deltaH.edges, series: s.deltaH.series.map((x) => ({ name: x.arm, counts: x.counts })) })
      ) +
        `<table><thead><tr><th>arm</th><th>considered</th><th>taken</th><th>rate</th><th>mean ΔH</th></tr></thead><tbody>` +
        s.branching.map((b) => `<tr><td>${escapeXml(b.arm)}</td><td>${b.considered}</td><td>${b.taken}</td><td>${b.considered > 0 ? fmt(b.taken / b.considered) : "n/a"}</td><td>${fmt(b.meanDeltaH)}</td></tr>`).join("") +
        `</tbody></table>`
      : undefined
  )
  const trees = options.trees ?? []
  body += section(
    "Rollout trees (one sampled prompt per arm)",
    trees.length > 0
      ? plots(...trees.map((t) => {
        const i = s.arms.indexOf(t.arm)
        return treePlot(treeView(t.tree, `${t.arm}, seed ${t.seed}, step ${t.step}, prompt ${t.tree.prompt}`, palette[(i < 0 ? 0 : i) % palette.length]))
      })) + `<p class="why">Each row is a trajectory; circles mark the branch decisions after tool results with their ΔH (filled: branched). Print one in full with <code>arpo inspect &lt;run-dir&gt;</code>.</p>`
      : undefined
  )
  body += section(
    "Time split (mean per seed)",
    s.time.length > 0
      ? plots(
        barChart({
          title: "Wall time by phase",
          yLabel: "seconds",
          stacked: true,
          groups: s.time.map((t) => t.arm),
          series: [
            { name: "engine", values: s.time.map((t) => ms(t.engineMs)) },
            { name: "tools", values: s.time.map((t) => ms(t.toolMs)) },
            { name: "train", values: s.time.map((t) => ms(t.trainMs)) },
            { name: "eval", values: s.time.map((t) => ms(t.evalMs)) }
          ]
        })
      )
      : undefined
  )
  body += section(
    "Engine vs trainer log-probs",
    s.logprobMismatch.length > 0
      ? plots(
        seriesPlot("Mean |engine − trainer| log-prob per token", "nats", s.logprobMismatch),
        ...(s.tisWeight.length > 0 ? [seriesPlot("TIS mean weight", "weight", s.tisWeight)] : [])
      )
      : undefined
  )
  body += section("Notes", s.notes.length > 0 ? `<ul class="notes">${s.notes.map((n) => `<li>${escapeXml(n)}</li>`).join("")}</ul>` : undefined)
  body += section(
    "Events",
    `<table><thead><tr><th>kind</th><th>count</th></tr></thead><tbody>${Object.entries(s.eventsByKind).map(([k, v]) => `<tr><td>${escapeXml(k)}</td><td>${v}</td></tr>`).join("")}</tbody></table>`
  )

  const meta = `${s.arms.length} arm(s) (${s.arms.join(", ") || "none"}) · seeds ${s.seeds.join(", ") || "none"} · steps ${s.steps ? `${s.steps.first}–${s.steps.last}` : "none"} · ${s.events} events · intervals are 95% percentile bootstrap intervals over seeds (and held-out questions in the headline), clipped to each metric's range`
  return `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">` +
    `<title>${escapeXml(title)}</title><style>${css}</style></head><body>\n<h1>${escapeXml(title)}</h1><p class="meta">${escapeXml(meta)}</p>\n` +
    `<section><h2>Headline</h2>${headline}</section>\n${body}</body></html>\n`
}
