/**
 * The Task contract: a source of problems (train / test splits, addressed by index) plus the reward
 * that scores a response to one of them, SFT demonstrations in the tag protocol, and the documents the
 * search tool must index. A `TaskDefinition` is a plain value (pure functions over loaded data); the
 * `Task` service carries one, with a layer per task. This module does not generate or load anything.
 */
import { Context, Layer, Schema } from "effect"
import type { Key } from "../core/random.ts"
import type { RewardResult } from "../core/reward.ts"
import type { Tool } from "../tools/Tool.ts"

/** Disjoint problem sets: RL / SFT draws from `train`, evaluation from `test`. */
export type Split = "train" | "test"
export const splits: ReadonlyArray<Split> = ["train", "test"]

/** A chat message, for engines that apply their own chat template (defined in core/text.ts). */
export type { Message } from "../core/text.ts"
import type { Message } from "../core/text.ts"

/** Flat JSON facts about a problem (source, kind, level, the entities used …), for events and reports. */
export type ProblemMeta = Readonly<Record<string, string | number | boolean | null>>

export interface Problem {
  /** stable and unique within the task: `"arith/train/17"`, `"gsm8k/17"` */
  readonly id: string
  readonly task: string
  readonly split: Split
  readonly index: number
  /** the bare question (no system text, no template) */
  readonly question: string
  /** the full text the model is conditioned on: system text, protocol, question, template */
  readonly prompt: string
  /** the same conditioning as chat messages (system + user), for chat-template engines */
  readonly messages: ReadonlyArray<Message>
  /** acceptable answers; a reward takes the best match over them */
  readonly golds: ReadonlyArray<string>
  readonly meta: ProblemMeta
}

/** One searchable document of a task's corpus. */
export interface Document {
  readonly id: string
  readonly title: string
  readonly text: string
}

/** A half-open index range `[start, start + count)` of a split. */
export interface Range {
  readonly start: number
  readonly count: number
}

/** How a demonstration departs from the ideal one (imperfect demos leave room for RL). */
export type DemoQuality = "perfect" | "wrong-answer" | "missing-tool" | "wrong-query"

/**
 * A piece of a demonstration: text the model generates, or a tool call whose result is inserted by the
 * runner. A call segment's `text` is the inserted result text (e.g. `" <result>\n561741\n</result>"`),
 * loss-masked in SFT exactly as in a rollout; the call tag itself is part of the preceding model text.
 */
export type DemoSegment =
  | { readonly role: "model"; readonly text: string }
  | {
    readonly role: "tool"
    readonly tool: string
    readonly content: string
    readonly text: string
    /** the call's random key, for tools whose results are random by design (re-rendering passes it on) */
    readonly key?: Key
  }

export interface Demonstration {
  readonly problem: Problem
  readonly quality: DemoQuality
  readonly segments: ReadonlyArray<DemoSegment>
  /** the response only (what the reward sees): the concatenated segments */
  readonly response: string
  /** prompt + response: the whole SFT text */
  readonly text: string
}

export interface DemoOptions {
  /** share of demonstrations in [0, 1] that are deliberately imperfect (default: the task's own) */
  readonly imperfectShare?: number
}

/** Sizes of the splits; `undefined` means unlimited (a generator). */
export interface SplitSizes {
  readonly train: number | undefined
  readonly test: number | undefined
}

/** The metric of a task: `arpo` (training reward, token F1), `f1`, `math` (equivalence), `exact` (match). */
export type Metric = "arpo" | "f1" | "math" | "exact"

/** An evaluation-time score: the extracted answer and its correctness in [0, 1]. */
export interface Accuracy {
  readonly accuracy: number
  readonly answer: string | undefined
}

export interface TaskDefinition {
  readonly name: string
  readonly metric: Metric
  /** the tool tags a response may use (`search`, `python`) */
  readonly tools: ReadonlyArray<string>
  readonly sizes: SplitSizes
  /** problem `index` of `split`; a pure function of the task's configuration, split and index */
  readonly problem: (split: Split, index: number) => Problem | undefined
  /** the problems of a range, clipped to the split's size */
  readonly problems: (split: Split, range: Range) => ReadonlyArray<Problem>
  /** the training reward of a response (prompt excluded, tool results included) to a problem */
  readonly reward: (response: string, problem: Problem) => RewardResult
  /**
   * evaluation-time correctness in [0, 1] with the task's metric: the evaluator's lenient answer
   * extraction (last `<answer>`, last `\boxed{}`, fallbacks), no format gate and no bonus
   */
  readonly accuracy: (response: string, problem: Problem) => Accuracy
  /** SFT demonstrations for the problems of a range (empty for tasks without demonstrations) */
  readonly demonstrations: (split: Split, range: Range, options?: DemoOptions) => ReadonlyArray<Demonstration>
  /** the documents the search tool must index (empty for tasks without search) */
  readonly corpus: ReadonlyArray<Document>
  /**
   * the task's own tool implementations, for tasks whose tools are part of the task (a flaky calculator,
   * a noisy search over the task's world); absent: the run builds its default tools for `tools`
   */
  readonly toolImplementations?: ReadonlyArray<Tool>
}

/** The indices of a range clipped to a split size (`undefined` = unlimited). */
export const rangeIndices = (range: Range, size: number | undefined): ReadonlyArray<number> => {
  if (!Number.isSafeInteger(range.start) || range.start < 0 || !Number.isSafeInteger(range.count) || range.count < 0) {
    throw new RangeError(`task range: start ${range.start} and count ${range.count} must be non-negative integers`)
  }
  const end = size === undefined ? range.start + range.count : Math.min(size, range.start + range.count)
  const out: Array<number> = []
  for (let i = range.start; i < end; i++) out.push(i)
  return out
}

/** `problems` from `problem`, for definitions that address problems one by one. */
export const problemsOf = (
  problem: (split: Split, index: number) => Problem | undefined,
  sizes: SplitSizes
) =>
(split: Split, range: Range): ReadonlyArray<Problem> => {
  const out: Array<Problem> = []
  for (const i of rangeIndices(range, sizes[split])) {
    const p = problem(split, i)
    if (p !== undefined) out.push(p)
  }
  return out
}

/** A dataset file or row that cannot be used; the message names the file and line (or row). */
export class DatasetRowInvalid extends Schema.TaggedError<DatasetRowInvalid>()("DatasetRowInvalid", {
  /** the file, relative to the shared data folder: `benchmarks/gsm8k/test.jsonl` */
  file: Schema.String,
  /** 1-based line (JSONL) or row (parquet) number */
  line: Schema.Int,
  message: Schema.String
}) {}

/** A dataset file that is missing or cannot be parsed as a whole. */
export class DatasetUnreadable extends Schema.TaggedError<DatasetUnreadable>()("DatasetUnreadable", {
  file: Schema.String,
  message: Schema.String
}) {}

/** Builds the error with the conventional message `file line N: what` (`row N` for parquet rows). */
export const rowInvalid = (file: string, line: number, what: string, unit: "line" | "row" = "line"): DatasetRowInvalid =>
  new DatasetRowInvalid({ file, line, message: `${file} ${unit} ${line}: ${what}` })

export const unreadable = (file: string, what: string): DatasetUnreadable =>
  new DatasetUnreadable({ file, message: `${file}: ${what}` })

/** The task of a run. Layers: `Task.layer(definition)`; per-task layers live with each task module. */
export class Task extends Context.Service<Task, TaskDefinition>()("arpo/Task") {
  static readonly layer = (definition: TaskDefinition): Layer.Layer<Task> => Layer.succeed(Task, definition)
}

/** A task configuration that is out of range or inconsistent. */
export class TaskConfigInvalid extends Schema.TaggedError<TaskConfigInvalid>()("TaskConfigInvalid", {
  task: Schema.String,
  message: Schema.String
}) {}
