/**
 * Call formats: how a model asks for a tool and how the result is put back into its context. `arpoTags`
 * is ARPO's tag protocol (`<python>…</python>`, result ` <result>\n…\n</result>`; protocol.ts);
 * `qwenToolCall` is the Qwen-family `<tool_call>{"name", "arguments"}</tool_call>` format with the result
 * as a `<tool_response>` user turn of the chat template. Pure functions; the Toolbox runs the calls.
 */
import { Effect, Schema } from "effect"
import type { ChatMessage, ToolSchema } from "../core/text.ts"
import * as Protocol from "./protocol.ts"
import type { MalformedCall, ResultFormat, ToolCallRequest } from "./protocol.ts"

export interface CallFormat {
  readonly name: string
  /** strings that end a model segment with a call (stop strings; stop tokens where the tokenizer has them as one token) */
  readonly stopTags: (tools: ReadonlyArray<string>) => ReadonlyArray<string>
  /** the call the text ends with (at a stop tag): `undefined` when it does not end with one; malformed calls carry their text */
  readonly parse: (text: string, tools: ReadonlyArray<string>) => ToolCallRequest | MalformedCall | undefined
  /** the text inserted after a call: the tool's output wrapped for the model */
  readonly formatResult: (output: string) => string
  /** the text of a well-formed call of `tool` with `content` (demonstrations, scripted models, tests) */
  readonly formatCall: (tool: string, content: string) => string
}

/** The names a run config may give a call format. */
export const CallFormatName = Schema.Literals(["arpo-tags", "qwen-tool-call"])
export type CallFormatName = typeof CallFormatName.Type

// ---- ARPO tags ----

/** ARPO's tag protocol, exactly as protocol.ts defines it (the default everywhere). */
export const arpoTags = (result: ResultFormat = Protocol.trainingFormat): CallFormat => ({
  name: "arpo-tags",
  stopTags: Protocol.stopTags,
  parse: Protocol.findCall,
  formatResult: (output) => Protocol.formatResult(output, result),
  formatCall: (tool, content) => `${Protocol.openTag(tool)}${content}${Protocol.closeTag(tool)}`
})

// ---- Qwen <tool_call> ----

export const toolCallOpen = "<tool_call>"
export const toolCallClose = "</tool_call>"

/** A tool's signature in the JSON call format: its one string argument (`python` → `code`). */
export interface ToolSignature {
  readonly name: string
  readonly description: string
  /** the argument the tool's input is passed in */
  readonly argument: string
  readonly argumentDescription: string
}

/** Signatures of arpo's tools (the calculator answers `python`, so it takes `code` too). */
export const defaultSignatures: ReadonlyArray<ToolSignature> = [
  {
    name: "python",
    description: "Run a Python program and return what it prints.",
    argument: "code",
    argumentDescription: "the program; print the values you need"
  },
  {
    name: "search",
    description: "Search the knowledge base and return the best matching passages.",
    argument: "query",
    argumentDescription: "what to search for"
  }
]

/** The JSON schemas a chat template lists under `tools` (pass to `hfTokenizer.load(dir, { tools })`). */
export const toolSchemas = (signatures: ReadonlyArray<ToolSignature>): ReadonlyArray<ToolSchema> =>
  signatures.map((s) => ({
    type: "function",
    function: {
      name: s.name,
      description: s.description,
      parameters: {
        type: "object",
        properties: { [s.argument]: { type: "string", description: s.argumentDescription } },
        required: [s.argument]
      }
    }
  }))

/**
 * The insertion after a call as Qwen2.5-style templates render it: the assistant turn closed after
 * `</tool_call>`, the result as a user turn of one `<tool_response>` block, then the generation prompt.
 */
export const qwenResultFormat: ResultFormat = {
  open: "<|im_end|>\n<|im_start|>user\n<tool_response>\n",
  close: "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
}

/** What the model sees for a call it did not form correctly (the tag protocol's wording, for this format). */
export const qwenMalformedText = (why: string): string =>
  `Error: malformed tool call (${why}). Write ${toolCallOpen}{"name": <tool name>, "arguments": {<argument>: <string>}}${toolCallClose} with valid JSON.`

/** JSON with the separators Python's `json.dumps` and chat templates' `tojson` use (`", "`, `": "`). */
const pyJson = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(pyJson).join(", ")}]`
  if (typeof value === "object" && value !== null) {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyJson(v)}`).join(", ")}}`
  }
  return JSON.stringify(value)
}

const nameIn = (body: string): string | undefined => /"name"\s*:\s*"([A-Za-z_][A-Za-z0-9_-]*)"/.exec(body)?.[1]

export interface QwenToolCallOptions {
  /** the insertion around a result (default `qwenResultFormat`; derive it from a template with `resultFormatFromTemplate`) */
  readonly result?: ResultFormat
  /** argument names of tools (default `defaultSignatures`); a tool without one takes its only string argument */
  readonly signatures?: ReadonlyArray<ToolSignature>
}

/**
 * The Qwen-family format: a call is `<tool_call>{"name": "python", "arguments": {"code": "…"}}</tool_call>`
 * (whitespace around the JSON allowed), generation stops at `</tool_call>`, and the result is inserted
 * with `result` (by default the Qwen2.5 user turn). The tool's input is the string value of its argument
 * (`arguments` may also be a JSON-encoded string of the object, as OpenAI-style models write it).
 * Not JSON, no `name`, no `arguments` object, or no string argument: a malformed call; an unknown name
 * goes to the Toolbox, which answers it with its unknown-tool text.
 */
export const qwenToolCall = (options: QwenToolCallOptions = {}): CallFormat => {
  const result = options.result ?? qwenResultFormat
  const signatures = new Map((options.signatures ?? defaultSignatures).map((s) => [s.name, s]))
  const malformed = (tool: string, why: string): MalformedCall => ({ tool, malformed: qwenMalformedText(why) })

  const parse = (text: string, tools: ReadonlyArray<string>): ToolCallRequest | MalformedCall | undefined => {
    const end = text.trimEnd()
    if (!end.endsWith(toolCallClose)) return undefined
    const close = end.length - toolCallClose.length
    const open = end.lastIndexOf(toolCallOpen, close)
    if (open < 0) return malformed("tool_call", `no ${toolCallOpen} before ${toolCallClose}`)
    const body = end.slice(open + toolCallOpen.length, close).trim()
    if (body === "") return malformed("tool_call", `empty ${toolCallOpen}${toolCallClose}`)
    let call: unknown
    try {
      call = JSON.parse(body)
    } catch (e) {
      return malformed(nameIn(body) ?? "tool_call", `not valid JSON: ${e instanceof Error ? e.message : String(e)}`)
    }
    if (typeof call !== "object" || call === null || Array.isArray(call)) return malformed("tool_call", "the call is not a JSON object")
    const c = call as Record<string, unknown>
    const name = c["name"]
    if (typeof name !== "string" || name === "") return malformed("tool_call", `no "name" string`)
    let args = c["arguments"]
    if (typeof args === "string") {
      try {
        args = JSON.parse(args)
      } catch {
        return malformed(name, `"arguments" is a string that is not a JSON object`)
      }
    }
    if (typeof args !== "object" || args === null || Array.isArray(args)) return malformed(name, `no "arguments" object`)
    const a = args as Record<string, unknown>
    // an unknown tool: the Toolbox answers with the list of tools it has
    if (!tools.includes(name)) return { tool: name, content: pyJson(a) }
    const signature = signatures.get(name)
    const key = signature?.argument ?? (() => {
      const strings = Object.keys(a).filter((k) => typeof a[k] === "string")
      return strings.length === 1 ? strings[0] : undefined
    })()
    if (key === undefined) return malformed(name, `"arguments" of ${name} must hold exactly one string`)
    const value = a[key]
    if (typeof value !== "string") return malformed(name, `"arguments" of ${name} has no string "${key}"`)
    if (value.trim() === "") return malformed(name, `"${key}" of ${name} is empty`)
    return { tool: name, content: value }
  }

  return {
    name: "qwen-tool-call",
    stopTags: () => [toolCallClose],
    parse,
    formatResult: (output) => Protocol.formatResult(output, result),
    formatCall: (tool, content) =>
      `${toolCallOpen}\n${pyJson({ name: tool, arguments: { [signatures.get(tool)?.argument ?? "input"]: content } })}\n${toolCallClose}`
  }
}

/** The call format of a name, with default options. */
export const callFormatOf = (name: CallFormatName): CallFormat => name === "arpo-tags" ? arpoTags() : qwenToolCall()

// ---- deriving the result insertion from a chat template ----

/** A chat template did not render a tool result in a way a result format can be cut from. */
export class ResultFormatUnderivable extends Schema.TaggedError<ResultFormatUnderivable>()("ResultFormatUnderivable", {
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot derive the tool-result insertion from the chat template: ${this.reason}`
  }
}

const sentinel = "ARPO_TOOL_OUTPUT_7f3a"

/**
 * The result insertion a chat template produces (the fixed-base trick of SkyRL / verl, REAL_BACKENDS.md §2):
 * render a fixed conversation [system, user, assistant calling a tool, tool message holding a sentinel]
 * with the generation prompt, keep what follows the call's `</tool_call>`, and split it at the sentinel.
 * The text before the sentinel closes the assistant turn and opens the tool turn; the text after it closes
 * the tool turn and opens the next assistant turn. For Qwen2.5 templates this is `qwenResultFormat`.
 */
export const resultFormatFromTemplate = (
  render: (messages: ReadonlyArray<ChatMessage>, options: { readonly addGenerationPrompt: boolean }) => string,
  tool = "python"
): Effect.Effect<ResultFormat, ResultFormatUnderivable> =>
  Effect.gen(function*() {
    const base: ReadonlyArray<ChatMessage> = [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "Compute 1 + 1." },
      { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: tool, arguments: { code: "print(1 + 1)" } } }] },
      { role: "tool", content: sentinel, name: tool }
    ]
    const text = yield* Effect.try({
      try: () => render(base, { addGenerationPrompt: true }),
      catch: (e) => new ResultFormatUnderivable({ reason: `the template failed: ${e instanceof Error ? e.message : String(e)}` })
    })
    const at = text.indexOf(sentinel)
    if (at < 0 || text.indexOf(sentinel, at + 1) >= 0) {
      return yield* new ResultFormatUnderivable({ reason: "the tool message's content does not appear exactly once" })
    }
    const call = text.lastIndexOf(toolCallClose, at)
    if (call < 0) return yield* new ResultFormatUnderivable({ reason: `no ${toolCallClose} before the tool message (the template does not render tool_calls as <tool_call>)` })
    return { open: text.slice(call + toolCallClose.length, at), close: text.slice(at + sentinel.length) }
  })
