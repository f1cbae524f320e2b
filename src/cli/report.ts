/**
 * `arpo report <dir>`: regenerate summary.json, report.html, report.md, metrics.csv and the TensorBoard
 * files of a run from its events.jsonl alone; prints the headline, the files written, and the run
 * directory last. A directory that is not a run is refused (NotARunDirectory) before anything is written.
 * With `--experiment <name|file>`, or for a run of an experiment file (config.json `source`), the
 * experiment's own report lines follow the headline.
 */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { writeReports } from "../report/report.ts"
import { RunStore } from "../io/RunStore.ts"
import { experimentOfRun, sourceOf } from "./experiments.ts"
import { presentErrors } from "./present.ts"
import { experimentOf } from "./resume.ts"
import { requireRunDirectory } from "./runDir.ts"

export const reportCommand = Command.make(
  "report",
  {
    dir: Argument.String("dir").pipe(Argument.withDescription("the run directory, runs/<experiment>/<run-id>")),
    experiment: Flag.String("experiment").pipe(
      Flag.optional,
      Flag.withDescription("the experiment (a name or a module file) whose own report lines to add (default: the file the run came from)")
    )
  },
  ({ dir, experiment: given }) =>
    Effect.gen(function*() {
      yield* requireRunDirectory(dir)
      const written = yield* writeReports.pipe(Effect.provide(RunStore.layerOpen(dir)))
      yield* Console.log(written.summary.headline.text)
      for (const note of written.summary.notes) yield* Console.log(`note: ${note}`)
      const config = yield* RunStore.use((s) => s.readConfig).pipe(Effect.provide(RunStore.layerOpen(dir)), Effect.orElseSucceed(() => undefined))
      if (Option.isSome(given) || sourceOf(config) !== undefined) {
        const experiment = yield* experimentOfRun(Option.getOrUndefined(given), experimentOf(dir, config), config)
        if (experiment.report !== undefined) for (const line of yield* experiment.report(dir)) yield* Console.log(line)
      }
      for (const file of written.files) yield* Console.log(`wrote ${file}`)
      yield* Console.log(dir)
    }).pipe(presentErrors)
).pipe(Command.withDescription("Regenerate report.html, report.md, summary.json, metrics.csv and the TensorBoard files (tb/) from events.jsonl"))
