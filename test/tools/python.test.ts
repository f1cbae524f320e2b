import { Effect, Layer, Schema } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as Events from "../../src/events/Events.ts"
import * as Python from "../../src/tools/python.ts"
import { Sandbox } from "../../src/tools/sandbox.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { leftoversAfter, makeHarness, unavailableReason } from "./sandboxHarness.ts"

const skip = await unavailableReason()

describe.skipIf(skip !== undefined)("python tool (sandboxed): normal programs", () => {
  const h = makeHarness({ timeoutMs: 15_000 }, { timeoutMs: 20_000 })
  afterAll(() => h.runtime.dispose())

  it("prints", async () => {
    expect(await h.python("print('hello')")).toMatchObject({ outcome: "ok", output: "hello", attempts: 1 })
  })

  it("prints the last bare expression, and does not print a last print twice", async () => {
    expect((await h.python("x = 6\nprint('x is', x)\nx * 7")).output).toBe("x is 6\n42")
    expect((await h.python("print(1)")).output).toBe("1")
    expect((await h.python("def f(a):\n    return a + 1\nf(2)")).output).toBe("3")
  })

  it("answers a failing program with its stderr", async () => {
    const r = await h.python("def f():\n    return 1 / 0\nf()")
    expect(r.outcome).toBe("error")
    expect(r.output).toMatch(/^Traceback \(most recent call last\):/)
    expect(r.output).toContain("File \"<string>\", line 2, in f")
    expect(r.output).toMatch(/ZeroDivisionError: division by zero$/)
    expect((await h.python("x = (")).output).toMatch(/SyntaxError/)
  })

  it("treats empty output as an error, after the reference's 3 attempts", async () => {
    expect(await h.python("x = 1")).toMatchObject({
      outcome: "error",
      output: "Tool(python) returned empty output.",
      attempts: 3
    })
  })

  it("computes with big integers", async () => {
    expect((await h.python("2**521 - 1")).output).toBe(String(2n ** 521n - 1n))
    expect((await h.python("import math\nmath.factorial(30)")).output).toBe("265252859812191058636308480000000")
  })

  it("runs as nobody, in a clean environment, in its own scratch directory", async () => {
    const r = await h.python(
      "import os\nopen('note.txt', 'w').write('kept')\nprint(os.getuid(), os.getgid(), os.getcwd(), open('note.txt').read())\nsorted(os.environ)"
    )
    expect(r.output.split("\n")[0]).toBe("65534 65534 /scratch kept")
    expect(r.output.split("\n")[1]).toBe(
      "['ARPO_SANDBOX_RUN', 'HOME', 'LANG', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'PYTHONIOENCODING', 'TMPDIR']"
    )
    // the next run does not see the previous run's files
    expect((await h.python("import os\nos.listdir('.')")).output).toBe("[]")
  })

  it("runs several programs at once", async () => {
    const rs = await Promise.all([1, 2, 3, 4].map((i) => h.python(`${i} * 111`)))
    expect(rs.map((r) => r.output)).toEqual(["111", "222", "333", "444"])
  })

  it("leaves nothing behind", async () => {
    expect(h.spawned.length).toBeGreaterThan(5)
    expect(await leftoversAfter(h.spawned)).toEqual([])
  })
})

describe.skipIf(skip !== undefined)("python tool from its config", () => {
  const run = (config: Python.PythonToolConfig, code: string) =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function*() {
          const tool = yield* Python.fromConfig(config)
          return yield* Effect.result(tool.run(code))
        })
      )
    )

  it("runs python3 in the sandbox by default, and the calculator when the config says so", async () => {
    const sandboxed = await run({ sandbox: { prestart: 1, timeoutMs: 15_000 } }, "import sys\nprint(sys.version_info[0], 6 * 7)")
    expect(sandboxed).toMatchObject({ _tag: "Success", success: "3 42" })
    // the calculator has no modules: the same program is an error, while arithmetic works, without a process
    const calculator = await run({ runner: "calculator" }, "import sys\nprint(sys.version_info[0], 6 * 7)")
    expect(calculator._tag).toBe("Failure")
    expect(await run({ runner: "calculator", name: "python" }, "6 * 7")).toMatchObject({ _tag: "Success", success: "42" })
  })

  it("as a plain Tool for the tool registry: settings default to the sandbox's, and the tool works at once", async () => {
    const decoded = Schema.decodeUnknownSync(Python.SandboxedPythonConfig)({ timeoutMs: 15_000, prestart: 1 })
    expect(decoded).toMatchObject({ timeoutMs: 15_000, prestart: 1, cpuSeconds: 11, memoryBytes: 512 * 1024 * 1024 })
    expect(Schema.decodeUnknownSync(Python.SandboxedPythonConfig)({}).prestart).toBe(8)
    const tool = Python.toolNow(decoded, "python")
    expect(await Effect.runPromise(tool.run("sum(range(10))"))).toBe("45")
    const failing = Python.toolNow({ python: "/nonexistent/python3" })
    const r = await Effect.runPromise(Effect.result(failing.run("1")))
    expect(r._tag === "Failure" && r.failure._tag).toBe("SandboxUnavailable")
  })

  it("an invalid config is a SandboxUnavailable naming the field", async () => {
    const bad = await Effect.runPromise(Effect.result(Python.fromConfig({ sandbox: { timeoutMs: -1 } })))
    expect(bad._tag).toBe("Failure")
    if (bad._tag === "Failure") {
      expect(bad.failure._tag).toBe("SandboxUnavailable")
      expect(bad.failure.message).toMatch(/timeoutMs/)
    }
  })
})

describe("python tool without a sandbox", () => {
  it("answers every call with the reason, and never runs the code unsandboxed", async () => {
    const layer = Toolbox.layer([Python.tool()]).pipe(
      Layer.provide(Sandbox.layerOrUnavailable({ python: "/nonexistent/python3" })),
      Layer.provideMerge(Events.Events.layerMemory)
    )
    const r = await Effect.runPromise(Toolbox.use((b) => b.run({ tool: "python", content: "print(1)" })).pipe(Effect.provide(layer)))
    expect(r.outcome).toBe("error")
    expect(r.output).toMatch(/^Error: Tool\(python\) execution failed with message: python sandbox unavailable: /)
  })
})
