/**
 * The experiment registry the CLI's `run`, `resume` and `eval` commands dispatch to: name →
 * `Experiment` (run(options) → the run directory). The training loop registers its experiments in
 * `builtinExperiments`; an experiment can also be a module file whose default (or `experiment`) export
 * is an `Experiment`. This module knows nothing about training; it only looks experiments up.
 */
import { Context, Effect, Schema } from "effect"
import { CliError } from "effect/cli"
import { existsSync } from "node:fs"
import * as NodePath from "node:path"
import { pathToFileURL } from "node:url"
import { builtin } from "../experiment/registry.ts"

export type { EvalOptions, Experiment, ExperimentEnv, RunOptions } from "../experiment/Experiment.ts"
import type { Experiment } from "../experiment/Experiment.ts"

export type Registry = ReadonlyMap<string, Experiment>

/** The experiments `arpo run <name>` knows (the training loop's registry, src/experiment/registry.ts). */
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

/** The experiment module file a run came from (config.json `source`), when it was run from a file. */
export const sourceOf = (config: unknown): string | undefined => {
  const source = typeof config === "object" && config !== null ? (config as { source?: unknown }).source : undefined
  return typeof source === "string" && source !== "" ? source : undefined
}

/**
 * The experiment of a run directory: the one given (a name or a file), else the file the run came from
 * (config.json `source`), else the experiment named in config.json (or by the directory's parent).
 */
export const experimentOfRun = (
  given: string | undefined,
  name: string,
  config: unknown
): Effect.Effect<Experiment, ExperimentNotFound | ExperimentFileInvalid> => {
  if (given !== undefined) return resolve(given)
  const source = sourceOf(config)
  return source !== undefined ? loadFile(source) : lookup(name)
}
