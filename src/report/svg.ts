/**
 * Small SVG plotting without dependencies: line plots with shaded seed bands (mean ± CI), grouped or
 * stacked bar charts with optional error bars, and histograms, each returned as a self-contained
 * `<svg>` string (inline styles, no scripts, no external fonts). Not a general plotting library.
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
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t)
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
  readonly color?: string
  readonly dashed?: boolean
}

export interface LinePlot {
  readonly title: string
  readonly xLabel: string
  readonly yLabel: string
  readonly series: ReadonlyArray<LineSeries>
  readonly width?: number
  readonly height?: number
}

/** Lines of means with a translucent band from `lo` to `hi` where given (the seed CI). */
export const linePlot = (p: LinePlot): string => {
  const f = frame(p.width ?? 640, p.height ?? 300, true)
  const pts = p.series.flatMap((s) => s.points.filter((q) => Number.isFinite(q.x) && Number.isFinite(q.y)))
  if (pts.length === 0) return empty(f, p.title, "no data")
  const [xlo, xhi] = extent(pts.map((q) => q.x))
  const [ylo, yhi] = extent(pts.flatMap((q) => [q.y, q.lo ?? q.y, q.hi ?? q.y]))
  const sx = (v: number) => f.left + ((v - xlo) / (xhi - xlo)) * (f.width - f.left - f.right)
  const sy = (v: number) => f.height - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.height - f.top - f.bottom)
  let s = open(f, p.title) + axes(f, { lo: xlo, hi: xhi, label: p.xLabel }, { lo: ylo, hi: yhi, label: p.yLabel }, sx, sy)
  const items: Array<{ name: string; color: string; dashed?: boolean }> = []
  p.series.forEach((series, i) => {
    const color = series.color ?? palette[i % palette.length]!
    const q = series.points.filter((v) => Number.isFinite(v.x) && Number.isFinite(v.y))
    if (q.length === 0) return
    const banded = q.filter((v) => v.lo !== undefined && v.hi !== undefined && Number.isFinite(v.lo) && Number.isFinite(v.hi))
    if (banded.length >= 2) {
      const upper = banded.map((v) => `${r(sx(v.x))},${r(sy(v.hi!))}`)
      const lower = banded.map((v) => `${r(sx(v.x))},${r(sy(v.lo!))}`).reverse()
      s += `<polygon class="band" points="${[...upper, ...lower].join(" ")}" fill="${color}" fill-opacity="0.18" stroke="none"/>`
    }
    const dash = series.dashed ? ` stroke-dasharray="5 4"` : ""
    if (q.length === 1) s += `<circle cx="${r(sx(q[0]!.x))}" cy="${r(sy(q[0]!.y))}" r="3" fill="${color}"/>`
    else s += `<polyline class="line" points="${q.map((v) => `${r(sx(v.x))},${r(sy(v.y))}`).join(" ")}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`
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
  const f = frame(p.width ?? 640, p.height ?? 300, p.series.length > 1)
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
  const f = frame(p.width ?? 640, p.height ?? 260, true)
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
