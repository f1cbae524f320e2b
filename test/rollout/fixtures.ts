/**
 * Test fixtures for the samplers: a scripted Toolbox (echo, with optional failures, hangs, crashes
 * and keyed delays) and the layer stack Sampler ← Engine (scripted) + Toolbox + Events (memory).
 */
import { Effect, Layer } from "effect"
import { derive, root, uniform } from "../../src/core/random.ts"
import type { Engine } from "../../src/engine/Engine.ts"
import { Events } from "../../src/events/Events.ts"
import type { Sampler } from "../../src/rollout/Sampler.ts"
import { layerScripted, type ScriptedEngineOptions } from "../../src/engine/scripted.ts"
import * as Protocol from "../../src/tools/protocol.ts"
import { type ToolCallRequest, Toolbox, type ToolResult } from "../../src/tools/Toolbox.ts"

export interface TestToolboxOptions {
  readonly tools?: ReadonlyArray<string>
  /** how a call behaves, from its content: ok (echo), error, hang (never answers), die (defect) */
  readonly behaviour?: (call: ToolCallRequest) => "ok" | "error" | "hang" | "die"
  /** a keyed real-time delay (ms) per call, to scramble completion order */
  readonly delayMs?: (call: ToolCallRequest) => number
}

export const testToolbox = (options: TestToolboxOptions = {}): Toolbox["Service"] => {
  const tools = options.tools ?? ["search"]
  const run = (call: ToolCallRequest | Protocol.MalformedCall): Effect.Effect<ToolResult> => {
    if (Protocol.isMalformed(call)) {
      return Effect.succeed({ tool: call.tool, output: call.malformed, outcome: "malformed", attempts: 0, toolMs: 0 })
    }
    const mode = options.behaviour?.(call) ?? "ok"
    const delay = options.delayMs?.(call) ?? 0
    const body: Effect.Effect<ToolResult> = mode === "hang"
      ? Effect.never
      : mode === "die"
      ? Effect.die(new Error(`tool ${call.tool} crashed`))
      : Effect.succeed({
        tool: call.tool,
        output: mode === "ok" ? `found ${call.content}` : `Error: ${call.tool} failed`,
        outcome: mode === "ok" ? "ok" : "error",
        attempts: 1,
        toolMs: delay
      })
    return delay > 0 ? Effect.sleep(delay).pipe(Effect.andThen(body)) : body
  }
  return Toolbox.of({
    tools,
    stopTags: Protocol.stopTags(tools),
    callLimit: 99,
    parse: (text) => Protocol.findCall(text, tools),
    run,
    respond: (text) => {
      const call = Protocol.findCall(text, tools)
      return call === undefined ? Effect.succeed(undefined) : run(call)
    },
    formatResult: (output) => Protocol.formatResult(output)
  })
}

/** A delay in [0, maxMs) keyed by the call content. */
export const keyedDelay = (seed: number, maxMs: number) => (call: ToolCallRequest): number =>
  Math.floor(uniform(derive(root(seed), "delay", call.content), 0) * maxMs)

/** Sampler layer over a scripted engine, a test toolbox and in-memory events (Events is also exposed). */
export const stack = (
  sampler: Layer.Layer<Sampler, unknown, Engine | Toolbox | Events>,
  engine: ScriptedEngineOptions = {},
  toolbox: TestToolboxOptions = {}
) =>
  Layer.provideMerge(
    sampler,
    Layer.mergeAll(layerScripted(engine), Layer.succeed(Toolbox, testToolbox(toolbox)), Events.layerMemory)
  )
