/**
 * The comparison page of several runs (`arpo compare`): one self-contained HTML file with a table of
 * each run's headline figures and, for each metric, one plot overlaying every run's arms (mean and
 * band per run and arm, y axis fitted inside the metric's range). Pure: summaries in, string out. It
 * does not test differences across runs (their seeds are not paired; each run's own headline does).
 */
import { band } from "./html.ts"
import { formatCell, formatStat, type Series, type Summary } from "./summarize.ts"
import { escapeXml, linePlot, palette } from "./svg.ts"

export interface ComparedRun {
  /** how the run is named on the page (`<experiment>/<run-id>`) */
  readonly title: string
  readonly summary: Summary
}

const metrics: ReadonlyArray<{ readonly title: string; readonly y: string; readonly pick: (s: Summary) => ReadonlyArray<Series>; readonly label?: (x: Series) => string }> = [
  { title: "Training accuracy per step", y: "accuracy", pick: (s) => s.accuracy },
  { title: "Greedy accuracy on held-out questions", y: "accuracy", pick: (s) => s.evaluation, label: (x) => `${x.arm} (${x.split})` },
  { title: "pass@k on held-out questions", y: "pass@k", pick: (s) => s.passAt, label: (x) => `${x.arm} pass@${x.k}` },
  { title: "Reward per step", y: "reward", pick: (s) => s.reward },
  { title: "Executed tool calls per trajectory", y: "calls", pick: (s) => s.toolCallsPerTrajectory },
  { title: "Generated tokens per trajectory", y: "tokens", pick: (s) => s.responseLength },
  { title: "Window entropy after tool results", y: "nats", pick: (s) => s.entropyAfterTool },
  { title: "Loss", y: "loss", pick: (s) => s.loss },
  { title: "KL to the reference policy", y: "KL", pick: (s) => s.kl },
  { title: "Clip fraction", y: "share of tokens", pick: (s) => s.clipFraction },
  { title: "Gradient norm", y: "‖g‖", pick: (s) => s.gradNorm }
]

const css = `body{font-family:system-ui,-apple-system,sans-serif;margin:24px auto;max-width:1200px;color:#222;line-height:1.45;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:3px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f4f4f4}
.plots{display:flex;flex-direction:column;gap:10px}.plots svg{width:100%;height:auto;display:block}p.why{color:#666;font-size:13px}`

export const renderComparison = (runs: ReadonlyArray<ComparedRun>): string => {
  const table = `<table><thead><tr><th>run</th><th>arm</th><th>seeds</th><th>headline figure</th><th>RL tool calls / trajectory</th><th>RL generated tokens / trajectory</th></tr></thead><tbody>` +
    runs.flatMap((r) =>
      r.summary.headline.arms.map((a) =>
        `<tr><td>${escapeXml(r.title)}</td><td>${escapeXml(a.arm)}</td><td>${a.seeds.join(", ")}</td><td>${escapeXml(formatStat(a.metric))}</td><td>${escapeXml(formatCell(a.toolCalls))}</td><td>${escapeXml(formatCell(a.tokens))}</td></tr>`
      )
    ).join("") + `</tbody></table>` +
    runs.map((r) => `<p><b>${escapeXml(r.title)}</b> (${escapeXml(r.summary.headline.metric)}): ${escapeXml(r.summary.headline.text)}</p>`).join("")
  const plots = metrics.flatMap((m) => {
    let color = 0
    const lines = runs.flatMap((r, ri) =>
      band(m.pick(r.summary), { label: (x) => `${r.title.split("/").pop()}: ${m.label?.(x) ?? x.arm}`, seeds: false }).map((line) => ({
        ...line,
        color: palette[color++ % palette.length]!,
        ...(ri > 0 && ri % 2 === 1 ? { dashed: true } : {})
      }))
    )
    if (lines.length === 0) return []
    const range = runs.flatMap((r) => m.pick(r.summary))[0]?.range ?? { lo: null, hi: null }
    return [linePlot({ title: m.title, xLabel: "step", yLabel: m.y, range, series: lines })]
  })
  const title = `Comparison of ${runs.length} runs`
  return `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(title)}</title><style>${css}</style></head><body>` +
    `<h1>${escapeXml(title)}</h1><p class="why">${runs.map((r) => escapeXml(r.title)).join(" · ")}. Each run's arms are compared within the run (paired by seed and question); across runs the seeds are not paired, so the plots show the runs side by side without a test.</p>` +
    `<h2>Headlines</h2>${table}<h2>Per step</h2><div class="plots">${plots.join("")}</div></body></html>\n`
}
