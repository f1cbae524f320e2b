/**
 * RunStore: one run directory `runs/<experiment>/<run-id>/` on disk — config.json, events.jsonl
 * (append-only, one event a line), checkpoints/ (atomic), trees/, summary.json, report.html/.md —
 * and the Events layer that appends to it. Also the events.jsonl line codec and resume truncation.
 * It does not decide what a checkpoint contains (the trainer does) nor how reports look (src/report/).
 */
import { Context, Effect, Exit, FileSystem, Layer, Result, Schema, Scope, Semaphore } from "effect"
import * as NodePath from "node:path"
import * as Tree from "../core/tree.ts"
import { EventBody, Stamp, type StampedEvent } from "../events/Event.ts"
import { Events, makeMemory } from "../events/Events.ts"
import { type AtomicWriteFailed, writeDirAtomic, writeFileAtomic, writeJsonAtomic } from "./atomic.ts"

// ---------------------------------------------------------------------------------------------------
// errors

export class RunDirectoryNotFound extends Schema.TaggedError<RunDirectoryNotFound>()("RunDirectoryNotFound", {
  dir: Schema.String,
  message: Schema.String
}) {}

export class RunDirectoryExists extends Schema.TaggedError<RunDirectoryExists>()("RunDirectoryExists", {
  dir: Schema.String,
  message: Schema.String
}) {}

export class InvalidRunName extends Schema.TaggedError<InvalidRunName>()("InvalidRunName", {
  name: Schema.String,
  message: Schema.String
}) {}

/** Reading or writing a file of the run failed (I/O, permissions, disk full). */
export class RunFileFailed extends Schema.TaggedError<RunFileFailed>()("RunFileFailed", {
  path: Schema.String,
  operation: Schema.String,
  message: Schema.String
}) {}

/** A line of events.jsonl is not a valid event (and is not a tolerated partial last line). */
export class CorruptEventLine extends Schema.TaggedError<CorruptEventLine>()("CorruptEventLine", {
  file: Schema.String,
  line: Schema.Int,
  excerpt: Schema.String,
  message: Schema.String
}) {}

/** config.json or summary.json is not valid JSON. */
export class CorruptJsonFile extends Schema.TaggedError<CorruptJsonFile>()("CorruptJsonFile", {
  path: Schema.String,
  message: Schema.String
}) {}

export type RunStoreError =
  | RunDirectoryNotFound
  | RunDirectoryExists
  | InvalidRunName
  | RunFileFailed
  | CorruptEventLine
  | CorruptJsonFile

const ioFailed = (path: string, operation: string) => (error: { readonly message: string }) =>
  new RunFileFailed({ path, operation, message: `${operation} ${path}: ${error.message}` })

const fromAtomic = (error: AtomicWriteFailed) =>
  new RunFileFailed({ path: error.path, operation: error.operation, message: error.message })

// ---------------------------------------------------------------------------------------------------
// events.jsonl line codec

/** Top-level keys of a line that come from the stamp (plus `kind`); no event body may use them. */
export const lineKeys = ["kind", "step", "arm", "seed", "seq", "run"] as const

const encodeBody = Schema.encodeUnknownResult(EventBody)
const decodeBody = Schema.decodeUnknownResult(EventBody)
const decodeStamp = Schema.decodeUnknownResult(Stamp)

/**
 * One events.jsonl line (no newline): `{"kind":…,"step":…,"arm":…,"seed":…,"seq":…,"run":…, …figures}`,
 * i.e. the stamp flattened and the body's `_tag` written as `kind`, so `grep '"kind":"eval"'` works.
 * An event that does not encode (e.g. a NaN loss) is replaced by an error `note` with the same stamp
 * that says so, rather than failing the run.
 */
export const encodeLine = (stamped: StampedEvent): string => {
  const { stamp } = stamped
  const head = { kind: "", step: stamp.step, arm: stamp.arm, seed: stamp.seed, seq: stamp.seq, run: stamp.run }
  const body = encodeBody(stamped.event)
  if (Result.isSuccess(body)) {
    const { _tag, ...fields } = body.success as { readonly _tag: string }
    return JSON.stringify({ ...head, kind: _tag, ...fields })
  }
  const message = `event ${stamped.event._tag} not recorded: ${body.failure.message.replace(/\s+/g, " ")}`
  return JSON.stringify({ ...head, kind: "note", level: "error", message })
}

/** Decode one line back to the StampedEvent it was encoded from; `Result.fail(reason)` otherwise. */
export const decodeLine = (line: string): Result.Result<StampedEvent, string> => {
  let json: unknown
  try {
    json = JSON.parse(line)
  } catch (e) {
    return Result.fail(`not JSON (${(e as Error).message})`)
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return Result.fail("not a JSON object")
  const { kind, step, arm, seed, seq, run, ...fields } = json as Record<string, unknown>
  if (typeof kind !== "string") return Result.fail(`missing field "kind"`)
  const stamp = decodeStamp({ run, arm, seed, step, seq })
  if (Result.isFailure(stamp)) return Result.fail(`bad stamp: ${stamp.failure.message.replace(/\s+/g, " ")}`)
  const event = decodeBody({ ...fields, _tag: kind })
  if (Result.isFailure(event)) return Result.fail(`bad "${kind}" event: ${event.failure.message.replace(/\s+/g, " ")}`)
  return Result.succeed({ stamp: stamp.success, event: event.success })
}

/** Events read back from a file, plus notes for a person (e.g. a dropped partial last line). */
export interface EventLog {
  readonly events: ReadonlyArray<StampedEvent>
  readonly notes: ReadonlyArray<string>
}

/**
 * Parse the text of an events.jsonl file. A last line without its newline that does not decode is the
 * trace of a write cut short (SIGKILL): dropped with a note. Any other bad line is a CorruptEventLine
 * naming the file and the 1-based line number.
 */
export const parseEvents = (file: string, text: string): Result.Result<EventLog, CorruptEventLine> => {
  const lines = text.split("\n")
  const unterminated = lines.pop() ?? ""
  const events: Array<StampedEvent> = []
  const notes: Array<string> = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line.trim() === "") continue
    const decoded = decodeLine(line)
    if (Result.isFailure(decoded)) {
      return Result.fail(
        new CorruptEventLine({
          file,
          line: i + 1,
          excerpt: line.slice(0, 120),
          message: `${file} line ${i + 1}: ${decoded.failure}`
        })
      )
    }
    events.push(decoded.success)
  }
  if (unterminated.trim() !== "") {
    const decoded = decodeLine(unterminated)
    if (Result.isSuccess(decoded)) events.push(decoded.success)
    else {
      notes.push(
        `${file} line ${lines.length + 1}: dropped a partially written last line (${unterminated.length} chars, no newline; the run was probably killed mid-write)`
      )
    }
  }
  return Result.succeed({ events, notes })
}

/** Read and parse an events.jsonl file (a missing file is an empty log). */
export const readEventsFile = (
  path: string
): Effect.Effect<EventLog, RunFileFailed | CorruptEventLine, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(path).pipe(Effect.mapError(ioFailed(path, "check"))))) return { events: [], notes: [] }
    const text = yield* fs.readFileString(path).pipe(Effect.mapError(ioFailed(path, "read")))
    const parsed = parseEvents(path, text)
    return Result.isSuccess(parsed) ? parsed.success : yield* parsed.failure
  })

// ---------------------------------------------------------------------------------------------------
// the run directory

export interface RunPaths {
  readonly dir: string
  readonly config: string
  readonly events: string
  readonly checkpoints: string
  readonly trees: string
  readonly summary: string
  readonly reportHtml: string
  readonly reportMd: string
}

export const runPaths = (dir: string): RunPaths => ({
  dir,
  config: NodePath.join(dir, "config.json"),
  events: NodePath.join(dir, "events.jsonl"),
  checkpoints: NodePath.join(dir, "checkpoints"),
  trees: NodePath.join(dir, "trees"),
  summary: NodePath.join(dir, "summary.json"),
  reportHtml: NodePath.join(dir, "report.html"),
  reportMd: NodePath.join(dir, "report.md")
})

/** Which events `truncateAfterStep` may drop (default: all arms and seeds). */
export interface TruncateWhere {
  readonly arm?: string
  readonly seed?: number
}

export interface TruncateResult {
  readonly kept: number
  readonly dropped: number
  readonly notes: ReadonlyArray<string>
}

export class RunStore extends Context.Service<RunStore, {
  readonly paths: RunPaths
  /** Write config.json (the resolved configuration), atomically. */
  readonly writeConfig: (config: unknown) => Effect.Effect<void, RunStoreError>
  readonly readConfig: Effect.Effect<unknown, RunStoreError>
  /** Append events to events.jsonl, one line each, in the given order. */
  readonly appendEvents: (events: ReadonlyArray<StampedEvent>) => Effect.Effect<void, RunStoreError>
  /** fsync events.jsonl (call before a checkpoint is declared done). */
  readonly syncEvents: Effect.Effect<void, RunStoreError>
  readonly readEvents: Effect.Effect<EventLog, RunStoreError>
  /** One more than the largest `seq` in events.jsonl (0 when empty): where numbering continues. */
  readonly nextSeq: Effect.Effect<number, RunStoreError>
  /**
   * Resume: rewrite events.jsonl atomically keeping only events with `step ≤ step` (among those
   * matching `where`; others are kept), so a resumed run re-emits nothing twice.
   */
  readonly truncateAfterStep: (step: number, where?: TruncateWhere) => Effect.Effect<TruncateResult, RunStoreError>
  readonly writeSummary: (summary: unknown) => Effect.Effect<void, RunStoreError>
  readonly readSummary: Effect.Effect<unknown, RunStoreError>
  readonly writeReport: (report: { readonly html: string; readonly markdown: string }) => Effect.Effect<void, RunStoreError>
  /** checkpoints/<name> */
  readonly checkpointPath: (name: string) => string
  /** Build checkpoints/<name> atomically with `populate(tmpDir)`; returns its path. */
  readonly writeCheckpoint: <E, R>(
    name: string,
    populate: (dir: string) => Effect.Effect<void, E, R>
  ) => Effect.Effect<string, E | RunStoreError, Exclude<R, Scope.Scope>>
  /** Checkpoint names, sorted (zero-pad step numbers in names so this is step order). */
  readonly listCheckpoints: Effect.Effect<ReadonlyArray<string>, RunStoreError>
  /** Write trees/<name>.json (an array of RolloutTrees) atomically; returns its path. */
  readonly writeTrees: (name: string, trees: ReadonlyArray<Tree.RolloutTree>) => Effect.Effect<string, RunStoreError>
}>()("arpo/RunStore") {
  /** Open an existing run directory (report, replay, resume). */
  static readonly layerOpen = (dir: string): Layer.Layer<RunStore, RunStoreError, FileSystem.FileSystem> =>
    Layer.effect(RunStore, open(dir))

  /** Create `root/<experiment>/<runId>/` (runId defaults to a UTC timestamp) and write config.json. */
  static readonly layerCreate = (options: CreateOptions): Layer.Layer<RunStore, RunStoreError, FileSystem.FileSystem> =>
    Layer.effect(RunStore, create(options))

  /**
   * The Events service of this run: every emitted event is appended to events.jsonl (and kept in
   * memory, as `makeMemory` does); `seq` continues after the largest one already in the file.
   */
  static readonly eventsLayer: Layer.Layer<Events, RunStoreError, RunStore> = Layer.effect(
    Events,
    Effect.gen(function*() {
      const store = yield* RunStore
      const start = yield* store.nextSeq
      return yield* makeMemory(
        (event) =>
          store.appendEvents([event]).pipe(
            Effect.mapError((e) => new Error(`arpo: could not record an event in ${store.paths.events}: ${e.message}`)),
            Effect.orDie
          ),
        start
      )
    })
  )
}

export interface CreateOptions {
  /** the runs root, e.g. "runs" */
  readonly root: string
  readonly experiment: string
  readonly runId?: string
  /** written to config.json when given */
  readonly config?: unknown
}

const validName = /^[A-Za-z0-9][A-Za-z0-9._=+-]*$/

const checkName = (what: string, name: string): Effect.Effect<string, InvalidRunName> =>
  validName.test(name) && !name.includes("..")
    ? Effect.succeed(name)
    : Effect.fail(
      new InvalidRunName({
        name,
        message: `${what} name "${name}" is not allowed: use letters, digits and . _ = + - (no slashes, not starting with a dot)`
      })
    )

/** A run id from the clock: 2026-11-24T10-22-33Z (sorts in time order, safe in file names). */
export const timestampRunId = (date: Date): string => date.toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-")

const create = (options: CreateOptions): Effect.Effect<RunStore["Service"], RunStoreError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const experiment = yield* checkName("experiment", options.experiment)
    const parent = NodePath.join(options.root, experiment)
    let runId: string
    if (options.runId !== undefined) runId = yield* checkName("run id", options.runId)
    else {
      const base = timestampRunId(new Date())
      runId = base
      for (let i = 2; yield* fs.exists(NodePath.join(parent, runId)).pipe(Effect.mapError(ioFailed(parent, "check"))); i++) {
        runId = `${base}-${i}`
      }
    }
    const dir = NodePath.join(parent, runId)
    if (yield* fs.exists(dir).pipe(Effect.mapError(ioFailed(dir, "check")))) {
      return yield* new RunDirectoryExists({ dir, message: `run directory ${dir} already exists (use resume, or another --run-id)` })
    }
    yield* fs.makeDirectory(NodePath.join(dir, "checkpoints"), { recursive: true }).pipe(Effect.mapError(ioFailed(dir, "create")))
    const store = yield* open(dir)
    if (options.config !== undefined) yield* store.writeConfig(options.config)
    return store
  })

const readJson = (fs: FileSystem.FileSystem, path: string): Effect.Effect<unknown, RunFileFailed | CorruptJsonFile> =>
  Effect.gen(function*() {
    const text = yield* fs.readFileString(path).pipe(Effect.mapError(ioFailed(path, "read")))
    try {
      return JSON.parse(text) as unknown
    } catch (e) {
      return yield* new CorruptJsonFile({ path, message: `${path}: not valid JSON (${(e as Error).message})` })
    }
  })

const checkpointName = (name: string) => checkName("checkpoint", name).pipe(Effect.orDie)

const open = (dir: string): Effect.Effect<RunStore["Service"], RunStoreError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(dir).pipe(
      Effect.mapError(() => new RunDirectoryNotFound({ dir, message: `run directory ${dir} does not exist` }))
    )
    if (info.type !== "Directory") {
      return yield* new RunDirectoryNotFound({ dir, message: `${dir} is not a directory (expected a run directory)` })
    }
    const paths = runPaths(dir)
    const lock = yield* Semaphore.make(1)

    // The append handle lives in its own scope so truncation (which renames a new file over
    // events.jsonl) can close it; the next append reopens the new file.
    let handle: { readonly file: FileSystem.File; readonly scope: Scope.Closeable } | undefined
    const closeHandle = Effect.gen(function*() {
      if (handle === undefined) return
      const h = handle
      handle = undefined
      yield* h.file.sync.pipe(Effect.ignore)
      yield* Scope.close(h.scope, Exit.void)
    })
    yield* Effect.addFinalizer(() => lock.withPermits(1)(closeHandle))

    /** A file cut mid-line by a kill: rewrite it without the partial line before appending after it. */
    const repairTail = Effect.gen(function*() {
      if (!(yield* fs.exists(paths.events).pipe(Effect.mapError(ioFailed(paths.events, "check"))))) return
      const text = yield* fs.readFileString(paths.events).pipe(Effect.mapError(ioFailed(paths.events, "read")))
      if (text === "" || text.endsWith("\n")) return
      const cut = text.lastIndexOf("\n") + 1
      const tail = text.slice(cut)
      const keep = Result.isSuccess(decodeLine(tail)) ? text + "\n" : text.slice(0, cut)
      yield* writeFileAtomic(paths.events, keep).pipe(Effect.mapError(fromAtomic))
      if (keep.length < text.length + 1) {
        yield* Effect.logWarning(`${paths.events}: dropped a partially written last line (${tail.length} chars)`)
      }
    })

    const getHandle = Effect.gen(function*() {
      if (handle !== undefined) return handle.file
      yield* repairTail
      const scope = yield* Scope.make()
      const file = yield* fs.open(paths.events, { flag: "a" }).pipe(
        Scope.provide(scope),
        Effect.mapError(ioFailed(paths.events, "open for append"))
      )
      handle = { file, scope }
      return file
    })

    const encoder = new TextEncoder()
    const appendEvents = (events: ReadonlyArray<StampedEvent>) =>
      events.length === 0 ? Effect.void : lock.withPermits(1)(
        Effect.gen(function*() {
          const file = yield* getHandle
          const text = events.map((e) => encodeLine(e) + "\n").join("")
          yield* file.writeAll(encoder.encode(text)).pipe(Effect.mapError(ioFailed(paths.events, "append to")))
        })
      )

    const readEvents = readEventsFile(paths.events)

    const nextSeq = Effect.map(readEvents, (log) => log.events.reduce((m, e) => Math.max(m, e.stamp.seq + 1), 0))

    const truncateAfterStep = (step: number, where: TruncateWhere = {}) =>
      lock.withPermits(1)(
        Effect.gen(function*() {
          yield* closeHandle
          const log = yield* readEvents
          const matches = (e: StampedEvent) =>
            (where.arm === undefined || e.stamp.arm === where.arm) && (where.seed === undefined || e.stamp.seed === where.seed)
          const kept = log.events.filter((e) => !matches(e) || e.stamp.step <= step)
          const exists = yield* fs.exists(paths.events).pipe(Effect.mapError(ioFailed(paths.events, "check")))
          if (exists) {
            yield* writeFileAtomic(paths.events, kept.map((e) => encodeLine(e) + "\n").join("")).pipe(Effect.mapError(fromAtomic))
          }
          return { kept: kept.length, dropped: log.events.length - kept.length, notes: log.notes }
        })
      )

    const writeCheckpoint = <E, R>(name: string, populate: (dir: string) => Effect.Effect<void, E, R>) =>
      Effect.gen(function*() {
        const safe = yield* checkpointName(name)
        const target = NodePath.join(paths.checkpoints, safe)
        yield* fs.makeDirectory(paths.checkpoints, { recursive: true }).pipe(Effect.mapError(ioFailed(paths.checkpoints, "create")))
        yield* writeDirAtomic(target, populate).pipe(
          Effect.mapError((e) => (isAtomicError(e) ? fromAtomic(e) : e)),
          Effect.provideService(FileSystem.FileSystem, fs)
        )
        return target
      })

    const listCheckpoints = Effect.gen(function*() {
      if (!(yield* fs.exists(paths.checkpoints).pipe(Effect.mapError(ioFailed(paths.checkpoints, "check"))))) return []
      const names = yield* fs.readDirectory(paths.checkpoints).pipe(Effect.mapError(ioFailed(paths.checkpoints, "list")))
      return names.filter((n) => !n.startsWith(".")).sort()
    })

    const writeTrees = (name: string, trees: ReadonlyArray<Tree.RolloutTree>) =>
      Effect.gen(function*() {
        const safe = yield* checkName("trees file", name)
        yield* fs.makeDirectory(paths.trees, { recursive: true }).pipe(Effect.mapError(ioFailed(paths.trees, "create")))
        const target = NodePath.join(paths.trees, `${safe}.json`)
        const json = `[${trees.map((t) => Tree.encodeJson(t)).join(",\n")}]\n`
        yield* writeFileAtomic(target, json).pipe(Effect.mapError(fromAtomic), Effect.provideService(FileSystem.FileSystem, fs))
        return target
      })

    const atomicJson = (path: string, value: unknown) =>
      writeJsonAtomic(path, value).pipe(Effect.mapError(fromAtomic), Effect.provideService(FileSystem.FileSystem, fs))
    const atomicText = (path: string, text: string) =>
      writeFileAtomic(path, text).pipe(Effect.mapError(fromAtomic), Effect.provideService(FileSystem.FileSystem, fs))

    return RunStore.of({
      paths,
      writeConfig: (config) => atomicJson(paths.config, config),
      readConfig: readJson(fs, paths.config),
      appendEvents: (events) => appendEvents(events).pipe(Effect.provideService(FileSystem.FileSystem, fs)),
      syncEvents: lock.withPermits(1)(
        Effect.gen(function*() {
          if (handle !== undefined) yield* handle.file.sync.pipe(Effect.mapError(ioFailed(paths.events, "fsync")))
        })
      ),
      readEvents: readEvents.pipe(Effect.provideService(FileSystem.FileSystem, fs)),
      nextSeq: nextSeq.pipe(Effect.provideService(FileSystem.FileSystem, fs)),
      truncateAfterStep: (step, where) => truncateAfterStep(step, where).pipe(Effect.provideService(FileSystem.FileSystem, fs)),
      writeSummary: (summary) => atomicJson(paths.summary, summary),
      readSummary: readJson(fs, paths.summary),
      writeReport: ({ html, markdown }) =>
        Effect.andThen(atomicText(paths.reportHtml, html), atomicText(paths.reportMd, markdown)),
      checkpointPath: (name) => NodePath.join(paths.checkpoints, name),
      writeCheckpoint,
      listCheckpoints,
      writeTrees
    })
  })

const isAtomicError = (e: unknown): e is AtomicWriteFailed =>
  typeof e === "object" && e !== null && (e as { _tag?: unknown })._tag === "AtomicWriteFailed"
