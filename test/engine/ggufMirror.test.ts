// The GGUF mirror: one export per weight generation, the old file removed when a newer one is written,
// a version bump without new weights re-tags the same file, and the private directory is gone after the scope.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import { root } from "../../src/core/random.ts"
import * as GgufMirror from "../../src/engine/ggufMirror.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { exportGguf } from "../../src/model/gguf.ts"
import { initHost, toDevice } from "../../src/model/params.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"

describe("GgufMirror", () => {
  it.live("exports once per weight generation and cleans up after itself", () =>
    Effect.gen(function*() {
      yield* Effect.promise(ensureBackend)
      const config = tinyConfig
      const policy = Policy.init(config, root(3))
      let directory = ""
      yield* Effect.scoped(Effect.gen(function*() {
        const mirror = yield* GgufMirror.make(policy)
        directory = mirror.directory
        const a = yield* mirror.current
        assert.isTrue(fs.existsSync(a.path))
        assert.strictEqual(a.generation, 0)
        assert.deepStrictEqual(new Uint8Array(fs.readFileSync(a.path)), exportGguf(config, policy.toHost()))
        const again = yield* mirror.current
        assert.strictEqual(again.path, a.path)
        assert.strictEqual(again.exportMs, 0)

        policy.setVersion(4)
        const tagged = yield* mirror.current
        assert.strictEqual(tagged.path, a.path)
        assert.strictEqual(tagged.version, 4)

        policy.replace(toDevice(config, initHost(config, root(4)), "float32"))
        const b = yield* mirror.current
        assert.notStrictEqual(b.path, a.path)
        assert.strictEqual(b.generation, 1)
        assert.isFalse(fs.existsSync(a.path))
        assert.deepStrictEqual(new Uint8Array(fs.readFileSync(b.path)), exportGguf(config, policy.toHost()))
        assert.deepStrictEqual(fs.readdirSync(directory), [b.path.slice(directory.length + 1)])
      }))
      assert.isFalse(fs.existsSync(directory))
    }))
})
