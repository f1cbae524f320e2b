/**
 * The sandboxed Python tool as the tool registry's "python" entry: its settings decode with defaults, and
 * the tool it builds runs real python3 in the sandbox (a run config names it with `tools.tags.python`).
 */
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { tools } from "../../src/experiment/registries.ts"
import * as Python from "../../src/tools/python.ts"
import { unavailableReason } from "./sandboxHarness.ts"

const skip = await unavailableReason()

describe.skipIf(skip !== undefined)("the tool registry's python entry", () => {
  it("decodes its settings with defaults and answers with real Python from the sandbox", async () => {
    const entry = tools.find((t) => t.name === "python")
    expect(entry).toBeDefined()
    expect(entry!.config).toBe(Python.SandboxedPythonConfig)
    const settings = Schema.decodeUnknownSync(Python.SandboxedPythonConfig)({ prestart: 1, timeoutMs: 15_000 })
    expect(settings).toMatchObject({ prestart: 1, timeoutMs: 15_000, cpuSeconds: 11 })
    const tool = entry!.layer(settings, { run: undefined as never, task: undefined as never, tag: "python" })
    expect(tool.name).toBe("python")
    // a module the calculator does not have, and an exact big integer
    expect(await Effect.runPromise(tool.run("import fractions\nfractions.Fraction(1, 3) + fractions.Fraction(1, 6)"))).toBe("1/2")
  })
})
