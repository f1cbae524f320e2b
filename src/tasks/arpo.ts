/**
 * ARPO's own task, as the paper trains real models: the math + knowledge QA of `train_10k.parquet` with
 * `valid.parquet` held out, ARPO's training system prompt (its `\boxed` defect repaired) as chat
 * messages that the model's own chat template renders, tool calls in ARPO's tags or Qwen's `<tool_call>`
 * JSON (config), `<python>` answered by the real Python sandbox and `<search>` by the released
 * `search_cache.json` (an offline backend: a query it does not hold gets a "no results" text that says
 * so), scored by ARPO's training reward; the benchmark files evaluate through the same prompt and tools.
 * A plain config Schema + constructors, so a registry entry is one line. It does not tokenize or sample.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import type { Events } from "../events/Events.ts"
import type { ToolSchema } from "../core/text.ts"
import {
  type CallFormat,
  callFormatOf,
  CallFormatName,
  defaultSignatures,
  toolCallClose,
  toolCallOpen,
  toolSchemas
} from "../tools/callFormat.ts"
import type { InvalidToolboxConfig } from "../tools/Toolbox.ts"
import { Toolbox } from "../tools/Toolbox.ts"
import type { SearchCacheUnreadable } from "../tools/errors.ts"
import * as Protocol from "../tools/protocol.ts"
import * as Python from "../tools/python.ts"
import { Sandbox } from "../tools/sandbox.ts"
import * as Search from "../tools/search.ts"
import * as Benchmarks from "./benchmarks.ts"
import { defaultDataDir } from "./data.ts"
import { fromRows, loadParquetRows, ParquetName } from "./parquet.ts"
import type { ArpoDataTask } from "./parquet.ts"
import { arpoSystemPrompt } from "./systemPrompt.ts"
import { fromSegments } from "./demonstration.ts"
import {
  type DatasetRowInvalid,
  type DatasetUnreadable,
  type DemoSegment,
  type Demonstration,
  type Problem,
  Task,
  type TaskDefinition
} from "./Task.ts"

const Int = (min: number) => Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(min)))

/** The `arpo` task's settings (every field has a default: `defaultArpoTaskConfig`). */
export const ArpoTaskConfig = Schema.Struct({
  /** the RL file (ARPO's reasoning runs: `train_10k`; deep search: `hard_search_1k`) */
  train: ParquetName,
  /** the held-out file evaluated during training (`valid`: 100 math + 80 QA) */
  test: ParquetName,
  /** how the model calls tools: ARPO's `<python>…</python>` tags or Qwen's `<tool_call>{json}</tool_call>` */
  callFormat: CallFormatName,
  /** tool calls per trajectory, all tools together (ARPO's reasoning script: 3) */
  callLimit: Int(0),
  /** wall-clock limit of one Python run in the sandbox, ms (the reference allows 120 s) */
  pythonTimeoutMs: Int(1),
  /** the query → results cache the search tool answers from ("" = the shared `arpo/search_cache.json`) */
  searchCache: Schema.String,
  /** search results shown per query (reference: 10) */
  maxResults: Int(1),
  /** the shared data folder ("" = `../shared/data` beside the repository) */
  dataDir: Schema.String,
  /** keep the rows whose ground truth is cut off inside a LaTeX group (default false: dropped, see parquet.ts) */
  keepTruncatedGolds: Schema.Boolean,
  /** `arpo`: ARPO's training prompt (its example in the call format's syntax); `short`: three lines of protocol, for models with a tiny context (the CPU fixtures) */
  systemPrompt: Schema.Literals(["arpo", "short"]),
  /** keep only questions of at most this many characters (0 = all; the reference filters prompts over `max_prompt_length` tokens) */
  maxQuestionChars: Int(0),
  /** tool output characters the model sees (0 = no cap, as the reference) */
  outputCapChars: Int(0)
})
export type ArpoTaskConfig = typeof ArpoTaskConfig.Type

export const defaultArpoTaskConfig: ArpoTaskConfig = {
  train: "train_10k",
  test: "valid",
  callFormat: "arpo-tags",
  callLimit: 3,
  pythonTimeoutMs: 20_000,
  searchCache: "",
  maxResults: 10,
  dataDir: "",
  keepTruncatedGolds: false,
  systemPrompt: "arpo",
  maxQuestionChars: 0,
  outputCapChars: 0
}

/**
 * The same settings with every field defaulted at decoding (`{}` is a valid config): the shape of a registry
 * entry's config (src/experiment/registries.ts).
 */
const dflt = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, value: S["Type"]) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed(value)))
const f = ArpoTaskConfig.fields
const v = defaultArpoTaskConfig
export const ArpoTaskSettings = Schema.Struct({
  train: dflt(f.train, v.train),
  test: dflt(f.test, v.test),
  callFormat: dflt(f.callFormat, v.callFormat),
  callLimit: dflt(f.callLimit, v.callLimit),
  pythonTimeoutMs: dflt(f.pythonTimeoutMs, v.pythonTimeoutMs),
  searchCache: dflt(f.searchCache, v.searchCache),
  maxResults: dflt(f.maxResults, v.maxResults),
  dataDir: dflt(f.dataDir, v.dataDir),
  keepTruncatedGolds: dflt(f.keepTruncatedGolds, v.keepTruncatedGolds),
  systemPrompt: dflt(f.systemPrompt, v.systemPrompt),
  maxQuestionChars: dflt(f.maxQuestionChars, v.maxQuestionChars),
  outputCapChars: dflt(f.outputCapChars, v.outputCapChars)
})

/** Decodes a partial config over the defaults; a bad field fails with Schema's message naming it. */
export const decodeConfig = (partial: unknown): Effect.Effect<ArpoTaskConfig, Schema.SchemaError> =>
  Schema.decodeUnknownEffect(ArpoTaskConfig)(
    { ...defaultArpoTaskConfig, ...(typeof partial === "object" && partial !== null ? partial : {}) },
    { onExcessProperty: "error", errors: "all" }
  )

// ---- the system prompt --------------------------------------------------------------------------------------------

/**
 * ARPO's training prompt with its example written in Qwen's `<tool_call>` JSON instead of the tags (the
 * chat template additionally lists the tools' signatures, `chatTools`); thinking, the `<answer>` and the
 * `\boxed{}` stay as the reward checks them.
 */
export const qwenToolCallSystemPrompt =
  "You are a helpful assistant that can solve the given question step by step with the help of the wikipedia search tool and python interpreter tool. Given a question, you need to first think about the reasoning process in the mind and then provide the answer. During thinking, you can call the search tool to search wikipedia and the python tool to calculate the math problem for fact information about specific topics if needed. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags respectively, and a tool call is written as <tool_call>{\"name\": <tool>, \"arguments\": {<argument>: <value>}}</tool_call>; its result is returned to you in <tool_response> </tool_response>. For example, <think> This is the reasoning process. </think> <tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"search query here\"}}</tool_call> <tool_response> search result here </tool_response> <think> This is the reasoning process. </think> <tool_call>{\"name\": \"python\", \"arguments\": {\"code\": \"python code here\"}}</tool_call> <tool_response> python interpreter result here </tool_response> <think> This is the reasoning process. </think> <answer> The final answer is \\[ \\boxed{answer here} \\] </answer>. In the last part of the answer, the final exact answer is enclosed within \\boxed{} with latex format."

/** The protocol in three lines, for tiny-context models (the CPU fixtures have 512 positions; ARPO's prompt is ~1,400 characters). */
export const shortSystemPrompt = (format: CallFormatName): string =>
  format === "arpo-tags"
    ? "Think in <think> </think>. Call tools as <search> query </search> or <python> code </python>; results come in <result> </result>. Answer in <answer> \\boxed{answer} </answer>."
    : "Think in <think> </think>. Call tools as <tool_call>{\"name\": \"search\", \"arguments\": {\"query\": query}}</tool_call> (or python with \"code\"). Answer in <answer> \\boxed{answer} </answer>."

/** The system prompt for a call format: ARPO's own (repaired) for its tags. */
export const systemPromptFor = (format: CallFormatName, kind: "arpo" | "short" = "arpo"): string =>
  kind === "short" ? shortSystemPrompt(format) : format === "arpo-tags" ? arpoSystemPrompt : qwenToolCallSystemPrompt

/**
 * The tool signatures a chat template should list (its `tools` variable) for a call format: Qwen's
 * format needs them (give them to `hfTokenizer.load(dir, { tools })`), ARPO's tags do not.
 */
export const chatTools = (format: CallFormatName): ReadonlyArray<ToolSchema> | undefined =>
  format === "qwen-tool-call" ? toolSchemas(defaultSignatures) : undefined

// ---- the reward ---------------------------------------------------------------------------------------------------

/**
 * A response in ARPO's tag form, whatever format it called tools in: every `<tool_call>` JSON call and
 * the result inserted after it become `<tool>content</tool>` + the training result insertion, so ARPO's
 * reward (format gate, multi-tool bonus on `</search>` and `</python>`) reads Qwen-format responses as it
 * reads tagged ones. A call that does not parse stays as written. Tagged responses are returned unchanged.
 */
export const canonicalResponse = (response: string, format: CallFormat): string => {
  if (format.name === "arpo-tags") return response
  const insertion = format.formatResult("\u0000")
  const [open, close] = insertion.split("\u0000") as [string, string]
  let out = ""
  let at = 0
  for (;;) {
    const start = response.indexOf(toolCallOpen, at)
    if (start < 0) break
    const end = response.indexOf(toolCallClose, start)
    if (end < 0) break
    const callEnd = end + toolCallClose.length
    const call = format.parse(response.slice(start, callEnd), defaultSignatures.map((s) => s.name))
    out += response.slice(at, start)
    let next = callEnd
    let rewritten = response.slice(start, callEnd)
    let output: string | undefined
    if (response.startsWith(open, callEnd)) {
      const closeAt = response.indexOf(close, callEnd + open.length)
      if (closeAt >= 0) {
        output = response.slice(callEnd + open.length, closeAt)
        next = closeAt + close.length
      }
    }
    if (call !== undefined && !Protocol.isMalformed(call)) {
      rewritten = `${Protocol.openTag(call.tool)}${call.content}${Protocol.closeTag(call.tool)}`
      out += rewritten + (output === undefined ? "" : Protocol.formatResult(output))
    } else {
      out += response.slice(start, next)
    }
    at = next
  }
  return out + response.slice(at)
}

// ---- demonstrations -----------------------------------------------------------------------------------------------

/**
 * A protocol demonstration for cold-start SFT (the paper cold-starts every RL run; its SFT set is not
 * released): think, run a (fixed) Python program, search the question's first words, answer the gold in
 * `\boxed{}` — the same shape for every row, so a small model learns the call protocol, not the answers' reasoning. Tool
 * results are left to the Toolbox (`renderWithToolbox` runs the real sandbox and search on them).
 */
export const protocolDemonstration = (problem: Problem, config: ArpoTaskConfig): Demonstration => {
  const format = config.callFormat === "arpo-tags" ? undefined : callFormatOf(config.callFormat)
  const call = (tool: string, content: string) => (format === undefined ? `${Protocol.openTag(tool)}${content}${Protocol.closeTag(tool)}` : format.formatCall(tool, content))
  const gold = problem.golds[0] ?? ""
  // one program for every row: the demonstration teaches the call, not a computation
  const code = "print(6 * 7)"
  // a short query (the question's first words): the demonstration teaches the call, not query writing
  const query = problem.question.split(/\s+/).filter((w) => w !== "").slice(0, 4).join(" ")
  const segments: Array<DemoSegment> = [
    { role: "model", text: `<think> compute </think>${call("python", code)}` },
    { role: "tool", tool: "python", content: code, text: "" },
    { role: "model", text: `<think> search </think>${call("search", query)}` },
    { role: "tool", tool: "search", content: query, text: "" },
    { role: "model", text: `<think> done </think><answer> \\boxed{${gold}} </answer>` }
  ]
  return fromSegments(problem, "perfect", segments)
}

// ---- the task -----------------------------------------------------------------------------------------------------

export interface ArpoTask extends ArpoDataTask {
  readonly config: ArpoTaskConfig
}

const dataDirOf = (config: ArpoTaskConfig): string => (config.dataDir === "" ? defaultDataDir : config.dataDir)

/** The reward and accuracy of a task, reading responses through `canonicalResponse` for the config's format. */
const withFormat = <T extends TaskDefinition>(task: T, config: ArpoTaskConfig): T => {
  if (config.callFormat === "arpo-tags") return task
  const format = callFormatOf(config.callFormat)
  return {
    ...task,
    reward: (response: string, p: Problem) => task.reward(canonicalResponse(response, format), p),
    accuracy: (response: string, p: Problem) => task.accuracy(canonicalResponse(response, format), p)
  }
}

/** The task from already-read rows (tests, or callers that cache the files). */
export const fromArpoRows = (
  config: ArpoTaskConfig,
  rows: Parameters<typeof fromRows>[0]
): ArpoTask => {
  const system = systemPromptFor(config.callFormat, config.systemPrompt)
  const fits = (r: { readonly question: string }) => config.maxQuestionChars === 0 || r.question.length <= config.maxQuestionChars
  const withSystem = {
    train: rows.train.filter(fits).map((r) => ({ ...r, system })),
    test: rows.test.filter(fits).map((r) => ({ ...r, system }))
  }
  const data = fromRows(withSystem, { train: config.train, test: config.test }, "chatml", config.keepTruncatedGolds)
  const problem = (split: "train" | "test", index: number) => {
    const p = data.problem(split, index)
    return p === undefined ? undefined : { ...p, task: "arpo" }
  }
  const task: ArpoTask = {
    ...data,
    name: "arpo",
    problem,
    problems: (split, range) => data.problems(split, range).map((p) => ({ ...p, task: "arpo" })),
    demonstrations: (split, range) => data.problems(split, range).map((p) => protocolDemonstration({ ...p, task: "arpo" }, config)),
    config
  }
  return withFormat(task, config)
}

/** Reads the configured parquet files and builds the task (the first malformed row fails, naming it). */
export const definition = (config: ArpoTaskConfig = defaultArpoTaskConfig): Effect.Effect<ArpoTask, DatasetRowInvalid | DatasetUnreadable> =>
  Effect.gen(function*() {
    const dir = dataDirOf(config)
    const [train, test] = yield* Effect.all([loadParquetRows(config.train, dir), loadParquetRows(config.test, dir)])
    return fromArpoRows(config, { train, test })
  })

/** The `Task` layer. */
export const layer = (config: ArpoTaskConfig = defaultArpoTaskConfig): Layer.Layer<Task, DatasetRowInvalid | DatasetUnreadable> =>
  Layer.effect(Task, Effect.map(definition(config), (d) => Task.of(d)))

/**
 * A benchmark file as a task with this config's prompt and call format (evaluation through the same
 * engine and tools: `arpo eval`, the Evaluator). Metric and extraction are the benchmark's (math
 * equivalence or token F1, ARPO_SPEC §5.4).
 */
export const benchmark = (
  name: Benchmarks.BenchmarkName,
  config: ArpoTaskConfig = defaultArpoTaskConfig
): Effect.Effect<Benchmarks.BenchmarkTask, DatasetRowInvalid | DatasetUnreadable> =>
  Effect.map(
    Benchmarks.load(name, { dataDir: dataDirOf(config), format: "chatml", system: systemPromptFor(config.callFormat, config.systemPrompt) }),
    (t) => withFormat(t, config)
  )

// ---- the tools ----------------------------------------------------------------------------------------------------

/**
 * The Toolbox of the task: the sandboxed Python tool and search over the cache (both named as ARPO's
 * tags; in Qwen's format they are the functions `python(code)` and `search(query)`), the config's call
 * format and call limit, and the reference's 3 attempts for empty output. It needs a `Sandbox`.
 */
export const toolbox = (
  config: ArpoTaskConfig = defaultArpoTaskConfig
): Layer.Layer<Toolbox, SearchCacheUnreadable | InvalidToolboxConfig, Events | Sandbox> =>
  Layer.unwrap(
    Effect.gen(function*() {
      const cache = yield* Search.loadCache(config.searchCache === "" ? Search.defaultCachePath : config.searchCache)
      const search = Search.tool([Search.cacheBackend(cache)], { maxResults: config.maxResults, missText: Search.cacheMissText })
      return Toolbox.layer([Python.tool(), search], {
        callLimit: config.callLimit,
        // the sandbox enforces the program's own limit; this one bounds the whole attempt (spawn included)
        timeoutMs: config.pythonTimeoutMs + 10_000,
        maxAttempts: 3,
        outputCapChars: config.outputCapChars,
        ...(config.callFormat === "arpo-tags" ? {} : { callFormat: callFormatOf(config.callFormat) })
      })
    })
  )

/**
 * `toolbox` with the machine's sandbox (Debian's python3, the config's time limit). Where the sandbox
 * cannot be set up, every Python call is answered with the reason (the code never runs unsandboxed).
 */
export const toolboxLocal = (
  config: ArpoTaskConfig = defaultArpoTaskConfig
): Layer.Layer<Toolbox, SearchCacheUnreadable | InvalidToolboxConfig, Events> =>
  toolbox(config).pipe(
    Layer.provide(Sandbox.layerOrUnavailable({ timeoutMs: config.pythonTimeoutMs, cpuSeconds: Math.ceil(config.pythonTimeoutMs / 1000) + 1 })),
    Layer.provide(NodeServices.layer)
  )

/** The registry entry's parts (name, config Schema with defaults, layer). */
export const entry = { name: "arpo", config: ArpoTaskConfig, defaults: defaultArpoTaskConfig, layer, toolbox: toolboxLocal } as const
