/**
 * `arpo resume <dir> [--experiment name|file]`: continue a run from its last checkpoint. The experiment
 * is the one given, else the experiment file the run came from (config.json `source`), else the
 * `experiment` named in config.json, else the directory's parent name (`runs/<experiment>/<run-id>`).
 * Prints the run directory as the last line.
 */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as NodePath from "node:path"
import { RunStore } from "../io/RunStore.ts"
import { experimentOfRun, ExperimentUnsupported } from "./experiments.ts"
import { badInput, presentErrors } from "./present.ts"
import { lanesFlag } from "./run.ts"
import { requireRunDirectory } from "./runDir.ts"

/** Which experiment a run directory belongs to. */
export const experimentOf = (dir: string, config: unknown): string => {
  const named = typeof config === "object" && config !== null ? (config as { experiment?: unknown }).experiment : undefined
  return typeof named === "string" && named !== "" ? named : NodePath.basename(NodePath.dirname(NodePath.resolve(dir)))
}

export const resumeCommand = Command.make(
  "resume",
  {
    dir: Argument.String("dir").pipe(Argument.withDescription("the run directory, runs/<experiment>/<run-id>")),
    force: Flag.Boolean("force").pipe(Flag.withDefault(false), Flag.withDescription("resume although config.json changed since the run started (warns)")),
    lanes: lanesFlag,
    experiment: Flag.String("experiment").pipe(
      Flag.optional,
      Flag.withDescription("the experiment (a name or a module file; default: the file the run came from, else its name)")
    )
  },
  ({ dir, force, lanes, experiment: given }) =>
    Effect.gen(function*() {
      if (Option.isSome(lanes) && lanes.value < 1) return yield* badInput(`--lanes ${lanes.value}: give a whole number ≥ 1`)
      yield* requireRunDirectory(dir)
      const config = yield* RunStore.use((s) => s.readConfig).pipe(Effect.provide(RunStore.layerOpen(dir)))
      const name = experimentOf(dir, config)
      const experiment = yield* experimentOfRun(Option.getOrUndefined(given), name, config)
      if (experiment.resume === undefined) {
        return yield* new ExperimentUnsupported({ experiment: name, message: `experiment ${name} cannot resume runs (it has no resume)` })
      }
      const out = yield* experiment.resume(dir, { force, ...(Option.isSome(lanes) ? { lanes: lanes.value } : {}) })
      yield* Console.log(out)
    }).pipe(presentErrors)
).pipe(Command.withDescription("Resume a run from its last checkpoint; prints the run directory as the last line"))
