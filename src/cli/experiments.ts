/**
 * The experiment registry the CLI's `run`, `resume` and `eval` commands dispatch to: name →
 * `Experiment` (run(options) → the run directory). The training loop registers its experiments in
 * `builtinExperiments`; an experiment can also be a module file whose default (or `experiment`) export
 * is an `Experiment`. This module knows nothing about training; it only looks experiments up.
 */
import { Context, Effect, type FileSystem, type Path, Schema, type Terminal } from "effect"
import { CliError } from "effect/cli"
import type { ChildProcessSpawner } from "effect/process"
import { existsSync } from "node:fs"
import * as NodePath from "node:path"
import { pathToFileURL } from "node:url"
import { builtin } from "../run/registry.ts"

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
}

export interface EvalOptions {
  readonly task: string
  readonly split: string | undefined
  readonly seed: number
}

/** Services an experiment may use (what `NodeServices.layer` provides). */
export type ExperimentEnv = FileSystem.FileSystem | Path.Path | Terminal.Terminal | ChildProcessSpawner.ChildProcessSpawner

export interface Experiment {
  readonly name: string
  readonly description: string
  /** run it; succeeds with the run directory */
  readonly run: (options: RunOptions) => Effect.Effect<string, unknown, ExperimentEnv>
  /** continue the run in `runDir` from its last checkpoint; succeeds with the run directory */
  readonly resume?: (runDir: string) => Effect.Effect<string, unknown, ExperimentEnv>
  /** evaluate a checkpoint of this experiment on a task; succeeds with lines to print */
  readonly evaluate?: (checkpoint: string, options: EvalOptions) => Effect.Effect<ReadonlyArray<string>, unknown, ExperimentEnv>
}

export type Registry = ReadonlyMap<string, Experiment>

/** The experiments `arpo run <name>` knows (the training loop's registry, src/run/registry.ts). */
export const builtinExperiments: ReadonlyArray<Experiment> = builtin

export const registry = (experiments: ReadonlyArray<Experiment>): Registry => new Map(experiments.map((e) => [e.name, e]))

/** The registry in use (a reference so tests and embedding programs can provide their own). */
export const Experiments = Context.Reference<Registry>("arpo/cli/Experiments", {
  defaultValue: () => registry(builtinExperiments)
})

export class ExperimentNotFound extends Schema.TaggedError<ExperimentNotFound>()("ExperimentNotFound", {
  experiment: Schema.String,
  known: Schema.Array(Schema.String),
  message: Schema.String
}) {
  override get [CliError.userMessage]() {
    return this.message
  }
}

export class ExperimentFileInvalid extends Schema.TaggedError<ExperimentFileInvalid>()("ExperimentFileInvalid", {
  path: Schema.String,
  message: Schema.String
}) {
  override get [CliError.userMessage]() {
    return this.message
  }
}

/** The experiment cannot do what was asked (e.g. it has no `resume`). */
export class ExperimentUnsupported extends Schema.TaggedError<ExperimentUnsupported>()("ExperimentUnsupported", {
  experiment: Schema.String,
  message: Schema.String
}) {
  override get [CliError.userMessage]() {
    return this.message
  }
}

export const notFound = (name: string, known: Registry): ExperimentNotFound => {
  const names = [...known.keys()].sort()
  return new ExperimentNotFound({
    experiment: name,
    known: names,
    message: `experiment ${name} not found; known: ${names.length > 0 ? names.join(", ") : "(none registered yet)"}`
  })
}

/** By name from the registry. */
export const lookup = (name: string): Effect.Effect<Experiment, ExperimentNotFound> =>
  Effect.gen(function*() {
    const known = yield* Experiments
    const found = known.get(name)
    return found ?? (yield* notFound(name, known))
  })

/** An argument names a file (rather than a registered experiment) when it has a path separator or a module extension. */
export const looksLikeFile = (arg: string): boolean => arg.includes("/") || arg.includes("\\") || /\.(m?[jt]s)$/.test(arg)

const isExperiment = (u: unknown): u is Experiment =>
  typeof u === "object" && u !== null && typeof (u as Experiment).name === "string" && typeof (u as Experiment).run === "function"

/** Import an experiment module (its default export, or its `experiment` export). */
export const loadFile = (file: string): Effect.Effect<Experiment, ExperimentFileInvalid> =>
  Effect.gen(function*() {
    const path = NodePath.resolve(file)
    if (!existsSync(path)) return yield* new ExperimentFileInvalid({ path: file, message: `experiment file ${file} does not exist` })
    const mod = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(path).href) as Promise<Record<string, unknown>>,
      catch: (e) => new ExperimentFileInvalid({ path: file, message: `experiment file ${file} could not be loaded: ${(e as Error)?.message ?? String(e)}` })
    })
    const candidate = [mod["default"], mod["experiment"]].find(isExperiment)
    if (candidate === undefined) {
      return yield* new ExperimentFileInvalid({
        path: file,
        message: `experiment file ${file} exports no experiment: export default (or export const experiment) an object with a name and a run function`
      })
    }
    return candidate
  })

/** A name from the registry, or a module file. */
export const resolve = (nameOrFile: string): Effect.Effect<Experiment, ExperimentNotFound | ExperimentFileInvalid> =>
  looksLikeFile(nameOrFile) ? loadFile(nameOrFile) : lookup(nameOrFile)
