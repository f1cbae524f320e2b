/**
 * ARPO's RL data in verl's parquet layout (`../shared/data/arpo/<name>.parquet`: system + user prompt,
 * `reward_model.ground_truth`, `extra_info`), read with hyparquet. Escaped LaTeX in the released text
 * (`\boxed` stored as backspace + "oxed") is repaired on load. A task pairs a train file with a
 * validation file and scores with ARPO's training reward. HLE is not among the loadable files.
 */
import { Effect, Layer, Schema } from "effect"
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet"
import { compressors } from "hyparquet-compressors"
import * as path from "node:path"
import { defaultDataDir, parseRow, present, record, RowProblem, scalarField, stringField } from "./data.ts"
import { datasetTask } from "./metric.ts"
import { type PromptFormat, renderPrompt, repairEscapes } from "./systemPrompt.ts"
import {
  type DatasetRowInvalid,
  type DatasetUnreadable,
  type Problem,
  type Split,
  Task,
  type TaskDefinition,
  unreadable
} from "./Task.ts"

export const ParquetName = Schema.Literals(["train_10k", "valid", "hard_search_1k", "gaia_test"])
export type ParquetName = typeof ParquetName.Type

/** Row counts of the shipped files (ARPO_SPEC §9). */
export const parquetRows: Readonly<Record<ParquetName, number>> = {
  train_10k: 10_000,
  valid: 180,
  hard_search_1k: 1071,
  gaia_test: 103
}

export const parquetFile = (name: ParquetName): string => `arpo/${name}.parquet`

/** One RL row: the repaired system and user texts, the ground truth and the row's provenance. */
export interface ArpoRow {
  readonly system: string
  readonly question: string
  readonly groundTruth: string
  readonly dataSource: string
  readonly ability: string | null
  /** `extra_info.index` */
  readonly index: number
}

/** Reads one parquet row (throws `RowProblem`; see `parseRow`). */
export const parseArpoRow = (value: unknown): ArpoRow => {
  const row = record(value)
  const prompt = present(row, "prompt")
  if (!Array.isArray(prompt)) throw new RowProblem(`field "prompt" is not a list of messages`)
  const messages = prompt.map((m, i) => record(m, `prompt[${i}]`))
  const system = messages.find((m) => m["role"] === "system")
  const user = messages.find((m) => m["role"] === "user")
  if (user === undefined) throw new RowProblem(`field "prompt" has no user message`)
  const reward = record(present(row, "reward_model"), `field "reward_model"`)
  const extra = row["extra_info"]
  const rawIndex = extra !== null && typeof extra === "object" ? (extra as Record<string, unknown>)["index"] : undefined
  const ability = row["ability"]
  return {
    system: system === undefined ? "" : repairEscapes(stringField(system, "content")),
    question: repairEscapes(stringField(user, "content")),
    groundTruth: repairEscapes(scalarField(reward, "ground_truth")),
    dataSource: stringField(row, "data_source"),
    ability: typeof ability === "string" ? ability : null,
    index: typeof rawIndex === "bigint" ? Number(rawIndex) : typeof rawIndex === "number" ? rawIndex : -1
  }
}

/** Reads every row of an ARPO parquet file; the first malformed row fails the load (naming its row). */
export const loadParquetRows = (
  name: ParquetName,
  dataDir: string = defaultDataDir
): Effect.Effect<ReadonlyArray<ArpoRow>, DatasetRowInvalid | DatasetUnreadable> =>
  Effect.gen(function*() {
    const file = parquetFile(name)
    const objects = yield* Effect.tryPromise({
      try: async () => parquetReadObjects({ file: await asyncBufferFromFile(path.resolve(dataDir, file)), compressors }),
      catch: (e) => unreadable(file, `cannot read parquet (${e instanceof Error ? e.message : String(e)})`)
    })
    const rows: Array<ArpoRow> = []
    for (let i = 0; i < objects.length; i++) rows.push(yield* parseRow(file, i + 1, () => parseArpoRow(objects[i]), "row"))
    return rows
  })

/**
 * A ground truth cut off inside a LaTeX group: its `{`/`}` (or its escaped `\{`/`\}`) do not balance,
 * or a `}` closes before any `{` opened. Seven math rows of train_10k have such golds ("1}^N",
 * "36\}", …): the tail of a longer expression, which no response can match, so they are dropped.
 */
export const truncatedGold = (text: string): boolean => {
  let plain = 0
  let escaped = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (c === "\\" && (text[i + 1] === "{" || text[i + 1] === "}")) {
      escaped += text[i + 1] === "{" ? 1 : -1
      i++
      if (escaped < 0) return true
    } else if (c === "{" || c === "}") {
      plain += c === "{" ? 1 : -1
      if (plain < 0) return true
    }
  }
  return plain !== 0 || escaped !== 0
}

/** A row left out of a task, with where it came from and why. */
export interface DroppedRow {
  readonly split: Split
  /** 0-based position in the file */
  readonly row: number
  readonly groundTruth: string
  readonly reason: "truncated ground truth"
}

export interface ArpoDataConfig {
  /** the training file (default `train_10k`) */
  readonly train?: ParquetName
  /** the validation file (default `valid`) */
  readonly test?: ParquetName
  readonly dataDir?: string
  /** prompt format (default `chatml`); the system text is each row's own (repaired) */
  readonly format?: PromptFormat
  /** keep rows whose ground truth is truncated (`truncatedGold`); default false: they are dropped */
  readonly keepTruncatedGolds?: boolean
}

export interface ArpoDataTask extends TaskDefinition {
  /** the rows problems are drawn from (problem index i is row i here, not of the file) */
  readonly rows: Readonly<Record<Split, ReadonlyArray<ArpoRow>>>
  /** rows of the files left out, with the reason */
  readonly dropped: ReadonlyArray<DroppedRow>
}

/** ARPO's RL data as a task over parsed rows: the training reward (format, token F1, multi-tool bonus). */
export const fromRows = (
  fileRows: Readonly<Record<Split, ReadonlyArray<ArpoRow>>>,
  names: Readonly<Record<Split, string>>,
  format: PromptFormat = "chatml",
  keepTruncatedGolds = false
): ArpoDataTask => {
  const dropped: Array<DroppedRow> = []
  const keep = (split: Split) =>
    fileRows[split].filter((r, row) => {
      if (keepTruncatedGolds || !truncatedGold(r.groundTruth)) return true
      dropped.push({ split, row, groundTruth: r.groundTruth, reason: "truncated ground truth" })
      return false
    })
  const rows = { train: keep("train"), test: keep("test") }
  const sizes = { train: rows.train.length, test: rows.test.length }
  const problem = (split: Split, index: number): Problem | undefined => {
    const row = rows[split][index]
    if (row === undefined) return undefined
    const { prompt, messages } = renderPrompt(format, row.system, row.question)
    return {
      id: `${names[split]}/${index}`,
      task: "arpo-data",
      split,
      index,
      question: row.question,
      prompt,
      messages,
      golds: [row.groundTruth],
      meta: { file: names[split], dataSource: row.dataSource, ability: row.ability, sourceIndex: row.index }
    }
  }
  return { ...datasetTask(`arpo-data:${names.train}+${names.test}`, "arpo", sizes, problem), rows, dropped }
}

/** Loads the train and test files and builds the task. */
export const load = (config: ArpoDataConfig = {}): Effect.Effect<ArpoDataTask, DatasetRowInvalid | DatasetUnreadable> =>
  Effect.gen(function*() {
    const names = { train: config.train ?? "train_10k", test: config.test ?? "valid" } as const
    const [train, test] = yield* Effect.all([
      loadParquetRows(names.train, config.dataDir),
      loadParquetRows(names.test, config.dataDir)
    ])
    return fromRows({ train, test }, names, config.format, config.keepTruncatedGolds)
  })

/** The `Task` layer of ARPO's RL data. */
export const layer = (config: ArpoDataConfig = {}): Layer.Layer<Task, DatasetRowInvalid | DatasetUnreadable> =>
  Layer.effect(Task, Effect.map(load(config), (d) => Task.of(d)))
