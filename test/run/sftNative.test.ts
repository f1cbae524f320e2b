/**
 * The cold-start SFT on the native kernels (`trainer.kernels = native`): the same loss curve as jax-js up to float
 * rounding, cached under its own key, while jax-js's key stays what it was before the kernels existed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { baseConfig } from "../../src/experiment/catalog/defaults.ts"
import { coldStart } from "../../src/experiment/coldStart.ts"
import { builtinRegistries } from "../../src/experiment/registries.ts"
import { registryComponents } from "../../src/experiment/resolve.ts"
import { decodeConfig, mergePatch, type RunConfig, stableJson } from "../../src/run/config.ts"
import { sftKey } from "../../src/run/sft.ts"

const configOf = (kernels: "jax" | "native") =>
  decodeConfig(mergePatch(baseConfig, { sft: { steps: 6, batchSize: 4 }, trainer: { kernels } }), "test")

const train = (config: RunConfig, cacheDir: string) =>
  Effect.gen(function*() {
    const components = registryComponents(builtinRegistries)
    const task = yield* components.task(config)
    const cold = yield* coldStart({ config, seed: 1, task, toolbox: components.toolbox(config, task), cacheDir })
    const info = JSON.parse(fs.readFileSync(NodePath.join(cold.dir, "sft.json"), "utf8")) as { losses: ReadonlyArray<number> }
    return { cold, losses: info.losses }
  })

describe("cold-start SFT on the native kernels", () => {
  it.effect("gives jax-js's loss curve up to float rounding, under a different cache key", () =>
    Effect.gen(function*() {
      const jax = yield* configOf("jax")
      const native = yield* configOf("native")
      const cacheDir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-sft-native-"))
      try {
        const a = yield* train(jax, cacheDir)
        const b = yield* train(native, cacheDir)
        assert.strictEqual(a.cold.cached, false)
        assert.strictEqual(b.cold.cached, false)
        assert.notStrictEqual(a.cold.dir, b.cold.dir)
        assert.strictEqual(a.losses.length, 6)
        assert.strictEqual(b.losses.length, 6)
        for (let i = 0; i < 6; i++) {
          assert.isTrue(Math.abs(a.losses[i]! - b.losses[i]!) <= 1e-3 * Math.abs(a.losses[i]!), `step ${i}: jax ${a.losses[i]} native ${b.losses[i]}`)
        }
        // training moved the loss (the curve compared is not flat)
        assert.isTrue(a.losses[5]! < a.losses[0]!)
        // the trained weights agree too
        let worst = 0
        for (let t = 0; t < a.cold.params.length; t++) {
          const x = a.cold.params[t]!.data
          const y = b.cold.params[t]!.data
          for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!))
        }
        assert.isTrue(worst < 1e-3, `largest weight difference ${worst}`)
        // a second run of each is a cache hit on its own key
        assert.strictEqual((yield* train(native, cacheDir)).cold.cached, true)
      } finally {
        fs.rmSync(cacheDir, { recursive: true, force: true })
      }
    }), 300_000)

  it.effect("jax-js's key is the key from before the kernels were part of it", () =>
    Effect.gen(function*() {
      const jax = yield* configOf("jax")
      const before = createHash("sha256")
        .update(stableJson({ task: jax.task, model: jax.model, sft: { ...jax.sft, seed: undefined }, seed: 1, version: 1 }))
        .digest("hex")
        .slice(0, 16)
      assert.strictEqual(sftKey(jax, 1), before)
      assert.notStrictEqual(sftKey(yield* configOf("native"), 1), before)
    }))
})
