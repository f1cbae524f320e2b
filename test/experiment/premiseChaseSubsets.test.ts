import { assert, describe, it } from "@effect/vitest"
import { ambiguousLookups, studyOf, subsetTables } from "../../experiments/premise-chase-subsets.ts"
import type { PointerChaseConfig } from "../../src/tasks/pointerChase.ts"

const chase: PointerChaseConfig = { seed: 13, maxCandidates: 2, minHops: 2, maxHops: 2, names: 5000, nameLength: 4 }
const ids = Array.from({ length: 300 }, (_, i) => `pointer-chase/test/${i}`)

describe("premise-chase-subsets", () => {
  it("counts the lookups with several candidates on each question's right path: 0–2 on the chase, 0 on its control", () => {
    const counts = ambiguousLookups(chase, ids)
    for (const c of [0, 1, 2]) assert.isAbove(counts.filter((x) => x === c).length, 30)
    assert.deepStrictEqual(new Set(ambiguousLookups({ ...chase, maxCandidates: 1 }, ids)), new Set([0]))
  })

  it("splits a study's per-question outcomes by those counts and pairs the arms within each subset", () => {
    const counts = ambiguousLookups(chase, ids)
    // a made-up study: arm b right exactly on the questions without an uncertain lookup, arm a everywhere
    const ev = (arm: string, seed: number, step: number, right: (i: number) => boolean) => ({ arm, seed, step, questions: ids.map((id, i) => ({ id, accuracy: right(i) ? 1 : 0 })) })
    const study = { runs: [1, 2, 3].map((seed) => ({ evaluated: [ev("chase.cold-start", seed, 0, () => false), ev("chase.grpo", seed, 24, (i) => counts[i] === 0), ev("chase.arpo-b8", seed, 24, () => true)] })) }
    const lines = subsetTables(study, chase, 24)
    const row = (label: string) => lines.find((l) => l.startsWith(`| ${label}`))!
    assert.include(row("0 of 2 lookups"), "| 0.000 [–, –] | 1.000 [–, –] | 1.000 [–, –] |")
    assert.include(row("arpo-b8 − grpo"), "| 0.000 [–, –] | 1.000 [–, –] | 1.000 [–, –] |")
  })

  it("reads premise-long's compact form as the same study", () => {
    const compact = { steps: 24, questions: ["pointer-chase/test/0", "pointer-chase/test/1"], evaluated: [{ arm: "chase.grpo", step: 24, perSeed: [{ seed: 2, perQuestion: "1,0" }] }] }
    const { study, steps } = studyOf(compact)
    assert.strictEqual(steps, 24)
    assert.deepStrictEqual(study.runs[0]!.evaluated, [{ arm: "chase.grpo", seed: 2, step: 24, questions: [{ id: "pointer-chase/test/0", accuracy: 1 }, { id: "pointer-chase/test/1", accuracy: 0 }] }])
  })
})
