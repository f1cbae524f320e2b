/**
 * `arpo run <experiment-file|name> [--profile quick|full] [--seeds 1,2,3] [--set key=value …]
 * [--sweep key=v1,v2 …] [--out dir]`: resolve the experiment, run it, print the run directory as the
 * last line. Option parsing lives here; what the options mean is the experiment's business.
 */
import { Console, Effect, Option, Result } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as NodePath from "node:path"
import { looksLikeFile, resolve, type RunOptions } from "./experiments.ts"
import { printList } from "./list.ts"
import { badInput, presentErrors } from "./present.ts"
import { checkOutDirectory } from "./runDir.ts"

/** "1,2,3" → [1, 2, 3]; rejects anything but comma-separated integers. */
export const parseSeeds = (text: string): Result.Result<ReadonlyArray<number>, string> => {
  const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "")
  if (parts.length === 0) return Result.fail(`--seeds "${text}": give comma-separated integers, e.g. 1,2,3`)
  const bad = parts.find((p) => !/^-?\d+$/.test(p))
  if (bad !== undefined) return Result.fail(`--seeds "${text}": "${bad}" is not an integer`)
  const seeds = parts.map(Number)
  if (new Set(seeds).size !== seeds.length) return Result.fail(`--seeds "${text}": a seed is repeated`)
  return Result.succeed(seeds)
}

/** { lr: "1e-6,3e-6" } → { lr: ["1e-6", "3e-6"] }; every key needs at least one value. */
export const parseSweep = (raw: Readonly<Record<string, string>>): Result.Result<Record<string, ReadonlyArray<string>>, string> => {
  const out: Record<string, ReadonlyArray<string>> = {}
  for (const [key, value] of Object.entries(raw)) {
    const values = value.split(",").map((s) => s.trim()).filter((s) => s !== "")
    if (values.length === 0) return Result.fail(`--sweep ${key}=${value}: give one or more comma-separated values`)
    out[key] = values
  }
  return Result.succeed(out)
}

/** `--lanes n` of run and resume: the experiment's independent parts at once in n child processes (where it splits). */
export const lanesFlag = Flag.Int("lanes").pipe(
  Flag.optional,
  Flag.withDescription("run the experiment's independent parts (premise: one variant and seed each) in n child processes at once (default: the CPU cores; experiments that do not split ignore it)")
)

/** The examples `arpo run --help` gives for --sweep (a test resolves them against the flagship). */
export const sweepExamples = { everyArm: "rl.lr=1e-6,3e-6", oneArm: "arpo:rollout.beta=0,1" } as const

export const runCommand = Command.make(
  "run",
  {
    experiment: Argument.String("experiment").pipe(
      Argument.withDescription("a registered experiment name (arpo list shows them), or a module file whose default export is an Experiment"),
      Argument.optional
    ),
    // smoke / gpu are the names real-model's docs use for quick / full
    profile: Flag.Literals("profile", ["quick", "full", "smoke", "gpu"]).pipe(
      Flag.withDefault("quick" as const),
      Flag.withDescription("quick (or smoke): minutes on a laptop CPU; full (or gpu): the complete experiment")
    ),
    seeds: Flag.String("seeds").pipe(Flag.optional, Flag.withDescription("comma-separated seeds, e.g. 1,2,3 (default: the experiment's)")),
    set: Flag.KeyValuePair("set").pipe(Flag.optional, Flag.withDescription("override a config value: --set rollout.beta=0.5 (repeatable)")),
    sweep: Flag.KeyValuePair("sweep").pipe(
      Flag.optional,
      Flag.withDescription(
        `sweep a config value, one arm per value: --sweep ${sweepExamples.everyArm} (every arm) or --sweep ${sweepExamples.oneArm} (that arm only); repeatable`
      )
    ),
    out: Flag.String("out").pipe(Flag.withDefault("runs"), Flag.withDescription("runs root: writes <out>/<experiment>/<run-id>/")),
    lanes: lanesFlag
  },
  (input) =>
    Effect.gen(function*() {
      const seeds = Option.isSome(input.seeds) ? parseSeeds(input.seeds.value) : Result.succeed(undefined)
      if (Result.isFailure(seeds)) return yield* badInput(seeds.failure)
      const sweep = parseSweep(Option.getOrElse(input.sweep, () => ({})))
      if (Result.isFailure(sweep)) return yield* badInput(sweep.failure)
      if (Option.isSome(input.lanes) && input.lanes.value < 1) return yield* badInput(`--lanes ${input.lanes.value}: give a whole number ≥ 1`)
      const options: RunOptions = {
        profile: input.profile === "smoke" ? "quick" : input.profile === "gpu" ? "full" : input.profile,
        seeds: seeds.success,
        set: Option.getOrElse(input.set, () => ({})),
        sweep: sweep.success,
        out: input.out,
        ...(Option.isSome(input.lanes) ? { lanes: input.lanes.value } : {}),
        // a run of an experiment file records the file, so `arpo resume` / `eval` / `report` find it again
        ...(Option.isSome(input.experiment) && looksLikeFile(input.experiment.value) ? { source: NodePath.resolve(input.experiment.value) } : {})
      }
      if (Option.isNone(input.experiment)) {
        yield* printList
        return yield* badInput("arpo run: name an experiment to run (listed above), e.g. arpo run arpo-vs-grpo --profile quick")
      }
      yield* checkOutDirectory(input.out)
      const experiment = yield* resolve(input.experiment.value)
      const dir = yield* experiment.run(options)
      yield* Console.log(dir)
    }).pipe(presentErrors)
).pipe(Command.withDescription("Run an experiment; prints the run directory as the last line"))
