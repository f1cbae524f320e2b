/**
 * The RL loop end to end on the embedded engine at a tiny size: the same seed gives identical events
 * (ignoring wall-clock fields), and a run interrupted mid-step resumes from its last checkpoint to the
 * same events as an uninterrupted run, with no step's events lost or duplicated. Also the loop's pure
 * helpers (keyed prompt draws, dynamic-sampling filter, batch figures).
 */
import { Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import { spawn } from "node:child_process"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { beforeAll, describe, expect, it } from "vitest"
import { tokenIds } from "../../src/core/tokens.ts"
import * as Tree from "../../src/core/tree.ts"
import { define } from "../../src/experiment/define.ts"
import { embeddedTrainerOf } from "../../src/experiment/registries.ts"
import { batchFigures, promptIndices, rewardsVary, type ScoredGroup } from "../../src/run/loop.ts"
import type { Problem } from "../../src/tasks/Task.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"
import { comparableEvents, run, runExit, tempDir, tinySpec } from "./tiny.ts"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")

const options = (out: string) => ({ profile: "quick" as const, seeds: undefined, set: {}, sweep: {}, out })

let baseline: string

beforeAll(async () => {
  process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
  baseline = await run(define(tinySpec()).run(options(tempDir("arpo-runs-"))))
}, 120_000)

describe("the RL loop on the embedded engine", () => {
  it("the same seed gives identical events (wall-clock fields aside), with reports and checkpoints written", async () => {
    const again = await run(define(tinySpec()).run(options(tempDir("arpo-runs-"))))
    const a = await comparableEvents(baseline)
    expect(a.length).toBeGreaterThan(40)
    expect(await comparableEvents(again)).toEqual(a)
    for (const f of ["config.json", "events.jsonl", "summary.json", "report.html", "report.md"]) {
      expect(fs.existsSync(NodePath.join(baseline, f))).toBe(true)
    }
    expect(fs.readdirSync(NodePath.join(baseline, "checkpoints")).sort()).toEqual([
      "arpo.seed1.step-000002",
      "arpo.seed1.step-000004",
      "grpo.seed1.step-000002",
      "grpo.seed1.step-000004"
    ])
    const kinds = new Set(a.map((e) => (e as { event: { _tag: string } }).event._tag))
    for (const k of ["reward.batch", "train.step", "rollout.batch", "eval", "checkpoint", "engine.call", "tool.call", "rollout.branch"]) expect(kinds).toContain(k)
  }, 120_000)

  it("a run interrupted in the middle of a step resumes from its last checkpoint to the uninterrupted events", async () => {
    // the 7th train call (arm arpo, step 3) is interrupted: arpo has checkpoint 2, step 3's rollout events are on disk
    let calls = 0
    const trainer = (config: Parameters<typeof embeddedTrainerOf>[0], policy: Parameters<typeof embeddedTrainerOf>[1]) =>
      Layer.effect(
        Trainer,
        Effect.gen(function*() {
          const t = yield* Trainer
          return Trainer.of({ ...t, train: (batch, o) => (++calls === 7 ? Effect.interrupt : t.train(batch, o)) })
        })
      ).pipe(Layer.provide(embeddedTrainerOf(config, policy)))
    const out = tempDir("arpo-runs-")
    const exit = await runExit(define(tinySpec({ components: { trainer } })).run(options(out)))
    expect(Exit.isFailure(exit) && exit.cause.reasons.some((r) => r._tag === "Interrupt")).toBe(true)
    const [dir] = fs.readdirSync(NodePath.join(out, "tiny")).map((d) => NodePath.join(out, "tiny", d))
    const partial = await comparableEvents(dir!)
    const stepOf = (e: unknown) => (e as { stamp: { arm: string; step: number } }).stamp
    expect(partial.some((e) => stepOf(e).arm === "arpo" && stepOf(e).step === 3)).toBe(true)
    expect(fs.existsSync(NodePath.join(dir!, "summary.json"))).toBe(false)

    const resumed = await run(define(tinySpec()).resume!(dir!))
    expect(resumed).toBe(dir)
    expect(await comparableEvents(dir!)).toEqual(await comparableEvents(baseline))
  }, 120_000)
})

describe("resume after a real kill", () => {
  it("a child process killed with SIGKILL mid-run resumes to the uninterrupted events", async () => {
    const out = tempDir("arpo-runs-")
    const child = spawn(process.execPath, ["--import", "tsx", NodePath.join(repoRoot, "test/run/tinyMain.ts"), out], {
      cwd: repoRoot,
      env: process.env,
      stdio: "ignore"
    })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)))
    const runDir = () => {
      const parent = NodePath.join(out, "tiny")
      const names = fs.existsSync(parent) ? fs.readdirSync(parent) : []
      return names.length === 0 ? undefined : NodePath.join(parent, names[0]!)
    }
    const marker = () => {
      const d = runDir()
      return d !== undefined && fs.existsSync(NodePath.join(d, "checkpoints", "grpo.seed1.step-000002", "state.json"))
    }
    const deadline = Date.now() + 90_000
    while (!marker() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    child.kill("SIGKILL")
    expect(await exited).toBe("SIGKILL")
    const dir = runDir()!
    expect(fs.existsSync(NodePath.join(dir, "summary.json"))).toBe(false)
    await run(define(tinySpec()).resume!(dir))
    expect(await comparableEvents(dir)).toEqual(await comparableEvents(baseline))
  }, 120_000)
})

const problem = (i: number): Problem => ({
  id: `p${i}`,
  task: "t",
  split: "train",
  index: i,
  question: "",
  prompt: "",
  messages: [],
  golds: ["1"],
  meta: {}
})

const group = (rewards: ReadonlyArray<number>, toolNodes: number): ScoredGroup => {
  let tree = Tree.make(0, tokenIds([1]))
  for (let i = 0; i < toolNodes; i++) tree = Tree.append(tree, 0, { kind: "tool", tokens: tokenIds([2]), logprobs: [], entropies: [] })[0]
  return {
    problem: problem(0),
    tree,
    scores: rewards.map((r) => ({ failed: false, reward: r, accuracy: r === 1 ? 1 : 0, formatError: r < 0 }))
  }
}

describe("loop helpers", () => {
  it("prompt draws are a pure function of (seed, step, round) within the pool", () => {
    const a = promptIndices(1, 3, 0, 16, 50)
    expect(promptIndices(1, 3, 0, 16, 50)).toEqual(a)
    expect(promptIndices(1, 3, 1, 16, 50)).not.toEqual(a)
    expect(promptIndices(2, 3, 0, 16, 50)).not.toEqual(a)
    expect(a.every((i) => Number.isInteger(i) && i >= 0 && i < 50)).toBe(true)
  })

  it("dynamic sampling keeps only groups whose rewards vary", () => {
    expect(rewardsVary(group([1, 1, 1], 0))).toBe(false)
    expect(rewardsVary(group([0, 1, 1], 0))).toBe(true)
  })

  it("batch figures count executed tool calls per trajectory and per solved question", () => {
    const f = batchFigures([group([1, 0], 3), group([-1, 0], 1)])
    expect(f.trajectories).toBe(4)
    expect(f.meanReward).toBe(0)
    expect(f.accuracy).toBe(0.25)
    expect(f.formatErrors).toBe(1)
    expect(f.toolCallsPerTrajectory).toBe(1)
    expect(f.toolCallsPerSolved).toBe(4)
    // both groups' rewards vary ([1, 0] and [-1, 0]); a third with equal rewards does not
    expect([f.groups, f.groupsVarying]).toEqual([2, 2])
    const g = batchFigures([group([1, 0], 3), group([0, 0, 0], 1), group([-1, 0], 0)])
    expect([g.groups, g.groupsVarying]).toEqual([3, 2])
  })
})
