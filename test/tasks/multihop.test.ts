import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { byteTokenizer } from "../../src/model/tokenizer.ts"
import { Events } from "../../src/events/Events.ts"
import * as Calculator from "../../src/tools/calculator.ts"
import { evaluate } from "../../src/tools/calculator.ts"
import * as Search from "../../src/tools/search.ts"
import type { Tool } from "../../src/tools/Tool.ts"
import { findCall, formatResult, isMalformed } from "../../src/tools/protocol.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { renderWithToolbox } from "../../src/tasks/demonstration.ts"
import * as Multihop from "../../src/tasks/multihop.ts"
import { Task } from "../../src/tasks/Task.ts"
import { makeWorld } from "../../src/tasks/world.ts"

const bytes = (s: string) => new TextEncoder().encode(s).length
const task = Multihop.make({ seed: 1 })
const names = (p: { readonly meta: Readonly<Record<string, unknown>> }) => String(p.meta["companies"]).split(",")

describe("generated world", () => {
  it("is a pure function of its seed, with unique names and both splits populated", () => {
    const w = makeWorld({ seed: 5, companies: 300 })
    assert.deepStrictEqual(w, makeWorld({ seed: 5, companies: 300 }))
    assert.strictEqual(new Set(w.companies.map((c) => c.name)).size, 300)
    assert.isAbove(w.bySplit.test.length, 30)
    assert.isAbove(w.bySplit.train.length, 200)
    for (const c of w.companies) assert.isTrue(c.founded - c.born >= 20 && c.founded - c.born <= 60)
    assert.notDeepEqual(makeWorld({ seed: 6 }).companies.map((c) => c.name), w.companies.map((c) => c.name))
  })

  it("has one short document per company that holds its facts", () => {
    assert.strictEqual(task.corpus.length, 300)
    for (const c of task.world.companies) {
      const d = task.corpus[c.index]!
      assert.strictEqual(d.title, c.name)
      assert.include(d.text, String(c.founded))
      assert.include(d.text, String(c.born))
      assert.isAtMost(bytes(`${d.title}: ${d.text}`), 34)
    }
  })
})

describe("multi-hop task", () => {
  it("is deterministic and keeps train and test about disjoint companies", () => {
    const again = Multihop.make({ seed: 1 })
    assert.deepStrictEqual(task.problems("train", { start: 0, count: 100 }), again.problems("train", { start: 0, count: 100 }))
    assert.deepStrictEqual(task.demonstrations("test", { start: 0, count: 30 }), again.demonstrations("test", { start: 0, count: 30 }))
    const trainNames = new Set(task.problems("train", { start: 0, count: 2000 }).flatMap(names))
    const testNames = new Set(task.problems("test", { start: 0, count: 500 }).flatMap(names))
    for (const n of testNames) {
      assert.isFalse(trainNames.has(n), `${n} in both splits`)
      assert.strictEqual(task.world.byName.get(n)!.split, "test")
    }
    const trainQuestions = new Set(task.problems("train", { start: 0, count: 2000 }).map((p) => p.question))
    for (const p of task.problems("test", { start: 0, count: 500 })) assert.isFalse(trainQuestions.has(p.question))
  })

  it("asks all three kinds with golds computed from the world's facts", () => {
    const problems = task.problems("train", { start: 0, count: 300 })
    for (const kind of ["born-gap", "founded-gap", "founder-age"]) assert.isAbove(problems.filter((p) => p.meta["kind"] === kind).length, 60)
    for (const p of problems) {
      const [x, y] = names(p).map((n) => task.world.byName.get(n)!)
      const gold = p.meta["kind"] === "born-gap"
        ? Math.abs(x!.born - y!.born)
        : p.meta["kind"] === "founded-gap"
        ? Math.abs(x!.founded - y!.founded)
        : x!.founded - x!.born
      assert.deepStrictEqual(p.golds, [String(gold)])
      assert.notStrictEqual(x!.name, y?.name)
    }
  })

  it("keeps compact prompts within 60 bytes and demonstrations short", () => {
    let longest = 0
    for (const d of task.demonstrations("train", { start: 0, count: 300 }, { imperfectShare: 0.5 })) {
      assert.isAtMost(bytes(d.problem.prompt), 60, d.problem.prompt)
      longest = Math.max(longest, byteTokenizer.encode(d.text).length)
    }
    assert.isAtMost(longest, 195)
  })

  it("writes perfect demonstrations that search, compute and earn the full reward with the multi-tool bonus", () => {
    for (const d of task.demonstrations("train", { start: 0, count: 200 }, { imperfectShare: 0 })) {
      const calls = d.segments.filter((s) => s.role === "tool")
      assert.strictEqual(calls.length, names(d.problem).length + 1)
      for (const [i, s] of d.segments.entries()) {
        if (s.role !== "tool") continue
        const before = d.segments[i - 1]!
        const found = findCall(before.text, ["search", "python"])
        assert.isTrue(found !== undefined && !isMalformed(found) && found.tool === s.tool && found.content === s.content)
        if (s.tool === "python") assert.strictEqual(s.text, formatResult(evaluate(s.content)))
        else assert.strictEqual(s.text, formatResult(Multihop.searchOracle(task.world)(s.content)))
      }
      assert.deepStrictEqual(calls.map((c) => c.role === "tool" ? c.tool : ""), [...names(d.problem).map(() => "search"), "python"])
      const r = task.reward(d.response, d.problem)
      assert.closeTo(r.score, 1.1, 1e-9, `${r.reason}: ${d.response}`)
    }
    const [d] = task.demonstrations("train", { start: 0, count: 1 }, { imperfectShare: 0 })
    assert.match(d!.response, /^<think>Search (both|it)\.<\/think><search>[A-Z][a-z]+<\/search> <result>\nPage 1: [A-Z][a-z]+: est. \d{4}, founder b. \d{4}\.\n<\/result>/)
  })

  it("mixes in imperfect demonstrations that earn less than the perfect ones", () => {
    const demos = task.demonstrations("train", { start: 0, count: 600 }, { imperfectShare: 0.5 })
    const imperfect = demos.filter((d) => d.quality !== "perfect")
    assert.approximately(imperfect.length / demos.length, 0.5, 0.06)
    for (const d of imperfect) {
      const r = task.reward(d.response, d.problem)
      assert.isBelow(r.score, 1.1, `${d.quality}: ${d.response}`)
      assert.isAtLeast(r.score, 0)
    }
    const wrongQuery = imperfect.filter((d) => d.quality === "wrong-query")
    assert.isAbove(wrongQuery.length, 50)
    for (const d of wrongQuery) {
      const searched = d.segments.flatMap((s) => s.role === "tool" && s.tool === "search" ? [s.content] : [])
      assert.notDeepEqual(searched, names(d.problem))
    }
  })

  it.effect("holds exactly what the real calculator and BM25 search over its corpus return", () =>
    Effect.gen(function*() {
      const tools = Toolbox.layer([Calculator.tool({ name: "python" }), Search.tool([Search.corpusBackend(task.corpus)])]).pipe(
        Layer.provide(Events.layerDiscard)
      )
      for (const d of task.demonstrations("train", { start: 0, count: 60 }, { imperfectShare: 0.5 })) {
        const re = yield* Effect.provide(renderWithToolbox(d), tools)
        assert.deepStrictEqual(re, d)
      }
    }))

  it.effect("re-renders demonstrations through the run's Toolbox", () =>
    Effect.gen(function*() {
      const search: Tool = { name: "search", run: () => Effect.succeed("X") }
      const toolbox = Toolbox.layer([Calculator.tool({ name: "python" }), search], { resultOpen: "<result>", resultClose: "</result>" }).pipe(
        Layer.provide(Events.layerDiscard)
      )
      const [d] = task.demonstrations("train", { start: 0, count: 1 }, { imperfectShare: 0 })
      const re = yield* Effect.provide(renderWithToolbox(d!), toolbox)
      assert.include(re.response, "</search><result>X</result>")
      assert.strictEqual(re.text, re.problem.prompt + re.response)
      assert.strictEqual(re.segments.length, d!.segments.length)
      // the real calculator answers the python call exactly as the oracle did
      const py = re.segments.find((x) => x.role === "tool" && x.tool === "python")!
      const original = d!.segments.find((x) => x.role === "tool" && x.tool === "python")!
      assert.strictEqual(py.text, original.text.replace(" <result>\n", "<result>").replace("\n</result>", "</result>"))
    }))

  it.effect("is provided as the Task service", () =>
    Effect.gen(function*() {
      const t = yield* Effect.provide(Effect.gen(function*() { return yield* Task }), Multihop.layer({ seed: 2, companies: 50 }))
      assert.deepStrictEqual(t.tools, ["search", "python"])
      assert.strictEqual(t.corpus.length, 50)
      const err = yield* Effect.flip(Multihop.fromConfig({ seed: 2, companies: 3 }))
      assert.strictEqual(err._tag, "TaskConfigInvalid")
    }))
})
