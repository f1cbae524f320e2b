// progress: quiet when not a TTY or under tests; a bar line with count, rate and ETA otherwise.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeProgress, progressEnabled, progressMode, renderBar, renderLine } from "../../src/io/progress.ts"

describe("progress", () => {
  it("is disabled without a TTY, under vitest, and with ARPO_PROGRESS=0", () => {
    assert.isFalse(progressEnabled({ isTTY: false }, {}))
    assert.isFalse(progressEnabled({ isTTY: true }, { VITEST: "true" }))
    assert.isFalse(progressEnabled({ isTTY: true }, { ARPO_PROGRESS: "0" }))
    assert.isTrue(progressEnabled({ isTTY: true }, {}))
    assert.isFalse(progressEnabled())
  })

  it("prints timestamped lines when stderr is not a terminal (logs, nohup, CI), nothing under tests", () => {
    assert.strictEqual(progressMode({ isTTY: false }, {}), "lines")
    assert.strictEqual(progressMode({ isTTY: true }, {}), "bar")
    assert.strictEqual(progressMode({ isTTY: false }, { VITEST: "true" }), "off")
    assert.strictEqual(progressMode({ isTTY: false }, { ARPO_PROGRESS: "0" }), "off")
    assert.strictEqual(renderLine("arpo seed 1", 3, 8, Date.UTC(2026, 11, 4, 18, 0, 0), 6000, "acc 0.50"), "2026-12-04T18:00:00Z arpo seed 1: 3/8 · acc 0.50 · 2.0 s/it · eta 10s")
  })

  it.effect("lines mode writes a line at most every 10 s, the last unit always, and a timestamped finish", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      let t = Date.UTC(2026, 11, 4, 18, 0, 0)
      const p = yield* makeProgress({ label: "grpo seed 2", total: 4, now: () => t, stream: { isTTY: false, write: (s) => out.push(s) }, mode: "lines" })
      yield* p.update(1)
      t += 5_000
      yield* p.update(2) // within 10 s of the last line
      t += 6_000
      yield* p.update(3)
      t += 1_000
      yield* p.update(4)
      yield* p.finish("grpo seed 2: RL steps 0…4 in 12.0 s")
      assert.deepStrictEqual(out.map((l) => l.split(" · ")[0]!.trimEnd()), [
        "2026-12-04T18:00:00Z grpo seed 2: 1/4",
        "2026-12-04T18:00:11Z grpo seed 2: 3/4",
        "2026-12-04T18:00:12Z grpo seed 2: 4/4",
        "2026-12-04T18:00:12Z grpo seed 2: RL steps 0…4 in 12.0 s"
      ])
      for (const l of out) assert.match(l, /\n$/)
      assert.notInclude(out.join(""), "\r")
    }))

  it("renders bar, count, rate and ETA", () => {
    assert.strictEqual(renderBar("train", 5, 10, 10_000, 10, "arpo seed 1"), "train [#####.....] 5/10 · arpo seed 1 · 2.0 s/it · eta 10s")
    assert.strictEqual(renderBar("x", 0, 4, 0, 4), "x [....] 0/4 · … · eta ?")
  })

  it.effect("writes nothing when disabled and draws, throttled, when enabled", () =>
    Effect.gen(function*() {
      const quiet: Array<string> = []
      const q = yield* makeProgress({ label: "q", total: 3, stream: { isTTY: false, write: (s) => quiet.push(s) } })
      yield* q.update(1)
      yield* q.finish()
      assert.deepStrictEqual(quiet, [])
      const out: Array<string> = []
      let t = 0
      const p = yield* makeProgress({ label: "p", total: 3, enabled: true, now: () => t, stream: { write: (s) => out.push(s) } })
      yield* p.update(1)
      t = 50
      yield* p.update(2) // throttled
      t = 60
      yield* p.update(3) // last unit always drawn
      yield* p.finish("done")
      assert.strictEqual(out.length, 3)
      assert.match(out[1]!, /3\/3/)
      assert.match(out[2]!, /done\n$/)
    }))
})
