/**
 * The `samplers` study at a tiny size through the CLI's registry: one table row per sampler with sane
 * figures (exactly prompts × M trajectories, global never branches, ARPO's prefix reuse ≤ 1.05 tokens
 * computed per unique tree token, a consistent ΔH distribution), the same prompts for every sampler,
 * and the table written to the run directory.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Experiments, lookup, registry } from "../../src/cli/experiments.ts"
import type { SamplerRow } from "../../src/experiment/catalog/samplers.ts"
import { builtin } from "../../src/experiment/registry.ts"
import { run, tempDir } from "../run/tiny.ts"

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
})

const M = 4
const promptsPerBatch = 2
const batches = 2
const set = {
  "task.minDigits": "2",
  "task.maxDigits": "2",
  "model.dModel": "32",
  "model.layers": "1",
  "model.heads": "2",
  "model.mlpWidth": "64",
  "model.context": "64",
  "sft.steps": "20",
  "sft.batchSize": "8",
  "sft.lr": "0.01",
  "rl.steps": String(batches),
  "rl.promptsPerStep": String(promptsPerBatch),
  "rollout.budget": String(M),
  "rollout.initial": "2",
  "rollout.maxResponseTokens": "32",
  "rollout.window": "4",
  "engine.maxSlots": "16"
}

describe("the samplers study", () => {
  it("prints and writes one row per sampler with sane figures, every sampler on the same prompts", async () => {
    const study = await Effect.runPromise(lookup("samplers").pipe(Effect.provideService(Experiments, registry(builtin))))
    const out = tempDir("arpo-runs-")
    const dir = await run(study.run({ profile: "quick", seeds: undefined, set, sweep: {}, out }))
    expect(NodePath.dirname(dir)).toBe(NodePath.join(out, "samplers"))

    const { rows } = JSON.parse(fs.readFileSync(NodePath.join(dir, "samplers.json"), "utf8")) as { rows: ReadonlyArray<SamplerRow> }
    expect(rows.map((r) => r.arm)).toEqual(["global", "arpo-paper", "arpo-reference", "aepo", "random-branch"])
    expect(rows.map((r) => r.sampler)).toEqual(["global", "arpo-paper", "arpo-reference", "aepo", "random-branch"])
    for (const r of rows) {
      expect(r.batches).toBe(batches)
      expect(r.prompts).toBe(batches * promptsPerBatch)
      expect(r.trajectories).toBe(r.prompts * M)
      expect(r.failedTrajectories).toBe(0)
      expect(r.tokensGenerated).toBeGreaterThan(0)
      expect(r.uniqueTreeTokens).toBeGreaterThanOrEqual(r.tokensGenerated)
      expect(r.branchTaken).toBeLessThanOrEqual(r.branchConsidered)
      expect(r.deltaHStd).toBeGreaterThanOrEqual(0)
      if (r.probes > 0) {
        expect(r.deltaHMin).toBeLessThanOrEqual(r.deltaHMean + 1e-12)
        expect(r.deltaHMean).toBeLessThanOrEqual(r.deltaHMax + 1e-12)
      }
      expect(r.toolCallsPerTrajectory).toBeCloseTo(r.toolCalls / r.trajectories, 12)
      expect(r.toolFailures).toBeLessThanOrEqual(r.toolCalls)
      expect(r.accuracy).toBeGreaterThanOrEqual(0)
      expect(r.accuracy).toBeLessThanOrEqual(1)
      expect(r.engineMs + r.toolMs).toBeLessThanOrEqual(r.wallMs + 1)
    }
    const byArm = new Map(rows.map((r) => [r.arm, r]))
    const global = byArm.get("global")!
    expect(global.branchConsidered).toBe(0)
    expect(global.branchTaken).toBe(0)
    expect(global.probeTokens).toBe(0)
    for (const arpo of [byArm.get("arpo-paper")!, byArm.get("arpo-reference")!]) {
      expect(arpo.computedPerUnique).toBeGreaterThan(0)
      expect(arpo.computedPerUnique).toBeLessThanOrEqual(1.05)
    }

    // the same prompts, in the same order, for every sampler
    const promptsOf = (arm: string) =>
      (JSON.parse(fs.readFileSync(NodePath.join(dir, "trees", `${arm}.seed1.step-000001.json`), "utf8")) as ReadonlyArray<{ nodes: ReadonlyArray<{ tokens: ReadonlyArray<number> }> }>)
        .map((t) => t.nodes[0]!.tokens)
    const reference = promptsOf("global")
    expect(reference).toHaveLength(promptsPerBatch)
    for (const r of rows) expect(promptsOf(r.arm)).toEqual(reference)

    const table = fs.readFileSync(NodePath.join(dir, "samplers.md"), "utf8")
    for (const r of rows) expect(table.split("\n").filter((l) => l.startsWith(`| ${r.arm} |`))).toHaveLength(3)
    expect(fs.existsSync(NodePath.join(dir, "report.md"))).toBe(true)
  }, 300_000)
})
