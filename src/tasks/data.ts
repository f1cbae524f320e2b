/**
 * Where the shared data lives and how its text files are read: the data folder (`../shared/data`
 * beside the repository root, resolved from this module's location, not the working directory), JSONL
 * lines with their 1-based numbers, and the repaired ARPO system prompt. Parsing rows is the loaders' job.
 */
import { Effect } from "effect"
import { readFile } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { repairEscapes } from "./systemPrompt.ts"
import { type DatasetRowInvalid, type DatasetUnreadable, rowInvalid, unreadable } from "./Task.ts"

/** The repository (or installed package) root: two levels above `src/tasks/` (or `dist/tasks/`). */
export const repoRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

/** The shared data folder, `../shared/data` relative to the repository root. */
export const defaultDataDir: string = path.resolve(repoRoot, "../shared/data")

/** Reads a file under the data folder; `file` is relative to it and names the file in errors. */
export const readDataFile = (dataDir: string, file: string): Effect.Effect<Uint8Array, DatasetUnreadable> =>
  Effect.tryPromise({
    try: () => readFile(path.resolve(dataDir, file)),
    catch: (e) => unreadable(file, `cannot read (${e instanceof Error ? e.message : String(e)})`)
  })

export const readDataText = (dataDir: string, file: string): Effect.Effect<string, DatasetUnreadable> =>
  Effect.map(readDataFile(dataDir, file), (bytes) => new TextDecoder("utf-8").decode(bytes))

/** A parsed JSONL line: its 1-based number in the file and its value. */
export interface JsonlRow {
  readonly line: number
  readonly value: unknown
}

/**
 * Parses JSONL text: blank lines are skipped (a trailing newline is not a row), anything else must be
 * one JSON value, or the error names the file and the line.
 */
export const parseJsonl = (file: string, text: string): Effect.Effect<ReadonlyArray<JsonlRow>, DatasetRowInvalid> =>
  Effect.suspend(() => {
    const rows: Array<JsonlRow> = []
    const lines = text.split("\n")
    for (let i = 0; i < lines.length; i++) {
      const raw = lines[i]!
      if (raw.trim() === "") continue
      try {
        rows.push({ line: i + 1, value: JSON.parse(raw) })
      } catch (e) {
        return Effect.fail(rowInvalid(file, i + 1, `not valid JSON (${e instanceof Error ? e.message : String(e)})`))
      }
    }
    return Effect.succeed(rows)
  })

export const systemPromptFile = "arpo/system_prompt_train.txt"

/** The ARPO training system prompt as stored in the shared data, with `\boxed` repaired. */
export const loadSystemPrompt = (dataDir: string = defaultDataDir): Effect.Effect<string, DatasetUnreadable> =>
  Effect.map(readDataText(dataDir, systemPromptFile), (text) => repairEscapes(text).trim())

/** A row that does not have the shape a loader needs; `what` is the message tail (`missing field "answer"`). */
export class RowProblem extends Error {
  readonly what: string
  constructor(what: string) {
    super(what)
    this.what = what
  }
}

const describe = (v: unknown): string =>
  v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "object" ? "an object" : `a ${typeof v}`

/** Field readers that throw `RowProblem` naming the field; loaders turn it into `DatasetRowInvalid`. */
export const record = (v: unknown, name = "row"): Readonly<Record<string, unknown>> => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new RowProblem(`${name} is ${describe(v)}, not an object`)
  return v as Record<string, unknown>
}

export const present = (row: Readonly<Record<string, unknown>>, name: string): unknown => {
  const v = row[name]
  if (v === undefined) throw new RowProblem(`missing field "${name}"`)
  return v
}

export const stringField = (row: Readonly<Record<string, unknown>>, name: string): string => {
  const v = present(row, name)
  if (typeof v !== "string") throw new RowProblem(`field "${name}" is ${describe(v)}, not a string`)
  return v
}

/** A string, or a finite number rendered as a string (AIME 2025 stores answers as numbers). */
export const scalarField = (row: Readonly<Record<string, unknown>>, name: string): string => {
  const v = present(row, name)
  if (typeof v === "number" && Number.isFinite(v)) return String(v)
  if (typeof v === "bigint") return v.toString()
  if (typeof v !== "string") throw new RowProblem(`field "${name}" is ${describe(v)}, not a string or number`)
  return v
}

/** A non-empty list of strings (a single string is accepted as a list of one). */
export const stringListField = (row: Readonly<Record<string, unknown>>, name: string): ReadonlyArray<string> => {
  const v = present(row, name)
  if (typeof v === "string") return [v]
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string")) {
    throw new RowProblem(`field "${name}" is ${describe(v)}, not a string or a non-empty list of strings`)
  }
  return v as ReadonlyArray<string>
}

/** Runs a row parser, turning a `RowProblem` into the typed error naming file and line (or row). */
export const parseRow = <A>(
  file: string,
  line: number,
  parse: () => A,
  unit: "line" | "row" = "line"
): Effect.Effect<A, DatasetRowInvalid> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(parse())
    } catch (e) {
      if (e instanceof RowProblem) return Effect.fail(rowInvalid(file, line, e.what, unit))
      return Effect.die(e)
    }
  })
