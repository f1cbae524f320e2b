import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import * as Calculator from "../../src/tools/calculator.ts"
import * as Events from "../../src/events/Events.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"

const ev = (src: string) => Calculator.evaluate(src)

describe("calculator", () => {
  it("does exact big-integer arithmetic", () => {
    expect(ev("123456789123456789 * 987654321987654321")).toBe("121932631356500531347203169112635269")
    expect(ev("2**200")).toBe("1606938044258990275541962092341162602522202993782792835301376")
    expect(ev("(10**30 + 7) % 97")).toBe(String((10n ** 30n + 7n) % 97n))
  })

  it("follows Python's operator semantics", () => {
    expect(ev("-7 // 2")).toBe("-4")
    expect(ev("-7 % 3")).toBe("2")
    expect(ev("7 % -3")).toBe("-2")
    expect(ev("-2**2")).toBe("-4")
    expect(ev("2**3**2")).toBe("512")
    expect(ev("6 / 3")).toBe("2.0")
    expect(ev("1 / 3")).toBe("0.3333333333333333")
    expect(ev("0.1 + 0.2")).toBe("0.30000000000000004")
    expect(ev("2**-1")).toBe("0.5")
    expect(ev("1e16")).toBe("1e+16")
    expect(ev("0.00001")).toBe("1e-05")
    expect(ev("10**40 / 10**20")).toBe("1e+20")
    expect(ev("round(2.5)")).toBe("2")
    expect(ev("1_000 * 3")).toBe("3000")
  })

  it("has variables, print, functions, and prints the last bare expression", () => {
    expect(ev("x = 12\ny = x * 3\nprint(x, y)\ny + 1")).toBe("12 36\n37")
    expect(ev("import math\nmath.factorial(20)")).toBe("2432902008176640000")
    expect(ev("max(3, 9, 4); min(2.5, 1)")).toBe("1")
    expect(ev("pow(3, 200, 1000007)")).toBe(String(3n ** 200n % 1000007n))
    expect(ev("math.gcd(84, 36); math.comb(50, 25)")).toBe("126410606437752")
    expect(ev("math.isqrt(10**20 + 1)")).toBe("10000000000")
    expect(ev("x = 5")).toBe("")
  })

  it("fails with Python-like messages instead of evaluating anything else", () => {
    expect(() => ev("1 / 0")).toThrow("ZeroDivisionError: division by zero")
    expect(() => ev("__import__('os')")).toThrow(/SyntaxError|NameError/)
    expect(() => ev("open(1)")).toThrow("NameError: name 'open' is not defined")
    expect(() => ev("2 +")).toThrow("SyntaxError")
    expect(() => ev("10 ** 10 ** 10")).toThrow("OverflowError")
    expect(() => ev("'a' * 3")).toThrow("SyntaxError")
  })

  it("answers <python> calls through a Toolbox, errors as result text", async () => {
    const r = await Effect.runPromise(
      Effect.gen(function*() {
        const box = yield* Toolbox
        return [
          yield* box.run({ tool: "python", content: "print(17 ** 30)" }),
          yield* box.run({ tool: "python", content: "1 // 0" }),
          yield* box.run({ tool: "python", content: "y = 2" })
        ]
      }).pipe(Effect.provide(Toolbox.layer([Calculator.tool({ name: "python" })])), Effect.provide(Events.Events.layerMemory))
    )
    expect(r[0]).toMatchObject({ outcome: "ok", output: String(17n ** 30n) })
    expect(r[1]).toMatchObject({ outcome: "error", output: "ZeroDivisionError: integer division or modulo by zero" })
    expect(r[2]).toMatchObject({ outcome: "error", output: "Tool(python) returned empty output.", attempts: 3 })
  })
})
