// Atomic writes: the target holds the old or the new content, and no temp file is left behind.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem } from "effect"
import * as NodePath from "node:path"
import { writeDirAtomic, writeFileAtomic, writeJsonAtomic } from "../../src/io/atomic.ts"

const withTempDir = <A, E, R>(f: (dir: string, fs: FileSystem.FileSystem) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const dir = yield* fs.makeTempDirectoryScoped({ prefix: "arpo-atomic-" })
    return yield* f(dir, fs)
  }).pipe(Effect.scoped, Effect.provide(NodeServices.layer))

describe("atomic writes", () => {
  it.effect("writeFileAtomic replaces the content and leaves no temp file", () =>
    withTempDir((dir, fs) =>
      Effect.gen(function*() {
        const path = NodePath.join(dir, "a.json")
        yield* writeFileAtomic(path, "old")
        yield* writeJsonAtomic(path, { x: 1 })
        assert.deepStrictEqual(JSON.parse(yield* fs.readFileString(path)), { x: 1 })
        yield* writeFileAtomic(path, new Uint8Array([104, 105]))
        assert.strictEqual(yield* fs.readFileString(path), "hi")
        assert.deepStrictEqual(yield* fs.readDirectory(dir), ["a.json"])
      })
    ))

  it.effect("a write into a missing directory fails with AtomicWriteFailed naming the path", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(writeFileAtomic(NodePath.join(dir, "missing", "a.txt"), "x"))
        assert.strictEqual(error._tag, "AtomicWriteFailed")
        assert.include(error.message, NodePath.join(dir, "missing", "a.txt"))
      })
    ))

  it.effect("writeDirAtomic swaps a whole directory in and cleans up after a failing populate", () =>
    withTempDir((dir, fs) =>
      Effect.gen(function*() {
        const target = NodePath.join(dir, "ckpt")
        yield* writeDirAtomic(target, (tmp) =>
          Effect.gen(function*() {
            yield* fs.makeDirectory(NodePath.join(tmp, "sub"))
            yield* fs.writeFileString(NodePath.join(tmp, "sub", "w.bin"), "v1")
          }))
        assert.strictEqual(yield* fs.readFileString(NodePath.join(target, "sub", "w.bin")), "v1")
        const error = yield* Effect.flip(writeDirAtomic(target, () => Effect.fail("boom" as const)))
        assert.strictEqual(error, "boom")
        assert.deepStrictEqual(yield* fs.readDirectory(dir), ["ckpt"])
        yield* writeDirAtomic(target, (tmp) => fs.writeFileString(NodePath.join(tmp, "w.bin"), "v2"))
        assert.deepStrictEqual(yield* fs.readDirectory(target), ["w.bin"])
        assert.deepStrictEqual(yield* fs.readDirectory(dir), ["ckpt"])
      })
    ))
})
