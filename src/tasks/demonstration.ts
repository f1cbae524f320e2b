/**
 * SFT demonstrations as scripts: model text interleaved with tool calls whose results are inserted the
 * way the rollout runner inserts them (`" <result>\n" + output + "\n</result>"` after the closing call
 * tag). A script is rendered with a task's oracle tool outputs, or re-rendered through the run's real
 * Toolbox so the SFT text holds exactly what a rollout would see. It does not tokenize.
 */
import { Effect } from "effect"
import type { Key } from "../core/random.ts"
import { formatResult } from "../tools/protocol.ts"
import { Toolbox } from "../tools/Toolbox.ts"
import type { DemoQuality, DemoSegment, Demonstration, Problem } from "./Task.ts"

/** The training-time result insertion (ARPO_SPEC §4.2), the Toolbox's default `formatResult`. */
export const defaultFormatResult = (output: string): string => formatResult(output)

/** One step of a script: text the model writes, or a call (`<tool>content</tool>` plus its result). */
export type DemoStep =
  | { readonly text: string }
  | { readonly call: string; readonly content: string; readonly key?: Key }

export const say = (text: string): DemoStep => ({ text })
/** A call; `key` is its random key for tools whose results are random by design (the oracle and the Toolbox get it). */
export const call = (tool: string, content: string, key?: Key): DemoStep =>
  key === undefined ? { call: tool, content } : { call: tool, content, key }

/** How a script's tool calls get their output text. */
export interface ToolOracle {
  readonly run: (tool: string, content: string, key?: Key) => string
  readonly formatResult: (output: string) => string
}

/** Merges adjacent model text so a demonstration alternates model / tool segments. */
const pushModel = (segments: Array<DemoSegment>, text: string): void => {
  if (text.length === 0) return
  const last = segments[segments.length - 1]
  if (last !== undefined && last.role === "model") segments[segments.length - 1] = { role: "model", text: last.text + text }
  else segments.push({ role: "model", text })
}

/** Builds a demonstration from its segments: `response` is their concatenation, `text` the prompt + response. */
export const fromSegments = (
  problem: Problem,
  quality: DemoQuality,
  segments: ReadonlyArray<DemoSegment>
): Demonstration => {
  const response = segments.map((s) => s.text).join("")
  return { problem, quality, segments, response, text: problem.prompt + response }
}

/** Renders a script with an oracle: each call becomes `<tool>content</tool>` (model) + the formatted result (tool). */
export const renderScript = (
  problem: Problem,
  quality: DemoQuality,
  script: ReadonlyArray<DemoStep>,
  oracle: ToolOracle
): Demonstration => {
  const segments: Array<DemoSegment> = []
  for (const step of script) {
    if ("text" in step) pushModel(segments, step.text)
    else {
      pushModel(segments, `<${step.call}>${step.content}</${step.call}>`)
      segments.push({
        role: "tool",
        tool: step.call,
        content: step.content,
        text: oracle.formatResult(oracle.run(step.call, step.content, step.key)),
        ...(step.key === undefined ? {} : { key: step.key })
      })
    }
  }
  return fromSegments(problem, quality, segments)
}

/**
 * Re-renders a demonstration's tool results through the run's Toolbox (its tools and its result
 * format), keeping the model text. The model text after a result is kept as scripted, so a tool
 * whose output differs from the oracle's makes a demonstration that may no longer be correct:
 * compare `response` rewards before and after when switching tools.
 */
export const renderWithToolbox = (demo: Demonstration): Effect.Effect<Demonstration, never, Toolbox> =>
  Effect.gen(function*() {
    const toolbox = yield* Toolbox
    const segments: Array<DemoSegment> = []
    for (const s of demo.segments) {
      if (s.role === "model") segments.push(s)
      else {
        const result = yield* toolbox.run(s.key === undefined ? { tool: s.tool, content: s.content } : { tool: s.tool, content: s.content, key: s.key })
        segments.push({ ...s, text: toolbox.formatResult(result.output) })
      }
    }
    return fromSegments(demo.problem, demo.quality, segments)
  })

/** The qualities of imperfect demonstrations, drawn uniformly when a demonstration is imperfect. */
export const imperfectQualities: ReadonlyArray<Exclude<DemoQuality, "perfect">> = [
  "wrong-answer",
  "missing-tool",
  "wrong-query"
]

/** The quality of demonstration i from two uniform draws: imperfect with probability `share`. */
export const qualityOf = (share: number, u0: number, u1: number): DemoQuality =>
  u0 < share ? imperfectQualities[Math.min(2, Math.floor(u1 * 3))]! : "perfect"
