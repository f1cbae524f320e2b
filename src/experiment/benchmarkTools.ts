/**
 * The tools of a benchmark evaluation (`arpo eval --benchmark`): what answers `<python>` (the sandbox, the calculator,
 * or the sandbox when available) and `<search>` (ARPO's search cache, or nothing), as a Toolbox with a line per tool
 * saying what really answers it. It chooses components for an evaluation outside an experiment's own composition;
 * it does not evaluate (src/run/evaluate.ts).
 */
import { Effect, type Layer } from "effect"
import type { ChildProcessSpawner } from "effect/process"
import type { Events } from "../events/Events.ts"
import type { TaskDefinition } from "../tasks/Task.ts"
import * as Calculator from "../tools/calculator.ts"
import { type CallFormatName, callFormatOf } from "../tools/callFormat.ts"
import type { SandboxUnavailable, SearchCacheUnreadable } from "../tools/errors.ts"
import * as Python from "../tools/python.ts"
import { make as makeSandbox, Sandbox } from "../tools/sandbox.ts"
import * as Search from "../tools/search.ts"
import type { Tool } from "../tools/Tool.ts"
import { Toolbox } from "../tools/Toolbox.ts"

/**
 * `<python>`: "sandbox" runs the model's code in the python sandbox (src/tools/sandbox.ts) and fails
 * when the machine cannot provide it; "calculator" answers with the safe calculator (arithmetic only);
 * "auto" takes the sandbox when it is available, else the calculator, and says so.
 * `<search>`: "cache" answers from ARPO's search cache (exact query, then BM25 over all its cached
 * snippets); "none" answers every query with "No search results found.".
 */
export interface BenchmarkToolsOptions {
  readonly python: "auto" | "sandbox" | "calculator"
  readonly search: "cache" | "none"
  /** the search cache file (default: ../shared/data/arpo/search_cache.json) */
  readonly searchCache?: string
  /** tool calls per response, all tools together */
  readonly callLimit: number
  /** how the model calls tools (default ARPO's tags) */
  readonly callFormat?: CallFormatName
}

export interface BenchmarkTools {
  readonly toolbox: Layer.Layer<Toolbox, unknown, Events>
  /** one line per tool saying what answers it (printed with the results) */
  readonly description: ReadonlyArray<string>
}

/** The Toolbox of a benchmark task (its `tools`), with a line per tool saying what really answers it. */
export const benchmarkTools = (
  task: Pick<TaskDefinition, "tools">,
  options: BenchmarkToolsOptions
): Effect.Effect<BenchmarkTools, SandboxUnavailable | SearchCacheUnreadable, ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const tools: Array<Tool> = []
    const description: Array<string> = []
    for (const name of task.tools) {
      if (name === "python") {
        if (options.python === "calculator") {
          tools.push(Calculator.tool({ name }))
          description.push(`<python>: the calculator (arithmetic expressions only; --python calculator)`)
          continue
        }
        const sandbox = yield* makeSandbox().pipe(
          Effect.map((s) => ({ _tag: "ok", sandbox: s } as const)),
          Effect.catch((e) => options.python === "sandbox" ? Effect.fail(e) : Effect.succeed({ _tag: "unavailable", reason: e.reason } as const))
        )
        if (sandbox._tag === "ok") {
          tools.push(yield* Python.tool({ name }).pipe(Effect.provideService(Sandbox, sandbox.sandbox)))
          description.push(`<python>: python3 in the sandbox (namespaces, unprivileged user, limits)`)
        } else {
          tools.push(Calculator.tool({ name }))
          description.push(`<python>: the calculator (arithmetic only), because the python sandbox is unavailable: ${sandbox.reason}`)
        }
      } else if (name === "search") {
        if (options.search === "none") {
          tools.push(Search.tool([], { name }))
          description.push(`<search>: no search backend (--search none): every query gets "${Search.NO_RESULTS}"`)
          continue
        }
        const path = options.searchCache ?? Search.defaultCachePath
        const cache = yield* Search.loadCache(path)
        const corpus = Search.cacheCorpus(cache)
        tools.push(Search.tool([Search.cacheBackend(cache), Search.corpusBackend(corpus)], { name }))
        description.push(
          `<search>: local only, no web: exact-query hits in ${Object.keys(cache).length} cached queries, else BM25 over their ${corpus.length} snippets (${path})`
        )
      }
    }
    const callFormat = callFormatOf(options.callFormat ?? "arpo-tags")
    return {
      toolbox: Toolbox.layer(tools, { callLimit: options.callLimit, timeoutMs: 10_000, maxAttempts: 1, callFormat }),
      description: [...description, `tool calls: ${callFormat.name}`]
    }
  })
