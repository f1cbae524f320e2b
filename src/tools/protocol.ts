/**
 * The tag protocol, as pure functions: which closing tags stop generation, how the call is found at a
 * stop tag (the content between the LAST `<tag>` and the LAST `</tag>`, trimmed — ARPO_SPEC §4.2),
 * the texts the model sees for malformed calls, the call limit and failures, and how a result is
 * inserted (`" <result>\n" + output + "\n</result>"` in training). No I/O, no services.
 */
import type { Key } from "../core/random.ts"

/** A call found at a stop tag: `<tool>content</tool>`. */
export interface ToolCallRequest {
  readonly tool: string
  readonly content: string
  /**
   * the call's random key (the rollout runner derives it from the segment's key), for tools whose
   * results are random by design (a flaky calculator, a noisy search); deterministic tools ignore it
   */
  readonly key?: Key
}

/** A stop tag was reached but no usable call precedes it; `text` is what the model is shown. */
export interface MalformedCall {
  readonly tool: string
  readonly malformed: string
}

export interface ResultFormat {
  /** inserted before the output; training: `" <result>\n"`, evaluation: `"<result>"` */
  readonly open: string
  /** inserted after the output; training: `"\n</result>"`, evaluation: `"</result>"` */
  readonly close: string
}

/** Training insertion (ARPO_SPEC §4.2): note the leading space and the newlines. */
export const trainingFormat: ResultFormat = { open: " <result>\n", close: "\n</result>" }
/** Evaluation insertion (`evaluation/src/sample_processor.py`). */
export const evaluationFormat: ResultFormat = { open: "<result>", close: "</result>" }

export const openTag = (tool: string): string => `<${tool}>`
export const closeTag = (tool: string): string => `</${tool}>`

/** The stop strings for a set of tools, in the tools' order. */
export const stopTags = (tools: ReadonlyArray<string>): ReadonlyArray<string> => tools.map(closeTag)

/**
 * The call the text ends with: `undefined` when the text (ignoring trailing whitespace) does not end
 * with one of the tools' closing tags; a `MalformedCall` when the closing tag has no opening tag before
 * it or the content is empty; else the call. When several tools' closing tags match (one tag a suffix of
 * another), the longest wins.
 */
export const findCall = (
  text: string,
  tools: ReadonlyArray<string>
): ToolCallRequest | MalformedCall | undefined => {
  const end = text.trimEnd()
  let tool: string | undefined
  for (const t of tools) {
    if (end.endsWith(closeTag(t)) && (tool === undefined || t.length > tool.length)) tool = t
  }
  if (tool === undefined) return undefined
  const close = end.length - closeTag(tool).length
  const open = end.lastIndexOf(openTag(tool), close)
  if (open < 0) return { tool, malformed: malformedText(tool, `no ${openTag(tool)} before ${closeTag(tool)}`) }
  const content = end.slice(open + openTag(tool).length, close).trim()
  if (content === "") return { tool, malformed: malformedText(tool, `empty ${openTag(tool)}${closeTag(tool)}`) }
  return { tool, content }
}

export const isMalformed = (call: ToolCallRequest | MalformedCall): call is MalformedCall => "malformed" in call

/** What the model sees for a call it did not form correctly. */
export const malformedText = (tool: string, why: string): string =>
  `Error: malformed ${tool} call (${why}). Write ${openTag(tool)}…${closeTag(tool)} with non-empty content.`

/** What the model sees for a call to a tool that does not exist. */
export const unknownToolText = (tool: string, known: ReadonlyArray<string>): string =>
  `Error: unknown tool "${tool}". Available tools: ${known.join(", ")}.`

/** What the model sees past the per-trajectory call limit (the evaluation code's wording). */
export const callLimitText = (tool: string): string =>
  `The maximum ${tool} limit is exceeded. You are not allowed to ${tool === "search" ? "search" : `use ${tool}`}.`

/** The reference's text when every attempt returned nothing. */
export const emptyOutputText = (tool: string): string => `Tool(${tool}) returned empty output.`

/** The reference's text when a tool raised. */
export const failureText = (tool: string, message: string): string =>
  `Error: Tool(${tool}) execution failed with message: ${message}`

/** What the model sees when the call ran out of time. */
export const timeoutText = (tool: string, afterMs: number): string =>
  `Error: Tool(${tool}) timed out after ${afterMs} ms.`

/** The text inserted after a call. */
export const formatResult = (output: string, format: ResultFormat = trainingFormat): string =>
  format.open + output + format.close

/**
 * At most `maxChars` characters of `output`, with a note of how much was cut (so the model knows the
 * output is partial). `maxChars` ≤ 0 means no cap.
 */
export const capOutput = (output: string, maxChars: number): string => {
  if (maxChars <= 0 || output.length <= maxChars) return output
  return `${output.slice(0, maxChars)}\n… [output truncated: ${output.length - maxChars} more characters]`
}
