/**
 * The Experiment contract: what `arpo run`, `resume` and `eval` call — run(options) → the run directory,
 * optionally resume and evaluate. `define` (experiment.ts) builds one from an ExperimentSpec; the CLI
 * looks them up by name (src/cli/experiments.ts). This module is the contract only.
 */
import type { Effect, FileSystem, Path, Terminal } from "effect"
import type { ChildProcessSpawner } from "effect/process"

/** What `arpo run` passes to an experiment. Values of `set`/`sweep` are raw strings: the experiment
 *  decodes them with its own config Schema (and fails with a message naming the key). */
export interface RunOptions {
  readonly profile: "quick" | "full"
  /** undefined: the experiment's default seeds */
  readonly seeds: ReadonlyArray<number> | undefined
  /** `--set key=value` overrides, dotted keys allowed (`rollout.beta=0.5`) */
  readonly set: Readonly<Record<string, string>>
  /** `--sweep key=v1,v2`: one run (or arm) per value, crossed over keys */
  readonly sweep: Readonly<Record<string, ReadonlyArray<string>>>
  /** the runs root: run directories go to `<out>/<experiment>/<run-id>/` */
  readonly out: string
  /** the experiment module file this experiment was loaded from (recorded in config.json for resume / eval / report) */
  readonly source?: string
  /** `--lanes n`: independent parts of the run at once in n child processes, for experiments that split (`premise`); undefined: the experiment's default */
  readonly lanes?: number
}

export interface ResumeOptions {
  readonly force?: boolean
  /** `--lanes n` (as for run): how many child processes continue the run's unfinished parts at once */
  readonly lanes?: number
}

export interface EvalOptions {
  readonly task: string
  readonly split: string | undefined
  readonly seed: number
}

/** Services an experiment may use (what `NodeServices.layer` provides). */
export type ExperimentEnv = FileSystem.FileSystem | Path.Path | Terminal.Terminal | ChildProcessSpawner.ChildProcessSpawner

/** A profile as `arpo list` shows it: its seeds and what it changes, in words. */
export interface ProfileInfo {
  readonly seeds: ReadonlyArray<number>
  /** e.g. "rl.steps=8 eval.questions=64" */
  readonly changes: string
}

export interface Experiment {
  readonly name: string
  readonly description: string
  /** what `--profile quick|full` mean for this experiment (listed by `arpo list`) */
  readonly profiles?: { readonly quick: ProfileInfo; readonly full: ProfileInfo }
  /** run it; succeeds with the run directory */
  readonly run: (options: RunOptions) => Effect.Effect<string, unknown, ExperimentEnv>
  /** continue the run in `runDir` from its last checkpoint; succeeds with the run directory. `force`:
   *  continue although config.json changed since the run started (a warning instead of a refusal) */
  readonly resume?: (runDir: string, options?: ResumeOptions) => Effect.Effect<string, unknown, ExperimentEnv>
  /** evaluate a checkpoint of this experiment on a task; succeeds with lines to print */
  readonly evaluate?: (checkpoint: string, options: EvalOptions) => Effect.Effect<ReadonlyArray<string>, unknown, ExperimentEnv>
  /** the experiment's own report lines for a finished run (printed by `arpo report` after the headline) */
  readonly report?: (runDir: string) => Effect.Effect<ReadonlyArray<string>, unknown, ExperimentEnv>
}

