import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { loadSystemPrompt } from "../../src/tasks/data.ts"
import { arpoSystemPrompt, chatml, renderPrompt, repairEscapes } from "../../src/tasks/systemPrompt.ts"

describe("system prompt", () => {
  it.effect("the stored prompt, repaired, is ARPO's prompt with \\boxed and no backspace byte", () =>
    Effect.gen(function*() {
      const text = yield* loadSystemPrompt()
      assert.strictEqual(text, arpoSystemPrompt)
      assert.notInclude(text, "\x08")
      assert.include(text, "\\[ \\boxed{answer here} \\]")
      assert.include(text, "enclosed within \\boxed{} with latex format.")
    }))

  it("repairs the escaped LaTeX commands of the released data", () => {
    assert.strictEqual(repairEscapes("the form \x08oxed{x}"), "the form \\boxed{x}")
    assert.strictEqual(repairEscapes("in the form \x0crac{m}{n}, where"), "in the form \\frac{m}{n}, where")
    assert.strictEqual(repairEscapes("\x09ext{cm} and \x09imes"), "\\text{cm} and \\times")
  })

  it("leaves real whitespace and PDF ligature debris alone", () => {
    for (const s of ["line\n\tan indented line", "a bakery \x0cfinds", "di\x0bfference", "x\r\n\r y", "\tthe"]) {
      assert.strictEqual(repairEscapes(s), s)
    }
  })

  it("repairEscapes is idempotent and changes nothing in text without control characters", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom("a", "o", "x", "e", "d", "r", "c", "\x08", "\x0c", "\t", " ", "{") }), (s) => {
        const once = repairEscapes(s)
        return repairEscapes(once) === once && (/[\x00-\x1f]/.test(s) || once === s)
      }),
      { seed: 42, numRuns: 300 }
    )
  })

  it("renders the compact, chatml and plain formats", () => {
    assert.deepStrictEqual(renderPrompt("compact", "SYS", "What is 2?", "2?"), {
      prompt: "2?\n",
      messages: [{ role: "user", content: "2?" }]
    })
    const c = renderPrompt("chatml", "SYS", "Q")
    assert.strictEqual(c.prompt, "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
    assert.strictEqual(c.prompt, chatml(c.messages))
    assert.strictEqual(renderPrompt("plain", "SYS", "Q").prompt, "SYS\n\nQuestion: Q\nAnswer: ")
  })
})
