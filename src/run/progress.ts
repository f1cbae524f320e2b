/**
 * Progress bars on stderr for long runs: `[#####.....] 12/40 step · arpo seed 1 · 3.2 s/it · eta 1m30s`.
 * Quiet (writes nothing) when stderr is not a TTY, under a test runner (VITEST, NODE_ENV=test) or
 * when ARPO_PROGRESS=0, so logs and CI output stay clean. It does not log events; the run does.
 */
import { Effect } from "effect"

export interface ProgressOptions {
  readonly label: string
  readonly total: number
  /** where to draw; default process.stderr */
  readonly stream?: { readonly isTTY?: boolean; readonly write: (s: string) => unknown }
  /** force on/off (default: `progressEnabled(stream)`) */
  readonly enabled?: boolean
  /** clock in ms (tests); default Date.now */
  readonly now?: () => number
  /** bar width in characters */
  readonly width?: number
}

export interface ProgressBar {
  /** set the number of completed units and an optional status text */
  readonly update: (done: number, status?: string) => Effect.Effect<void>
  /** clear the bar line and print a final line (when enabled) */
  readonly finish: (message?: string) => Effect.Effect<void>
}

/** Whether a bar should be drawn on `stream`. */
export const progressEnabled = (stream: { readonly isTTY?: boolean } = process.stderr, env: NodeJS.ProcessEnv = process.env): boolean =>
  stream.isTTY === true && env["VITEST"] === undefined && env["NODE_ENV"] !== "test" && env["ARPO_PROGRESS"] !== "0"

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
    const enabled = options.enabled ?? progressEnabled(stream)
    const now = options.now ?? Date.now
    const start = now()
    let lastDraw = Number.NEGATIVE_INFINITY
    const draw = (line: string) => stream.write(`\r\x1b[2K${line}`)
    return {
      update: (done, status) =>
        Effect.sync(() => {
          if (!enabled) return
          const t = now()
          // at most ~10 redraws a second, but always draw the last unit
          if (t - lastDraw < 100 && done < options.total) return
          lastDraw = t
          draw(renderBar(options.label, done, options.total, t - start, options.width, status))
        }),
      finish: (message) =>
        Effect.sync(() => {
          if (!enabled) return
          stream.write(`\r\x1b[2K${message ?? `${options.label} done in ${duration(now() - start)}`}\n`)
        })
    }
  })
