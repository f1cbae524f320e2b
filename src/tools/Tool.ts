/**
 * What one tool is to the Toolbox: a name (which is also its tag) and a `run` from the call's content
 * to output text, failing with a typed `ToolError`. Timeouts, retries, the concurrency limit, the output
 * cap and events are the Toolbox's job, not the tool's. Tools that need services (a sandbox, an HTTP
 * client) are built by an Effect that resolves them once (a `ToolSource`).
 */
import type { Effect } from "effect"
import type { Key } from "../core/random.ts"
import type { ToolError } from "./errors.ts"

/** What a tool may know about one call besides its input: the call's random key, when the caller has one. */
export interface ToolContext {
  readonly key?: Key
}

export interface Tool {
  /** the tool's name and tag: `python` → `<python>…</python>` */
  readonly name: string
  /** run one call; empty output is returned as `""` (the Toolbox decides it is a failure) */
  readonly run: (input: string, context?: ToolContext) => Effect.Effect<string, ToolError>
  /** this tool's wall-clock budget per attempt, overriding the Toolbox's `timeoutMs` */
  readonly timeoutMs?: number
}

/** A tool, or an Effect that builds one from services (resolved once when the Toolbox layer is built). */
export type ToolSource<E = never, R = never> = Tool | Effect.Effect<Tool, E, R>

/** The same tool under another name (e.g. the calculator answering `<python>` calls). */
export const renamed = (tool: Tool, name: string): Tool => ({ ...tool, name })
