/**
 * Regenerate a run's reports from its events.jsonl alone: summary.json (headline figures),
 * report.html (self-contained, inline SVG) and report.md. Used by the CLI's `report` command and by
 * the loop at the end of a run. It does not compute anything the summary does not.
 */
import { Effect } from "effect"
import * as NodePath from "node:path"
import { RunStore, type RunStoreError } from "../run/RunStore.ts"
import { renderHtml } from "./html.ts"
import { renderMarkdown } from "./markdown.ts"
import { type Summary, summarize, summaryJson } from "./summarize.ts"

export interface Written {
  readonly summary: Summary
  readonly files: ReadonlyArray<string>
}

/** A report title from the run directory: `<experiment>/<run-id>`. */
export const runTitle = (dir: string): string => {
  const abs = NodePath.resolve(dir)
  return `${NodePath.basename(NodePath.dirname(abs))}/${NodePath.basename(abs)}`
}

export const writeReports: Effect.Effect<Written, RunStoreError, RunStore> = Effect.gen(function*() {
  const store = yield* RunStore
  const log = yield* store.readEvents
  const summary = summarize(log.events, log.notes)
  const title = `Run report: ${runTitle(store.paths.dir)}`
  yield* store.writeSummary(summaryJson(summary))
  yield* store.writeReport({ html: renderHtml(summary, { title }), markdown: renderMarkdown(summary, { title }) })
  return { summary, files: [store.paths.summary, store.paths.reportHtml, store.paths.reportMd] }
})
