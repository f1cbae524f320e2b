/**
 * What the read-only commands (report, replay, inspect, compare) accept as a run directory: a directory
 * holding the run's events.jsonl or config.json (RunStore's layout). Anything else is refused with
 * `NotARunDirectory`, which says which path and why, before any file is written there. It does not
 * open the run (RunStore does).
 */
import { Effect, FileSystem, Schema } from "effect"
import { CliError } from "effect/cli"
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
