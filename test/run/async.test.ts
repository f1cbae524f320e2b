/**
 * One-step-asynchronous RL (`rl.async`, src/run/loop.ts) on the tiny embedded experiment: with rl.async = 1 every
 * step after the first trains on trajectories sampled from weights exactly one version old (recorded per
 * trajectory, admitted by the trainer's maxPolicyLag 1), each step's events are stamped with their own step, and
 * the run completes with its evaluations and checkpoints; rl.async = 0 gives the synchronous loop's events.
 */
import { Effect, Layer } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { define } from "../../src/experiment/define.ts"
import { mergePatch } from "../../src/run/config.ts"
import { embeddedTrainerOf } from "../../src/experiment/registries.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"
import { comparableEvents, run, tempDir, tinySpec } from "./tiny.ts"

const options = (out: string) => ({ profile: "quick" as const, seeds: undefined, set: {}, sweep: {}, out })

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
})

describe("rl.async", () => {
  it("rl.async = 1: steps after the first train on trajectories one version old; rl.async = 0 gives the synchronous events", async () => {
    // per train call: the trainer's version and the batch's trajectory versions
    const seen: Array<{ current: number; versions: ReadonlyArray<number> }> = []
    const trainer = (config: Parameters<typeof embeddedTrainerOf>[0], policy: Parameters<typeof embeddedTrainerOf>[1]) =>
      Layer.effect(
        Trainer,
        Effect.gen(function*() {
          const t = yield* Trainer
          return Trainer.of({
            ...t,
            train: (batch, o) =>
              Effect.gen(function*() {
                seen.push({ current: yield* t.policyVersion, versions: [...new Set(batch.sequences.map((s) => s.policyVersion))] })
                return yield* t.train(batch, o)
              })
          })
        })
      ).pipe(Layer.provide(embeddedTrainerOf(config, policy)))
    const base = tinySpec()
    const spec = (a: 0 | 1, withTrainer: boolean) => ({
      ...base,
      config: mergePatch(base.config, { rl: { async: a } }),
      ...(withTrainer ? { components: { trainer } } : {})
    })
    const asyncDir = await run(define(spec(1, true)).run(options(tempDir("arpo-runs-"))))
    // 2 arms × 4 steps; step 1 samples from version 0 (nothing to overlap), step s > 1 from version s − 2
    expect(seen.length).toBe(8)
    for (const arm of [0, 1]) {
      const calls = seen.slice(arm * 4, arm * 4 + 4)
      expect(calls[0]).toEqual({ current: 0, versions: [0] })
      for (let s = 2; s <= 4; s++) expect(calls[s - 1]).toEqual({ current: s - 1, versions: [s - 2] })
    }
    const events = await comparableEvents(asyncDir)
    const of = (tag: string) => events.filter((e) => (e as { event: { _tag: string } }).event._tag === tag)
    const steps = (tag: string) => of(tag).map((e) => (e as { stamp: { arm: string; step: number } }).stamp).map((s) => `${s.arm}:${s.step}`)
    expect(steps("train.step").length).toBeGreaterThanOrEqual(8)
    expect(new Set(steps("reward.batch"))).toEqual(new Set(["grpo", "arpo"].flatMap((a) => [1, 2, 3, 4].map((s) => `${a}:${s}`))))
    expect(new Set(steps("rollout.batch"))).toEqual(new Set(["grpo", "arpo"].flatMap((a) => [1, 2, 3, 4].map((s) => `${a}:${s}`))))
    expect(of("checkpoint").length).toBe(4)
    expect(of("eval").length).toBe(6)

    // rl.async = 0 is the synchronous loop: the same events as a run without the setting
    const sync = await run(define(tinySpec()).run(options(tempDir("arpo-runs-"))))
    const zero = await run(define(spec(0, false)).run(options(tempDir("arpo-runs-"))))
    expect(await comparableEvents(zero)).toEqual(await comparableEvents(sync))
  }, 300_000)
})
