/**
 * `--sweep`: a plain key sweeps every arm, `arm:key` that arm only (no bit-identical copies of the
 * other arms), its errors say --sweep (not --set), and the help example of `arpo run` resolves.
 */
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { resolveArms } from "../../src/experiment/define.ts"
import { sweepExamples } from "../../src/cli/run.ts"
import { arpoVsGrpoSpec } from "../../src/experiment/catalog/arpoVsGrpo.ts"
import { tinySpec } from "../run/tiny.ts"

const resolve = (sweep: Record<string, ReadonlyArray<string>>) => Effect.runPromiseExit(resolveArms(tinySpec(), { profile: "quick", set: {}, sweep }))

const failure = (exit: Exit.Exit<unknown, unknown>): { _tag: string; message: string } => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (reason === undefined || reason._tag !== "Fail") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return reason.error as { _tag: string; message: string }
}

const names = async (sweep: Record<string, ReadonlyArray<string>>) => {
  const exit = await resolve(sweep)
  if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
  return exit.value
}

describe("--sweep", () => {
  it("arm:key sweeps that arm only; the other arms run once, unchanged", async () => {
    const arms = await names({ "arpo:rollout.beta": ["0", "1"] })
    expect(arms.map((a) => a.name)).toEqual(["grpo", "arpo+rollout.beta=0", "arpo+rollout.beta=1"])
    expect(arms.map((a) => a.config.rollout.beta).slice(1)).toEqual([0, 1])
  })

  it("a plain key sweeps every arm, crossed with per-arm keys", async () => {
    const arms = await names({ "rl.lr": ["1e-6", "3e-6"], "arpo:rollout.beta": ["0", "1"] })
    expect(arms.map((a) => a.name)).toEqual([
      "grpo+rl.lr=1e-6",
      "grpo+rl.lr=3e-6",
      "arpo+rl.lr=1e-6+rollout.beta=0",
      "arpo+rl.lr=1e-6+rollout.beta=1",
      "arpo+rl.lr=3e-6+rollout.beta=0",
      "arpo+rl.lr=3e-6+rollout.beta=1"
    ])
  })

  it("errors name --sweep and the key: an unknown key, a bad value, an unknown arm", async () => {
    const unknown = failure(await resolve({ lr: ["1e-6", "3e-6"] }))
    expect(unknown._tag).toBe("ConfigInvalid")
    expect(unknown.message).toMatch(/^--sweep lr=1e-6: unknown config key "lr"; known keys: /)
    const bad = failure(await resolve({ "rl.steps": ["many"] }))
    expect(bad.message).toMatch(/^--sweep rl\.steps=many: expected a number/)
    const arm = failure(await resolve({ "ppo:rollout.beta": ["0"] }))
    expect(arm.message).toBe(`--sweep ppo:rollout.beta=0: experiment tiny has no arm "ppo" (its arms: grpo, arpo)`)
  })

  it("the help examples of arpo run resolve", async () => {
    for (const example of Object.values(sweepExamples)) {
      const [key, values] = example.split("=") as [string, string]
      const arms = await Effect.runPromise(resolveArms(arpoVsGrpoSpec, { profile: "quick", set: {}, sweep: { [key]: values.split(",") } }))
      expect(arms.length).toBeGreaterThan(2)
    }
  })
})
