/**
 * `engine.kernels = native` as a run-config key: the default stays jax (and then the engine is jax-js's),
 * a bad value is a ConfigInvalid naming the key, and a tiny ARPO run sampling with the native generator
 * (and training with the native learner, on 1 and 2 sampling threads) trains end to end, recording the
 * jax-js run's events up to float rounding (a token could flip where two choices straddle a draw by float
 * rounding: none does in this run; on 2 threads engine.call may count a few context tokens computed
 * instead of reused, the same sum, as with jax-js).
 */
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { define, resolveArms } from "../../../src/experiment/define.ts"
import { arpoOnly, comparableEvents, run, tempDir } from "../../run/tiny.ts"
import { closeEvents } from "../../run/closeEvents.ts"

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
})


/** engine.call's context tokens as one sum: on 2 threads a request routed away from the thread holding its prefix recomputes it */
const contextSums = (events: ReadonlyArray<unknown>) =>
  events.map((e) => {
    const { stamp, event } = e as { stamp: unknown; event: Record<string, unknown> }
    if (event["_tag"] !== "engine.call") return e
    const { computedTokens, reusedTokens, ...rest } = event
    return { stamp, event: { ...rest, contextTokens: (computedTokens as number) + (reusedTokens as number) } }
  })

const resolve = (set: Record<string, string>) => Effect.runPromiseExit(resolveArms(arpoOnly(), { profile: "quick", set, sweep: {} }))

describe("engine.kernels", () => {
  it("defaults to jax, takes native by --set, and another value is a ConfigInvalid naming the key", async () => {
    const defaults = await resolve({})
    if (Exit.isFailure(defaults)) throw new Error(String(defaults.cause))
    expect(defaults.value[0]!.config.engine["kernels"]).toBe("jax")
    const native = await resolve({ "engine.kernels": "native" })
    if (Exit.isFailure(native)) throw new Error(String(native.cause))
    expect(native.value[0]!.config.engine["kernels"]).toBe("native")
    const bad = await resolve({ "engine.kernels": "wasm" })
    if (Exit.isSuccess(bad)) throw new Error("--set engine.kernels=wasm should fail")
    const reason = bad.cause.reasons.find((r) => r._tag === "Fail")
    const error = reason?._tag === "Fail" ? reason.error as { _tag: string; message: string } : undefined
    expect(error?._tag).toBe("ConfigInvalid")
    expect(error?.message).toContain("kernels")
    expect(error?.message).toMatch(/"jax"[\s\S]*"native"|"native"[\s\S]*"jax"/)
  })

  it("a tiny ARPO run sampling with the native generator and training with the native learner trains end to end: jax-js's events up to float rounding, on 1 and 2 sampling threads", async () => {
    const options = (out: string, set: Record<string, string>) => ({ profile: "quick" as const, seeds: undefined, set: { "rl.steps": "2", "sft.steps": "20", "trainer.kernels": "native", ...set }, sweep: {}, out })
    const jax = await comparableEvents(await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), {}))))
    const nativeDir = await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), { "engine.kernels": "native" })))
    const config = JSON.parse(fs.readFileSync(NodePath.join(nativeDir, "config.json"), "utf8")) as { arms: ReadonlyArray<{ config: { engine: { kernels: string } } }> }
    expect(config.arms[0]!.config.engine.kernels).toBe("native")
    const native = await comparableEvents(nativeDir)
    const kinds = (es: ReadonlyArray<unknown>) => es.map((e) => (e as { event: { _tag: string } }).event._tag)
    expect(kinds(native)).toEqual(kinds(jax))
    expect(kinds(native).filter((k) => k === "train.step").length).toBeGreaterThan(0)
    jax.forEach((e, i) => closeEvents(e, native[i], `event ${i}`))
    // not jax-js under another name: another summation order ran
    expect(JSON.stringify(native)).not.toBe(JSON.stringify(jax))
    const two = contextSums(await comparableEvents(await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), { "engine.kernels": "native", "engine.threads": "2" })))))
    expect(kinds(two)).toEqual(kinds(jax))
    contextSums(jax).forEach((e, i) => closeEvents(e, two[i], `event ${i} (2 threads)`))
  }, 300_000)
})
