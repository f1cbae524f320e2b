/**
 * What the read-only commands (report, replay, inspect, compare) accept as a run directory: a directory
 * holding the run's events.jsonl or config.json (RunStore's layout). Anything else is refused with
 * `NotARunDirectory`, which says which path and why, before any file is written there. It does not
 * open the run (RunStore does).
 */
import { Effect, FileSystem, Schema } from "effect"
import { CliError } from "effect/cli"
import * as nodeFs from "node:fs"
import * as NodePath from "node:path"

export class NotARunDirectory extends Schema.TaggedError<NotARunDirectory>()("NotARunDirectory", {
  dir: Schema.String,
  reason: Schema.String,
  message: Schema.String
}) {
  override get [CliError.userMessage]() {
    return this.message
  }
}

/** Succeeds when `dir` is a run directory; else fails with the reason in words. */
export const requireRunDirectory = (dir: string): Effect.Effect<void, NotARunDirectory, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const refuse = (reason: string) =>
      new NotARunDirectory({ dir, reason, message: `${dir} is not a run directory: ${reason} (a run directory is runs/<experiment>/<run-id>/, as arpo run prints last)` })
    const info = yield* fs.stat(dir).pipe(Effect.mapError(() => refuse("it does not exist")))
    if (info.type !== "Directory") return yield* refuse(`it is a ${info.type === "File" ? "file" : info.type.toLowerCase()}, not a directory`)
    const has = (name: string) => fs.exists(NodePath.join(dir, name)).pipe(Effect.orElseSucceed(() => false))
    if (!(yield* has("events.jsonl")) && !(yield* has("config.json"))) return yield* refuse("it holds neither events.jsonl nor config.json")
  })

/** The run directory a checkpoint directory belongs to (`<run>/checkpoints/<name>`), or NotARunDirectory saying why not. */
export const runOfCheckpoint = (checkpoint: string): Effect.Effect<string, NotARunDirectory, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const abs = NodePath.resolve(checkpoint)
    const runDir = NodePath.dirname(NodePath.dirname(abs))
    if (NodePath.basename(NodePath.dirname(abs)) !== "checkpoints") {
      return yield* new NotARunDirectory({
        dir: runDir,
        reason: "the checkpoint is not in a checkpoints/ folder",
        message: `${checkpoint} is not a checkpoint of a run: a run's checkpoints are runs/<experiment>/<run-id>/checkpoints/<name> (give --experiment to evaluate it anyway)`
      })
    }
    yield* requireRunDirectory(runDir)
    return runDir
  })

/** The nearest existing ancestor of `dir` (itself included) must be a writable directory; `why` says otherwise. */
const creatable = (dir: string, isTarget: boolean): Effect.Effect<string | undefined, never, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    let at = NodePath.resolve(dir)
    for (;;) {
      const info = yield* fs.stat(at).pipe(Effect.option)
      if (info._tag === "Some") {
        if (info.value.type !== "Directory") {
          return isTarget && at === NodePath.resolve(dir)
            ? "it is a file, not a directory (give the folder runs are written into, e.g. runs)"
            : `${at} is a file, so the directory cannot be created`
        }
        const writable = yield* Effect.sync(() => {
          try {
            nodeFs.accessSync(at, nodeFs.constants.W_OK)
            return true
          } catch {
            return false
          }
        })
        return writable ? undefined : `${at} is not writable (permission denied)`
      }
      const parent = NodePath.dirname(at)
      if (parent === at) return undefined
      at = parent
    }
  })

const outError = (flag: string, out: string, why: string) => new CliError.UserError({ cause: new Error(why), userMessage: `${flag} ${out}: ${why}` })

/**
 * A folder that runs are written into (`--out`): it is a directory or can be created (its nearest
 * existing ancestor is a writable directory). Fails with a message naming the path and the reason.
 */
export const checkOutDirectory = (out: string, flag = "--out"): Effect.Effect<void, CliError.UserError, FileSystem.FileSystem> =>
  Effect.flatMap(creatable(out, true), (why) => (why === undefined ? Effect.void : Effect.fail(outError(flag, out, why))))

/**
 * A file a command will write (`--out page.html`): not a directory, and its folder exists or can be
 * created and written. Checked before the work starts, so a bad path loses nothing computed.
 */
export const checkOutFile = (out: string, flag = "--out"): Effect.Effect<void, CliError.UserError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(out).pipe(Effect.option)
    if (info._tag === "Some" && info.value.type === "Directory") {
      return yield* outError(flag, out, `it is a directory; give a file name such as ${NodePath.join(out, "out.json")}`)
    }
    const why = yield* creatable(NodePath.dirname(NodePath.resolve(out)), false)
    if (why !== undefined) return yield* outError(flag, out, why)
  })
