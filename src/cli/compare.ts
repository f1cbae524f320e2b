/**
 * `arpo compare <run> <run>… [--out file]`: one HTML page overlaying several runs (each run's headline
 * figures in a table, then per-step plots with every run's arms), written to --out (default
 * compare.html in the current directory); prints the page's path last. Runs are read from their
 * events.jsonl alone. It does not test differences across runs (see src/report/compare.ts).
 */
import { Console, Effect, FileSystem } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as NodePath from "node:path"
import { renderComparison } from "../report/compare.ts"
import { runTitle } from "../report/report.ts"
import { summarize } from "../report/summarize.ts"
import { RunStore } from "../io/RunStore.ts"
import { writeFileAtomic } from "../io/atomic.ts"
import { badInput, presentErrors } from "./present.ts"
import { checkOutFile, requireRunDirectory } from "./runDir.ts"

export const compareCommand = Command.make(
  "compare",
  {
    runs: Argument.String("run").pipe(Argument.variadic({ min: 2 }), Argument.withDescription("two or more run directories")),
    out: Flag.String("out").pipe(Flag.withDefault("compare.html"), Flag.withDescription("where to write the HTML page"))
  },
  ({ runs, out }) =>
    Effect.gen(function*() {
      yield* checkOutFile(out)
      const compared = []
      for (const dir of runs) {
        yield* requireRunDirectory(dir)
        const log = yield* RunStore.use((s) => s.readEvents).pipe(Effect.provide(RunStore.layerOpen(dir)))
        compared.push({ title: runTitle(dir), summary: summarize(log.events, log.notes) })
      }
      const target = NodePath.resolve(out)
      const fileSystem = yield* FileSystem.FileSystem
      yield* fileSystem.makeDirectory(NodePath.dirname(target), { recursive: true }).pipe(
        Effect.mapError((e) => badInput(`--out ${out}: could not create its directory (${e.message})`))
      )
      yield* writeFileAtomic(target, renderComparison(compared)).pipe(Effect.mapError((e) => badInput(`--out ${out}: could not write it (${e.message})`)))
      for (const r of compared) yield* Console.log(`${r.title}: ${r.summary.headline.text.split("\n")[0]}`)
      yield* Console.log(target)
    }).pipe(presentErrors)
).pipe(Command.withDescription("Overlay several runs' per-step figures on one HTML page"))
