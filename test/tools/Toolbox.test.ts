import { describe, expect, it } from "vitest"
import { Effect, Exit, Layer } from "effect"
import * as Events from "../../src/events/Events.ts"
import { ToolRequestFailed } from "../../src/tools/errors.ts"
import type { Tool } from "../../src/tools/Tool.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"

const echo: Tool = { name: "echo", run: (s) => Effect.succeed(`echo: ${s}`) }

/** Runs `f` against a Toolbox over `tools` and returns its value and the recorded tool.call events. */
const withBox = <A>(
  tools: ReadonlyArray<Tool>,
  config: Parameters<typeof Toolbox.layer>[1],
  f: (box: Toolbox["Service"]) => Effect.Effect<A>
) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const value = yield* f(yield* Toolbox)
      const events = yield* Events.Events.use((e) => e.recorded)
      return { value, events: events.map((e) => e.event) }
    }).pipe(Effect.provide(Toolbox.layer(tools, config).pipe(Layer.provideMerge(Events.Events.layerMemory))))
  )

describe("Toolbox", () => {
  it("exposes tools, stop tags and the result format", async () => {
    const { value: box } = await withBox([echo, { ...echo, name: "other" }], {}, Effect.succeed)
    expect(box.tools).toEqual(["echo", "other"])
    expect(box.stopTags).toEqual(["</echo>", "</other>"])
    expect(box.formatResult("x")).toBe(" <result>\nx\n</result>")
    expect(box.parse("<echo> hi </echo>")).toEqual({ tool: "echo", content: "hi" })
  })

  it("runs a call and emits one tool.call event", async () => {
    const { events, value } = await withBox([echo], {}, (box) => box.run({ tool: "echo", content: "hi" }))
    expect(value).toMatchObject({ tool: "echo", output: "echo: hi", outcome: "ok", attempts: 1 })
    expect(events).toEqual([
      expect.objectContaining({ _tag: "tool.call", tool: "echo", outcome: "ok", attempts: 1, inputChars: 2, outputChars: 8 })
    ])
  })

  it("retries empty output up to maxAttempts, then answers with the reference text", async () => {
    let calls = 0
    const empty: Tool = { name: "python", run: () => Effect.sync(() => (calls++, "  \n")) }
    const { value } = await withBox([empty], { maxAttempts: 3 }, (box) => box.run({ tool: "python", content: "x=1" }))
    expect(calls).toBe(3)
    expect(value).toMatchObject({ output: "Tool(python) returned empty output.", outcome: "error", attempts: 3 })
  })

  it("retries transient request failures and succeeds when one attempt works", async () => {
    let calls = 0
    const flaky: Tool = {
      name: "search",
      run: (q) =>
        Effect.suspend(() =>
          ++calls < 3
            ? Effect.fail(new ToolRequestFailed({ tool: "search", input: q, endpoint: "http://x", reason: "503" }))
            : Effect.succeed("Page 1: ok")
        )
    }
    const { value } = await withBox([flaky], {}, (box) => box.run({ tool: "search", content: "q" }))
    expect(value).toMatchObject({ output: "Page 1: ok", outcome: "ok", attempts: 3 })
  })

  it("turns a slow call into a timeout result and goes on", async () => {
    const slow: Tool = { name: "slow", run: () => Effect.sleep("5 seconds").pipe(Effect.as("late")) }
    const started = Date.now()
    const { value } = await withBox([slow, echo], { timeoutMs: 100 }, (box) =>
      Effect.all([box.run({ tool: "slow", content: "x" }), box.run({ tool: "echo", content: "after" })]))
    expect(Date.now() - started).toBeLessThan(3000)
    expect(value[0]).toMatchObject({ outcome: "timeout", output: "Error: Tool(slow) timed out after 100 ms.", attempts: 1 })
    expect(value[1]).toMatchObject({ outcome: "ok", output: "echo: after" })
  })

  it("turns a defect in a tool into a crash result", async () => {
    const broken: Tool = { name: "broken", run: () => Effect.die(new Error("kaput")) }
    const { value } = await withBox([broken], {}, (box) => box.run({ tool: "broken", content: "x" }))
    expect(value).toMatchObject({ outcome: "error", output: "Error: Tool(broken) execution failed with message: kaput" })
  })

  it("answers malformed and unknown-tool calls without running anything", async () => {
    const { events, value } = await withBox([echo], {}, (box) =>
      Effect.all([
        box.run({ tool: "nope", content: "x" }),
        Effect.flatMap(Effect.sync(() => box.parse("<echo> </echo>")!), box.run)
      ]))
    expect(value[0]).toMatchObject({ outcome: "malformed", output: expect.stringContaining("unknown tool \"nope\"") })
    expect(value[1]).toMatchObject({ outcome: "malformed", output: expect.stringContaining("empty <echo></echo>") })
    expect(events.map((e) => e._tag === "tool.call" && e.outcome)).toEqual(["malformed", "malformed"])
  })

  it("respond: parses, enforces the call limit, and ignores text without a stop tag", async () => {
    const { events, value } = await withBox([echo], { callLimit: 2 }, (box) =>
      Effect.all([
        box.respond("<echo>a</echo>", 0),
        box.respond("<echo>b</echo>", 2),
        box.respond("<answer>1</answer>", 0)
      ]))
    expect(value[0]).toMatchObject({ outcome: "ok", output: "echo: a" })
    expect(value[1]).toMatchObject({ outcome: "limit", output: "The maximum echo limit is exceeded. You are not allowed to use echo." })
    expect(value[2]).toBeUndefined()
    expect(events).toHaveLength(2)
  })

  it("caps the output the model sees", async () => {
    const loud: Tool = { name: "loud", run: () => Effect.succeed("x".repeat(1000)) }
    const { value } = await withBox([loud], { outputCapChars: 100 }, (box) => box.run({ tool: "loud", content: "x" }))
    expect(value.output).toBe("x".repeat(100) + "\n… [output truncated: 900 more characters]")
  })

  it("never runs more calls at once than the concurrency limit, across all callers", async () => {
    let inFlight = 0
    let peak = 0
    const busy: Tool = {
      name: "busy",
      run: () =>
        Effect.acquireUseRelease(
          Effect.sync(() => {
            inFlight++
            peak = Math.max(peak, inFlight)
          }),
          () => Effect.sleep("20 millis").pipe(Effect.as("done")),
          () => Effect.sync(() => inFlight--)
        )
    }
    const { value } = await withBox([busy], { concurrency: 3 }, (box) =>
      Effect.all(Array.from({ length: 12 }, () => box.run({ tool: "busy", content: "x" })), { concurrency: "unbounded" }))
    expect(value.every((r) => r.outcome === "ok")).toBe(true)
    expect(peak).toBe(3)
  })

  it("rejects duplicate tool names and invalid config", async () => {
    const build = (tools: ReadonlyArray<Tool>, config: Parameters<typeof Toolbox.layer>[1]) =>
      Effect.runPromiseExit(
        Effect.provide(Effect.gen(function*() { return yield* Toolbox }), Toolbox.layer(tools, config).pipe(Layer.provide(Events.Events.layerDiscard)))
      )
    const dup = await build([echo, echo], {})
    expect(Exit.isFailure(dup) && String(dup.cause)).toContain("two tools are named \"echo\"")
    const bad = await build([echo], { maxAttempts: 0 })
    expect(Exit.isFailure(bad)).toBe(true)
  })
})
