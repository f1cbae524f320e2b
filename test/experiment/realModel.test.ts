/**
 * The `real-model` experiment: its config resolution (profiles, --set on the real config, typed refusals) and —
 * torch tier, skipped with a printed reason where `import torch` fails — the smoke profile end to end on the
 * qwen2-tiny fixture: a protocol cold start, then GRPO, ARPO and AEPO with the torch engine colocated with the
 * PyTorch trainer, a report with reward, ΔH and tool-call figures for every arm, and ARPO branching on exact
 * entropies after real tool results.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { Effect } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import * as Torch from "../../src/engine/torch.ts"
import { realModel, resolve, smokeModel } from "../../src/experiment/catalog/realModel.ts"
import { readEventsFile } from "../../src/io/RunStore.ts"
import { run, tempDir } from "../run/tiny.ts"

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

describe.skipIf(!torchOk)("real-model smoke (torch tier)", () => {
  it("runs GRPO, ARPO and AEPO on qwen2-tiny with the colocated torch engine and reports every arm", async () => {
    const out = tempDir("arpo-runs-")
    const dir = await run(realModel.run({ profile: "quick", seeds: undefined, set: { "model.path": smokeModel }, sweep: {}, out }))
    for (const f of ["report.md", "report.html", "summary.json", "config.json"]) expect(fs.existsSync(NodePath.join(dir, f))).toBe(true)
    const log = await run(readEventsFile(NodePath.join(dir, "events.jsonl")))
    const of = (arm: string, tag: string) => log.events.filter((e) => e.stamp.arm === arm && e.event._tag === tag).map((e) => e.event as Record<string, unknown>)
    for (const arm of ["grpo", "arpo", "aepo"]) {
      expect(of(arm, "reward.batch").length).toBe(2)
      expect(of(arm, "train.step").length).toBeGreaterThan(0)
      expect(of(arm, "eval").length).toBe(2)
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
})
