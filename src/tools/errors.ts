/**
 * The typed failures of tool calls. Tools fail with these; the Toolbox turns each into result text for
 * the model and an outcome for the `tool.call` event (see `Toolbox.ts` `describeFailure`), so none of
 * them ever escapes a rollout. Each carries the facts a person needs: which tool, an input excerpt, why.
 */
import { Schema } from "effect"

/** The call ran longer than its wall-clock budget and was killed. */
export class ToolTimeout extends Schema.TaggedError<ToolTimeout>()("ToolTimeout", {
  tool: Schema.String,
  input: Schema.String,
  afterMs: Schema.Finite
}) {
  override get message(): string {
    return `tool ${this.tool}: timed out after ${this.afterMs} ms (input: ${excerpt(this.input)})`
  }
}

/** The tool itself broke (spawn failure, unexpected signal, an exception in its implementation). */
export class ToolCrashed extends Schema.TaggedError<ToolCrashed>()("ToolCrashed", {
  tool: Schema.String,
  input: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `tool ${this.tool}: crashed: ${this.reason} (input: ${excerpt(this.input)})`
  }
}

/** The program the model wrote ran and failed (non-zero exit, a Python traceback, a calculator error). */
export class ProgramFailed extends Schema.TaggedError<ProgramFailed>()("ProgramFailed", {
  tool: Schema.String,
  input: Schema.String,
  exitCode: Schema.Int,
  /** what the model sees: the program's stderr (trimmed), as the reference returns it */
  stderr: Schema.String
}) {
  override get message(): string {
    return `tool ${this.tool}: program exited with code ${this.exitCode}: ${excerpt(this.stderr)}`
  }
}

/** The tool produced nothing (the reference treats this as a failure and retries). */
export class ToolEmptyOutput extends Schema.TaggedError<ToolEmptyOutput>()("ToolEmptyOutput", {
  tool: Schema.String,
  input: Schema.String
}) {
  override get message(): string {
    return `tool ${this.tool}: empty output (input: ${excerpt(this.input)})`
  }
}

/** A remote backend (HTTP search API) answered with an error or not at all; transient, retried. */
export class ToolRequestFailed extends Schema.TaggedError<ToolRequestFailed>()("ToolRequestFailed", {
  tool: Schema.String,
  input: Schema.String,
  endpoint: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `tool ${this.tool}: request to ${this.endpoint} failed: ${this.reason} (input: ${excerpt(this.input)})`
  }
}

/**
 * The operating system cannot provide the sandbox (no namespaces, no unprivileged user, a missing
 * binary), or the in-child check found it not in effect. Model code is never run in that case.
 */
export class SandboxUnavailable extends Schema.TaggedError<SandboxUnavailable>()("SandboxUnavailable", {
  reason: Schema.String
}) {
  override get message(): string {
    return `python sandbox unavailable: ${this.reason}`
  }
}

/** A search cache file could not be read or is not a JSON object of query → result string. */
export class SearchCacheUnreadable extends Schema.TaggedError<SearchCacheUnreadable>()("SearchCacheUnreadable", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `search cache ${this.path}: ${this.reason}`
  }
}

export type ToolError = ToolTimeout | ToolCrashed | ProgramFailed | ToolEmptyOutput | ToolRequestFailed | SandboxUnavailable

/** The first `n` characters of a text on one line, for messages. */
export const excerpt = (text: string, n = 80): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length <= n ? JSON.stringify(flat) : JSON.stringify(flat.slice(0, n) + "…")
}
