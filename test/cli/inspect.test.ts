// arpo inspect on a run directory: a real tiny run writes one sampled prompt's tree per step
// (trees/<arm>-seed<k>-step<n>.json.gz), inspect finds them, decodes text with --tokenizer embedded,
// and its entropy window defaults to the run's rollout.window.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem, Layer } from "effect"
import { CliError } from "effect/cli"
import { TestConsole } from "effect/testing"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { cliWith } from "../../src/cli/app.ts"
import { define } from "../../src/experiment/define.ts"
import { decodeTreeBytes } from "../../src/report/trees.ts"
import { tempDir, tinyPatch, tinySpec } from "../run/tiny.ts"

const env = Layer.mergeAll(NodeServices.layer)
const userMessage = (e: unknown) => CliError.getUserMessage(e as object)

describe("arpo inspect <run-dir>", () => {
  it.live("a run keeps one compressed tree per step and inspect prints it with the run's window and the embedded tokenizer", () =>
    Effect.gen(function*() {
      process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
      const out = tempDir("arpo-runs-")
      const dir = yield* define(tinySpec()).run({ profile: "quick", seeds: undefined, set: {}, sweep: {}, out })
      const names = fs.readdirSync(NodePath.join(dir, "trees")).sort()
      const steps = tinyPatch.rl.steps
      assert.deepStrictEqual(names, [
        ...Array.from({ length: steps }, (_, i) => `arpo-seed1-step${i + 1}.json.gz`),
        ...Array.from({ length: steps }, (_, i) => `grpo-seed1-step${i + 1}.json.gz`)
      ].sort())
      const trees = decodeTreeBytes(fs.readFileSync(NodePath.join(dir, "trees", names[0]!)))
      assert.strictEqual(trees.length, 1)
      // the report draws them
      const html = fs.readFileSync(NodePath.join(dir, "report.html"), "utf8")
      assert.include(html, "Rollout trees (one sampled prompt per arm)")
      assert.include(html, "Entropy by token position around tool calls")

      const before = (yield* TestConsole.logLines).length
      yield* cliWith(["inspect", dir, "--tokenizer", "embedded"])
      const lines = (yield* TestConsole.logLines).map(String).slice(before)
      assert.strictEqual(lines[0], `${NodePath.join(dir, "trees", `arpo-seed1-step${steps}.json.gz`)}:`)
      const body = lines.slice(1).join("\n")
      assert.match(body, /^tree of prompt \d+: \d+ nodes, \d+ trajectories/)
      assert.include(body, `H[first ${tinyPatch.rollout.window}]`)
      assert.match(body, /#0 prompt {2}"/)

      yield* cliWith(["inspect", dir, "--arm", "grpo", "--step", "1", "--window", "3"])
      const more = (yield* TestConsole.logLines).map(String).slice(before + lines.length)
      assert.strictEqual(more[0], `${NodePath.join(dir, "trees", "grpo-seed1-step1.json.gz")}:`)
      assert.include(more.join("\n"), "H[first 3]")

      const e = yield* Effect.flip(cliWith(["inspect", dir, "--arm", "ppo"]))
      assert.strictEqual(userMessage(e), `--arm ppo: ${dir} has trees of arms arpo, grpo`)
    }).pipe(Effect.provide(Layer.mergeAll(env, TestConsole.layer))), 180_000)

  it.effect("a run without trees and a directory that is not a run are clear errors", () =>
    Effect.gen(function*() {
      const fsx = yield* FileSystem.FileSystem
      const root = yield* fsx.makeTempDirectoryScoped({ prefix: "arpo-insp-" })
      const run = NodePath.join(root, "run")
      yield* fsx.makeDirectory(run)
      yield* fsx.writeFileString(NodePath.join(run, "config.json"), "{}")
      const none = yield* Effect.flip(cliWith(["inspect", run]))
      assert.match(userMessage(none)!, /run has no rollout trees/)
      const plain = NodePath.join(root, "plain")
      yield* fsx.makeDirectory(plain)
      const notRun = yield* Effect.flip(cliWith(["inspect", plain]))
      assert.strictEqual((notRun as { _tag?: string })._tag, "NotARunDirectory")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
