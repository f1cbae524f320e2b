import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { derive, root } from "../../src/core/random.ts"
import { Events } from "../../src/events/Events.ts"
import { byteTokenizer } from "../../src/model/tokenizer.ts"
import { renderWithToolbox } from "../../src/tasks/demonstration.ts"
import * as FlakyArithmetic from "../../src/tasks/flakyArithmetic.ts"
import * as NoisySearch from "../../src/tasks/noisySearch.ts"
import * as PointerChase from "../../src/tasks/pointerChase.ts"
import type { PremiseTask } from "../../src/tasks/premiseCommon.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import { type NoisyPagesOptions, noisyPages } from "../../src/tools/noisyLookup.ts"
import { createHash } from "node:crypto"

const variants: ReadonlyArray<readonly [string, PremiseTask]> = [
  ["flaky-arithmetic p=0.3", FlakyArithmetic.make({ seed: 1, failureRate: 0.3 })],
  ["flaky-arithmetic control", FlakyArithmetic.make({ seed: 1, failureRate: 0 })],
  ["noisy-search", NoisySearch.make({ seed: 1, lookalikes: 2, missingRate: 0.25 })],
  ["noisy-search control", NoisySearch.make({ seed: 1, lookalikes: 0, missingRate: 0 })],
  ["pointer-chase", PointerChase.make({ seed: 1, maxCandidates: 3 })],
  ["pointer-chase control", PointerChase.make({ seed: 1, maxCandidates: 1 })],
  // the chase of the RL study (premiseVariants' chase entries): 2 hops, 1–2 candidates, 5,000 names of 4 letters
  ["pointer-chase 2 hops, 1–2 candidates, 4-letter names", PointerChase.make({ seed: 1, maxCandidates: 2, minHops: 2, maxHops: 2, names: 5000, nameLength: 4 })],
  ["pointer-chase 2 hops, 4-letter names, control", PointerChase.make({ seed: 1, maxCandidates: 1, minHops: 2, maxHops: 2, names: 5000, nameLength: 4 })]
]

const toolboxOf = (task: PremiseTask) =>
  Toolbox.layer(task.toolImplementations ?? [], { callLimit: 3, maxAttempts: 1 }).pipe(Layer.provide(Events.layerDiscard))

/** The outcomes of every tool result in a task's first `n` training demonstrations. */
const demoOutcomes = (task: PremiseTask, n: number) => {
  const counts: Record<string, number> = {}
  for (const d of task.demonstrations("train", { start: 0, count: n })) {
    for (const s of d.segments) {
      if (s.role !== "tool") continue
      const output = s.text.replace(/^ <result>\n/, "").replace(/\n<\/result>$/, "")
      const o = task.outcomeOf(s.tool, s.content, output)
      counts[o] = (counts[o] ?? 0) + 1
    }
  }
  return counts
}

describe("premise tasks", () => {
  for (const [label, task] of variants) {
    it.effect(`${label}: demonstrations re-rendered through the task's own tools are identical (keyed tool randomness)`, () =>
      Effect.gen(function*() {
        for (const d of task.demonstrations("train", { start: 0, count: 60 })) {
          const again = yield* renderWithToolbox(d)
          assert.strictEqual(again.text, d.text, d.problem.id)
        }
      }).pipe(Effect.provide(toolboxOf(task))))

    it(`${label}: ≥ 1,000 distinct held-out questions, none of them a training question; demonstrations fit 192 tokens`, () => {
      const test = new Set(task.problems("test", { start: 0, count: 2500 }).map((p) => p.question))
      const train = new Set(task.problems("train", { start: 0, count: 2500 }).map((p) => p.question))
      assert.isAtLeast(test.size, 1000)
      for (const q of test) assert.isFalse(train.has(q), q)
      for (const d of task.demonstrations("train", { start: 0, count: 500 })) {
        assert.isAtMost(byteTokenizer.encode(d.text).length, 192, d.problem.id)
      }
    })

    it(`${label}: perfect demonstrations earn reward 1 and imperfect ones less`, () => {
      const demos = task.demonstrations("train", { start: 0, count: 300 })
      const perfect = demos.filter((d) => d.quality === "perfect")
      const imperfect = demos.filter((d) => d.quality !== "perfect")
      assert.isAbove(perfect.length, 150)
      assert.isAbove(imperfect.length, 20)
      for (const d of perfect) assert.strictEqual(d.problem && task.reward(d.response, d.problem).score, 1, d.response)
      for (const d of imperfect) assert.isBelow(task.reward(d.response, d.problem).score, 1, d.response)
    })
  }

  it("uncertain variants show uncertain results in their demonstrations; controls show only certain ones", () => {
    const [flaky, flakyControl, noisy, noisyControl, chase, chaseControl] = variants.map(([, t]) => demoOutcomes(t, 400))
    assert.isAbove(flaky!["error"] ?? 0, 60)
    assert.isAbove(flaky!["ok"] ?? 0, 300)
    assert.deepStrictEqual(Object.keys(flakyControl!), ["ok"])
    assert.isAbove(noisy!["missing"] ?? 0, 60)
    assert.isAbove(noisy!["ambiguous"] ?? 0, 200)
    assert.deepStrictEqual(Object.keys(noisyControl!), ["ok"])
    assert.isAbove(chase!["ambiguous"] ?? 0, 200)
    assert.deepStrictEqual(Object.keys(chaseControl!), ["ok"])
  })

  it("the flaky calculator's demonstrations retry after an error, except a give-up share that guesses", () => {
    const task = variants[0]![1]
    let retried = 0
    let gaveUp = 0
    for (const d of task.demonstrations("train", { start: 0, count: 600 })) {
      d.segments.forEach((s, i) => {
        if (s.role !== "tool" || !s.text.includes("Error: busy")) return
        const next = d.segments[i + 1]
        if (next?.role === "model" && next.text.startsWith("<answer>")) gaveUp++
        else retried++
      })
    }
    assert.isAbove(retried, 2 * gaveUp)
    assert.isAbove(gaveUp, 10)
  })

  it.effect("the flaky calculator fails about p of keyed calls, the same calls on replay, and never without a key", () =>
    Effect.gen(function*() {
      const toolbox = yield* Toolbox
      const run = (i: number) => toolbox.run({ tool: "python", content: "123*456", key: derive(root(9), "call", i) })
      const outcomes = yield* Effect.forEach(Array.from({ length: 2000 }, (_, i) => i), run)
      const again = yield* Effect.forEach(Array.from({ length: 2000 }, (_, i) => i), run)
      const failed = outcomes.filter((r) => r.outcome === "error").length
      assert.deepStrictEqual(outcomes.map((r) => r.output), again.map((r) => r.output))
      assert.isTrue(failed > 520 && failed < 680, `${failed} of 2000 failed`)
      for (const r of outcomes) assert.include(["56088", "Error: busy"], r.output)
      const unkeyed = yield* toolbox.run({ tool: "python", content: "123*456" })
      assert.strictEqual(unkeyed.output, "56088")
    }).pipe(Effect.provide(toolboxOf(variants[0]![1]))))

  it("bad configurations are typed errors that name the task and the field", () => {
    const fail = <A>(e: Effect.Effect<A, { message: string }>) => Effect.runSync(Effect.flip(e)).message
    assert.include(fail(FlakyArithmetic.fromConfig({ seed: 1, failureRate: 1.5 })), "flaky-arithmetic config: failureRate")
    assert.include(fail(NoisySearch.fromConfig({ seed: 1, lookalikes: 0, missingRate: 0.2 })), "noisy-search config: missingRate")
    assert.include(fail(PointerChase.fromConfig({ seed: 1, maxCandidates: 5 })), "pointer-chase config: maxCandidates")
    assert.include(fail(PointerChase.fromConfig({ seed: "x" })), "pointer-chase config")
    assert.include(fail(PointerChase.fromConfig({ seed: 1, maxCandidates: 3, nameLength: 6 })), "pointer-chase config: nameLength")
    assert.include(fail(PointerChase.fromConfig({ seed: 1, maxCandidates: 3, nameLength: 3, names: 1200 })), "pointer-chase config: names must be at most")
    assert.include(fail(PointerChase.fromConfig({ seed: 1, maxCandidates: 3, minHops: 3, maxHops: 2 })), "pointer-chase config: hops")
    assert.include(fail(PointerChase.fromConfig({ seed: 1, maxCandidates: 3, minCandidates: 4 })), "pointer-chase config: minCandidates")
    assert.include(fail(PointerChase.fromConfig({ seed: 1, maxCandidates: 3, namePrefix: "ab" })), "pointer-chase config: namePrefix")
    assert.include(fail(PointerChase.fromConfig({ seed: 1, maxCandidates: 3, candidateOrder: "alphabetical" })), "pointer-chase config")
  })

  it("pointer chase: the default names (5 letters) and hops (2–3) are what the explicit defaults give", () => {
    for (const maxCandidates of [1, 3]) {
      const implicit = PointerChase.make({ seed: 1, maxCandidates })
      const explicit = PointerChase.make({ seed: 1, maxCandidates, names: 3000, nameLength: 5, minHops: 2, maxHops: 3 })
      const a = implicit.demonstrations("train", { start: 0, count: 50 }).map((d) => d.text)
      assert.deepStrictEqual(explicit.demonstrations("train", { start: 0, count: 50 }).map((d) => d.text), a)
      assert.deepStrictEqual(explicit.problems("test", { start: 0, count: 200 }), implicit.problems("test", { start: 0, count: 200 }))
      const hops = new Set(implicit.problems("test", { start: 0, count: 400 }).map((p) => p.meta?.["hops"]))
      assert.deepStrictEqual([...hops].sort(), [2, 3])
    }
  })

  it("pointer chase: minCandidates, candidateOrder, namePrefix and ambiguity shape the lookups as configured", () => {
    const linesOf = (text: string) => [...text.matchAll(/<result>\n([\s\S]*?)\n<\/result>/g)].map((m) => m[1]!.split("\n"))
    const all = PointerChase.make({ seed: 2, maxCandidates: 3, minCandidates: 3, candidateOrder: "colour", minHops: 2, maxHops: 2 })
    for (const d of all.demonstrations("train", { start: 0, count: 100 })) {
      for (const ls of linesOf(d.text)) assert.deepStrictEqual(ls.map((l) => l.split(" ")[0]), ["red", "blue", "green"], d.text)
    }
    const marked = PointerChase.make({ seed: 2, maxCandidates: 3, namePrefix: "@" })
    for (const d of marked.demonstrations("train", { start: 0, count: 50 })) {
      assert.match(d.problem.question, /^@[A-Z][a-z]+: /)
      for (const ls of linesOf(d.text)) for (const l of ls) assert.match(l, /^(red|blue|green) @[A-Z][a-z]+$/, d.text)
      if (d.quality === "perfect") assert.strictEqual(marked.reward(d.response, d.problem).score, 1, d.text)
    }
    const first = PointerChase.make({ seed: 2, maxCandidates: 3, minHops: 2, maxHops: 3, ambiguity: "first" })
    for (const d of first.demonstrations("train", { start: 0, count: 200 }).filter((x) => x.quality === "perfect")) {
      const [head, ...rest] = linesOf(d.text)
      assert.isAtLeast(head!.length, 2, d.text)
      for (const ls of rest) assert.strictEqual(ls.length, 1, d.text)
    }
  })

  for (const nameLength of [3, 4]) {
    it(`pointer chase with names of ${nameLength} letters and 2 hops: names, hops and lookups as configured; the control is its one-link twin`, () => {
      const names = nameLength === 3 ? 900 : 4000
      const task = PointerChase.make({ seed: 1, maxCandidates: 3, names, nameLength, minHops: 2, maxHops: 2 })
      const control = PointerChase.make({ seed: 1, maxCandidates: 1, names, nameLength, minHops: 2, maxHops: 2 })
      for (const t of [task, control]) {
        for (const p of t.problems("test", { start: 0, count: 300 })) {
          const [start, colours] = p.question.replace(/\?$/, "").split(": ")
          assert.strictEqual(start!.length, nameLength, p.question)
          assert.strictEqual(colours!.split(" ").length, 2, p.question)
          assert.strictEqual(p.golds[0]!.length, nameLength, p.question)
        }
        for (const d of t.demonstrations("train", { start: 0, count: 100 })) {
          const lookups = [...d.text.matchAll(/<search>(\w+)<\/search>/g)].map((m) => m[1]!)
          assert.strictEqual(lookups.length, 2, d.text)
          for (const l of lookups) assert.strictEqual(l.length, nameLength, d.text)
          for (const line of d.text.matchAll(/^(red|blue|green) (\w+)$/gm)) assert.strictEqual(line[2]!.length, nameLength, d.text)
        }
      }
      // the uncertain variant's lookups show several candidates; the control's one each
      const outcomes = (t: PremiseTask) => demoOutcomes(t, 300)
      assert.isAbove(outcomes(task)["ambiguous"] ?? 0, 200)
      assert.deepStrictEqual(Object.keys(outcomes(control)), ["ok"])
    })
  }
})

describe("noisy search's options: how look-alikes differ, ranked pages, padded misses", () => {
  const key = derive(root(5), "noisy-options")
  const fakeFact = (_k: unknown, i: number) => String(1900 + i)
  const pagesOf = (options: Partial<NoisyPagesOptions>, n: number) =>
    Array.from({ length: n }, (_, i) => noisyPages("Zorav", "1888", derive(key, i), { lookalikes: 2, missingRate: 0.25, fakeFact, ...options }))
  const names = (r: { readonly pages: ReadonlyArray<string> }) => r.pages.map((p) => p.split(" ")[0]!)
  const differing = (a: string, b: string) => [...a].filter((c, i) => b[i] !== c).length

  it("look-alikes differ as configured: one letter anywhere (default), the first letter only, or a whole other name of the same shape", () => {
    const shape = (s: string) => [...s.toLowerCase()].map((c) => ("aeiou".includes(c) ? "V" : "C")).join("")
    for (const r of pagesOf({}, 200)) for (const n of names(r).filter((x) => x !== "Zorav")) assert.strictEqual(differing(n, "Zorav"), 1, n)
    for (const r of pagesOf({ style: "first" }, 200)) {
      for (const n of names(r).filter((x) => x !== "Zorav")) {
        assert.strictEqual(n.slice(1), "orav", n)
        assert.notStrictEqual(n[0], "Z")
        assert.match(n, /^[A-Z]/)
      }
    }
    let many = 0
    for (const r of pagesOf({ style: "random" }, 200)) {
      for (const n of names(r).filter((x) => x !== "Zorav")) {
        assert.strictEqual(shape(n), shape("Zorav"), n)
        assert.notStrictEqual(n[0], "Z")
        if (differing(n, "Zorav") >= 3) many++
      }
    }
    assert.isAbove(many, 300, "random look-alikes mostly differ in three letters or more")
  })

  it("without options the pages are those of before (the default style, unranked, unpadded, with the same keyed draws)", () => {
    assert.deepStrictEqual(pagesOf({}, 100), pagesOf({ style: "letter", ranked: false, padMissing: false }, 100))
    // the default task's first 300 demonstrations, byte for byte as before the options existed
    const text = (t: PremiseTask) => t.demonstrations("train", { start: 0, count: 300 }).map((d) => d.text).join("\n\u0000")
    assert.strictEqual(createHash("sha256").update(text(NoisySearch.make({ seed: 1, lookalikes: 2, missingRate: 0.25 }))).digest("hex").slice(0, 16), "a5df9bac98ce13a2")
    assert.strictEqual(createHash("sha256").update(text(NoisySearch.make({ seed: 12, lookalikes: 2, missingRate: 0.25 }))).digest("hex").slice(0, 16), "af64165b390c2252")
  })

  it("ranked: the target's page comes first (or last) whenever it is shown; padMissing: every search shows lookalikes + 1 pages", () => {
    const ranked = pagesOf({ ranked: true }, 400)
    for (const r of ranked) if (r.targetShown) assert.strictEqual(names(r)[0], "Zorav")
    const firstOthers = new Set(ranked.filter((r) => r.targetShown).map((r) => names(r)[1]))
    assert.isAbove(firstOthers.size, 1)
    for (const r of pagesOf({ ranked: "last" }, 400)) if (r.targetShown) assert.strictEqual(names(r)[r.pages.length - 1], "Zorav")
    const padded = pagesOf({ padMissing: true, ranked: true }, 400)
    const missing = padded.filter((r) => !r.targetShown).length
    assert.isTrue(missing > 60 && missing < 140, `${missing} of 400 missing`)
    for (const r of padded) {
      assert.strictEqual(r.pages.length, 3)
      assert.strictEqual(new Set(names(r)).size, 3)
      assert.strictEqual(names(r).includes("Zorav"), r.targetShown)
    }
  })

  const optioned: ReadonlyArray<readonly [string, PremiseTask]> = [
    ["first letter", NoisySearch.make({ seed: 1, lookalikes: 2, missingRate: 0.25, lookalikeStyle: "first" })],
    ["random names", NoisySearch.make({ seed: 1, lookalikes: 2, missingRate: 0.25, lookalikeStyle: "random" })],
    ["ranked, padded", NoisySearch.make({ seed: 1, lookalikes: 2, missingRate: 0.25, ranked: true, padMissing: true })],
    ["ranked last, answering after most misses", NoisySearch.make({ seed: 1, lookalikes: 2, missingRate: 0.25, ranked: "last", missWrongShare: 0.7 })]
  ]
  for (const [label, task] of optioned) {
    it.effect(`${label}: demonstrations re-render identically through the tool; ≥ 1,000 distinct held-out questions apart from training; they fit 192 tokens`, () =>
      Effect.gen(function*() {
        for (const d of task.demonstrations("train", { start: 0, count: 60 })) assert.strictEqual((yield* renderWithToolbox(d)).text, d.text, d.problem.id)
        const test = new Set(task.problems("test", { start: 0, count: 2500 }).map((p) => p.question))
        const train = new Set(task.problems("train", { start: 0, count: 2500 }).map((p) => p.question))
        assert.isAtLeast(test.size, 1000)
        for (const q of test) assert.isFalse(train.has(q), q)
        const demos = task.demonstrations("train", { start: 0, count: 400 })
        for (const d of demos) assert.isAtMost(byteTokenizer.encode(d.text).length, 192, d.problem.id)
        for (const d of demos.filter((x) => x.quality === "perfect")) assert.strictEqual(task.reward(d.response, d.problem).score, 1, d.response)
        const outcomes = demoOutcomes(task, 400)
        assert.isAbove(outcomes["missing"] ?? 0, 60)
        assert.isAbove(outcomes["ambiguous"] ?? 0, 200)
      }).pipe(Effect.provide(toolboxOf(task))))
  }

  it("missWrongShare sets how often a demonstration answers right after a miss instead of searching again", () => {
    const afterMiss = (task: PremiseTask) => {
      let answered = 0
      let searched = 0
      for (const d of task.demonstrations("train", { start: 0, count: 1200 })) {
        // the first search only (after the third, the call limit, every demonstration answers)
        d.segments.forEach((s, i) => {
          if (s.role !== "tool" || d.segments.findIndex((x) => x.role === "tool") !== i || task.outcomeOf(s.tool, s.content, s.text.replace(/^ <result>\n/, "").replace(/\n<\/result>$/, "")) !== "missing") return
          const next = d.segments[i + 1]
          if (next?.role === "model" && next.text.startsWith("<answer>")) answered++
          else if (next?.role === "model" && next.text.startsWith("<search>")) searched++
        })
      }
      return answered / (answered + searched)
    }
    const base = { seed: 1, lookalikes: 2, missingRate: 0.25, ranked: true }
    assert.approximately(afterMiss(NoisySearch.make(base)), 0.25, 0.06)
    assert.approximately(afterMiss(NoisySearch.make({ ...base, missWrongShare: 0.7 })), 0.7, 0.06)
    assert.approximately(afterMiss(NoisySearch.make({ ...base, missWrongShare: 0 })), 0, 0.001)
    // the other wrong move (a look-alike's year when the target is shown) keeps its share
    const shownWrong = (task: PremiseTask) => {
      const ds = task.demonstrations("train", { start: 0, count: 1200 }).filter((d) => d.segments.filter((s) => s.role === "tool").length === 1 && d.response.includes(`\n${d.problem.meta?.["entity"]} `))
      return ds.filter((d) => d.quality !== "perfect").length / ds.length
    }
    assert.approximately(shownWrong(NoisySearch.make({ ...base, missWrongShare: 0.7 })), 0.25, 0.05)
  })

  it("the control is unchanged by the options' existence: one exact page, never missing", () => {
    const control = NoisySearch.make({ seed: 12, lookalikes: 0, missingRate: 0 })
    assert.isTrue(control.control)
    assert.deepStrictEqual(Object.keys(demoOutcomes(control, 300)), ["ok"])
    assert.include(Effect.runSync(Effect.flip(NoisySearch.fromConfig({ seed: 1, lookalikes: 2, missingRate: 0.25, lookalikeStyle: "second" }))).message, "noisy-search config")
  })
})
