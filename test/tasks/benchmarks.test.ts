import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import * as Benchmarks from "../../src/tasks/benchmarks.ts"
import { arpoSystemPrompt } from "../../src/tasks/systemPrompt.ts"

/** A data folder of the test's own holding one benchmark file with the given lines. */
const temps: Array<string> = []
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
})
const tempData = (name: string, lines: ReadonlyArray<string>): string => {
  const dir = mkdtempSync(path.join(tmpdir(), "arpo-tasks-"))
  temps.push(dir)
  mkdirSync(path.join(dir, "benchmarks", name), { recursive: true })
  writeFileSync(path.join(dir, "benchmarks", name, "test.jsonl"), lines.join("\n") + "\n")
  return dir
}

const answer = (gold: string) => `<think>ok</think><answer>\\boxed{${gold}}</answer>`

describe("benchmark loaders", () => {
  it.effect("load every shipped file with its row count, questions and golds", () =>
    Effect.gen(function*() {
      for (const name of Benchmarks.benchmarkNames) {
        const task = yield* Benchmarks.load(name)
        assert.strictEqual(task.sizes.test, Benchmarks.benchmarkRows[name], name)
        assert.strictEqual(task.sizes.train, 0)
        assert.deepStrictEqual(task.problems("train", { start: 0, count: 10 }), [])
        const all = task.problems("test", { start: 0, count: 100_000 })
        assert.strictEqual(all.length, Benchmarks.benchmarkRows[name])
        for (const p of all) {
          assert.isAbove(p.question.trim().length, 0, `${p.id} question`)
          assert.isAbove(p.golds.length, 0, `${p.id} golds`)
          assert.isTrue(p.golds.every((g) => g.trim().length > 0), `${p.id} gold`)
        }
        assert.strictEqual(task.metric, Benchmarks.benchmarkMetric[name])
        // a response that boxes the first gold is correct under the set's own metric
        const p = all[0]!
        assert.strictEqual(task.accuracy(answer(p.golds[0]!), p).accuracy, 1, `${name}: ${p.golds[0]}`)
        assert.strictEqual(task.reward(answer(p.golds[0]!), p).accuracy, 1, name)
        assert.strictEqual(task.accuracy(answer("zzzz qqqq"), p).accuracy, 0, name)
      }
    }), 30_000)

  it.effect("take each file's own fields: gsm8k's gold after ####, aime's numbers as strings, gaia's Question", () =>
    Effect.gen(function*() {
      const gsm = yield* Benchmarks.load("gsm8k")
      assert.deepStrictEqual(gsm.problem("test", 0)!.golds, ["18"])
      for (const p of gsm.problems("test", { start: 0, count: 2000 })) assert.match(p.golds[0]!, /^-?\d+(\.\d+)?$/, p.id)
      const aime25 = yield* Benchmarks.load("aime25")
      assert.deepStrictEqual(aime25.problem("test", 0)!.golds, ["70"])
      const gaia = yield* Benchmarks.load("gaia")
      assert.deepStrictEqual(gaia.problem("test", 0)!.golds, ["34689"])
      assert.strictEqual(gaia.problem("test", 0)!.meta["level"], 2)
      const twoWiki = yield* Benchmarks.load("2wiki")
      assert.include(twoWiki.problem("test", 0)!.golds, "New York City")
      // the ARPO chat prompt by default, the bare question in the compact format
      const p = twoWiki.problem("test", 0)!
      assert.include(p.prompt, arpoSystemPrompt)
      assert.strictEqual((yield* Benchmarks.load("2wiki", { format: "compact" })).problem("test", 0)!.prompt, `${p.question}\n`)
    }))

  it("drops thousands separators from GSM8K golds", () => {
    assert.strictEqual(Benchmarks.gsm8kGold("so 2,125 + 1 = 2,126\n#### 1,450,000"), "1450000")
    assert.strictEqual(Benchmarks.gsm8kGold("#### 12"), "12")
    assert.strictEqual(Benchmarks.gsm8kGold("#### 3.75"), "3.75")
  })

  it("score math by equivalence, the wiki sets by F1 and the rest by exact match", () => {
    const rows = [{ question: "q", golds: ["New York City"], meta: {} }]
    const f1 = Benchmarks.fromRows("hotpotqa", rows)
    const em = Benchmarks.fromRows("SimpleQA", rows)
    const partial = answer("New York")
    assert.closeTo(f1.accuracy(partial, f1.problem("test", 0)!).accuracy, 0.8, 1e-9)
    assert.strictEqual(em.accuracy(partial, em.problem("test", 0)!).accuracy, 0)
    const math = Benchmarks.fromRows("math500", [{ question: "q", golds: ["\\frac{1}{2}"], meta: {} }])
    assert.strictEqual(math.accuracy(answer("0.5"), math.problem("test", 0)!).accuracy, 1)
  })

  it.effect("name the file and line of a row without its answer", () =>
    Effect.gen(function*() {
      const dir = tempData("gsm8k", [
        JSON.stringify({ question: "1+1?", answer: "#### 2" }),
        "",
        JSON.stringify({ question: "2+2?" })
      ])
      const err = yield* Effect.flip(Benchmarks.load("gsm8k", { dataDir: dir }))
      assert.strictEqual(err._tag, "DatasetRowInvalid")
      assert.strictEqual(err.message, `benchmarks/gsm8k/test.jsonl line 3: missing field "answer"`)
      if (err._tag === "DatasetRowInvalid") {
        assert.strictEqual(err.file, "benchmarks/gsm8k/test.jsonl")
        assert.strictEqual(err.line, 3)
      }
    }))

  it.effect("name the file and line of a row that is not JSON or has a field of the wrong type", () =>
    Effect.gen(function*() {
      const notJson = yield* Effect.flip(Benchmarks.load("hotpotqa", { dataDir: tempData("hotpotqa", ['{"question": "q", "answer": ["a"]}', "{oops"]) }))
      assert.match(notJson.message, /^benchmarks\/hotpotqa\/test\.jsonl line 2: not valid JSON/)
      const wrongType = yield* Effect.flip(Benchmarks.load("hotpotqa", { dataDir: tempData("hotpotqa", ['{"question": "q", "answer": [1]}']) }))
      assert.strictEqual(wrongType.message, `benchmarks/hotpotqa/test.jsonl line 1: field "answer" is an array, not a string or a non-empty list of strings`)
      const gaia = yield* Effect.flip(Benchmarks.load("gaia", { dataDir: tempData("gaia", ['{"question": "lowercase", "answer": "1", "task_id": "t"}']) }))
      assert.strictEqual(gaia.message, `benchmarks/gaia/test.jsonl line 1: missing field "Question"`)
    }))

  it.effect("report a missing file as unreadable, naming it", () =>
    Effect.gen(function*() {
      const err = yield* Effect.flip(Benchmarks.load("aime24", { dataDir: tempData("gsm8k", []) }))
      assert.strictEqual(err._tag, "DatasetUnreadable")
      assert.match(err.message, /^benchmarks\/aime24\/test\.jsonl: cannot read/)
    }))
})
