// `arpo eval --benchmark` on the engines that serve a GGUF file: llama.cpp in process (tier llama.cpp:
// skips with its reason without node-llama-cpp) and a llama-server arpo launches and stops (tier
// llama-server: skips without ARPO_LLAMA_SERVER). The GGUF is exported from a checkpoint's weights, so
// llama.cpp's greedy responses must equal the embedded engine's on the same questions.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { TestConsole } from "effect/testing"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { derive, root } from "../../src/core/random.ts"
import { cliWith } from "../../src/cli/app.ts"
import { unavailableReason } from "../../src/engine/nodeLlamaCpp.ts"
import { writeCheckpoint } from "../../src/model/checkpoint.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { writeGguf } from "../../src/model/gguf.ts"
import { initHost } from "../../src/model/params.ts"

const config = { ...tinyConfig, dModel: 32, layers: 1, heads: 2, mlpWidth: 64, context: 512 }
const host = initHost(config, derive(root(5), "model"))
const quick = ["--questions", "2", "--samples", "2", "--k", "1,2", "--max-tokens", "12", "--python", "calculator", "--search", "none", "--seed", "4"]
const readJson = (file: string): any => JSON.parse(fs.readFileSync(file, "utf8"))
const greedy = (j: any) => j.perQuestion.map((q: any) => [q.greedyResponse, q.greedyAccuracy, q.greedyToolCalls])

const llamaCppMissing = await unavailableReason()
if (llamaCppMissing !== undefined) console.log(`tier llama.cpp skipped (run scripts/llama-cpp): ${llamaCppMissing}`)
const llamaServerMissing = process.env["ARPO_LLAMA_SERVER"] === undefined ? "ARPO_LLAMA_SERVER is not set (scripts/llama-server builds one)" : undefined
if (llamaServerMissing !== undefined) console.log(`tier llama-server skipped: ${llamaServerMissing}`)

const files = () => {
  const dir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-eval-gguf-"))
  writeCheckpoint(NodePath.join(dir, "policy.safetensors"), { config, policyVersion: 0, step: 0, params: host })
  writeGguf(NodePath.join(dir, "policy.gguf"), config, host)
  return dir
}
const env = Layer.mergeAll(NodeServices.layer, TestConsole.layer)

describe("arpo eval --benchmark on GGUF engines", () => {
  it.live.skipIf(llamaCppMissing !== undefined)("--engine llama-cpp --gguf: the embedded engine's greedy responses from the exported weights", () =>
    Effect.gen(function*() {
      const dir = files()
      const gguf = NodePath.join(dir, "out-gguf.json")
      yield* cliWith(["eval", "--benchmark", "gsm8k", "--engine", "llama-cpp", "--gguf", NodePath.join(dir, "policy.gguf"), ...quick, "--out", gguf])
      const local = NodePath.join(dir, "out-embedded.json")
      yield* cliWith(["eval", dir, "--benchmark", "gsm8k", ...quick, "--out", local])
      const a = readJson(gguf)
      assert.strictEqual(a.failedGreedy + a.failedSampled, 0)
      assert.match(a.engine, /^llama\.cpp\(policy\.gguf\)/)
      assert.deepStrictEqual(greedy(a), greedy(readJson(local)))
      fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.provide(env)), 60_000)

  it.live.skipIf(llamaServerMissing !== undefined)("--engine llama-server --gguf: launched on loopback, answers every request, and is stopped afterwards", () =>
    Effect.gen(function*() {
      const dir = files()
      const out = NodePath.join(dir, "out.json")
      const ban = JSON.stringify({ logit_bias: Array.from({ length: 128 }, (_, i) => [128 + i, false]) })
      yield* cliWith([
        "eval", "--benchmark", "gsm8k", "--engine", "llama-server", "--gguf", NodePath.join(dir, "policy.gguf"), "--extra-body", ban, ...quick, "--out", out
      ])
      const json = readJson(out)
      assert.strictEqual(json.failedGreedy + json.failedSampled, 0)
      assert.strictEqual(json.perQuestion.length, 2)
      assert.match(json.engine, /^llama-server\(policy\.gguf\)/)
      // no process serves this directory's GGUF any more
      const serving = fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes(dir)
        } catch {
          return false
        }
      })
      assert.deepStrictEqual(serving, [])
      fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.provide(env)), 60_000)
})
