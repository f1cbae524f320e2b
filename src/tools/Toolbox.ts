/**
 * The Toolbox service: runs a tool call (tag + content) and turns every outcome, failures included,
 * into result text for the model plus a typed `tool.call` event. It never fails: a crashed, timed-out
 * or malformed call is still a result the trajectory continues with. Adapters (python sandbox, search,
 * calculator) are Layers; `protocol.ts` holds the pure tag parsing and formatting.
 */
import { Context, type Effect } from "effect"

/** A call found at a stop tag: `<tool>content</tool>`. */
export interface ToolCallRequest {
  readonly tool: string
  readonly content: string
}

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
  /** the closing tags that end a model segment with a call (`</search>`, `</python>`) */
  readonly stopTags: ReadonlyArray<string>
  /** find the call that the text ends with (at a stop tag); `undefined` when it does not end with one */
  readonly parse: (text: string) => ToolCallRequest | { readonly malformed: string } | undefined
  /** run one call; never fails (failures are result text with a non-"ok" outcome) */
  readonly run: (call: ToolCallRequest) => Effect.Effect<ToolResult>
  /** the text appended after the call: `" <result>\n" + output + "\n</result>"` by default */
  readonly formatResult: (output: string) => string
}>()("arpo/Toolbox") {}
