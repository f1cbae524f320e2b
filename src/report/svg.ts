/**
 * Small SVG plotting without dependencies: line plots (mean with its band over thin per-seed lines, the
 * y axis fitted to the data inside the metric's range), grouped or stacked bar charts with optional
 * error bars, histograms, and rollout trees, each returned as a self-contained `<svg>` string (inline
 * styles, no scripts, no external fonts). Not a general plotting library.
 */

export const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

export const escapeXml = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/** About `count` round tick values covering [lo, hi] (1, 2, 5 × 10^k steps). */
export const niceTicks = (lo: number, hi: number, count = 5): ReadonlyArray<number> => {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return []
  if (lo === hi) return [lo]
  const raw = (hi - lo) / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag
  const out: Array<number> = []
  if (!(step > 0) || (hi - lo) / step > 1000) return [lo, hi]
  const first = Math.ceil(lo / step)
  for (let i = first; i * step <= hi + step * 1e-9 && out.length < 1000; i++) out.push(Math.abs(i * step) < step * 1e-9 ? 0 : i * step)
  return out
}

const tickLabel = (t: number): string => {
  const a = Math.abs(t)
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return t.toExponential(1)
  return Number(t.toPrecision(6)).toString()
}

const r = (x: number) => Math.round(x * 10) / 10

interface Frame {
  readonly width: number
  readonly height: number
  readonly left: number
  readonly right: number
  readonly top: number
  readonly bottom: number
}

const frame = (width: number, height: number, legend: boolean): Frame => ({
  width,
  height,
  left: 58,
  right: legend ? 130 : 16,
  top: 30,
  bottom: 44
})

const open = (f: Frame, title: string) =>
  `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" role="img" aria-label="${escapeXml(title)}" style="font-family:system-ui,sans-serif;font-size:11px;background:#fff">` +
  `<title>${escapeXml(title)}</title>` +
  `<text x="${f.left}" y="18" style="font-size:13px;font-weight:600">${escapeXml(title)}</text>`

const axes = (
  f: Frame,
  x: { lo: number; hi: number; label: string; ticks?: ReadonlyArray<{ at: number; text: string }> },
  y: { lo: number; hi: number; label: string },
  sx: (v: number) => number,
  sy: (v: number) => number
): string => {
  const x0 = f.left
  const x1 = f.width - f.right
  const y0 = f.height - f.bottom
  const y1 = f.top
  let s = `<g stroke="#999" stroke-width="1"><line x1="${x0}" y1="${y0}" x2="${x1}" y2="${y0}"/><line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y1}"/></g>`
  for (const t of niceTicks(y.lo, y.hi, 5)) {
    const py = r(sy(t))
    s += `<line x1="${x0}" y1="${py}" x2="${x1}" y2="${py}" stroke="#eee"/><text x="${x0 - 4}" y="${py + 4}" text-anchor="end" fill="#444">${tickLabel(t)}</text>`
  }
  const xticks = x.ticks ?? niceTicks(x.lo, x.hi, 6).map((t) => ({ at: t, text: tickLabel(t) }))
  for (const t of xticks) {
    const px = r(sx(t.at))
    s += `<line x1="${px}" y1="${y0}" x2="${px}" y2="${y0 + 4}" stroke="#999"/><text x="${px}" y="${y0 + 15}" text-anchor="middle" fill="#444">${escapeXml(t.text)}</text>`
  }
  s += `<text x="${(x0 + x1) / 2}" y="${f.height - 8}" text-anchor="middle" fill="#222">${escapeXml(x.label)}</text>`
  s += `<text x="14" y="${(y0 + y1) / 2}" text-anchor="middle" fill="#222" transform="rotate(-90 14 ${(y0 + y1) / 2})">${escapeXml(y.label)}</text>`
  return s
}

const legend = (f: Frame, items: ReadonlyArray<{ name: string; color: string; dashed?: boolean }>) =>
  items
    .map((it, i) => {
      const x = f.width - f.right + 12
      const y = f.top + 8 + i * 16
      const dash = it.dashed ? ` stroke-dasharray="4 3"` : ""
      return `<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${it.color}" stroke-width="2.5"${dash}/><text x="${x + 23}" y="${y + 4}" fill="#222">${escapeXml(it.name)}</text>`
    })
    .join("")

const empty = (f: Frame, title: string, why: string) =>
  open(f, title) + `<text x="${f.width / 2}" y="${f.height / 2}" text-anchor="middle" fill="#888">${escapeXml(why)}</text></svg>`

const extent = (xs: ReadonlyArray<number>): [number, number] => {
  const v = xs.filter(Number.isFinite)
  if (v.length === 0) return [0, 1]
  let lo = Math.min(...v)
  let hi = Math.max(...v)
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1
    lo -= pad
    hi += pad
  }
  return [lo, hi]
}

export interface LineSeries {
  readonly name: string
  readonly points: ReadonlyArray<{ readonly x: number; readonly y: number; readonly lo?: number; readonly hi?: number }>
  /** each seed's own values, drawn as thin lines under the mean */
  readonly seeds?: ReadonlyArray<ReadonlyArray<{ readonly x: number; readonly y: number }>>
  readonly color?: string
  readonly dashed?: boolean
}

/** The range a metric can take; the y axis never extends past it (either end open when null). */
export interface AxisRange {
  readonly lo: number | null
  readonly hi: number | null
}

export interface LinePlot {
  readonly title: string
  readonly xLabel: string
  readonly yLabel: string
  readonly series: ReadonlyArray<LineSeries>
  /** the metric's range (accuracy: 0…1); the axis is fitted to the data inside it */
  readonly range?: AxisRange
  /** a fixed y axis instead of one fitted to the data (data outside it leaves the plot: for tests) */
  readonly yDomain?: readonly [number, number]
  readonly width?: number
  readonly height?: number
}

/** The plot area of a line plot of this size: data marks stay inside it (the screenshot test checks). */
export const plotArea = (width = 960, height = 300) => {
  const f = frame(width, height, true)
  return { left: f.left, top: f.top, right: f.width - f.right, bottom: f.height - f.bottom }
}

/**
 * The y axis of values `ys`: their extent padded by 6% on each side, widened to nice tick values, and
 * never past the metric's range; a flat series gets a small span around its value.
 */
export const fitAxis = (ys: ReadonlyArray<number>, range: AxisRange = { lo: null, hi: null }): [number, number] => {
  const v = ys.filter(Number.isFinite)
  if (v.length === 0) return [range.lo ?? 0, range.hi ?? 1]
  let lo = Math.min(...v)
  let hi = Math.max(...v)
  const span = hi - lo
  const scale = Math.max(Math.abs(lo), Math.abs(hi))
  const pad = span > scale * 1e-6 ? span * 0.06 : Math.max(scale * 0.05, 0.05)
  lo -= pad
  hi += pad
  const ticks = niceTicks(lo, hi, 5)
  if (ticks.length >= 2) {
    const step = ticks[1]! - ticks[0]!
    lo = Math.floor(lo / step + 1e-9) * step
    hi = Math.ceil(hi / step - 1e-9) * step
  }
  if (range.lo !== null) lo = Math.max(lo, range.lo)
  if (range.hi !== null) hi = Math.min(hi, range.hi)
  if (!(hi > lo)) hi = lo + 1
  return [lo, hi]
}

/** Lines of means with a translucent band from `lo` to `hi` where given, over thin per-seed lines. */
export const linePlot = (p: LinePlot): string => {
  const f = frame(p.width ?? 960, p.height ?? 300, true)
  const finite = (q: { x: number; y: number }) => Number.isFinite(q.x) && Number.isFinite(q.y)
  const pts = p.series.flatMap((s) => s.points.filter(finite))
  if (pts.length === 0) return empty(f, p.title, "no data")
  const seedPts = p.series.flatMap((s) => (s.seeds ?? []).flatMap((line) => line.filter(finite)))
  const [xlo, xhi] = extent([...pts, ...seedPts].map((q) => q.x))
  const [ylo, yhi] = p.yDomain ?? fitAxis([...pts.flatMap((q) => [q.y, q.lo ?? q.y, q.hi ?? q.y]), ...seedPts.map((q) => q.y)], p.range)
  const sx = (v: number) => f.left + ((v - xlo) / (xhi - xlo)) * (f.width - f.left - f.right)
  const sy = (v: number) => f.height - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.height - f.top - f.bottom)
  let s = open(f, p.title) + axes(f, { lo: xlo, hi: xhi, label: p.xLabel }, { lo: ylo, hi: yhi, label: p.yLabel }, sx, sy)
  const items: Array<{ name: string; color: string; dashed?: boolean }> = []
  const line = (q: ReadonlyArray<{ x: number; y: number }>) => q.map((v) => `${r(sx(v.x))},${r(sy(v.y))}`).join(" ")
  p.series.forEach((series, i) => {
    const color = series.color ?? palette[i % palette.length]!
    for (const seed of series.seeds ?? []) {
      const q = seed.filter(finite)
      if (q.length >= 2) s += `<polyline class="seed" points="${line(q)}" fill="none" stroke="${color}" stroke-opacity="0.35" stroke-width="1"/>`
    }
  })
  p.series.forEach((series, i) => {
    const color = series.color ?? palette[i % palette.length]!
    const q = series.points.filter(finite)
    if (q.length === 0) return
    const banded = q.filter((v) => v.lo !== undefined && v.hi !== undefined && Number.isFinite(v.lo) && Number.isFinite(v.hi))
    if (banded.length >= 2) {
      const upper = banded.map((v) => `${r(sx(v.x))},${r(sy(v.hi!))}`)
      const lower = banded.map((v) => `${r(sx(v.x))},${r(sy(v.lo!))}`).reverse()
      s += `<polygon class="band" points="${[...upper, ...lower].join(" ")}" fill="${color}" fill-opacity="0.18" stroke="none"/>`
    }
    const dash = series.dashed ? ` stroke-dasharray="5 4"` : ""
    if (q.length === 1) s += `<circle cx="${r(sx(q[0]!.x))}" cy="${r(sy(q[0]!.y))}" r="3" fill="${color}"/>`
    else s += `<polyline class="line" points="${line(q)}" fill="none" stroke="${color}" stroke-width="2.2"${dash}/>`
    items.push(series.dashed ? { name: series.name, color, dashed: true } : { name: series.name, color })
  })
  return s + legend(f, items) + "</svg>"
}

export interface BarChart {
  readonly title: string
  readonly yLabel: string
  /** the x categories */
  readonly groups: ReadonlyArray<string>
  /** one value per group each; `lo`/`hi` draw error bars */
  readonly series: ReadonlyArray<{ readonly name: string; readonly values: ReadonlyArray<number>; readonly lo?: ReadonlyArray<number>; readonly hi?: ReadonlyArray<number> }>
  /** stack the series within a group instead of placing them side by side */
  readonly stacked?: boolean
  readonly width?: number
  readonly height?: number
}

export const barChart = (p: BarChart): string => {
  const f = frame(p.width ?? 960, p.height ?? 300, p.series.length > 1)
  const values = p.series.flatMap((s) => s.values).filter(Number.isFinite)
  if (p.groups.length === 0 || values.length === 0) return empty(f, p.title, "no data")
  const tops = p.stacked
    ? p.groups.map((_, g) => p.series.reduce((a, s) => a + Math.max(0, s.values[g] ?? 0), 0))
    : p.series.flatMap((s) => s.values.map((v, g) => Math.max(v, s.hi?.[g] ?? v)))
  const ylo = Math.min(0, ...values)
  const yhi = Math.max(...tops.filter(Number.isFinite), ylo + 1e-12) * 1.05
  const plotW = f.width - f.left - f.right
  const groupW = plotW / p.groups.length
  const sy = (v: number) => f.height - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.height - f.top - f.bottom)
  const sx = (g: number) => f.left + (g + 0.5) * groupW
  let s = open(f, p.title) +
    axes(f, { lo: 0, hi: p.groups.length, label: "", ticks: p.groups.map((text, g) => ({ at: g + 0.5, text })) }, { lo: ylo, hi: yhi, label: p.yLabel }, (x) => f.left + x * groupW, sy)
  const inner = groupW * 0.7
  const barW = p.stacked ? inner : inner / p.series.length
  p.groups.forEach((_, g) => {
    let stack = 0
    p.series.forEach((series, i) => {
      const color = palette[i % palette.length]!
      const v = series.values[g] ?? Number.NaN
      if (!Number.isFinite(v)) return
      const x = p.stacked ? sx(g) - inner / 2 : sx(g) - inner / 2 + i * barW
      const base = p.stacked ? stack : 0
      const yTop = sy(base + Math.max(v, 0))
      const yBot = sy(base + Math.min(v, 0))
      s += `<rect class="bar" x="${r(x)}" y="${r(yTop)}" width="${r(barW - 1)}" height="${r(Math.max(0.5, yBot - yTop))}" fill="${color}"><title>${escapeXml(`${series.name}: ${v}`)}</title></rect>`
      if (p.stacked) stack += Math.max(v, 0)
      const lo = series.lo?.[g]
      const hi = series.hi?.[g]
      if (!p.stacked && lo !== undefined && hi !== undefined && Number.isFinite(lo) && Number.isFinite(hi)) {
        const cx = r(x + (barW - 1) / 2)
        s += `<path d="M${cx},${r(sy(lo))}V${r(sy(hi))}M${cx - 4},${r(sy(lo))}h8M${cx - 4},${r(sy(hi))}h8" stroke="#222" stroke-width="1.2" fill="none"/>`
      }
    })
  })
  if (p.series.length > 1) s += legend(f, p.series.map((x, i) => ({ name: x.name, color: palette[i % palette.length]! })))
  return s + "</svg>"
}

export interface HistogramPlot {
  readonly title: string
  readonly xLabel: string
  readonly edges: ReadonlyArray<number>
  readonly series: ReadonlyArray<{ readonly name: string; readonly counts: ReadonlyArray<number> }>
  readonly width?: number
  readonly height?: number
}

/** Overlaid translucent histograms over shared bin edges. */
export const histogramPlot = (p: HistogramPlot): string => {
  const f = frame(p.width ?? 960, p.height ?? 260, true)
  const total = p.series.reduce((a, s) => a + s.counts.reduce((x, y) => x + y, 0), 0)
  if (p.edges.length < 2 || total === 0) return empty(f, p.title, "no data")
  const xlo = p.edges[0]!
  const xhi = p.edges[p.edges.length - 1]!
  const yhi = Math.max(1, ...p.series.flatMap((s) => s.counts))
  const sx = (v: number) => f.left + ((v - xlo) / (xhi - xlo)) * (f.width - f.left - f.right)
  const sy = (v: number) => f.height - f.bottom - (v / yhi) * (f.height - f.top - f.bottom)
  let s = open(f, p.title) + axes(f, { lo: xlo, hi: xhi, label: p.xLabel }, { lo: 0, hi: yhi, label: "count" }, sx, sy)
  p.series.forEach((series, i) => {
    const color = palette[i % palette.length]!
    series.counts.forEach((c, b) => {
      if (c <= 0) return
      const x = sx(p.edges[b]!)
      const w = sx(p.edges[b + 1]!) - x
      s += `<rect class="bin" x="${r(x)}" y="${r(sy(c))}" width="${r(Math.max(0.5, w - 0.5))}" height="${r(sy(0) - sy(c))}" fill="${color}" fill-opacity="0.45" stroke="${color}"/>`
    })
  })
  return s + legend(f, p.series.map((x, i) => ({ name: x.name, color: palette[i % palette.length]! }))) + "</svg>"
}

/** A rollout tree to draw: nodes with their parent, kind, token count, and branch decision (if any). */
export interface TreeView {
  readonly title: string
  readonly nodes: ReadonlyArray<{
    readonly parent: number
    readonly kind: "prompt" | "model" | "tool"
    readonly tokens: number
    readonly label?: string
    readonly branch?: { readonly deltaH: number; readonly branched: boolean; readonly children: number }
    readonly reward?: number
  }>
  readonly color?: string
  readonly width?: number
}

/**
 * A rollout tree left to right: x is the token position where a segment starts (prompt excluded), y
 * the leaf order; model segments are lines in the arm's colour, tool results short grey bars, branch
 * points circles labelled with ΔH (filled: branched; hollow: not branched), leaves with their reward.
 */
export const treePlot = (t: TreeView): string => {
  const n = t.nodes.length
  const leavesCount = Math.max(1, t.nodes.filter((_, i) => !t.nodes.some((m) => m.parent === i)).length)
  const f = { width: t.width ?? 960, height: Math.min(900, 70 + leavesCount * 22), left: 20, right: 90, top: 30, bottom: 24 }
  if (n === 0) return empty(f, t.title, "no tree")
  const color = t.color ?? palette[0]!
  const kids: Array<Array<number>> = t.nodes.map(() => [])
  t.nodes.forEach((node, i) => {
    if (node.parent >= 0 && node.parent < n) kids[node.parent]!.push(i)
  })
  // start and end token positions (the prompt counts as 0 wide)
  const start = new Array<number>(n).fill(0)
  const end = new Array<number>(n).fill(0)
  const order: Array<number> = []
  const visit = (id: number) => {
    order.push(id)
    for (const c of kids[id]!) {
      start[c] = end[id]!
      end[c] = start[c]! + (t.nodes[c]!.kind === "prompt" ? 0 : t.nodes[c]!.tokens)
      visit(c)
    }
  }
  visit(0)
  // y: leaves in depth-first order, inner nodes at the mean of their children
  const y = new Array<number>(n).fill(0)
  let leaf = 0
  const place = (id: number): number => {
    const cs = kids[id]!
    y[id] = cs.length === 0 ? leaf++ : cs.map(place).reduce((a, b) => a + b, 0) / cs.length
    return y[id]!
  }
  place(0)
  const maxX = Math.max(1, ...end)
  const sx = (v: number) => f.left + (v / maxX) * (f.width - f.left - f.right)
  const sy = (v: number) => f.top + 10 + (leavesCount <= 1 ? 0 : (v / (leavesCount - 1)) * (f.height - f.top - f.bottom - 20))
  let s = open(f, t.title)
  for (const id of order) {
    const node = t.nodes[id]!
    if (id === 0) continue
    const p = node.parent
    const x0 = sx(start[id]!)
    const x1 = sx(end[id]!)
    const y0 = sy(y[p]!)
    const y1 = sy(y[id]!)
    // elbow from the parent's row to this node's row, then the segment
    if (y0 !== y1) s += `<path d="M${r(x0)},${r(y0)}V${r(y1)}" stroke="#bbb" fill="none"/>`
    const stroke = node.kind === "tool" ? "#888" : color
    const width = node.kind === "tool" ? 5 : 2.2
    s += `<line class="segment" x1="${r(x0)}" y1="${r(y1)}" x2="${r(Math.max(x1, x0 + 1))}" y2="${r(y1)}" stroke="${stroke}" stroke-width="${width}"><title>${escapeXml(`#${id} ${node.kind}, ${node.tokens} tokens${node.label ? `: ${node.label}` : ""}`)}</title></line>`
  }
  for (const id of order) {
    const node = t.nodes[id]!
    if (node.branch !== undefined) {
      const cx = sx(end[id]!)
      const cy = sy(y[id]!)
      const b = node.branch
      s += `<circle class="branch" cx="${r(cx)}" cy="${r(cy)}" r="4.5" fill="${b.branched ? "#d62728" : "#fff"}" stroke="#d62728" stroke-width="1.5"><title>${escapeXml(`ΔH ${b.deltaH.toFixed(3)} → ${b.branched ? `branched ×${b.children}` : "not branched"}`)}</title></circle>`
      s += `<text x="${r(cx + 6)}" y="${r(cy - 6)}" fill="#a01010" style="font-size:10px">ΔH ${b.deltaH >= 0 ? "+" : ""}${b.deltaH.toFixed(2)}</text>`
    }
    if (kids[id]!.length === 0 && node.reward !== undefined) {
      s += `<text x="${r(sx(end[id]!) + 6)}" y="${r(sy(y[id]!) + 4)}" fill="#222" style="font-size:10px">r ${Number(node.reward.toPrecision(3))}</text>`
    }
  }
  s += `<text x="${f.left}" y="${f.height - 6}" fill="#666">tokens from the end of the prompt → (grey bars: tool results; circles: branch decisions after a tool result, filled = branched)</text>`
  return s + "</svg>"
}
