import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { parseRow } from "../../src/tasks/data.ts"
import * as Parquet from "../../src/tasks/parquet.ts"
import { arpoSystemPrompt } from "../../src/tasks/systemPrompt.ts"

const controlBytes = /[\x00-\x08\x0b\x0e-\x1f]/

// each file is read once for the whole suite (train_10k takes a while on a busy 2-core machine)
const loaded = new Map<Parquet.ParquetName, Promise<ReadonlyArray<Parquet.ArpoRow>>>()
const rowsOf = (name: Parquet.ParquetName) =>
  Effect.promise(() => {
    if (!loaded.has(name)) loaded.set(name, Effect.runPromise(Parquet.loadParquetRows(name)))
    return loaded.get(name)!
  })

describe("ARPO parquet data", () => {
  it.effect("reads every file with its row count and repairs \\boxed in the system prompt", () =>
    Effect.gen(function*() {
      for (const name of Parquet.ParquetName.literals) {
        const rows = yield* rowsOf(name)
        assert.strictEqual(rows.length, Parquet.parquetRows[name], name)
        for (const r of rows) {
          assert.strictEqual(r.system, arpoSystemPrompt, `${name} row ${r.index}`)
          assert.isAbove(r.question.length, 0)
          assert.isAbove(r.groundTruth.length, 0)
          assert.notMatch(r.groundTruth, controlBytes)
        }
        assert.isFalse(rows.some((r) => r.dataSource.toLowerCase().includes("hle")))
      }
    }), 30_000)

  it.effect("keeps the mix of sources and abilities of the released files", () =>
    Effect.gen(function*() {
      const count = (xs: ReadonlyArray<string | null>) => {
        const m: Record<string, number> = {}
        for (const x of xs) m[String(x)] = (m[String(x)] ?? 0) + 1
        return m
      }
      const train = yield* rowsOf("train_10k")
      assert.deepStrictEqual(count(train.map((r) => r.ability)), { math: 5000, qa: 5000 })
      const valid = yield* rowsOf("valid")
      assert.deepStrictEqual(count(valid.map((r) => r.ability)), { qa: 80, math: 100 })
      const hard = yield* rowsOf("hard_search_1k")
      assert.deepStrictEqual(count(hard.map((r) => r.dataSource)), { "DR_simpledeepsearch0.8k": 871, DR_nan: 200 })
      // the "\frac{m}{n}" hint appended to some math questions was stored with a form feed: repaired
      assert.isAbove(train.filter((r) => r.question.includes("The answer is in the form \\frac{m}{n}")).length, 10)
      assert.isFalse(train.some((r) => r.question.includes("\x08") || r.question.includes("\x0crac")))
    }), 30_000)

  it.effect("is a task: train and validation files, the chat prompt, ARPO's reward", () =>
    Effect.gen(function*() {
      const task = yield* Parquet.load({ train: "hard_search_1k", test: "gaia_test" })
      assert.deepStrictEqual(task.sizes, { train: 1071, test: 103 })
      const p = task.problem("train", 0)!
      assert.strictEqual(p.question, "who illustrated the original winnie the pooh books")
      assert.deepStrictEqual(p.golds, ["E. H. Shepard"])
      assert.deepStrictEqual(p.messages, [{ role: "system", content: arpoSystemPrompt }, { role: "user", content: p.question }])
      assert.isTrue(p.prompt.startsWith("<|im_start|>system\n") && p.prompt.endsWith("<|im_start|>assistant\n"))
      const good = "<think>x</think><search>pooh</search> <result>\nPage 1: …\n</result><python>1</python> <result>\n1\n</result><answer>\\boxed{E. H. Shepard}</answer>"
      assert.closeTo(task.reward(good, p).score, 1.1, 1e-9)
      assert.strictEqual(task.reward("E. H. Shepard", p).score, -1)
      assert.strictEqual(task.problems("test", { start: 100, count: 10 }).length, 3)
    }), 30_000)

  it("flags ground truths cut off inside a LaTeX group, plain or escaped braces", () => {
    for (const g of ["1}^N", "0}^{n-1}F_kF_{n-k-1}", "36\\}", "-5\\right\\}", "\\frac{1", "{a}}{"]) {
      assert.isTrue(Parquet.truncatedGold(g), g)
    }
    for (const g of ["42", "\\frac{1}{2}", "\\{1, 2\\}", "x^{2}+\\sqrt{3}", "E. H. Shepard", "\\left\\{-5\\right\\}"]) {
      assert.isFalse(Parquet.truncatedGold(g), g)
    }
  })

  it.effect("drops the seven train_10k rows whose ground truth is truncated, and says which", () =>
    Effect.gen(function*() {
      const train = yield* rowsOf("train_10k")
      const valid = yield* rowsOf("valid")
      const task = Parquet.fromRows({ train, test: valid }, { train: "train_10k", test: "valid" })
      assert.deepStrictEqual(task.dropped.map((d) => d.row), [386, 531, 889, 3301, 6422, 7947, 9203])
      assert.deepStrictEqual(task.sizes, { train: 9993, test: 180 })
      assert.isFalse(task.rows.train.some((r) => Parquet.truncatedGold(r.groundTruth)))
      // problem 386 is the file's row 387 once row 386 is gone
      assert.strictEqual(task.problem("train", 386)!.golds[0], train[387]!.groundTruth)
      const kept = Parquet.fromRows({ train, test: valid }, { train: "train_10k", test: "valid" }, "chatml", true)
      assert.deepStrictEqual([kept.sizes.train, kept.dropped.length], [10000, 0])
    }), 30_000)

  it.effect("names the file and row of a malformed row", () =>
    Effect.gen(function*() {
      const noTruth = { data_source: "x", prompt: [{ role: "user", content: "q" }], reward_model: {}, extra_info: { index: 0n } }
      const err = yield* Effect.flip(parseRow("arpo/valid.parquet", 17, () => Parquet.parseArpoRow(noTruth), "row"))
      assert.strictEqual(err.message, `arpo/valid.parquet row 17: missing field "ground_truth"`)
      const noUser = { data_source: "x", prompt: [{ role: "system", content: "s" }], reward_model: { ground_truth: "a" } }
      const err2 = yield* Effect.flip(parseRow("arpo/valid.parquet", 2, () => Parquet.parseArpoRow(noUser), "row"))
      assert.strictEqual(err2.message, `arpo/valid.parquet row 2: field "prompt" has no user message`)
    }))

  it.effect("reports a missing parquet file as unreadable", () =>
    Effect.gen(function*() {
      const err = yield* Effect.flip(Parquet.loadParquetRows("valid", "/nonexistent-arpo-data"))
      assert.strictEqual(err._tag, "DatasetUnreadable")
      assert.match(err.message, /^arpo\/valid\.parquet: cannot read parquet/)
    }))
})
