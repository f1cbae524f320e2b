/**
 * Loaders for the evaluation sets of the ARPO paper (`../shared/data/benchmarks/<name>/test.jsonl`):
 * each file's own field names, its gold answers, and the paper's metric (math equivalence for the math
 * sets, token F1 for the four wiki QA sets, exact match otherwise). A malformed row is a typed error
 * naming the file and line. Test split only; HLE is deliberately not loadable (it must stay out of
 * every training corpus).
 */
import { Effect, Layer, Schema } from "effect"
import { gsm8kFinal } from "../core/answer.ts"
import { defaultDataDir, parseJsonl, parseRow, readDataText, record, scalarField, stringField, stringListField } from "./data.ts"
import { datasetTask } from "./metric.ts"
import { arpoSystemPrompt, type PromptFormat, renderPrompt } from "./systemPrompt.ts"
import {
  type DatasetRowInvalid,
  type DatasetUnreadable,
  type Problem,
  type ProblemMeta,
  type Split,
  Task,
  type TaskDefinition
} from "./Task.ts"

export const BenchmarkName = Schema.Literals([
  "gsm8k",
  "math500",
  "aime24",
  "aime25",
  "hotpotqa",
  "2wiki",
  "musique",
  "bamboogle",
  "SimpleQA",
  "gaia",
  "webwalker",
  "xbench"
])
export type BenchmarkName = typeof BenchmarkName.Type
export const benchmarkNames: ReadonlyArray<BenchmarkName> = BenchmarkName.literals

export type BenchmarkMetric = "math" | "f1" | "exact"

/** The metric the paper reports for each set (ARPO_SPEC §5.4; LLM-as-judge sets fall back to exact match). */
export const benchmarkMetric: Readonly<Record<BenchmarkName, BenchmarkMetric>> = {
  gsm8k: "math",
  math500: "math",
  aime24: "math",
  aime25: "math",
  hotpotqa: "f1",
  "2wiki": "f1",
  musique: "f1",
  bamboogle: "f1",
  SimpleQA: "exact",
  gaia: "exact",
  webwalker: "exact",
  xbench: "exact"
}

/** Row counts of the shipped files (ARPO_SPEC §5.5 / §9). */
export const benchmarkRows: Readonly<Record<BenchmarkName, number>> = {
  gsm8k: 1319,
  math500: 500,
  aime24: 30,
  aime25: 30,
  hotpotqa: 200,
  "2wiki": 200,
  musique: 200,
  bamboogle: 125,
  SimpleQA: 500,
  gaia: 103,
  webwalker: 200,
  xbench: 100
}

export const benchmarkFile = (name: BenchmarkName): string => `benchmarks/${name}/test.jsonl`

/** One parsed row: the question, the acceptable answers and flat facts for reports. */
export interface BenchmarkRow {
  readonly question: string
  readonly golds: ReadonlyArray<string>
  readonly meta: ProblemMeta
}

/** GSM8K's final answer after `#### `, with thousands separators dropped (`1,450,000` → `1450000`). */
export const gsm8kGold = (solution: string): string => gsm8kFinal(solution).replace(/(\d),(?=\d{3}(?!\d))/g, "$1")

/** Reads one row of a benchmark (throws `RowProblem`; see `parseRow`). */
export const parseBenchmarkRow = (name: BenchmarkName, value: unknown): BenchmarkRow => {
  const row = record(value)
  switch (name) {
    case "gsm8k": {
      const solution = stringField(row, "answer")
      return { question: stringField(row, "question"), golds: [gsm8kGold(solution)], meta: { solutionFinal: gsm8kFinal(solution) } }
    }
    case "math500":
      return { question: stringField(row, "question"), golds: [stringField(row, "answer")], meta: {} }
    case "aime24":
    case "aime25":
      return {
        question: stringField(row, "problem"),
        golds: [scalarField(row, "answer")],
        meta: { sourceId: scalarField(row, "id") }
      }
    case "gaia": {
      const level = row["Level"]
      return {
        question: stringField(row, "Question"),
        golds: [scalarField(row, "answer")],
        meta: { taskId: stringField(row, "task_id"), level: typeof level === "number" ? level : null }
      }
    }
    case "webwalker":
      return { question: stringField(row, "question"), golds: [scalarField(row, "answer")], meta: {} }
    case "hotpotqa":
    case "2wiki":
    case "musique":
    case "bamboogle":
    case "SimpleQA":
    case "xbench":
      return { question: stringField(row, "question"), golds: stringListField(row, "answer"), meta: {} }
  }
}

/** Reads and parses every row of a benchmark file; the first malformed row fails the load. */
export const loadBenchmarkRows = (
  name: BenchmarkName,
  dataDir: string = defaultDataDir
): Effect.Effect<ReadonlyArray<BenchmarkRow>, DatasetRowInvalid | DatasetUnreadable> =>
  Effect.gen(function*() {
    const file = benchmarkFile(name)
    const lines = yield* parseJsonl(file, yield* readDataText(dataDir, file))
    const rows: Array<BenchmarkRow> = []
    for (const { line, value } of lines) rows.push(yield* parseRow(file, line, () => parseBenchmarkRow(name, value)))
    return rows
  })

export interface BenchmarkOptions {
  /** the shared data folder (default `../shared/data` beside the repository) */
  readonly dataDir?: string
  /** prompt format (default `chatml` with the ARPO system prompt) */
  readonly format?: PromptFormat
  readonly system?: string
}

export interface BenchmarkTask extends TaskDefinition {
  readonly benchmark: BenchmarkName
  readonly rows: ReadonlyArray<BenchmarkRow>
}

/** A benchmark as a task over already parsed rows: a test split only, scored with the paper's metric. */
export const fromRows = (name: BenchmarkName, rows: ReadonlyArray<BenchmarkRow>, options: BenchmarkOptions = {}): BenchmarkTask => {
  const metric = benchmarkMetric[name]
  const sizes = { train: 0, test: rows.length }
  const format = options.format ?? "chatml"
  const system = options.system ?? arpoSystemPrompt
  const problem = (split: Split, index: number): Problem | undefined => {
    const row = split === "test" ? rows[index] : undefined
    if (row === undefined) return undefined
    const { prompt, messages } = renderPrompt(format, system, row.question)
    return {
      id: `${name}/${index}`,
      task: name,
      split,
      index,
      question: row.question,
      prompt,
      messages,
      golds: row.golds,
      meta: { benchmark: name, ...row.meta }
    }
  }
  return { ...datasetTask(name, metric, sizes, problem), benchmark: name, rows }
}

/** Loads a benchmark file and builds its task. */
export const load = (
  name: BenchmarkName,
  options: BenchmarkOptions = {}
): Effect.Effect<BenchmarkTask, DatasetRowInvalid | DatasetUnreadable> =>
  Effect.map(loadBenchmarkRows(name, options.dataDir), (rows) => fromRows(name, rows, options))

/** The `Task` layer of a benchmark. */
export const layer = (
  name: BenchmarkName,
  options: BenchmarkOptions = {}
): Layer.Layer<Task, DatasetRowInvalid | DatasetUnreadable> => Layer.effect(Task, Effect.map(load(name, options), (d) => Task.of(d)))
