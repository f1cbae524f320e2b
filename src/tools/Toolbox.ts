/**
 * The Toolbox service: runs a tool call (tag + content) and turns every outcome, failures included, into
 * result text plus one `tool.call` event; it never fails. Built from tools (`Tool.ts`) with a per-attempt
 * timeout, retries of empty/transient failures, one concurrency limit shared by the run, and an output
 * cap. How calls are written and results inserted is its call format (`callFormat.ts`: ARPO's tags by
 * default, or Qwen's `<tool_call>` JSON). It does not parse calls itself nor isolate programs (`sandbox.ts`).
 */
import { Context, Effect, Layer, Result, Schema, Semaphore } from "effect"
import * as Events from "../events/Events.ts"
import { arpoTags, type CallFormat } from "./callFormat.ts"
import { ToolCrashed, type ToolError, ToolEmptyOutput, ToolTimeout } from "./errors.ts"
import * as Protocol from "./protocol.ts"
import type { MalformedCall, ToolCallRequest } from "./protocol.ts"
import type { Tool, ToolContext, ToolSource } from "./Tool.ts"

export type { MalformedCall, ToolCallRequest } from "./protocol.ts"

export type ToolOutcome = "ok" | "error" | "timeout" | "limit" | "malformed"

export interface ToolResult {
  readonly tool: string
  /** the text the model sees inside `<result>…</result>` */
  readonly output: string
  readonly outcome: ToolOutcome
  readonly attempts: number
  readonly toolMs: number
}

export class Toolbox extends Context.Service<Toolbox, {
  /** the tool names, which are also their tags (`search` → `<search>…</search>`) */
  readonly tools: ReadonlyArray<string>
  /** the strings that end a model segment with a call (`</search>`, `</python>`; `</tool_call>` in the Qwen format) */
  readonly stopTags: ReadonlyArray<string>
  /** calls allowed per trajectory, all tools together (ARPO `call_limit`) */
  readonly callLimit: number
  /** find the call that the text ends with (at a stop tag); `undefined` when it does not end with one */
  readonly parse: (text: string) => ToolCallRequest | MalformedCall | undefined
  /**
   * run one call; never fails (failures are result text with a non-"ok" outcome). A `MalformedCall`
   * (from `parse`) is answered with its text, outcome "malformed", and still counted as a call.
   */
  readonly run: (call: ToolCallRequest | MalformedCall) => Effect.Effect<ToolResult>
  /**
   * parse + call limit + run: the one step a rollout takes when a segment stopped. `undefined` when the
   * text does not end with a stop tag; outcome "limit" (the tool is not run) when `callsSoFar` has
   * reached `callLimit`.
   */
  readonly respond: (text: string, callsSoFar: number) => Effect.Effect<ToolResult | undefined>
  /** the text appended after the call: `" <result>\n" + output + "\n</result>"` by default (the call format's) */
  readonly formatResult: (output: string) => string
}>()("arpo/Toolbox") {
  /** A Toolbox over `tools`; tool sources that need services are built once, here. */
  static readonly layer = <E = never, R = never>(
    tools: ReadonlyArray<ToolSource<E, R>>,
    config: ToolboxOptions = {}
  ): Layer.Layer<Toolbox, E | InvalidToolboxConfig, R | Events.Events> =>
    Layer.effect(
      Toolbox,
      Effect.gen(function*() {
        const built: Array<Tool> = []
        for (const source of tools) built.push(Effect.isEffect(source) ? yield* source : source)
        return yield* make(built, config)
      })
    )
}

export const ToolboxConfig = Schema.Struct({
  /** wall-clock budget per attempt (reference: 120 s) */
  timeoutMs: Schema.Finite.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** attempts per call for empty output and transient request failures (reference `retry_count`: 3) */
  maxAttempts: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))),
  /** calls running at once across the whole run (reference `max_workers`: 64) */
  concurrency: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))),
  /** output characters the model sees; 0 = no cap (the reference has none) */
  outputCapChars: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0))),
  /** calls per trajectory, all tools together (reference `call_limit`: 5; reasoning script 3) */
  callLimit: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0))),
  resultOpen: Schema.String,
  resultClose: Schema.String
})
export type ToolboxConfig = typeof ToolboxConfig.Type

/**
 * The config fields (defaults filled in) and the call format. `resultOpen` / `resultClose` configure the
 * default format (`arpoTags`); with another `callFormat` they must be left out (the format has its own).
 */
export type ToolboxOptions = Partial<ToolboxConfig> & { readonly callFormat?: CallFormat }

export const defaultToolboxConfig: ToolboxConfig = {
  timeoutMs: 120_000,
  maxAttempts: 3,
  concurrency: 64,
  outputCapChars: 16_384,
  callLimit: 5,
  resultOpen: Protocol.trainingFormat.open,
  resultClose: Protocol.trainingFormat.close
}

export class InvalidToolboxConfig extends Schema.TaggedError<InvalidToolboxConfig>()("InvalidToolboxConfig", {
  reason: Schema.String
}) {
  override get message(): string {
    return `toolbox config: ${this.reason}`
  }
}

/** Which failures are worth another attempt: the reference retries empty output (and its search returns "" on HTTP errors). */
export const isRetryable = (error: ToolError): boolean =>
  error._tag === "ToolEmptyOutput" || error._tag === "ToolRequestFailed"

/** The text the model sees and the event outcome for a failure that used up its attempts. */
export const describeFailure = (tool: string, error: ToolError): { readonly output: string; readonly outcome: ToolOutcome } => {
  switch (error._tag) {
    case "ToolTimeout":
      return { output: Protocol.timeoutText(tool, error.afterMs), outcome: "timeout" }
    case "ToolEmptyOutput":
    case "ToolRequestFailed":
      return { output: Protocol.emptyOutputText(tool), outcome: "error" }
    case "ProgramFailed":
      return { output: error.stderr === "" ? `Error: exit code ${error.exitCode}` : error.stderr, outcome: "error" }
    case "ToolCrashed":
      return { output: Protocol.failureText(tool, error.reason), outcome: "error" }
    case "SandboxUnavailable":
      return { output: Protocol.failureText(tool, error.message), outcome: "error" }
  }
}

/** Builds a Toolbox over already-built tools. */
export const make = (
  tools: ReadonlyArray<Tool>,
  options: ToolboxOptions = {}
): Effect.Effect<Toolbox["Service"], InvalidToolboxConfig, Events.Events> =>
  Effect.gen(function*() {
    const { callFormat, ...partial } = options
    if (callFormat !== undefined && (partial.resultOpen !== undefined || partial.resultClose !== undefined)) {
      return yield* new InvalidToolboxConfig({
        reason: `resultOpen/resultClose configure the arpo-tags format; the ${callFormat.name} call format inserts results itself`
      })
    }
    const config = yield* Schema.decodeUnknownEffect(ToolboxConfig)({ ...defaultToolboxConfig, ...partial }).pipe(
      Effect.mapError((e) => new InvalidToolboxConfig({ reason: e.message }))
    )
    const byName = new Map<string, Tool>()
    for (const tool of tools) {
      if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(tool.name)) {
        return yield* new InvalidToolboxConfig({ reason: `tool name ${JSON.stringify(tool.name)} is not a valid tag name` })
      }
      if (byName.has(tool.name)) {
        return yield* new InvalidToolboxConfig({ reason: `two tools are named "${tool.name}"` })
      }
      byName.set(tool.name, tool)
    }
    const names = tools.map((t) => t.name)
    const events = yield* Events.Events
    const semaphore = yield* Semaphore.make(config.concurrency)
    const format: CallFormat = callFormat ?? arpoTags({ open: config.resultOpen, close: config.resultClose })

    const finish = (tool: string, input: string, started: number, r: Omit<ToolResult, "tool" | "toolMs">) =>
      Effect.gen(function*() {
        const result: ToolResult = { tool, toolMs: performance.now() - started, ...r }
        yield* events.emit({
          _tag: "tool.call",
          tool,
          outcome: result.outcome,
          attempts: result.attempts,
          inputChars: input.length,
          outputChars: result.output.length,
          toolMs: result.toolMs
        })
        return result
      })

    /** One attempt: the tool's run under its timeout; empty output is a failure; defects become ToolCrashed. */
    const attempt = (tool: Tool, input: string, context: ToolContext): Effect.Effect<string, ToolError> => {
      const afterMs = tool.timeoutMs ?? config.timeoutMs
      return Effect.suspend(() => tool.run(input, context)).pipe(
        Effect.catchDefect((defect) =>
          Effect.fail(new ToolCrashed({ tool: tool.name, input, reason: defect instanceof Error ? defect.message : String(defect) }))
        ),
        Effect.timeoutOrElse({
          duration: afterMs,
          orElse: () => Effect.fail(new ToolTimeout({ tool: tool.name, input, afterMs }))
        }),
        Effect.flatMap((out) =>
          out.trim() === "" ? Effect.fail(new ToolEmptyOutput({ tool: tool.name, input })) : Effect.succeed(out)
        )
      )
    }

    const runTool = (tool: Tool, input: string, context: ToolContext) =>
      Effect.gen(function*() {
        let attempts = 0
        for (;;) {
          attempts++
          const r = yield* Effect.result(attempt(tool, input, context))
          if (Result.isSuccess(r)) {
            return { output: Protocol.capOutput(r.success, config.outputCapChars), outcome: "ok" as const, attempts }
          }
          if (!isRetryable(r.failure) || attempts >= config.maxAttempts) {
            const d = describeFailure(tool.name, r.failure)
            return { output: Protocol.capOutput(d.output, config.outputCapChars), outcome: d.outcome, attempts }
          }
        }
      })

    const run = (call: ToolCallRequest | MalformedCall): Effect.Effect<ToolResult> =>
      Effect.gen(function*() {
        const started = performance.now()
        if (Protocol.isMalformed(call)) {
          return yield* finish(call.tool, "", started, { output: call.malformed, outcome: "malformed", attempts: 0 })
        }
        const tool = byName.get(call.tool)
        if (tool === undefined) {
          return yield* finish(call.tool, call.content, started, {
            output: Protocol.unknownToolText(call.tool, names),
            outcome: "malformed",
            attempts: 0
          })
        }
        const r = yield* Semaphore.withPermit(semaphore, runTool(tool, call.content, call.key === undefined ? {} : { key: call.key }))
        return yield* finish(call.tool, call.content, started, r)
      })

    const parse = (text: string) => format.parse(text, names)

    const respond = (text: string, callsSoFar: number): Effect.Effect<ToolResult | undefined> =>
      Effect.gen(function*() {
        const call = parse(text)
        if (call === undefined) return undefined
        if (callsSoFar >= config.callLimit) {
          const input = Protocol.isMalformed(call) ? "" : call.content
          return yield* finish(call.tool, input, performance.now(), {
            output: Protocol.callLimitText(call.tool),
            outcome: "limit",
            attempts: 0
          })
        }
        return yield* run(call)
      })

    return Toolbox.of({
      tools: names,
      stopTags: format.stopTags(names),
      callLimit: config.callLimit,
      parse,
      run,
      respond,
      formatResult: format.formatResult
    })
  })
