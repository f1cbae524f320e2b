// The evaluator against an oracle Engine of the test's own (it answers from the question's number, correct
// with a known pattern), so greedy accuracy, pass@k from n samples and tool calls have exact expected values;
// plus the option checks (the benchmark toolbox's tool choices: test/experiment/benchmarkTools.test.ts).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { passAtK } from "../../src/core/passAtK.ts"
import { uniform } from "../../src/core/random.ts"
import { Engine, type GenerateRequest, type Generation } from "../../src/engine/Engine.ts"
import { Events } from "../../src/events/Events.ts"
import { byteTokenizer, decode, encode } from "../../src/model/tokenizer.ts"
import { type RunnerEnv } from "../../src/rollout/runner.ts"
import { checkEvalOptions, evaluateDetailed, evaluateWith } from "../../src/run/evaluate.ts"
import { fromRows } from "../../src/tasks/benchmarks.ts"
import { Toolbox } from "../../src/tools/Toolbox.ts"
import * as Calculator from "../../src/tools/calculator.ts"

const QUESTIONS = 6
const task = fromRows(
  "gsm8k",
  Array.from({ length: QUESTIONS }, (_, i) => ({ question: `Question ${i}: what is ${i} + 0?`, golds: [String(i)], meta: {} })),
  { format: "compact" }
)

/**
 * Answers question q with `<answer>\boxed{q}</answer>` (correct) or `\boxed{-1}` (wrong) as `correct(q, request)`
 * says; with `callFirst`, the first segment of a response is a `<python>` call instead.
 */
const oracle = (correct: (q: number, r: GenerateRequest) => boolean, seen: Array<GenerateRequest>, callFirst = false): Engine["Service"] =>
  Engine.of({
    name: "oracle",
    capabilities: { entropy: "exact", prefixReuse: false, maxConcurrency: 64, deterministic: true },
    tokenizer: byteTokenizer,
    policyVersion: Effect.succeed(0),
    accepts: [],
    load: () => Effect.void,
    generate: (requests) =>
      Effect.sync(() =>
        requests.map((r): Generation => {
          seen.push(r)
          const text = decode(r.tokens)
          const q = Number(/Question (\d+)/.exec(text)![1])
          const body = callFirst && !text.includes("</result>")
            ? [...encode(`<python>${q} + 0</python>`)]
            : [...encode(`<answer>\\boxed{${correct(q, r) ? q : -1}}</answer>`), byteTokenizer.eos]
          const close = byteTokenizer.special("</python>")!
          const zeros = body.map(() => 0)
          return {
            tokens: body,
            logprobs: zeros,
            entropies: zeros,
            finish: body[body.length - 1] === close ? { _tag: "stop", token: close } : { _tag: "eos" }
          }
        })
      ),
    score: (sequences) => Effect.succeed(sequences.map((s) => ({ logprobs: s.map(() => 0), entropies: s.map(() => 0) })))
  })

const withEnv = <A, E>(engine: Engine["Service"], f: (env: RunnerEnv) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const toolbox = yield* Toolbox
    return yield* f({ engine, toolbox, events: yield* Events })
  }).pipe(Effect.provide(Toolbox.layer([Calculator.tool({ name: "python" })], { callLimit: 2 }).pipe(Layer.provideMerge(Events.layerDiscard))))

const settings = (k: number) => ({ every: 0, questions: QUESTIONS, k, maxResponseTokens: 64 })
const rollout = { callLimit: 2, window: 4 }

describe("evaluateDetailed", () => {
  it.effect("greedy accuracy is measured at temperature 0; pass@k from n samples is the mean of the unbiased estimator", () =>
    Effect.gen(function*() {
      const seen: Array<GenerateRequest> = []
      // greedy: correct on even questions; samples: correct when the key's draw is below 0.4
      const engine = oracle((q, r) => (r.temperature === 0 ? q % 2 === 0 : uniform(r.key, 999) < 0.4), seen)
      const d = yield* withEnv(engine, (env) =>
        evaluateDetailed(env, task, settings(4), rollout, { split: "test", seed: 3, step: 0, samples: 8, ks: [1, 2, 4, 8] }))
      const f = d.figures
      assert.strictEqual(f.questions, QUESTIONS)
      assert.strictEqual(f.samples, 8)
      assert.strictEqual(f.accuracyGreedy, 0.5)
      assert.deepStrictEqual(Object.keys(f.passAt), ["1", "2", "4", "8"])
      const greedyRequests = seen.filter((r) => r.temperature === 0)
      assert.strictEqual(greedyRequests.length, QUESTIONS)
      assert.isTrue(greedyRequests.every((r) => r.topP === 1))
      assert.strictEqual(seen.filter((r) => r.temperature === 1).length, QUESTIONS * 8)
      const correct = d.perQuestion.map((q) => q.correct)
      assert.isTrue(correct.some((c) => c > 0 && c < 8), `a mix of right and wrong samples (${correct})`)
      for (const k of [1, 2, 4, 8]) {
        const want = correct.reduce((a, c) => a + passAtK(8, c, k), 0) / QUESTIONS
        assert.closeTo(f.passAt[String(k)]!, want, 1e-12)
      }
      assert.closeTo(f.passAt["1"]!, correct.reduce((a, c) => a + c, 0) / (8 * QUESTIONS), 1e-12)
      assert.strictEqual(f.passAtK, f.passAt["4"])
      assert.strictEqual(f.k, 4)
      assert.strictEqual(d.failedGreedy + d.failedSampled, 0)
    }))

  it.effect("the same seed gives the same figures; tool calls per question count the greedy responses' calls", () =>
    Effect.gen(function*() {
      const run = () =>
        withEnv(oracle((_q, r) => uniform(r.key, 5) < 0.5 || r.temperature === 0, [], true), (env) =>
          evaluateDetailed(env, task, settings(2), rollout, { split: "test", seed: 9, step: 1, samples: 4, ks: [1, 2] }))
      const a = yield* run()
      const b = yield* run()
      assert.deepStrictEqual(a.perQuestion, b.perQuestion)
      assert.deepStrictEqual(a.figures.passAt, b.figures.passAt)
      assert.strictEqual(a.figures.toolCallsPerQuestion, 1)
      assert.strictEqual(a.toolCallsPerSample, 1)
      assert.strictEqual(a.figures.accuracyGreedy, 1)
    }))

  it.effect("evaluateWith keeps the loop's figures: k samples, pass@k = share of questions with a correct sample, pass@1 and pass@k reported", () =>
    Effect.gen(function*() {
      // a sample of question q is right with probability (q mod 3) / 3; greedy is right on question 0 only
      const engine = oracle((q, r) => r.temperature === 0 ? q === 0 : uniform(r.key, 999) < (q % 3) / 3, [])
      const f = yield* withEnv(engine, (env) => evaluateWith(env, task, settings(3), rollout, { split: "test", seed: 1, step: 0 }))
      assert.strictEqual(f.samples, 3)
      assert.deepStrictEqual(Object.keys(f.passAt), ["1", "3"])
      assert.strictEqual(f.passAtK, f.passAt["3"])
      assert.strictEqual(f.accuracyGreedy, 1 / QUESTIONS)
      const d = yield* withEnv(engine, (env) => evaluateDetailed(env, task, settings(3), rollout, { split: "test", seed: 1, step: 0 }))
      assert.strictEqual(f.passAtK, d.perQuestion.filter((q) => q.correct > 0).length / QUESTIONS)
    }))

  it("options that pass@k cannot meet are refused with a message naming the option", () => {
    assert.match(checkEvalOptions(4, { samples: 2 })!.message, /k 4 is above the 2 samples/)
    assert.match(checkEvalOptions(1, { samples: 4, ks: [1, 8] })!.message, /k 8 is above the 4 samples/)
    assert.match(checkEvalOptions(1, { ks: [0] })!.message, /k 0: give integers ≥ 1/)
    assert.match(checkEvalOptions(1, { temperature: 0 })!.message, /temperature 0/)
    assert.match(checkEvalOptions(1, { topP: 1.5 })!.message, /top-p 1.5/)
    assert.strictEqual(checkEvalOptions(2, { samples: 4, ks: [1, 4] }), undefined)
  })
})
