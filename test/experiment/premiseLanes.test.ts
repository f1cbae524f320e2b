/**
 * `premise` in lanes (src/experiment/lanes.ts): the same run in 1 lane (in this process) and in 2 lanes (two
 * real child processes running src/experiment/catalog/premiseLane.ts) gives the same events, checkpoints and
 * evaluations, arm for arm (only wall-clock fields differ); a 2-lane run interrupted while its children train
 * resumes to the same result. A tiny configuration on the embedded model: 2 variants × 2 arms, 3 SFT steps,
 * 2 RL steps, 3 held-out questions.
 */
import { assert, describe, it } from "@effect/vitest"
import { NodeServices } from "@effect/platform-node"
import { Effect, Fiber } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { premiseParts, premiseQuickSpec, premiseWithLanes, runPremisePart } from "../../src/experiment/catalog/premise.ts"
import { lanesDir, mergeLanes, partDir, partDone, partDoneFile } from "../../src/experiment/lanes.ts"
import { readStoredRun } from "../../src/experiment/define.ts"
import type { RunOptions } from "../../src/experiment/Experiment.ts"

const tmp = fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-lanes-"))
// the children inherit the environment: one cold-start cache for every run here
process.env["ARPO_CACHE_DIR"] = NodePath.join(tmp, "cache")

const armNames = ["flaky.grpo", "flaky.arpo", "flaky-control.grpo", "flaky-control.aepo"]
const experiment = premiseWithLanes(() => ({ ...premiseQuickSpec, arms: premiseQuickSpec.arms.filter((a) => armNames.includes(a.name)) }))

const options = (out: string, lanes: number): RunOptions => ({
  profile: "quick",
  seeds: [1],
  set: {
    "model.dModel": "16",
    "model.layers": "1",
    "model.mlpWidth": "32",
    "sft.steps": "3",
    "rl.steps": "2",
    "rl.promptsPerStep": "2",
    "rollout.maxResponseTokens": "24",
    "eval.maxResponseTokens": "24",
    "eval.questions": "3",
    checkpointEvery: "1"
  },
  sweep: {},
  out: NodePath.join(tmp, out),
  lanes
})

/** events.jsonl without what may differ between runs of the same arms: the run id and directory, wall-clock values. */
const normalizedEvents = (dir: string): ReadonlyArray<string> =>
  fs.readFileSync(NodePath.join(dir, "events.jsonl"), "utf8").trim().split("\n").map((line) => {
    const e = JSON.parse(line.replaceAll(dir, "<run>")) as Record<string, unknown>
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(e)) if (k !== "run" && !k.endsWith("Ms")) out[k] = v
    if (e["kind"] === "metric" && String(e["name"]).endsWith("Ms")) delete out["value"]
    return JSON.stringify(out)
  })

const checkpoints = (dir: string): Record<string, string> =>
  Object.fromEntries(
    fs.readdirSync(NodePath.join(dir, "checkpoints")).sort().map((name) => [name, fs.readFileSync(NodePath.join(dir, "checkpoints", name, "policy.safetensors")).toString("base64")])
  )

const evaluations = (dir: string) =>
  (JSON.parse(fs.readFileSync(NodePath.join(dir, "premise.json"), "utf8")) as { evaluated: ReadonlyArray<{ arm: string; seed: number; questions: unknown }> }).evaluated.map((e) => ({
    arm: e.arm,
    seed: e.seed,
    questions: e.questions
  }))

const run = (out: string, lanes: number) => experiment.run(options(out, lanes)).pipe(Effect.provide(NodeServices.layer))

describe("premise in lanes", () => {
  it("parts are the variants × seeds, their arms in run order", () => {
    const arms = armNames.map((name) => ({ name, sampler: "global", config: {} as never }))
    assert.deepStrictEqual(premiseParts(arms, [1, 2]).map((p) => [p.id, p.units.map((u) => u.arm.name)]), [
      ["flaky.seed1", ["flaky.grpo", "flaky.arpo"]],
      ["flaky-control.seed1", ["flaky-control.grpo", "flaky-control.aepo"]],
      ["flaky.seed2", ["flaky.grpo", "flaky.arpo"]],
      ["flaky-control.seed2", ["flaky-control.grpo", "flaky-control.aepo"]]
    ])
  })

  it.live("1 lane and 2 lanes (child processes) give the same events, checkpoints and evaluations; an interrupted 2-lane run resumes to them", () =>
    Effect.gen(function*() {
      const one = yield* run("one", 1)
      const two = yield* run("two", 2)
      const reference = normalizedEvents(one)
      assert.isAbove(reference.length, 20)
      assert.deepStrictEqual(normalizedEvents(two), reference)
      assert.deepStrictEqual(checkpoints(two), checkpoints(one))
      assert.strictEqual(Object.keys(checkpoints(one)).length, 8)
      // a part a lane is asked for that the run does not have: a typed error naming it and the run's parts
      const unknown = (yield* Effect.flip(runPremisePart(one, "nope.seed1").pipe(Effect.provide(NodeServices.layer)))) as { readonly _tag: string; readonly message: string }
      assert.strictEqual(unknown._tag, "LaneFailed")
      assert.include(unknown.message, "has no part nope.seed1 (its parts: flaky.seed1, flaky-control.seed1)")
      assert.deepStrictEqual(evaluations(two), evaluations(one))
      // every arm and each variant's cold start evaluated
      assert.deepStrictEqual(evaluations(one).map((e) => e.arm), [
        "flaky.cold-start",
        "flaky.grpo",
        "flaky.arpo",
        "flaky-control.cold-start",
        "flaky-control.grpo",
        "flaky-control.aepo"
      ])

      // interrupted once a child wrote a checkpoint (its parts' later steps not done), then resumed in 2 lanes
      const fiber = yield* Effect.forkChild(run("cut", 2))
      const root = NodePath.join(tmp, "cut", "premise")
      const dirOf = () => (fs.existsSync(root) ? fs.readdirSync(root).map((d) => NodePath.join(root, d))[0] : undefined)
      const someCheckpoint = () => {
        const dir = dirOf()
        if (dir === undefined || !fs.existsSync(lanesDir(dir))) return false
        return fs.readdirSync(lanesDir(dir)).some((p) => {
          const ck = NodePath.join(lanesDir(dir), p, "checkpoints")
          return fs.existsSync(ck) && fs.readdirSync(ck).some((c) => fs.existsSync(NodePath.join(ck, c, "state.json")))
        })
      }
      // polled often: with native kernels a tiny part can write its last checkpoint within 100 ms of its first (an
      // interrupt after an arm's last checkpoint is resumable too: its wall-time metrics are written inside it, define.ts)
      while (!someCheckpoint()) yield* Effect.sleep("10 millis")
      yield* Fiber.interrupt(fiber)
      const cut = dirOf()!
      assert.isFalse(["flaky.seed1", "flaky-control.seed1"].every((p) => partDone(cut, p)), "interrupted before every part finished")
      assert.isFalse(fs.existsSync(NodePath.join(cut, "premise.json")))
      const resumed = yield* experiment.resume!(cut, { lanes: 2 }).pipe(Effect.provide(NodeServices.layer))
      assert.strictEqual(resumed, cut)
      assert.deepStrictEqual(normalizedEvents(cut), reference)
      assert.deepStrictEqual(checkpoints(cut), checkpoints(one))
      assert.deepStrictEqual(evaluations(cut), evaluations(one))
    }), { timeout: 600_000 })

  it.live("a kill after a part's RL but before its done.json, or in the middle of the merge, resumes to the same events, checkpoints and evaluations", () =>
    Effect.gen(function*() {
      const reference = yield* run("ref", 1)
      // a run directory whose parts ran as a lane's process runs each (RL, evaluations, done.json last) and were not merged:
      // the run interrupted as soon as it recorded its config, then every part run from wherever the interrupt left it
      const partsDone = (out: string) =>
        Effect.gen(function*() {
          const fiber = yield* Effect.forkChild(run(out, 1))
          const root = NodePath.join(tmp, out, "premise")
          const dirOf = () => (fs.existsSync(root) ? fs.readdirSync(root).map((d) => NodePath.join(root, d))[0] : undefined)
          while (dirOf() === undefined || !fs.existsSync(NodePath.join(dirOf()!, "config.json.sha256"))) yield* Effect.sleep("5 millis")
          yield* Fiber.interrupt(fiber)
          const dir = dirOf()!
          for (const part of ["flaky.seed1", "flaky-control.seed1"]) yield* runPremisePart(dir, part).pipe(Effect.provide(NodeServices.layer))
          assert.isTrue(partDone(dir, "flaky.seed1") && partDone(dir, "flaky-control.seed1"))
          assert.isFalse(fs.existsSync(NodePath.join(dir, "premise.json")))
          return dir
        })
      const same = (dir: string) => {
        assert.deepStrictEqual(normalizedEvents(dir), normalizedEvents(reference))
        assert.deepStrictEqual(checkpoints(dir), checkpoints(reference))
        assert.deepStrictEqual(evaluations(dir), evaluations(reference))
      }

      // killed after flaky.seed1's RL and evaluations, before its done.json: what is on disk then
      const late = yield* partsDone("late")
      fs.rmSync(NodePath.join(partDir(late, "flaky.seed1"), partDoneFile))
      assert.strictEqual(yield* experiment.resume!(late, { lanes: 1 }).pipe(Effect.provide(NodeServices.layer)), late)
      same(late)

      // killed in the middle of the merge: the first part's checkpoints and trees moved, events.jsonl not yet merged
      const merging = yield* partsDone("merging")
      const { stored, arms } = yield* readStoredRun(merging, JSON.parse(fs.readFileSync(NodePath.join(merging, "config.json"), "utf8")))
      yield* mergeLanes(merging, premiseParts(arms, stored.seeds).slice(0, 1)).pipe(Effect.provide(NodeServices.layer))
      fs.writeFileSync(NodePath.join(merging, "events.jsonl"), "")
      assert.strictEqual(yield* experiment.resume!(merging, { lanes: 1 }).pipe(Effect.provide(NodeServices.layer)), merging)
      same(merging)
    }), { timeout: 600_000 })
})
