/**
 * The `trainers` experiment: an arm's own `components` replace the experiment's for that arm only (swept
 * variants included), and — torch tier, skipped with a printed reason where `import torch` fails — a tiny
 * run of its two arms (embedded vs PyTorch worker trainer) gives the same training curves within float32 noise.
 */
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { trainersSpec } from "../../src/experiment/catalog/trainers.ts"
import { componentsOf, define, type ExperimentSpec } from "../../src/experiment/define.ts"
import { builtinRegistries } from "../../src/experiment/registries.ts"
import { registryComponents } from "../../src/experiment/resolve.ts"
import { readEventsFile } from "../../src/io/RunStore.ts"
import { run, tempDir, tinySpec } from "../run/tiny.ts"
import { torchTier } from "../torchTier.ts"

const torchOk = torchTier("trainers torch tier")

beforeAll(() => {
  process.env["ARPO_CACHE_DIR"] ??= tempDir("arpo-cache-")
})

describe("per-arm components", () => {
  it("an arm's components replace the experiment's for that arm and its swept variants only", () => {
    const otherTask = registryComponents(builtinRegistries).task
    const spec: ExperimentSpec = { ...trainersSpec, components: { task: otherTask } }
    const pytorchTrainer = trainersSpec.arms[1]?.components?.trainer
    expect(pytorchTrainer).toBeDefined()
    expect(componentsOf(spec, "embedded").trainer).not.toBe(pytorchTrainer)
    expect(componentsOf(spec, "pytorch").trainer).toBe(pytorchTrainer)
    expect(componentsOf(spec, "pytorch+rl.lr=1e-4").trainer).toBe(pytorchTrainer)
    expect(componentsOf(spec, "embedded+rl.lr=1e-4").trainer).not.toBe(pytorchTrainer)
    expect(componentsOf(spec, "pytorch").task).toBe(otherTask)
  })
})

describe.skipIf(!torchOk)("trainers (torch tier)", () => {
  it("the embedded and PyTorch trainers give the same reward and loss curves on a tiny run", async () => {
    const spec: ExperimentSpec = { ...tinySpec(), name: "trainers-tiny", arms: trainersSpec.arms }
    const dir = await run(define(spec).run({ profile: "quick", seeds: undefined, set: { "sft.steps": "200", "rl.steps": "3", "rl.promptsPerStep": "4", "eval.every": "0" }, sweep: {}, out: tempDir("arpo-runs-") }))
    expect(fs.existsSync(NodePath.join(dir, "report.md"))).toBe(true)
    const log = await run(readEventsFile(NodePath.join(dir, "events.jsonl")))
    const curve = (arm: string, tag: "reward.batch" | "train.step") =>
      log.events.filter((e) => e.stamp.arm === arm && e.event._tag === tag).map((e) => e.event as { mean?: number; loss?: number; gradNorm?: number })
    const [re, rp] = [curve("embedded", "reward.batch"), curve("pytorch", "reward.batch")]
    const [te, tp] = [curve("embedded", "train.step"), curve("pytorch", "train.step")]
    expect(re.length).toBe(3)
    expect(tp.length).toBe(te.length)
    // the run must learn something: a zero gradient everywhere would make the comparison vacuous
    expect(te.some((e) => (e.gradNorm ?? 0) > 0)).toBe(true)
    re.forEach((e, i) => expect(Math.abs((e.mean ?? 0) - (rp[i]?.mean ?? NaN))).toBeLessThan(0.1))
    te.forEach((e, i) => {
      expect(Math.abs((e.loss ?? 0) - (tp[i]?.loss ?? NaN))).toBeLessThan(1e-3)
      expect(Math.abs((e.gradNorm ?? 0) - (tp[i]?.gradNorm ?? NaN))).toBeLessThan(1e-2 * Math.max(1, e.gradNorm ?? 0))
    })
  }, 600_000)
})
