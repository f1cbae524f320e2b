/**
 * `arpo eval`, two forms.
 * - `arpo eval <checkpoint> --task <task> [--split s] [--seed n] [--experiment name]`: evaluate a checkpoint
 *   of an experiment run on its task; the experiment defaults to the one of the run the checkpoint is in
 *   (`runs/<experiment>/<run-id>/checkpoints/<name>`).
 * - `arpo eval --benchmark <name> …`: a paper benchmark (src/tasks/benchmarks.ts) on any engine (the embedded
 *   model from a checkpoint, or a vLLM / SGLang / llama-server server): greedy accuracy and unbiased pass@k
 *   from n samples per question, a table and optionally JSON. It trains nothing and launches no server.
 */
import { Console, Effect, FileSystem, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as NodePath from "node:path"
import { Engine } from "../engine/Engine.ts"
import { Events } from "../events/Events.ts"
import { CallFormatName } from "../tools/callFormat.ts"
import { engineLayer, type EngineChoice, decodeEngineChoice } from "../experiment/engineChoice.ts"
import { benchmarkTools } from "../experiment/benchmarkTools.ts"
import { writeFileAtomic } from "../io/atomic.ts"
import { type EvalDetail, evaluateDetailed } from "../run/evaluate.ts"
import { RunStore } from "../io/RunStore.ts"
import { type BenchmarkName, benchmarkNames, load as loadBenchmark } from "../tasks/benchmarks.ts"
import type { PromptFormat } from "../tasks/systemPrompt.ts"
import { Toolbox } from "../tools/Toolbox.ts"
import { experimentOfRun, ExperimentUnsupported } from "./experiments.ts"
import { checkOutFile, runOfCheckpoint } from "./runDir.ts"
import { badInput, presentErrors } from "./present.ts"
import { experimentOf } from "./resume.ts"

/** "1,4, 8" → [1, 4, 8] (sorted, distinct); a message naming the bad part otherwise. */
export const parseKs = (text: string): { readonly ks: ReadonlyArray<number> } | { readonly error: string } => {
  const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "")
  if (parts.length === 0) return { error: `--k "${text}": give comma-separated integers ≥ 1, e.g. 1,4` }
  const bad = parts.find((p) => !/^\d+$/.test(p) || Number(p) < 1)
  if (bad !== undefined) return { error: `--k "${text}": "${bad}" is not an integer ≥ 1` }
  return { ks: [...new Set(parts.map(Number))].sort((a, b) => a - b) }
}

/** Everything the benchmark form needs, after the flags are checked. */
export interface BenchmarkEvalRequest {
  readonly benchmark: BenchmarkName
  readonly engine: EngineChoice
  /** the first this many questions of the test file (undefined: all) */
  readonly questions: number | undefined
  readonly samples: number
  readonly ks: ReadonlyArray<number>
  readonly maxTokens: number
  readonly temperature: number
  readonly topP: number
  readonly seed: number
  readonly callLimit: number
  readonly callFormat: CallFormatName
  readonly prompt: PromptFormat
  readonly python: "auto" | "sandbox" | "calculator"
  readonly search: "cache" | "none"
  readonly dataDir: string | undefined
}

export interface BenchmarkEvalResult {
  readonly request: BenchmarkEvalRequest
  readonly engineName: string
  readonly tools: ReadonlyArray<string>
  readonly detail: EvalDetail
  /** from loading the data and the engine to the last response */
  readonly wallMs: number
}

/** Runs one benchmark evaluation: the task, its tools, the engine a choice names, then `evaluateDetailed`. */
export const benchmarkEval = (request: BenchmarkEvalRequest) =>
  Effect.gen(function*() {
    const started = performance.now()
    const task = yield* loadBenchmark(request.benchmark, {
      format: request.prompt,
      ...(request.dataDir === undefined ? {} : { dataDir: request.dataDir })
    })
    const tools = yield* benchmarkTools(task, { python: request.python, search: request.search, callLimit: request.callLimit, callFormat: request.callFormat })
    const services = Layer.mergeAll(engineLayer(request.engine), tools.toolbox).pipe(Layer.provideMerge(Events.layerDiscard))
    const questions = Math.min(request.questions ?? task.rows.length, task.rows.length)
    const { detail, engineName } = yield* Effect.gen(function*() {
      const env = { engine: yield* Engine, toolbox: yield* Toolbox, events: yield* Events }
      const detail = yield* evaluateDetailed(
        env,
        task,
        { every: 0, questions, k: Math.max(...request.ks), maxResponseTokens: request.maxTokens },
        { callLimit: request.callLimit, window: 20 },
        { split: "test", seed: request.seed, step: 0, samples: request.samples, ks: request.ks, temperature: request.temperature, topP: request.topP }
      )
      return { detail, engineName: env.engine.name }
    }).pipe(Effect.provide(services))
    return { request, engineName, tools: tools.description, detail, wallMs: performance.now() - started } satisfies BenchmarkEvalResult
  })

const pad = (cells: ReadonlyArray<string>, widths: ReadonlyArray<number>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()

/** The result table (header and one row) and the lines around it. */
export const formatResult = (r: BenchmarkEvalResult): ReadonlyArray<string> => {
  const f = r.detail.figures
  const ks = Object.keys(f.passAt).map(Number).sort((a, b) => a - b)
  const header = ["benchmark", "engine", "questions", "samples", ...ks.map((k) => `pass@${k}`), "greedy acc", "tool calls/q", "wall s"]
  const row = [
    r.request.benchmark,
    r.engineName,
    String(f.questions),
    String(f.samples),
    ...ks.map((k) => f.passAt[String(k)]!.toFixed(3)),
    f.accuracyGreedy.toFixed(3),
    f.toolCallsPerQuestion.toFixed(2),
    (r.wallMs / 1000).toFixed(1)
  ]
  const widths = header.map((h, i) => Math.max(h.length, row[i]!.length))
  const lines = [
    `sampled at temperature ${r.request.temperature}, top-p ${r.request.topP}; greedy at temperature 0; ${r.request.maxTokens} response tokens, ${r.request.callLimit} tool calls per response; seed ${r.request.seed}; prompt ${r.request.prompt}`,
    ...r.tools.map((t) => `tools: ${t}`),
    pad(header, widths),
    pad(row, widths)
  ]
  const failed = r.detail.failedGreedy + r.detail.failedSampled
  if (failed > 0) {
    lines.push(
      `warning: the engine failed on ${r.detail.failedGreedy} greedy and ${r.detail.failedSampled} sampled responses (counted as wrong): check the engine (context length, server errors)`
    )
  }
  return lines
}

/** The JSON written by `--out`. */
export const resultJson = (r: BenchmarkEvalResult) => ({
  benchmark: r.request.benchmark,
  engine: r.engineName,
  choice: r.request.engine,
  settings: {
    questions: r.detail.figures.questions,
    samples: r.request.samples,
    ks: r.request.ks,
    temperature: r.request.temperature,
    topP: r.request.topP,
    maxTokens: r.request.maxTokens,
    callLimit: r.request.callLimit,
    seed: r.request.seed,
    prompt: r.request.prompt,
    python: r.request.python,
    search: r.request.search
  },
  tools: r.tools,
  figures: r.detail.figures,
  toolCallsPerSample: r.detail.toolCallsPerSample,
  failedGreedy: r.detail.failedGreedy,
  failedSampled: r.detail.failedSampled,
  wallMs: r.wallMs,
  perQuestion: r.detail.perQuestion
})

const flags = {
  checkpoint: Argument.String("checkpoint").pipe(
    Argument.optional,
    Argument.withDescription("a checkpoint directory, e.g. runs/<exp>/<id>/checkpoints/<name> (the embedded engine's weights)")
  ),
  task: Flag.String("task").pipe(Flag.optional, Flag.withDescription("experiment form: the task to evaluate on (a task name the experiment knows)")),
  split: Flag.String("split").pipe(Flag.optional, Flag.withDescription("experiment form: the split (default: the task's test split)")),
  seed: Flag.Int("seed").pipe(Flag.withDefault(0), Flag.withDescription("seed for sampled responses (pass@k)")),
  experiment: Flag.String("experiment").pipe(Flag.optional, Flag.withDescription("experiment form: the experiment, a name or a module file (default: the file or name recorded in the run's config.json)")),
  benchmark: Flag.Literals("benchmark", benchmarkNames).pipe(
    Flag.optional,
    Flag.withDescription("benchmark form: a paper benchmark from ../shared/data/benchmarks (test split)")
  ),
  engine: Flag.Literals("engine", ["embedded", "llama-cpp", "llama-server", "http"]).pipe(
    Flag.optional,
    Flag.withDescription(
      "embedded (a checkpoint), llama-cpp (a GGUF in process), llama-server (launched on a GGUF) or http (a running server); default: http when --base-url is given, llama-cpp when --gguf is"
    )
  ),
  gguf: Flag.String("gguf").pipe(Flag.optional, Flag.withDescription("llama-cpp / llama-server: the GGUF file to serve")),
  checkpointFlag: Flag.String("checkpoint").pipe(Flag.optional, Flag.withDescription("the embedded engine's checkpoint (same as the positional argument)")),
  dialect: Flag.Literals("dialect", ["vllm", "sglang", "llama-server"]).pipe(Flag.withDefault("vllm" as const), Flag.withDescription("http: the server's API")),
  baseUrl: Flag.String("base-url").pipe(Flag.atLeast(0), Flag.withDescription("http: a server, e.g. http://127.0.0.1:8000 (repeat for replicas)")),
  model: Flag.String("model").pipe(Flag.optional, Flag.withDescription("http: the served model's name (vLLM / SGLang)")),
  tokenizer: Flag.String("tokenizer").pipe(
    Flag.withDefault("embedded"),
    Flag.withDescription(
      "the served model's tokenizer: 'embedded' (a GGUF of the embedded model), a directory with the model's tokenizer.json, or (llama-cpp) 'gguf' for the GGUF's own"
    )
  ),
  topK: Flag.Int("top-k").pipe(Flag.optional, Flag.withDescription("http: top-k log-probs per token (default 20)")),
  extraBody: Flag.String("extra-body").pipe(
    Flag.optional,
    Flag.withDescription(`http: a JSON object merged into every request, e.g. '{"top_k":20,"repetition_penalty":1.1}' (vLLM)`)
  ),
  concurrency: Flag.Int("concurrency").pipe(Flag.optional, Flag.withDescription("http: requests in flight (default 16)")),
  questions: Flag.Int("questions").pipe(Flag.optional, Flag.withDescription("the first N questions (default: all)")),
  samples: Flag.Int("samples").pipe(Flag.optional, Flag.withDescription("sampled responses per question, n ≥ every k (default: the largest k)")),
  k: Flag.String("k").pipe(Flag.withDefault("1"), Flag.withDescription("the k of pass@k, comma-separated, e.g. 1,4")),
  maxTokens: Flag.Int("max-tokens").pipe(Flag.withDefault(1024), Flag.withDescription("response tokens per question (tool results included)")),
  temperature: Flag.Finite("temperature").pipe(Flag.withDefault(1), Flag.withDescription("sampling temperature of the pass@k samples (paper: 0.6)")),
  topP: Flag.Finite("top-p").pipe(Flag.withDefault(1), Flag.withDescription("top-p of the pass@k samples (paper: 0.95)")),
  callFormat: Flag.Literals("call-format", CallFormatName.literals).pipe(
    Flag.withDefault("arpo-tags" as const),
    Flag.withDescription("how the model calls tools: ARPO's tags (<python>…</python>) or Qwen's <tool_call>{json}</tool_call>")
  ),
  callLimit: Flag.Int("call-limit").pipe(Flag.withDefault(5), Flag.withDescription("tool calls per response, all tools together")),
  prompt: Flag.Literals("prompt", ["compact", "chatml", "plain"]).pipe(
    Flag.optional,
    Flag.withDescription("prompt format (default: compact for the embedded tokenizer, chatml otherwise; a tokenizer with a chat template uses its own)")
  ),
  python: Flag.Literals("python", ["auto", "sandbox", "calculator"]).pipe(
    Flag.withDefault("auto" as const),
    Flag.withDescription("what answers <python>: the sandbox, the calculator, or the sandbox when available (auto)")
  ),
  search: Flag.Literals("search", ["cache", "none"]).pipe(
    Flag.withDefault("cache" as const),
    Flag.withDescription("what answers <search>: ARPO's local search cache (exact query, else BM25 over its snippets), or nothing")
  ),
  dataDir: Flag.String("data-dir").pipe(Flag.optional, Flag.withDescription("the shared data folder (default ../shared/data beside the repository)")),
  out: Flag.String("out").pipe(Flag.optional, Flag.withDescription("benchmark form: write the figures and per-question outcomes as JSON here"))
}

type Input = Command.Command.Config.Infer<typeof flags>

/** The benchmark form's flags → a request (or a message naming the bad flag). */
export const benchmarkRequest = (input: Input, benchmark: BenchmarkName) =>
  Effect.gen(function*() {
    const positional = Option.getOrUndefined(input.checkpoint)
    const flagged = Option.getOrUndefined(input.checkpointFlag)
    if (positional !== undefined && flagged !== undefined && positional !== flagged) {
      return yield* badInput(`two checkpoints given (${positional} and --checkpoint ${flagged}); give one`)
    }
    const checkpoint = positional ?? flagged
    const kind = Option.getOrElse(
      input.engine,
      () => (input.baseUrl.length > 0 ? "http" as const : Option.isSome(input.gguf) ? "llama-cpp" as const : "embedded" as const)
    )
    const ks = parseKs(input.k)
    if ("error" in ks) return yield* badInput(ks.error)
    const samples = Option.getOrElse(input.samples, () => Math.max(...ks.ks))
    if (samples < Math.max(...ks.ks)) return yield* badInput(`--samples ${samples} is below --k ${input.k}: pass@k needs at least k samples per question`)
    const positive = (name: string, v: number) => (Number.isInteger(v) && v >= 1 ? undefined : `--${name} ${v}: give an integer ≥ 1`)
    for (
      const bad of [
        positive("samples", samples),
        positive("max-tokens", input.maxTokens),
        Option.isSome(input.questions) ? positive("questions", input.questions.value) : undefined,
        input.callLimit >= 0 && Number.isInteger(input.callLimit) ? undefined : `--call-limit ${input.callLimit}: give an integer ≥ 0`,
        input.temperature > 0 ? undefined : `--temperature ${input.temperature}: give a number > 0 (greedy accuracy is measured at temperature 0 anyway)`,
        input.topP > 0 && input.topP <= 1 ? undefined : `--top-p ${input.topP}: give a number in (0, 1]`
      ]
    ) if (bad !== undefined) return yield* badInput(bad)
    let raw: unknown
    let extraBody: unknown
    if (Option.isSome(input.extraBody)) {
      try {
        extraBody = JSON.parse(input.extraBody.value)
      } catch {
        return yield* badInput(`--extra-body ${input.extraBody.value}: not JSON`)
      }
      if (typeof extraBody !== "object" || extraBody === null || Array.isArray(extraBody)) {
        return yield* badInput(`--extra-body ${input.extraBody.value}: give a JSON object`)
      }
    }
    const tokenizerChoice = input.tokenizer === "embedded" ? { _tag: "embedded" } : { _tag: "files", dir: input.tokenizer }
    if (kind !== "llama-cpp" && kind !== "llama-server" && Option.isSome(input.gguf)) {
      return yield* badInput(`--gguf is for --engine llama-cpp or llama-server, not ${kind}`)
    }
    if (kind === "llama-cpp" || kind === "llama-server") {
      if (Option.isNone(input.gguf)) return yield* badInput(`--engine ${kind} needs --gguf <file>`)
      if (checkpoint !== undefined || input.baseUrl.length > 0) {
        return yield* badInput(`--engine ${kind} serves the --gguf file: give no checkpoint and no --base-url`)
      }
      raw = kind === "llama-cpp"
        ? {
          _tag: "llama-cpp",
          gguf: input.gguf.value,
          tokenizer: input.tokenizer === "gguf" ? { _tag: "gguf" } : tokenizerChoice,
          ...Option.match(input.concurrency, { onNone: () => ({}), onSome: (sequences) => ({ sequences }) })
        }
        : {
          _tag: "llama-server",
          gguf: input.gguf.value,
          tokenizer: tokenizerChoice,
          ...(extraBody === undefined ? {} : { extraBody }),
          ...Option.match(input.topK, { onNone: () => ({}), onSome: (topK) => ({ topK }) }),
          ...Option.match(input.concurrency, { onNone: () => ({}), onSome: (parallel) => ({ parallel }) })
        }
    } else if (kind === "embedded") {
      if (checkpoint === undefined) return yield* badInput("--engine embedded needs a checkpoint: arpo eval <checkpoint> --benchmark … (or --checkpoint dir)")
      if (input.baseUrl.length > 0) return yield* badInput("--base-url is for --engine http; the embedded engine reads a checkpoint")
      raw = { _tag: "embedded", checkpoint }
    } else {
      if (checkpoint !== undefined) return yield* badInput("a checkpoint is for --engine embedded; an http engine serves its own weights")
      const baseUrls = input.baseUrl.flatMap((u) => u.split(",")).map((u) => u.trim()).filter((u) => u !== "")
      if (baseUrls.length === 0) return yield* badInput("--engine http needs --base-url http://host:port (repeat it for replicas)")
      const bad = baseUrls.find((u) => !/^https?:\/\/[^\s/]+/.test(u))
      if (bad !== undefined) return yield* badInput(`--base-url ${bad}: give an http:// or https:// URL`)
      raw = {
        _tag: "http",
        ...(extraBody === undefined ? {} : { extraBody }),
        dialect: input.dialect,
        baseUrls,
        tokenizer: tokenizerChoice,
        ...Option.match(input.model, { onNone: () => ({}), onSome: (model) => ({ model }) }),
        ...Option.match(input.topK, { onNone: () => ({}), onSome: (topK) => ({ topK }) }),
        ...Option.match(input.concurrency, { onNone: () => ({}), onSome: (maxConcurrency) => ({ maxConcurrency }) })
      }
    }
    const engine = yield* decodeEngineChoice(raw).pipe(Effect.mapError((e) => badInput(`engine options: ${e.message}`)))
    const embeddedTokens = engine._tag === "embedded" || engine.tokenizer._tag === "embedded"
    return {
      benchmark,
      engine,
      questions: Option.getOrUndefined(input.questions),
      samples,
      ks: ks.ks,
      maxTokens: input.maxTokens,
      temperature: input.temperature,
      topP: input.topP,
      seed: input.seed,
      callLimit: input.callLimit,
      callFormat: input.callFormat,
      prompt: Option.getOrElse(input.prompt, () => (embeddedTokens ? "compact" as const : "chatml" as const)),
      python: input.python,
      search: input.search,
      dataDir: Option.getOrUndefined(input.dataDir)
    } satisfies BenchmarkEvalRequest
  })

/** The experiment form (unchanged): dispatch to the experiment of the checkpoint's run. */
const experimentEval = (input: Input, checkpoint: string, task: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(checkpoint).pipe(Effect.orElseSucceed(() => false)))) {
      return yield* badInput(`checkpoint ${checkpoint} does not exist`)
    }
    const runDir = Option.isSome(input.experiment) ? NodePath.dirname(NodePath.dirname(NodePath.resolve(checkpoint))) : yield* runOfCheckpoint(checkpoint)
    const config = yield* RunStore.use((s) => s.readConfig).pipe(Effect.provide(RunStore.layerOpen(runDir)), Effect.orElseSucceed(() => undefined))
    const name = Option.isSome(input.experiment) ? input.experiment.value : experimentOf(runDir, config)
    const experiment = yield* experimentOfRun(Option.getOrUndefined(input.experiment), name, config)
    if (experiment.evaluate === undefined) {
      return yield* new ExperimentUnsupported({ experiment: name, message: `experiment ${name} cannot evaluate checkpoints (it has no evaluate)` })
    }
    const lines = yield* experiment.evaluate(checkpoint, { task, split: Option.getOrUndefined(input.split), seed: input.seed })
    for (const line of lines) yield* Console.log(line)
  })

export const evalCommand = Command.make(
  "eval",
  flags,
  (input) =>
    Effect.gen(function*() {
      if (Option.isNone(input.benchmark)) {
        if (Option.isNone(input.checkpoint) || Option.isNone(input.task)) {
          return yield* badInput("give a checkpoint and --task (a checkpoint of an experiment run), or --benchmark <name> (any engine)")
        }
        return yield* experimentEval(input, input.checkpoint.value, input.task.value)
      }
      if (Option.isSome(input.task)) return yield* badInput("give --task or --benchmark, not both")
      if (Option.isSome(input.out)) yield* checkOutFile(input.out.value)
      const request = yield* benchmarkRequest(input, input.benchmark.value)
      const result = yield* benchmarkEval(request)
      for (const line of formatResult(result)) yield* Console.log(line)
      if (Option.isSome(input.out)) {
        const fs = yield* FileSystem.FileSystem
        const file = input.out.value
        const json = JSON.stringify(resultJson(result), null, 2) + "\n"
        yield* Effect.gen(function*() {
          yield* fs.makeDirectory(NodePath.dirname(NodePath.resolve(file)), { recursive: true })
          yield* writeFileAtomic(file, json)
        }).pipe(Effect.catch((e) =>
          // the figures are printed above; keep the JSON too rather than lose it
          Effect.andThen(Console.log(json), badInput(`--out ${file}: could not write it (${e.message}); the JSON is printed above`))
        ))
        yield* Console.log(`wrote ${file}`)
      }
    }).pipe(presentErrors)
).pipe(Command.withDescription("Evaluate a checkpoint on its experiment's task, or any engine on a paper benchmark (pass@1, pass@k)"))
