/**
 * The embedded engine's and trainer's speed settings as run-config keys: `engine.threads` (sampling
 * threads) and `trainer.treePacking` (policy steps on packed rollout trees) are in every resolved
 * config with their defaults, `--set` changes them, a misspelt key is still a ConfigInvalid naming the
 * component's keys, and a tiny ARPO run sampled on 2 threads records the same events as on 1 thread
 * (tokens, rewards, losses, metrics; only the split of engine.call's context tokens into computed and
 * reused may differ, since a prefix held by one thread is recomputed by the other); one trained on
 * packed trees records the unpacked run's events up to float rounding.
 */
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { define, resolveArms } from "../../src/experiment/define.ts"
import { arpoOnly, comparableEvents, run, tempDir } from "../run/tiny.ts"
import { closeEvents } from "../run/closeEvents.ts"

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
})


const resolve = (set: Record<string, string>) => Effect.runPromiseExit(resolveArms(arpoOnly(), { profile: "quick", set, sweep: {} }))

describe("embedded speed settings in the run config", () => {
  it("engine.threads and trainer.treePacking have defaults, take --set, and a misspelt key names the known keys", async () => {
    const defaults = await resolve({})
    if (Exit.isFailure(defaults)) throw new Error(String(defaults.cause))
    expect(defaults.value[0]!.config.engine).toEqual({ name: "embedded", maxSlots: 16, threads: 1, kernels: "jax" })
    expect(defaults.value[0]!.config.trainer).toEqual({ name: "embedded", workers: 1, treePacking: false, kernels: "jax" })

    const set = await resolve({ "engine.threads": "2", "trainer.treePacking": "true", "trainer.workers": "2" })
    if (Exit.isFailure(set)) throw new Error(String(set.cause))
    expect(set.value[0]!.config.engine["threads"]).toBe(2)
    expect(set.value[0]!.config.trainer["treePacking"]).toBe(true)
    expect(set.value[0]!.config.trainer["workers"]).toBe(2)

    for (const [key, raw, known] of [["engine.thread", "2", "threads"], ["trainer.treePack", "true", "treePacking"]] as const) {
      const bad = await resolve({ [key]: raw })
      if (Exit.isSuccess(bad)) throw new Error(`--set ${key} should fail`)
      const reason = bad.cause.reasons.find((r) => r._tag === "Fail")
      const error = reason?._tag === "Fail" ? reason.error as { _tag: string; key: string; message: string } : undefined
      expect(error?._tag).toBe("ConfigInvalid")
      expect(error?.key).toBe(key)
      expect(error?.message).toContain(known)
    }
    const zero = await resolve({ "engine.threads": "0" })
    expect(Exit.isFailure(zero)).toBe(true)
  })

  it("trainer.kernels defaults to jax, takes native by --set (with gradient workers and packed trees too), and another value is a ConfigInvalid naming both", async () => {
    const native = await resolve({ "trainer.kernels": "native", "trainer.workers": "2", "trainer.treePacking": "true" })
    if (Exit.isFailure(native)) throw new Error(String(native.cause))
    expect(native.value[0]!.config.trainer["kernels"]).toBe("native")
    expect(native.value[0]!.config.trainer["workers"]).toBe(2)
    expect(native.value[0]!.config.trainer["treePacking"]).toBe(true)
    for (const set of [{ "trainer.kernels": "wasm" }]) {
      const bad = await resolve(set)
      if (Exit.isSuccess(bad)) throw new Error(`--set ${JSON.stringify(set)} should fail`)
      const reason = bad.cause.reasons.find((r) => r._tag === "Fail")
      const error = reason?._tag === "Fail" ? reason.error as { _tag: string; message: string } : undefined
      expect(error?._tag).toBe("ConfigInvalid")
      expect(error?.message).toMatch(/"jax"[\s\S]*"native"|"native"[\s\S]*"jax"/)
    }
  })

  it("a tiny ARPO run with engine.threads = 2 records the same events as with one thread", async () => {
    const options = (out: string, set: Record<string, string>) => ({ profile: "quick" as const, seeds: undefined, set: { "rl.steps": "2", "sft.steps": "20", ...set }, sweep: {}, out })
    const one = await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), {})))
    const two = await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), { "engine.threads": "2" })))
    const config = JSON.parse(fs.readFileSync(NodePath.join(two, "config.json"), "utf8")) as { arms: ReadonlyArray<{ config: { engine: { threads: number } } }> }
    expect(config.arms[0]!.config.engine.threads).toBe(2)
    // config.json differs in engine.threads only; a request routed to the other thread recomputes the
    // prefix its sibling holds, so engine.call may count a few tokens computed instead of reused (same sum)
    const comparable = (events: ReadonlyArray<unknown>) =>
      events.map((e) => {
        const { stamp, event } = e as { stamp: unknown; event: Record<string, unknown> }
        if (event["_tag"] !== "engine.call") return e
        const { computedTokens, reusedTokens, ...rest } = event
        return { stamp, event: { ...rest, contextTokens: (computedTokens as number) + (reusedTokens as number) } }
      })
    const a = comparable(await comparableEvents(one))
    const b = comparable(await comparableEvents(two))
    expect(a.length).toBeGreaterThan(10)
    expect(a.filter((e) => (e as { event: { _tag: string } }).event._tag === "engine.call").length).toBeGreaterThan(0)
    expect(b).toEqual(a)
  }, 240_000)

  it("a tiny ARPO run with trainer.treePacking = true trains on packed trees: the same events up to float rounding", async () => {
    const options = (out: string, set: Record<string, string>) => ({ profile: "quick" as const, seeds: undefined, set: { "rl.steps": "1", "sft.steps": "20", ...set }, sweep: {}, out })
    const plain = await comparableEvents(await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), {}))))
    const packed = await comparableEvents(await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), { "trainer.treePacking": "true" }))))
    expect(packed.length).toBe(plain.length)
    plain.forEach((e, i) => closeEvents(e, packed[i], `event ${i}`))
  }, 240_000)

  it("a tiny ARPO run with trainer.kernels = native trains with the native model (on 1 and 2 threads, plain and packed): the same events as jax-js's up to float rounding", async () => {
    const options = (out: string, set: Record<string, string>) => ({ profile: "quick" as const, seeds: undefined, set: { "rl.steps": "2", "sft.steps": "20", ...set }, sweep: {}, out })
    const jax = await comparableEvents(await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), {}))))
    const nativeDir = await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), { "trainer.kernels": "native" })))
    const config = JSON.parse(fs.readFileSync(NodePath.join(nativeDir, "config.json"), "utf8")) as { arms: ReadonlyArray<{ config: { trainer: { kernels: string } } }> }
    expect(config.arms[0]!.config.trainer.kernels).toBe("native")
    const native = await comparableEvents(nativeDir)
    const kinds = (es: ReadonlyArray<unknown>) => es.map((e) => (e as { event: { _tag: string } }).event._tag)
    expect(kinds(native)).toEqual(kinds(jax))
    expect(kinds(native).filter((k) => k === "train.step").length).toBeGreaterThan(0)
    jax.forEach((e, i) => closeEvents(e, native[i], `event ${i}`))
    // and not bit for bit: another summation order ran (the native model, not jax-js under another name)
    expect(JSON.stringify(native)).not.toBe(JSON.stringify(jax))
    // with a native gradient worker (micro-batches of 4 rows, so the worker gets a share), still the same events
    const two = await comparableEvents(await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), { "trainer.kernels": "native", "trainer.workers": "2", "rl.microBatchRows": "4" }))))
    const oneSmall = await comparableEvents(await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), { "rl.microBatchRows": "4" }))))
    expect(kinds(two)).toEqual(kinds(oneSmall))
    oneSmall.forEach((e, i) => closeEvents(e, two[i], `event ${i} (native, 2 threads)`))
    // and on packed trees
    const packed = await comparableEvents(await run(define(arpoOnly()).run(options(tempDir("arpo-runs-"), { "trainer.kernels": "native", "trainer.treePacking": "true" }))))
    expect(kinds(packed)).toEqual(kinds(jax))
    jax.forEach((e, i) => closeEvents(e, packed[i], `event ${i} (native, packed trees)`))
  }, 240_000)
})
