/**
 * Weight sync by file for engines that load GGUF (llama.cpp in-process, a llama-server arpo launches):
 * a mirror of the shared embedded `Policy` as a GGUF file, re-exported whenever the policy's weights
 * changed (`policy.generation`) since the last export. An engine asks `current` before each call and
 * reloads its model when the returned generation differs from the one it holds. Files live in a private
 * temporary directory removed when the scope closes. It does not load or serve anything itself.
 */
import { Effect, Ref, Schema, type Scope, Semaphore } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { writeGguf } from "../model/gguf.ts"
import type { Policy } from "../model/policy.ts"

/** One exported GGUF of the policy. */
export interface GgufSnapshot {
  readonly path: string
  /** `policy.generation` when exported: engines compare it to decide whether to reload */
  readonly generation: number
  /** `policy.version` when exported: the version rollouts from this file are tagged with */
  readonly version: number
  /** milliseconds the export took (0 when `current` returned the existing file) */
  readonly exportMs: number
}

export class GgufExportFailed extends Schema.TaggedError<GgufExportFailed>()("GgufExportFailed", {
  path: Schema.String,
  message: Schema.String
}) {}

export interface GgufMirror {
  /** the directory holding the exported files */
  readonly directory: string
  /** the GGUF of the current weights, exporting it first when the weights changed since the last call */
  readonly current: Effect.Effect<GgufSnapshot, GgufExportFailed>
}

/**
 * A mirror of `policy` in a fresh temporary directory (or `options.directory`, created if missing and
 * left in place). Old exports are deleted once a newer one is written, so the directory holds one file.
 */
export const make = (
  policy: Policy,
  options: { readonly directory?: string; readonly name?: string } = {}
): Effect.Effect<GgufMirror, GgufExportFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const owned = options.directory === undefined
    const directory = yield* Effect.try({
      try: () => {
        if (options.directory !== undefined) {
          fs.mkdirSync(options.directory, { recursive: true })
          return options.directory
        }
        return fs.mkdtempSync(path.join(os.tmpdir(), "arpo-gguf-"))
      },
      catch: (e) => new GgufExportFailed({ path: options.directory ?? os.tmpdir(), message: `cannot create the GGUF directory: ${String(e)}` })
    })
    if (owned) yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true })))
    const last = yield* Ref.make<GgufSnapshot | undefined>(undefined)
    const lock = yield* Semaphore.make(1)

    const exportNow = Effect.gen(function*() {
      const generation = policy.generation
      const version = policy.version
      const file = path.join(directory, `policy-g${generation}.gguf`)
      const t0 = performance.now()
      yield* Effect.try({
        try: () => writeGguf(file, policy.config, policy.toHost(), options.name),
        catch: (e) => new GgufExportFailed({ path: file, message: e instanceof Error ? e.message : String(e) })
      })
      const snapshot: GgufSnapshot = { path: file, generation, version, exportMs: performance.now() - t0 }
      const previous = yield* Ref.getAndSet(last, snapshot)
      if (previous !== undefined && previous.path !== file) {
        yield* Effect.sync(() => fs.rmSync(previous.path, { force: true }))
      }
      return snapshot
    })

    const current = lock.withPermits(1)(
      Effect.gen(function*() {
        const have = yield* Ref.get(last)
        if (have !== undefined && have.generation === policy.generation) {
          // the version can be bumped without new weights (the trainer sets it after its steps)
          const fresh = have.version === policy.version ? have : { ...have, version: policy.version }
          yield* Ref.set(last, fresh)
          return { ...fresh, exportMs: 0 }
        }
        return yield* exportNow
      })
    )
    return { directory, current }
  })
