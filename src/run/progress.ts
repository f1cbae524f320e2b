/**
 * What a run reports its progress to (the RL loop per step, the cold start per SFT step): a port, so run/ does not
 * depend on how progress is shown. src/io/progress.ts draws it on stderr; the caller hands one in. Nothing here
 * draws or prints.
 */
import type { Effect } from "effect"

export interface ProgressBar {
  /** set the number of completed units and an optional status text */
  readonly update: (done: number, status?: string) => Effect.Effect<void>
  /** clear the bar line and print a final line (when enabled) */
  readonly finish: (message?: string) => Effect.Effect<void>
}

/** Makes a progress bar for `total` units labelled `label`. */
export type MakeProgress = (label: string, total: number) => Effect.Effect<ProgressBar>
