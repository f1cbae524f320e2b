import { assert, describe, it } from "@effect/vitest"
import { classify } from "../../experiments/chase-diagnose.ts"
import * as PointerChase from "../../src/tasks/pointerChase.ts"

describe("chase-diagnose", () => {
  it("classifies a chase's lookups and answer per hop: misspelled, wrong colour, right", () => {
    const r = (first: string, second: string, answer: string) =>
      `<think>Chase.</think><search>${first}</search> <result>\nred Lomu\nblue Tofi\n</result><search>${second}</search> <result>\n${
        second === "Lomu" ? "green Bida" : second === "Tofi" ? "green Kesa" : "No results."
      }\n</result><answer>\\boxed{${answer}}</answer>`
    const counts = classify([
      { question: "Zora: red green?", gold: "Bida", response: r("Zora", "Lomu", "Bida") },
      { question: "Zora: red green?", gold: "Bida", response: r("Zora", "Tofi", "Kesa") },
      { question: "Zora: red green?", gold: "Bida", response: r("Zora", "Lofi", "Lofa") },
      { question: "Zora: red green?", gold: "Bida", response: r("Zara", "Lomu", "Bisa") }
    ])
    assert.strictEqual(counts.correct, 0.25)
    assert.deepStrictEqual(counts.perHop, [{ misspelled: 1, "wrong colour": 0, right: 3 }, { misspelled: 1, "wrong colour": 1, right: 2 }])
    assert.deepStrictEqual(counts.answer, { misspelled: 2, "wrong colour": 0, right: 2, "no answer": 0, "hop count off": 0 })
    assert.deepStrictEqual(counts.lookups, { "2 hops, 2 lookups": 4 })
  })

  it("a task's own perfect demonstrations are classified right at every hop", () => {
    const task = PointerChase.make({ seed: 3, maxCandidates: 2, minHops: 2, maxHops: 2, names: 5000, nameLength: 4 })
    const demos = task.demonstrations("train", { start: 0, count: 200 }).filter((d) => d.quality === "perfect")
    const counts = classify(demos.map((d) => ({ question: d.problem.question, gold: d.problem.golds[0]!, response: d.response })))
    assert.strictEqual(counts.correct, 1)
    for (const hop of counts.perHop) assert.deepStrictEqual([hop.misspelled, hop["wrong colour"]], [0, 0])
    assert.strictEqual(counts.answer.right, demos.length)
  })
})
