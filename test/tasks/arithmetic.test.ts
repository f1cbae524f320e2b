import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import { Events } from "../../src/events/Events.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { renderWithToolbox } from "../../src/tasks/demonstration.ts"
import { byteTokenizer } from "../../src/model/tokenizer.ts"
import { evaluate } from "../../src/tools/calculator.ts"
import { findCall, formatResult, isMalformed } from "../../src/tools/protocol.ts"
import * as Arithmetic from "../../src/tasks/arithmetic.ts"
import { Task } from "../../src/tasks/Task.ts"

const bytes = (s: string) => new TextEncoder().encode(s).length
const task = Arithmetic.make({ seed: 1 })
const getTask = Effect.gen(function*() {
  return yield* Task
})

describe("arithmetic task", () => {
  it("is deterministic: the same seed gives the same problems and demonstrations", () => {
    const again = Arithmetic.make({ seed: 1 })
    assert.deepStrictEqual(task.problems("train", { start: 0, count: 50 }), again.problems("train", { start: 0, count: 50 }))
    assert.deepStrictEqual(task.demonstrations("train", { start: 7, count: 20 }), again.demonstrations("train", { start: 7, count: 20 }))
    // problem i does not depend on which range asked for it
    assert.deepStrictEqual(task.problems("test", { start: 3, count: 1 })[0], task.problems("test", { start: 0, count: 5 })[3])
    const other = Arithmetic.make({ seed: 2 }).problems("train", { start: 0, count: 50 }).map((p) => p.question)
    assert.notDeepEqual(other, task.problems("train", { start: 0, count: 50 }).map((p) => p.question))
  })

  it("keeps train and test disjoint, across seeds too", () => {
    const train = new Set(task.problems("train", { start: 0, count: 2000 }).map((p) => p.meta["expression"]))
    for (const seed of [1, 2]) {
      const test = Arithmetic.make({ seed }).problems("test", { start: 0, count: 500 })
      for (const p of test) assert.isFalse(train.has(p.meta["expression"]), `${p.meta["expression"]} in both splits`)
    }
    assert.isAbove(train.size, 1950) // unlimited and varied
  })

  it("draws 3–4 digit operands and a gold that is the product", () => {
    for (const p of task.problems("train", { start: 0, count: 200 })) {
      const a = p.meta["a"] as number
      const b = p.meta["b"] as number
      assert.isTrue(a >= 100 && a <= 9999 && b >= 100 && b <= 9999)
      assert.deepStrictEqual(p.golds, [String(a * b)])
      assert.strictEqual(p.prompt, `Compute ${a}*${b}.\n`)
    }
  })

  it("keeps compact prompts within 60 bytes and demonstrations within 160 bytes", () => {
    for (const d of task.demonstrations("train", { start: 0, count: 300 }, { imperfectShare: 0.5 })) {
      assert.isAtMost(bytes(d.problem.prompt), 60)
      assert.isAtMost(bytes(d.text), 160, d.text)
      assert.isAtMost(byteTokenizer.encode(d.text).length, 110)
    }
  })

  it("writes perfect demonstrations in the exact protocol, with the calculator's output inserted", () => {
    const [d] = task.demonstrations("train", { start: 0, count: 1 }, { imperfectShare: 0 })
    const p = d!.problem
    const e = p.meta["expression"] as string
    assert.strictEqual(
      d!.response,
      `<think>Use python.</think><python>${e}</python> <result>\n${p.golds[0]}\n</result><answer>\\boxed{${p.golds[0]}}</answer>`
    )
    assert.strictEqual(d!.text, p.prompt + d!.response)
    for (const demo of task.demonstrations("train", { start: 0, count: 200 }, { imperfectShare: 0 })) {
      assert.strictEqual(demo.quality, "perfect")
      const [model, tool, answer] = demo.segments
      assert.strictEqual(model!.role, "model")
      const found = findCall(model!.text, ["python", "search"])
      assert.isTrue(found !== undefined && !isMalformed(found) && found.tool === "python")
      assert.strictEqual(tool!.role, "tool")
      if (tool!.role === "tool") {
        assert.strictEqual(tool!.content, demo.problem.meta["expression"])
        assert.strictEqual(tool!.text, formatResult(evaluate(tool!.content)))
      }
      assert.strictEqual(answer!.role, "model")
      const r = task.reward(demo.response, demo.problem)
      assert.strictEqual(r.score, 1, r.reason)
    }
  })

  it.effect("holds exactly what the calculator answering <python> calls returns through a Toolbox", () =>
    Effect.gen(function*() {
      const tools = Toolbox.layer([Calculator.tool({ name: "python" })]).pipe(Layer.provide(Events.layerDiscard))
      for (const d of task.demonstrations("train", { start: 0, count: 60 }, { imperfectShare: 0.5 })) {
        assert.deepStrictEqual(yield* Effect.provide(renderWithToolbox(d), tools), d)
      }
    }))

  it("mixes in imperfect demonstrations at the configured share, and they earn less", () => {
    const demos = task.demonstrations("train", { start: 0, count: 1000 }, { imperfectShare: 0.3 })
    const imperfect = demos.filter((d) => d.quality !== "perfect")
    assert.approximately(imperfect.length / demos.length, 0.3, 0.05)
    for (const q of ["wrong-answer", "missing-tool", "wrong-query"] as const) assert.isAbove(imperfect.filter((d) => d.quality === q).length, 50)
    for (const d of imperfect) {
      assert.isBelow(task.reward(d.response, d.problem).score, 1, d.response)
      if (d.quality === "missing-tool") assert.notInclude(d.response, "<python>")
    }
    // the configured default share applies when none is given
    const byDefault = Arithmetic.make({ seed: 1, imperfectShare: 0 }).demonstrations("train", { start: 0, count: 100 })
    assert.isTrue(byDefault.every((d) => d.quality === "perfect"))
  })

  it("gives a malformed response the ARPO format penalty", () => {
    const [p] = task.problems("test", { start: 0, count: 1 })
    assert.strictEqual(task.reward("the answer is 12", p!).score, -1)
  })

  it("renders the ARPO chat prompt for real models", () => {
    const [p] = Arithmetic.make({ seed: 1, format: "chatml" }).problems("train", { start: 0, count: 1 })
    assert.isTrue(p!.prompt.startsWith("<|im_start|>system\nYou are a helpful assistant"))
    assert.isTrue(p!.prompt.endsWith(`<|im_start|>user\n${p!.question}<|im_end|>\n<|im_start|>assistant\n`))
    assert.strictEqual(p!.messages.length, 2)
  })

  it.effect("is provided as the Task service, and rejects a bad config with a typed error", () =>
    Effect.gen(function*() {
      const t = yield* Effect.provide(getTask, Arithmetic.layer({ seed: 3 }))
      assert.strictEqual(t.name, "arithmetic")
      assert.deepStrictEqual(t.tools, ["python"])
      const bad = yield* Effect.exit(Effect.provide(getTask, Arithmetic.layer({ seed: 3, minDigits: 5, maxDigits: 4 })))
      assert.isTrue(Exit.isFailure(bad))
      const err = yield* Effect.flip(Arithmetic.fromConfig({ seed: 3, testShare: 1 }))
      assert.strictEqual(err._tag, "TaskConfigInvalid")
      assert.include(err.message, "testShare")
    }))
})
