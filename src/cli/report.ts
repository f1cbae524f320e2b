/**
 * `arpo report <dir>`: regenerate summary.json, report.html, report.md, metrics.csv and the TensorBoard
 * files of a run from its events.jsonl alone; prints the headline, the files written, and the run
 * directory last. A directory that is not a run is refused (NotARunDirectory) before anything is written.
 */
import { Console, Effect } from "effect"
import { Argument, Command } from "effect/cli"
import { writeReports } from "../report/report.ts"
import { RunStore } from "../run/RunStore.ts"
import { presentErrors } from "./present.ts"
import { requireRunDirectory } from "./runDir.ts"

export const reportCommand = Command.make(
  "report",
  { dir: Argument.String("dir").pipe(Argument.withDescription("the run directory, runs/<experiment>/<run-id>")) },
  ({ dir }) =>
    Effect.gen(function*() {
      yield* requireRunDirectory(dir)
      const written = yield* writeReports.pipe(Effect.provide(RunStore.layerOpen(dir)))
      yield* Console.log(written.summary.headline.text)
      for (const note of written.summary.notes) yield* Console.log(`note: ${note}`)
      for (const file of written.files) yield* Console.log(`wrote ${file}`)
      yield* Console.log(dir)
    }).pipe(presentErrors)
).pipe(Command.withDescription("Regenerate report.html, report.md, summary.json, metrics.csv and the TensorBoard files (tb/) from events.jsonl"))
