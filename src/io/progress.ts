/**
 * Progress on stderr for long runs: on a terminal a redrawn bar
 * (`[#####.....] 12/40 step · arpo seed 1 · 3.2 s/it · eta 1m30s`); when stderr is not a terminal (logs,
 * nohup, CI) plain timestamped lines, at most one every 10 s per bar plus the last; nothing under a
 * test runner (VITEST, NODE_ENV=test) or with ARPO_PROGRESS=0. It does not log events; the run does.
 */
import { Effect } from "effect"
import type { ProgressBar } from "../run/progress.ts"

export type { ProgressBar }

export interface ProgressOptions {
  readonly label: string
  readonly total: number
  /** where to draw; default process.stderr */
  readonly stream?: { readonly isTTY?: boolean; readonly write: (s: string) => unknown }
  /** force the bar on/off (default: `progressMode(stream)`) */
  readonly enabled?: boolean
  /** force a mode (overrides `enabled`) */
  readonly mode?: ProgressMode
  /** clock in ms (tests); default Date.now */
  readonly now?: () => number
  /** bar width in characters */
  readonly width?: number
}


/** "bar": a redrawn line on a terminal; "lines": timestamped lines for logs; "off": nothing. */
export type ProgressMode = "bar" | "lines" | "off"

/** How progress is shown on `stream`. */
export const progressMode = (stream: { readonly isTTY?: boolean } = process.stderr, env: NodeJS.ProcessEnv = process.env): ProgressMode =>
  env["VITEST"] !== undefined || env["NODE_ENV"] === "test" || env["ARPO_PROGRESS"] === "0" ? "off" : stream.isTTY === true ? "bar" : "lines"

/** Whether a bar should be drawn on `stream`. */
export const progressEnabled = (stream: { readonly isTTY?: boolean } = process.stderr, env: NodeJS.ProcessEnv = process.env): boolean =>
  progressMode(stream, env) === "bar"

/** Minimum time between two progress lines of one bar in "lines" mode. */
export const lineIntervalMs = 10_000

const timestamp = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z")

/** One progress line (pure): `2026-12-04T18:00:00Z arpo seed 1: 3/8 · status · 2.0 s/it · eta 10s`. */
export const renderLine = (label: string, done: number, total: number, nowMs: number, elapsedMs: number, status = ""): string => {
  const bar = renderBar(label, done, total, elapsedMs, 0, status)
  return `${timestamp(nowMs)} ${label}:${bar.slice(label.length + 3)}`
}

const duration = (ms: number): string => {
  if (!Number.isFinite(ms)) return "?"
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
}

/** One bar line (pure): label, bar, count, rate and ETA. */
export const renderBar = (label: string, done: number, total: number, elapsedMs: number, width = 24, status = ""): string => {
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0
  const filled = Math.round(frac * width)
  const perItem = done > 0 ? elapsedMs / done : Number.NaN
  const eta = done > 0 ? perItem * Math.max(0, total - done) : Number.NaN
  const rate = done > 0 ? (perItem >= 1000 ? `${(perItem / 1000).toFixed(1)} s/it` : `${(1000 / Math.max(perItem, 1e-9)).toFixed(1)} it/s`) : "…"
  return `${label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}${status ? ` · ${status}` : ""} · ${rate} · eta ${duration(eta)}`
}

export const makeProgress = (options: ProgressOptions): Effect.Effect<ProgressBar> =>
  Effect.sync(() => {
    const stream = options.stream ?? process.stderr
    const mode: ProgressMode = options.mode ?? (options.enabled === undefined ? progressMode(stream) : options.enabled ? "bar" : "off")
    const now = options.now ?? Date.now
    const start = now()
    let lastDraw = Number.NEGATIVE_INFINITY
    const draw = (line: string) => stream.write(`\r\x1b[2K${line}`)
    return {
      update: (done, status) =>
        Effect.sync(() => {
          if (mode === "off") return
          const t = now()
          // bars: at most ~10 redraws a second; lines: one every 10 s; always the last unit
          if (t - lastDraw < (mode === "bar" ? 100 : lineIntervalMs) && done < options.total) return
          lastDraw = t
          if (mode === "bar") draw(renderBar(options.label, done, options.total, t - start, options.width, status))
          else stream.write(`${renderLine(options.label, done, options.total, t, t - start, status)}\n`)
        }),
      finish: (message) =>
        Effect.sync(() => {
          if (mode === "off") return
          const text = message ?? `${options.label} done in ${duration(now() - start)}`
          stream.write(mode === "bar" ? `\r\x1b[2K${text}\n` : `${timestamp(now())} ${text}\n`)
        })
    }
  })
