/**
 * The `real-model` experiment: its config resolution (profiles, --set on the real config, typed refusals) and —
 * torch tier, skipped with a printed reason where `import torch` fails — the smoke profile end to end on the
 * qwen2-tiny fixture: a protocol cold start, then GRPO, ARPO and AEPO with the torch engine colocated with the
 * PyTorch trainer, a report with reward, ΔH and tool-call figures for every arm, and ARPO branching on exact
 * entropies after real tool results; and that run (3 RL steps, a checkpoint at each) with arm aepo killed by SIGKILL
 * (an `arpo resume` child process) right after its step-2 checkpoint, continued with `arpo resume`, ends with the same events
 * (wall-clock `…Ms` fields aside, concurrent tool calls' events in one order) and the same checkpoint bytes: grpo and
 * arpo kept as they were, aepo's step 3 trained from the reloaded weights, nonzero AdamW moments, optimizer step,
 * policy version and RNG state. An evaluation right before that checkpoint, so the engine's kept KV is at stake too. A damaged
 * checkpoint is refused and a cut-short save's temp directory removed before anything changes.
 */
import { NodeServices } from "@effect/platform-node"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Layer } from "effect"
import { TestConsole } from "effect/testing"
import { beforeAll, describe, expect, it } from "vitest"
import { cliWith } from "../../src/cli/app.ts"
import { Experiments, registry } from "../../src/cli/experiments.ts"
import * as Torch from "../../src/engine/torch.ts"
import { realModel, resolve, smokeModel } from "../../src/experiment/catalog/realModel.ts"
import { readEventsFile } from "../../src/io/RunStore.ts"
import { comparableEvents, run, tempDir } from "../run/tiny.ts"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")

const python = Torch.defaultPython()
const torchProbe = spawnSync(python, ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 })
const torchOk = torchProbe.status === 0
if (!torchOk) console.log(`real-model torch tier skipped: \`${python} -c "import torch"\` failed; run scripts/pytorch-tier`)

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] ??= tempDir("arpo-cache-")
})

describe("real-model config", () => {
  it("resolves three arms at an equal budget from the smoke profile and --set, and refuses unknown keys and profiles by name", async () => {
    const arms = await Effect.runPromise(resolve({ profile: "quick", set: { "model.path": "/models/x", "rollout.beta": "0.4" }, sweep: {} }))
    expect(arms.map((a) => [a.name, a.sampler])).toEqual([["grpo", "global"], ["arpo", "arpo"], ["aepo", "aepo"]])
    expect(new Set(arms.map((a) => a.config.rollout.budget)).size).toBe(1)
    expect(arms.every((a) => a.config.model.path === "/models/x" && a.config.rollout.beta === 0.4 && a.config.model.device === "cpu")).toBe(true)
    expect(arms.find((a) => a.name === "aepo")!.config.loss.balancedClip).toBe(true)
    const gpu = await Effect.runPromise(resolve({ profile: "full", set: {}, sweep: {} }))
    expect(gpu[1]!.config.rollout).toMatchObject({ budget: 16, initial: 8, alpha: 0.5, beta: 0.2, window: 20, callLimit: 3 })
    expect(gpu[1]!.config.model).toMatchObject({ device: "cuda", dtype: "bfloat16" })
    const unknown = await Effect.runPromise(Effect.flip(resolve({ profile: "quick", set: { "model.pth": "x" }, sweep: {} })))
    expect(unknown.message).toContain("model.pth")
    expect(unknown.message).toContain("path")
    const profile = await Effect.runPromise(Effect.flip(resolve({ profile: "medium" as "quick", set: {}, sweep: {} })))
    expect(profile.message).toContain("smoke")
  })
})

// the smoke profile with a third RL step and a checkpoint at every step (what the resume test needs: aepo's step 2 is
// the first with rewards that vary, so its checkpoint carries nonzero AdamW moments into step 3; evaluations at
// steps 0, 2 and 3, so an evaluation's kept KV precedes that checkpoint)
// (the newest 2 kept per arm: the run ends with steps 2 and 3)
const smokeSet: Record<string, string> = { "model.path": smokeModel, "rl.steps": "3", checkpointEvery: "1", checkpointKeep: "2" }
let smokeDir: string | undefined

describe.skipIf(!torchOk)("real-model smoke (torch tier)", () => {
  it("runs GRPO, ARPO and AEPO on qwen2-tiny with the colocated torch engine and reports every arm", async () => {
    const out = tempDir("arpo-runs-")
    const dir = await run(realModel.run({ profile: "quick", seeds: undefined, set: smokeSet, sweep: {}, out }))
    smokeDir = dir
    for (const f of ["report.md", "report.html", "summary.json", "config.json"]) expect(fs.existsSync(NodePath.join(dir, f))).toBe(true)
    const log = await run(readEventsFile(NodePath.join(dir, "events.jsonl")))
    const of = (arm: string, tag: string) => log.events.filter((e) => e.stamp.arm === arm && e.event._tag === tag).map((e) => e.event as Record<string, unknown>)
    for (const arm of ["grpo", "arpo", "aepo"]) {
      expect(of(arm, "reward.batch").length).toBe(3)
      expect(of(arm, "train.step").length).toBeGreaterThan(0)
      expect(of(arm, "eval").length).toBe(3)
      // the torch engine served the rollouts and reported its prefix reuse
      const calls = of(arm, "engine.call")
      expect(calls.length).toBeGreaterThan(0)
      expect(calls.every((c) => c["adapter"] === "torch")).toBe(true)
      // the cold start taught the protocol: tools were called during RL
      const batches = of(arm, "rollout.batch")
      expect(batches.reduce((a, b) => a + (b["toolCalls"] as number), 0)).toBeGreaterThan(0)
      expect(fs.readFileSync(NodePath.join(dir, "report.md"), "utf8")).toContain(arm)
    }
    // ARPO decides branches after tool results from exact entropies (ΔH of the torch engine's window sums)
    const branches = of("arpo", "rollout.branch")
    expect(branches.length).toBeGreaterThan(0)
    expect(branches.every((b) => Number.isFinite(b["deltaH"] as number) && (b["hInitial"] as number) > 0)).toBe(true)
    expect(of("grpo", "rollout.branch").length).toBe(0)
  }, 1_200_000) // about a minute of CPU; machines shared by many jobs run it several times slower

  it("a run killed with SIGKILL after a checkpoint resumes (arpo resume) to the uninterrupted run's events", async () => {
    // the smoke run above is the uninterrupted run (the cold start is cached by now). To spend CPU on one arm only,
    // the process killed is `arpo resume` on a copy of it with aepo not yet run (its checkpoints removed, so its
    // events are dropped and it runs from step 0): grpo and arpo finished, aepo killed mid-way, then resumed again
    const baseline = smokeDir
    if (baseline === undefined) throw new Error("the smoke run above failed: no uninterrupted run to compare with")
    const dir = NodePath.join(tempDir("arpo-runs-"), "real-model", NodePath.basename(baseline))
    fs.cpSync(baseline, dir, { recursive: true })
    for (const f of fs.readdirSync(NodePath.join(dir, "checkpoints"))) if (f.startsWith("aepo.")) fs.rmSync(NodePath.join(dir, "checkpoints", f), { recursive: true })
    for (const f of ["summary.json", "report.md", "report.html"]) fs.rmSync(NodePath.join(dir, f))
    const child = spawn(process.execPath, ["--conditions=development", "--import", "tsx", NodePath.join(repoRoot, "src/cli/main.ts"), "resume", dir], {
      cwd: repoRoot,
      env: process.env,
      stdio: "ignore"
    })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)))
    const ck = (dir: string, arm: string, step: number) => NodePath.join(dir, "checkpoints", `${arm}.seed1.step-00000${step}`)
    const marker = () => fs.existsSync(NodePath.join(ck(dir, "aepo", 2), "state.json"))
    const deadline = Date.now() + 600_000
    while (!marker() && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20))
    child.kill("SIGKILL")
    expect(await exited).toBe("SIGKILL")
    expect(marker()).toBe(true)
    expect(fs.existsSync(NodePath.join(dir, "summary.json"))).toBe(false)
    // the checkpoint: weights, AdamW moments, optimizer step and policy version, torch's RNG state; aepo's step 2
    // trained on rewards that vary, so the moments it carries into step 3 are not zero
    const state = JSON.parse(fs.readFileSync(NodePath.join(ck(dir, "aepo", 2), "arpo_trainer_state.json"), "utf8"))
    expect(state).toMatchObject({ kind: "hf", policyVersion: 2, step: 2 })
    expect(typeof state.rng.cpu).toBe("string")
    for (const f of ["model.safetensors", "optimizer.safetensors", "config.json"]) expect(fs.existsSync(NodePath.join(ck(dir, "aepo", 2), f))).toBe(true)
    const log = await run(readEventsFile(NodePath.join(baseline, "events.jsonl")))
    const aepo2 = log.events.find((e) => e.stamp.arm === "aepo" && e.stamp.step === 2 && e.event._tag === "train.step")!.event as { gradNorm: number }
    expect(aepo2.gradNorm).toBeGreaterThan(0)

    // a save cut short (a hidden temp directory) and a damaged checkpoint in a copy: refused before anything changes
    const copy = NodePath.join(tempDir("arpo-copy-"), "real-model", NodePath.basename(dir))
    fs.cpSync(dir, copy, { recursive: true })
    const weights = NodePath.join(ck(copy, "aepo", 2), "model.safetensors")
    fs.truncateSync(weights, fs.statSync(weights).size - 64)
    const events = fs.readFileSync(NodePath.join(copy, "events.jsonl"))
    const refused = await run(Effect.flip(realModel.resume!(copy)))
    expect((refused as Error).message).toMatch(/aepo\.seed1\.step-000002 is damaged \(model\.safetensors: truncated/)
    expect(fs.readFileSync(NodePath.join(copy, "events.jsonl")).equals(events)).toBe(true)
    const stale = NodePath.join(dir, "checkpoints", ".aepo.seed1.step-000003.tmp-1-2")
    fs.mkdirSync(stale)

    await cli(["resume", dir])
    expect(fs.existsSync(stale)).toBe(false)
    const resumed = await comparableEvents(dir)
    const straight = await comparableEvents(baseline)
    expect(straight.length).toBeGreaterThan(100)
    expect(normalized(resumed)).toEqual(normalized(straight))
    // every checkpoint kept, aepo's step 3 (trained from the reloaded one) included: the same weights, moments and
    // counters; step 1's removed (checkpointKeep 2) by the uninterrupted run and the resumed one alike
    const names = fs.readdirSync(NodePath.join(baseline, "checkpoints")).sort()
    expect(names).toEqual(["aepo", "arpo", "grpo"].flatMap((a) => [2, 3].map((k) => `${a}.seed1.step-00000${k}`)))
    expect(fs.readdirSync(NodePath.join(dir, "checkpoints")).sort()).toEqual(names)
    for (const name of names) {
      for (const f of ["model.safetensors", "optimizer.safetensors", "arpo_trainer_state.json"]) {
        const same = fs.readFileSync(NodePath.join(dir, "checkpoints", name, f)).equals(fs.readFileSync(NodePath.join(baseline, "checkpoints", name, f)))
        expect(same, `${name}/${f}`).toBe(true)
      }
    }
  }, 900_000)
})

const cli = (args: ReadonlyArray<string>) =>
  run(cliWith(args).pipe(Effect.provideService(Experiments, registry([realModel])), Effect.provide(Layer.mergeAll(NodeServices.layer, TestConsole.layer))))

/**
 * Two things that are no computation: concurrent tool calls (one round's calls run at once) emit their `tool.call`
 * events in the order they finish (timing), so within each run of consecutive `tool.call` events the bodies are put
 * in one order; and a checkpoint event's path is cut to `checkpoints/<name>` (the copied run's grpo and arpo events
 * name the directory they were written in).
 */
const normalized = (events: ReadonlyArray<unknown>): ReadonlyArray<unknown> => {
  const out = (events as ReadonlyArray<{ stamp: unknown; event: { _tag: string; path?: string } }>).map((e) =>
    e.event._tag === "checkpoint" && e.event.path !== undefined ? { ...e, event: { ...e.event, path: e.event.path.slice(e.event.path.indexOf("checkpoints/")) } } : e
  )
  for (let i = 0; i < out.length;) {
    let j = i
    while (j < out.length && out[j]!.event._tag === "tool.call") j++
    if (j > i) {
      const bodies = out.slice(i, j).map((e) => e.event).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1))
      bodies.forEach((b, k) => (out[i + k] = { ...out[i + k]!, event: b }))
    }
    i = j + 1
  }
  return out
}
