// progress: quiet when not a TTY or under tests; a bar line with count, rate and ETA otherwise.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeProgress, progressEnabled, renderBar } from "../../src/run/progress.ts"

describe("progress", () => {
  it("is disabled without a TTY, under vitest, and with ARPO_PROGRESS=0", () => {
    assert.isFalse(progressEnabled({ isTTY: false }, {}))
    assert.isFalse(progressEnabled({ isTTY: true }, { VITEST: "true" }))
    assert.isFalse(progressEnabled({ isTTY: true }, { ARPO_PROGRESS: "0" }))
    assert.isTrue(progressEnabled({ isTTY: true }, {}))
    assert.isFalse(progressEnabled())
  })

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
