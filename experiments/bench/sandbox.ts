/**
 * Sandbox benchmark: wall time per call of `print(6*7)` through the sandboxed Python tool, served by
 * pre-started single-use sandboxes against a cold start (a sandbox started for the call), at concurrency 1
 * and 8, in the same run and alternating between the two so that load drift hits both. "Paced" calls come
 * after the pool has refilled (a rollout calls its tool between generation steps); "back-to-back" calls
 * come as fast as they are answered, where the pool cannot keep up and start-up cost shows again.
 * Prints a table and writes experiments/results/sandbox.json. Needs root on Linux (skips otherwise).
 * Run: scripts/node24 node --import tsx experiments/bench/sandbox.ts [--quick]
 */
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as Python from "../../src/tools/python.ts"
import { Sandbox } from "../../src/tools/sandbox.ts"
import { fig, machine, writeResults } from "./lib/output.ts"

const quick = process.argv.includes("--quick")
const ROUNDS = quick ? 2 : 6
const C1_PER_ROUND = quick ? 5 : 10
const C8_WAVES_PER_ROUND = quick ? 1 : 3
const BACK_TO_BACK_PER_ROUND = quick ? 16 : 32
const CONCURRENCY = 8
const PROGRAM = "print(6*7)"

const quantile = (xs: ReadonlyArray<number>, q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const i = (s.length - 1) * q
  const lo = Math.floor(i)
  const hi = Math.ceil(i)
  return s[lo]! + (s[hi]! - s[lo]!) * (i - lo)
}

interface Arm {
  readonly name: "pre-started" | "cold"
  readonly sandbox: Sandbox["Service"]
  readonly call: () => Promise<number>
  readonly argv: ReadonlyArray<string>
}

/** CPU seconds of this process's waited-for descendants (every sandbox process, once its wrapper is reaped). */
const childrenCpu = (): number => {
  const stat = fs.readFileSync("/proc/self/stat", "utf8")
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(f[13]) + Number(f[14])) / 100 // cutime + cstime, in USER_HZ (100 on Linux)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const makeArm = async (name: Arm["name"], scope: Scope.Scope): Promise<Arm> => {
  const ctx = await Effect.runPromise(Layer.buildWithScope(Sandbox.layer({ prestart: name === "cold" ? 0 : CONCURRENCY, timeoutMs: 20_000 }), scope))
  const sandbox = Context.get(ctx, Sandbox)
  const tool = await Effect.runPromise(Python.tool().pipe(Effect.provideService(Sandbox, sandbox)))
  const argv = [sandbox.config.python, "-I", "-c", Python.PREAMBLE]
  const call = async () => {
    const t0 = performance.now()
    const out = await Effect.runPromise(tool.run(PROGRAM))
    const ms = performance.now() - t0
    if (out !== "42") throw new Error(`${name}: print(6*7) answered ${JSON.stringify(out)}`)
    return ms
  }
  return { name, sandbox, call, argv }
}

/** Waits until the arm's pool holds `n` ready sandboxes (immediately for the cold arm); returns how long it took. */
const refilled = async (arm: Arm, n: number): Promise<number> => {
  const t0 = performance.now()
  if (arm.name === "cold") return 0
  while (arm.sandbox.pool(arm.argv).ready < n) {
    if (performance.now() - t0 > 60_000) throw new Error("the pool did not refill within 60 s")
    await sleep(2)
  }
  return performance.now() - t0
}

const main = async () => {
  const loadBefore = os.loadavg()
  const loadSamples: Array<number> = []
  const sampler = setInterval(() => loadSamples.push(os.loadavg()[0]!), 1000)
  const scope = await Effect.runPromise(Scope.make())
  let arms: Array<Arm>
  try {
    arms = [await makeArm("pre-started", scope), await makeArm("cold", scope)]
  } catch (e) {
    clearInterval(sampler)
    await Effect.runPromise(Scope.close(scope, Exit.void))
    console.log(`bench sandbox: skipped, the sandbox is not available here: ${e instanceof Error ? e.message : String(e)}`)
    return
  }
  const samples: Record<string, Record<Arm["name"], Array<number>>> = {
    c1: { "pre-started": [], cold: [] },
    c8: { "pre-started": [], cold: [] },
    b2b: { "pre-started": [], cold: [] }
  }
  const refills: Array<number> = []
  const throughput: Record<Arm["name"], Array<number>> = { "pre-started": [], cold: [] }
  // CPU of the cold arm's back-to-back calls (each a whole sandbox: start-up, program, teardown)
  const coldCpu = { seconds: 0, calls: 0 }
  // warm-up: one call each, then a full pool
  for (const arm of arms) await arm.call()
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? arms : [...arms].reverse()
    for (const arm of order) {
      for (let i = 0; i < C1_PER_ROUND; i++) {
        await refilled(arm, CONCURRENCY)
        samples.c1![arm.name].push(await arm.call())
      }
      for (let w = 0; w < C8_WAVES_PER_ROUND; w++) {
        await refilled(arm, CONCURRENCY)
        samples.c8![arm.name].push(...(await Promise.all(Array.from({ length: CONCURRENCY }, () => arm.call()))))
        if (arm.name === "pre-started") refills.push(await refilled(arm, CONCURRENCY))
      }
      // back-to-back: 8 callers, each starting its next call when the last one answered
      await refilled(arm, CONCURRENCY)
      // the other arm's pool must not be refilling while the cold arm's CPU is counted
      for (const other of arms) await refilled(other, CONCURRENCY)
      await sleep(200) // and the last wave's wrappers reaped
      let left = BACK_TO_BACK_PER_ROUND
      const cpu0 = childrenCpu()
      const t0 = performance.now()
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (left > 0) {
          left--
          samples.b2b![arm.name].push(await arm.call())
        }
      }))
      throughput[arm.name].push(BACK_TO_BACK_PER_ROUND / ((performance.now() - t0) / 1000))
      if (arm.name === "cold") {
        await sleep(500) // the wrappers close just after the answers
        coldCpu.seconds += childrenCpu() - cpu0
        coldCpu.calls += BACK_TO_BACK_PER_ROUND
      }
    }
  }
  clearInterval(sampler)
  await Effect.runPromise(Scope.close(scope, Exit.void))

  const p = (set: string, arm: Arm["name"], q: number) => quantile(samples[set]![arm], q)
  const figures = [
    fig("p50 wall per call, concurrency 1, pre-started (paced)", p("c1", "pre-started", 0.5), "ms", "cold start, concurrency 1", p("c1", "cold", 0.5), null),
    fig("p95 wall per call, concurrency 1, pre-started (paced)", p("c1", "pre-started", 0.95), "ms", "cold start, concurrency 1", p("c1", "cold", 0.95), null),
    fig("p50 wall per call, concurrency 8, pre-started (paced)", p("c8", "pre-started", 0.5), "ms", "cold start, concurrency 8", p("c8", "cold", 0.5), "≤ 20 ms on 2 cores"),
    fig("p95 wall per call, concurrency 8, pre-started (paced)", p("c8", "pre-started", 0.95), "ms", "cold start, concurrency 8", p("c8", "cold", 0.95), null),
    fig("p50 wall per call, 8 callers back-to-back, pre-started", p("b2b", "pre-started", 0.5), "ms", "cold start, back-to-back", p("b2b", "cold", 0.5), null),
    fig("p95 wall per call, 8 callers back-to-back, pre-started", p("b2b", "pre-started", 0.95), "ms", "cold start, back-to-back", p("b2b", "cold", 0.95), null),
    fig(
      "calls per second, 8 callers back-to-back, pre-started (median of rounds)",
      quantile(throughput["pre-started"], 0.5),
      "calls/s",
      "cold start",
      quantile(throughput.cold, 0.5),
      null
    ),
    fig(
      "CPU per sandbox (start-up, print(6*7), teardown; all its processes)",
      (1000 * coldCpu.seconds) / coldCpu.calls,
      "ms",
      "the wall of a cold call at concurrency 1 (p50)",
      p("c1", "cold", 0.5),
      null
    ),
    fig("time to refill 8 pre-started sandboxes after a wave (median)", quantile(refills, 0.5), "ms", "p50 cold start, concurrency 8", p("c8", "cold", 0.5), null)
  ]
  const perRound = (set: string, arm: Arm["name"], per: number) =>
    Array.from({ length: ROUNDS }, (_, r) => quantile(samples[set]![arm].slice(r * per, (r + 1) * per), 0.5))
  writeResults("sandbox", {
    machine: { ...machine(loadBefore), loadavgSamples: { min: Math.min(...loadSamples), median: quantile(loadSamples, 0.5), max: Math.max(...loadSamples), n: loadSamples.length } },
    setup: {
      program: PROGRAM,
      rounds: ROUNDS,
      callsPerRound: { c1: C1_PER_ROUND, c8: C8_WAVES_PER_ROUND * CONCURRENCY, backToBack: BACK_TO_BACK_PER_ROUND },
      prestart: CONCURRENCY,
      note: "wall from the tool call to its result, as a rollout sees it; paced = after the pool refilled; rounds alternate the arms' order",
      perRoundMedians: {
        c1: { "pre-started": perRound("c1", "pre-started", C1_PER_ROUND), cold: perRound("c1", "cold", C1_PER_ROUND) },
        c8: { "pre-started": perRound("c8", "pre-started", C8_WAVES_PER_ROUND * CONCURRENCY), cold: perRound("c8", "cold", C8_WAVES_PER_ROUND * CONCURRENCY) }
      }
    },
    figures
  })
  console.log(`load average (1 min) during the run: min ${Math.min(...loadSamples).toFixed(2)}, median ${quantile(loadSamples, 0.5).toFixed(2)}, max ${Math.max(...loadSamples).toFixed(2)}`)
}

await main()
