/**
 * Atomic file and directory writes: a reader (or a resumed run) sees either the old content or the
 * new content, never a half-written file, even after a SIGKILL or a power cut. Files: temp file in the
 * same directory + fsync + rename + fsync of the directory. Directories: build in a temp sibling,
 * fsync what was written, then swap. It does not lock: one writer per path is the caller's business.
 */
import { Effect, FileSystem, Schema, Scope } from "effect"
import * as NodePath from "node:path"

/** An atomic write could not be completed; the target keeps its previous content. */
export class AtomicWriteFailed extends Schema.TaggedError<AtomicWriteFailed>()("AtomicWriteFailed", {
  path: Schema.String,
  operation: Schema.String,
  message: Schema.String
}) {}

let counter = 0
/** A sibling name unique within this process (pid + counter + time), so concurrent writers never collide. */
const tempSibling = (path: string, kind: string): string =>
  NodePath.join(
    NodePath.dirname(path),
    `.${NodePath.basename(path)}.${kind}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`
  )

const fail = (path: string, operation: string) => (error: { readonly message: string }) =>
  new AtomicWriteFailed({ path, operation, message: `${operation} ${path}: ${error.message}` })

/** fsync a file or directory by path (directories: makes a rename durable). Best effort for directories
 *  on platforms that cannot open them. */
const fsyncPath = (fs: FileSystem.FileSystem, path: string) =>
  Effect.scoped(Effect.flatMap(fs.open(path, { flag: "r" }), (file) => file.sync))

const fsyncDir = (fs: FileSystem.FileSystem, path: string) => Effect.ignore(fsyncPath(fs, path))

const writeAndSync = (fs: FileSystem.FileSystem, path: string, bytes: Uint8Array) =>
  Effect.scoped(
    Effect.gen(function*() {
      const file = yield* fs.open(path, { flag: "w" })
      yield* file.writeAll(bytes)
      yield* file.sync
    })
  )

const encoder = new TextEncoder()

/**
 * Replace `path` with `data` atomically (the parent directory must exist). On failure the temp file is
 * removed and `path` is untouched.
 */
export const writeFileAtomic = (
  path: string,
  data: string | Uint8Array
): Effect.Effect<void, AtomicWriteFailed, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const tmp = tempSibling(path, "tmp")
    const bytes = typeof data === "string" ? encoder.encode(data) : data
    yield* writeAndSync(fs, tmp, bytes).pipe(
      Effect.mapError(fail(path, "write temp file")),
      Effect.andThen(fs.rename(tmp, path).pipe(Effect.mapError(fail(path, "rename temp file onto")))),
      Effect.onError(() => fs.remove(tmp, { force: true }).pipe(Effect.ignore))
    )
    yield* fsyncDir(fs, NodePath.dirname(path))
  })

/** `writeFileAtomic` of `JSON.stringify(value, null, 2)` plus a final newline. */
export const writeJsonAtomic = (path: string, value: unknown): Effect.Effect<void, AtomicWriteFailed, FileSystem.FileSystem> =>
  writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n")

/** fsync every regular file under `dir` (recursively), then `dir` itself. */
const syncTree = (fs: FileSystem.FileSystem, dir: string): Effect.Effect<void, AtomicWriteFailed> =>
  Effect.gen(function*() {
    const entries = yield* fs.readDirectory(dir, { recursive: true }).pipe(Effect.mapError(fail(dir, "list")))
    for (const entry of entries) {
      const full = NodePath.join(dir, entry)
      const info = yield* fs.stat(full).pipe(Effect.mapError(fail(full, "stat")))
      if (info.type === "File") yield* fsyncPath(fs, full).pipe(Effect.mapError(fail(full, "fsync")))
      else if (info.type === "Directory") yield* fsyncDir(fs, full)
    }
    yield* fsyncDir(fs, dir)
  })

/**
 * Build a directory atomically: `populate(tmpDir)` writes into a fresh temp sibling of `path`; its files
 * are fsynced and the directory is renamed to `path`. An existing `path` is first renamed aside and
 * removed after the swap (POSIX cannot rename over a non-empty directory), so the only window in which
 * `path` is absent is between two renames; a hidden `.<name>.old-*` sibling then still holds the old
 * content. On any failure the temp directory is removed and `path` is untouched.
 */
export const writeDirAtomic = <E, R>(
  path: string,
  populate: (tmpDir: string) => Effect.Effect<void, E, R>
): Effect.Effect<void, E | AtomicWriteFailed, FileSystem.FileSystem | Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const tmp = tempSibling(path, "tmp")
    yield* fs.makeDirectory(tmp, { recursive: true }).pipe(Effect.mapError(fail(tmp, "create temp directory")))
    const build = Effect.gen(function*() {
      yield* Effect.scoped(populate(tmp))
      yield* syncTree(fs, tmp)
      const exists = yield* fs.exists(path).pipe(Effect.mapError(fail(path, "check")))
      if (!exists) {
        yield* fs.rename(tmp, path).pipe(Effect.mapError(fail(path, "rename temp directory onto")))
      } else {
        const old = tempSibling(path, "old")
        yield* fs.rename(path, old).pipe(Effect.mapError(fail(path, "move aside")))
        yield* fs.rename(tmp, path).pipe(
          Effect.mapError(fail(path, "rename temp directory onto")),
          Effect.onError(() => fs.rename(old, path).pipe(Effect.ignore))
        )
        yield* fs.remove(old, { recursive: true, force: true }).pipe(Effect.ignore)
      }
      yield* fsyncDir(fs, NodePath.dirname(path))
    })
    yield* build.pipe(Effect.onError(() => fs.remove(tmp, { recursive: true, force: true }).pipe(Effect.ignore)))
  })
