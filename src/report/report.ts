/**
 * Regenerate a run's reports and exports from its events.jsonl alone: summary.json (headline figures),
 * report.html (self-contained, inline SVG), report.md, metrics.csv (one row per arm, seed, step and
 * metric) and TensorBoard event files under tb/<arm>-seed<k>/. Used by the CLI's `report` command and
 * by the loop at the end of a run. It does not compute anything the summary and the metric rows do not.
 */
import { Effect, FileSystem } from "effect"
import * as NodePath from "node:path"
import { writeFileAtomic } from "../io/atomic.ts"
import { RunFileFailed, RunStore, type RunStoreError } from "../io/RunStore.ts"
import { renderHtml } from "./html.ts"
import { renderMarkdown } from "./markdown.ts"
import { metricRows, metricsCsv } from "./metrics.ts"
import { type Summary, summarize, summaryJson } from "./summarize.ts"
import { tensorboardFiles } from "./tensorboard.ts"
import { entropyProfiles, sampleTrees } from "./trees.ts"

export interface Written {
  readonly summary: Summary
  readonly files: ReadonlyArray<string>
}

/** A report title from the run directory: `<experiment>/<run-id>`. */
export const runTitle = (dir: string): string => {
  const abs = NodePath.resolve(dir)
  return `${NodePath.basename(NodePath.dirname(abs))}/${NodePath.basename(abs)}`
}

const failed = (path: string, operation: string) => (e: { readonly message: string }) => new RunFileFailed({ path, operation, message: e.message })

/**
 * Write metrics.csv and the TensorBoard files of `dir` (replacing earlier exports: each tb/<arm>-seed<k>/
 * keeps exactly one event file, so TensorBoard never shows a run twice). Returns the paths written.
 */
export const writeExports = (
  dir: string,
  events: Parameters<typeof metricRows>[0],
  wallTime = Date.now() / 1000
): Effect.Effect<ReadonlyArray<string>, RunFileFailed, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const rows = metricRows(events)
    const csv = NodePath.join(dir, "metrics.csv")
    yield* writeFileAtomic(csv, metricsCsv(rows)).pipe(Effect.mapError(failed(csv, "write")))
    const written = [csv]
    for (const file of tensorboardFiles(rows, wallTime)) {
      const path = NodePath.join(dir, file.path)
      const sub = NodePath.dirname(path)
      yield* fs.makeDirectory(sub, { recursive: true }).pipe(Effect.mapError(failed(sub, "create directory")))
      yield* writeFileAtomic(path, file.bytes).pipe(Effect.mapError(failed(path, "write")))
      const old = (yield* fs.readDirectory(sub).pipe(Effect.mapError(failed(sub, "list")))).filter((n) =>
        n.startsWith("events.out.tfevents.") && n !== NodePath.basename(path)
      )
      for (const name of old) yield* fs.remove(NodePath.join(sub, name)).pipe(Effect.mapError(failed(NodePath.join(sub, name), "remove")))
      written.push(path)
    }
    return written
  })

export const writeReports: Effect.Effect<Written, RunStoreError, RunStore | FileSystem.FileSystem> = Effect.gen(function*() {
  const store = yield* RunStore
  const log = yield* store.readEvents
  const summary = summarize(log.events, log.notes)
  const title = `Run report: ${runTitle(store.paths.dir)}`
  yield* store.writeSummary(summaryJson(summary))
  const trees = yield* sampleTrees(store.paths.dir)
  const profiles = yield* entropyProfiles(store.paths.dir)
  yield* store.writeReport({ html: renderHtml(summary, { title, trees, entropyProfiles: profiles }), markdown: renderMarkdown(summary, { title }) })
  const exports = yield* writeExports(store.paths.dir, log.events)
  return { summary, files: [store.paths.summary, store.paths.reportHtml, store.paths.reportMd, ...exports] }
})
