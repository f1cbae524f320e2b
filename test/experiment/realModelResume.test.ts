/**
 * `real-model` runs resume (torch tier, skipped with a printed reason where `import torch` fails): a run in a child
 * process killed with SIGKILL after arm arpo's step-1 checkpoint, continued with `arpo resume`, ends with the events
 * of an uninterrupted run (wall-clock `…Ms` fields aside): grpo kept as it was, arpo reloaded from its checkpoint
 * (weights, AdamW moments and step, policy version, RNG state), aepo run afresh. Evaluations at every step, so the
 * engine's kept KV after an evaluation is at stake too. A cut-short save and a damaged checkpoint are refused or
 * cleaned before anything changes. Tiny on purpose: the qwen2-tiny fixture, 2 SFT steps, 2 RL steps, 16-token answers.
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
import { realModel, smokeModel } from "../../src/experiment/catalog/realModel.ts"
import { comparableEvents, run, tempDir } from "../run/tiny.ts"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")
const python = Torch.defaultPython()
const torchOk = spawnSync(python, ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 }).status === 0
if (!torchOk) console.log(`real-model resume test skipped: \`${python} -c "import torch"\` failed; run scripts/pytorch-tier`)

const set: Record<string, string> = {
  "model.path": smokeModel,
  "sft.steps": "2",
  "sft.batchSize": "2",
  "rl.steps": "2",
  "rollout.maxResponseTokens": "16",
  "eval.every": "1",
  "eval.questions": "1",
  "eval.maxResponseTokens": "16",
  checkpointEvery: "1"
}
const options = (out: string) => ({ profile: "quick" as const, seeds: undefined, set, sweep: {}, out })
const cli = (args: ReadonlyArray<string>) =>
  run(cliWith(args).pipe(Effect.provideService(Experiments, registry([realModel])), Effect.provide(Layer.mergeAll(NodeServices.layer, TestConsole.layer))))

let baseline: string

beforeAll(async () => {
  process.env["ARPO_CACHE_DIR"] ??= tempDir("arpo-cache-")
  if (torchOk) baseline = await run(realModel.run(options(tempDir("arpo-runs-"))))
}, 900_000)

describe.skipIf(!torchOk)("real-model resume (torch tier)", () => {
  it("a run killed with SIGKILL after a checkpoint resumes (arpo resume) to the uninterrupted run's events", async () => {
    const out = tempDir("arpo-runs-")
    const child = spawn(process.execPath, ["--import", "tsx", NodePath.join(repoRoot, "test/experiment/realModelMain.ts"), out, JSON.stringify(set)], {
      cwd: repoRoot,
      env: process.env,
      stdio: "ignore"
    })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)))
    const runDir = () => {
      const parent = NodePath.join(out, "real-model")
      const names = fs.existsSync(parent) ? fs.readdirSync(parent) : []
      return names.length === 0 ? undefined : NodePath.join(parent, names[0]!)
    }
    const ck = (dir: string, arm: string, step: number) => NodePath.join(dir, "checkpoints", `${arm}.seed1.step-00000${step}`)
    const marker = () => {
      const d = runDir()
      return d !== undefined && fs.existsSync(NodePath.join(ck(d, "arpo", 1), "state.json"))
    }
    const deadline = Date.now() + 600_000
    while (!marker() && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20))
    child.kill("SIGKILL")
    expect(await exited).toBe("SIGKILL")
    const dir = runDir()!
    expect(marker()).toBe(true)
    expect(fs.existsSync(NodePath.join(dir, "summary.json"))).toBe(false)
    // the checkpoint: weights, AdamW moments, optimizer step and policy version, torch's RNG state
    const state = JSON.parse(fs.readFileSync(NodePath.join(ck(dir, "arpo", 1), "arpo_trainer_state.json"), "utf8"))
    expect(state).toMatchObject({ kind: "hf", policyVersion: 1 })
    expect(state.step).toBeGreaterThan(0)
    expect(typeof state.rng.cpu).toBe("string")
    for (const f of ["model.safetensors", "optimizer.safetensors", "config.json"]) expect(fs.existsSync(NodePath.join(ck(dir, "arpo", 1), f))).toBe(true)

    // a save cut short (a hidden temp directory) and a damaged checkpoint in a copy: refused before anything changes
    const copy = NodePath.join(tempDir("arpo-copy-"), "real-model", NodePath.basename(dir))
    fs.cpSync(dir, copy, { recursive: true })
    const weights = NodePath.join(ck(copy, "arpo", 1), "model.safetensors")
    fs.truncateSync(weights, fs.statSync(weights).size - 64)
    const events = fs.readFileSync(NodePath.join(copy, "events.jsonl"))
    const refused = await run(Effect.flip(realModel.resume!(copy)))
    expect((refused as Error).message).toMatch(/arpo\.seed1\.step-000001 is damaged \(model\.safetensors: truncated/)
    expect(fs.readFileSync(NodePath.join(copy, "events.jsonl")).equals(events)).toBe(true)
    const stale = NodePath.join(dir, "checkpoints", ".arpo.seed1.step-000002.tmp-1-2")
    fs.mkdirSync(stale)

    await cli(["resume", dir])
    expect(fs.existsSync(stale)).toBe(false)
    const resumed = await comparableEvents(dir)
    const straight = await comparableEvents(baseline)
    expect(straight.length).toBeGreaterThan(60)
    expect(resumed).toEqual(straight)
    expect(fs.readdirSync(NodePath.join(dir, "checkpoints")).sort()).toEqual(fs.readdirSync(NodePath.join(baseline, "checkpoints")).sort())
  }, 900_000)
})
