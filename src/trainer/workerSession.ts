/**
 * A session with a Python worker process speaking newline-delimited JSON over stdio (workers/trainer.py):
 * spawned as a scoped resource (the process is killed when the scope closes, on success, failure or
 * interruption), a `ping` handshake with a timeout, requests routed by id, replies checked by Schema, and
 * typed errors naming the cause (crash with exit code/signal and stderr tail, protocol violation, OOM).
 * It knows nothing about training: see pytorch.ts for the Trainer built on it.
 */
import { type Cause, Deferred, Duration, Effect, Queue, Schema, type Scope, Stream } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import * as fs from "node:fs"
import { checkTorchrun, freePort, rankFailureOf, type TorchrunConfig, torchrunArgs, torchrunEnv } from "./torchrun.ts"

/** The worker interpreter: ARPO_PYTHON, else Debian's /usr/bin/python3 where it exists (a per-user shim first on PATH
 *  may lack torch), else python3 on PATH. */
export const workerPython = (): string => {
  const fromEnv = process.env["ARPO_PYTHON"]
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv
  return fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
}

/** The protocol version this client speaks (the worker's `PROTOCOL`). */
export const protocolVersion = 1

// ---------------------------------------------------------------------------------------------------------------------
// Errors

/** The worker process could not be started (no interpreter, no script). */
export class WorkerUnavailable extends Schema.TaggedError<WorkerUnavailable>()("WorkerUnavailable", {
  command: Schema.String,
  message: Schema.String
}) {}

/** The worker exited (or was killed) while requests were outstanding or before the session ended. */
export class WorkerCrashed extends Schema.TaggedError<WorkerCrashed>()("WorkerCrashed", {
  /** the request in flight when it died ("" when none) */
  op: Schema.String,
  /** exit code, when it exited by itself */
  exitCode: Schema.optionalKey(Schema.Int),
  /** the signal that killed it (SIGKILL, SIGTERM, …) */
  signal: Schema.optionalKey(Schema.String),
  /** under torchrun: the rank whose failure ended the group (its exit code / signal are in the message) */
  rank: Schema.optionalKey(Schema.Int),
  /** the last bytes the worker wrote to stderr */
  stderrTail: Schema.String,
  message: Schema.String
}) {}

/** The worker broke the protocol (a non-JSON line, a reply of the wrong shape, a handshake mismatch) or refused a request. */
export class WorkerProtocolError extends Schema.TaggedError<WorkerProtocolError>()("WorkerProtocolError", {
  op: Schema.String,
  message: Schema.String
}) {}

/** The worker ran out of (host or device) memory during a request; the worker is still alive. */
export class WorkerOutOfMemory extends Schema.TaggedError<WorkerOutOfMemory>()("WorkerOutOfMemory", {
  op: Schema.String,
  message: Schema.String
}) {}

/** The worker reported a CUDA or internal failure for a request; the worker is still alive. */
export class WorkerFailed extends Schema.TaggedError<WorkerFailed>()("WorkerFailed", {
  op: Schema.String,
  kind: Schema.Literals(["cuda", "internal"]),
  message: Schema.String
}) {}

/** A request (or the handshake) got no reply in time; the worker is killed (its state is unknown). */
export class WorkerTimeout extends Schema.TaggedError<WorkerTimeout>()("WorkerTimeout", {
  op: Schema.String,
  afterMillis: Schema.Number
}) {}

export type WorkerError = WorkerUnavailable | WorkerCrashed | WorkerProtocolError | WorkerOutOfMemory | WorkerFailed | WorkerTimeout

// ---------------------------------------------------------------------------------------------------------------------
// Wire schemas

const Envelope = Schema.Struct({
  id: Schema.NullOr(Schema.Int),
  ok: Schema.Boolean
})

const ErrorReply = Schema.Struct({
  error: Schema.Struct({
    kind: Schema.Literals(["oom", "cuda", "protocol", "internal"]),
    message: Schema.String
  })
})

/** `ping` / handshake reply. */
export const PingReply = Schema.Struct({ protocol: Schema.Int, pid: Schema.Int })

// ---------------------------------------------------------------------------------------------------------------------
// Session

export interface WorkerOptions {
  /** interpreter (default "python3"; use Debian's /usr/bin/python3 where a per-user shim comes first on PATH) */
  readonly python?: string
  /** the worker script */
  readonly script: string
  /** extra environment (added to the parent's) */
  readonly env?: Record<string, string>
  /** time to answer the `ping` handshake (default 30 s: a loaded machine may start Python slowly) */
  readonly handshakeTimeout?: Duration.Input
  /** default time limit of one request (default 10 minutes) */
  readonly requestTimeout?: Duration.Input
  /** bytes of stderr kept for crash reports (default 4096) */
  readonly stderrTailBytes?: number
  /** SIGTERM, then SIGKILL after this long when the scope closes (default 2 s) */
  readonly forceKillAfter?: Duration.Input
  /**
   * Launch the worker as one torchrun group of this many processes (data-parallel training; see torchrun.ts and
   * workers/distributed.py). 1 or absent: a single process. Shorthand for `torchrun: { processes }`.
   */
  readonly processes?: number
  /** torchrun settings (several nodes, rendezvous address and port, sharding); overrides `processes` */
  readonly torchrun?: TorchrunConfig
}

export interface WorkerSession {
  readonly pid: number
  /**
   * Sends `{id, op, ...payload}` and decodes the reply's fields with `reply`. Requests may be issued
   * concurrently (replies are routed by id); the worker serves them in order.
   */
  readonly request: <S extends Schema.Decoder<unknown>>(
    op: string,
    payload: Record<string, unknown>,
    reply: S,
    options?: { readonly timeout?: Duration.Input }
  ) => Effect.Effect<S["Type"], WorkerError>
  /** Whether the worker process is still running. */
  readonly isRunning: Effect.Effect<boolean>
}

/** Keeps the last `cap` characters of a stream of text. */
class Tail {
  private text = ""
  private readonly cap: number
  constructor(cap: number) {
    this.cap = cap
  }
  push(s: string): void {
    this.text = (this.text + s).slice(-this.cap)
  }
  get value(): string {
    return this.text
  }
}

/** The signal named by the spawner's exit-code failure (its cause reads "…receipt of signal: 'SIGKILL'"). */
const signalOf = (e: unknown): string | undefined => {
  const texts: Array<string> = []
  let x: unknown = e
  for (let i = 0; i < 4 && x !== undefined && x !== null; i++) {
    texts.push(String((x as { message?: unknown }).message ?? x))
    x = (x as { reason?: { cause?: unknown }; cause?: unknown }).reason?.cause ?? (x as { cause?: unknown }).cause
  }
  return /signal: '?([A-Z0-9]+)'?/.exec(texts.join(" "))?.[1]
}

/**
 * Starts the worker and shakes hands. The returned session lives as long as the enclosing scope: closing
 * it sends `shutdown` (on success only) and then the spawner terminates the process group (SIGTERM, then
 * SIGKILL), so no worker survives its scope.
 */
export const spawnWorker = (
  options: WorkerOptions
): Effect.Effect<WorkerSession, WorkerError, Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const python = options.python ?? "python3"
    const group = options.torchrun ?? (options.processes !== undefined && options.processes > 1 ? { processes: options.processes } : undefined)
    const torchrun = group === undefined ? undefined : yield* checkTorchrun(group).pipe(
      Effect.mapError((e) => new WorkerUnavailable({ command: `${python} ${options.script}`, message: e.message }))
    )
    const args = torchrun === undefined
      ? ["-u", options.script]
      : torchrunArgs(torchrun, options.script, torchrun.masterPort ?? (yield* freePort))
    const commandText = torchrun === undefined ? `${python} ${options.script}` : `torchrun (${python} ${args.slice(1).join(" ")})`
    const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
    const input = yield* Queue.unbounded<Uint8Array, Cause.Done>()
    const handle = yield* spawner.spawn(
      ChildProcess.make(python, args, {
        stdin: { stream: Stream.fromQueue(input), endOnDone: true },
        env: { PYTHONUNBUFFERED: "1", ...(torchrun !== undefined ? torchrunEnv(torchrun) : {}), ...options.env },
        extendEnv: true,
        killSignal: "SIGTERM",
        forceKillAfter: options.forceKillAfter ?? "2 seconds"
      })
    ).pipe(Effect.mapError((e) => new WorkerUnavailable({ command: commandText, message: `could not start ${commandText}: ${e.message}` })))

    const tail = new Tail(options.stderrTailBytes ?? 4096)
    const pending = new Map<number, { op: string; deferred: Deferred.Deferred<unknown, WorkerError> }>()
    let broken: WorkerError | undefined
    let nextId = 1
    const encoder = new TextEncoder()

    /** Marks the session unusable and fails every outstanding request with `e`. */
    const breakWith = (e: (op: string) => WorkerError) =>
      Effect.gen(function*() {
        broken ??= e("")
        for (const [id, p] of pending) {
          pending.delete(id)
          yield* Deferred.fail(p.deferred, e(p.op))
        }
      })

    const stderrDone = yield* Deferred.make<void>()
    yield* handle.stderr.pipe(
      Stream.decodeText(),
      Stream.runForEach((s) => Effect.sync(() => tail.push(s))),
      Effect.ignore,
      Effect.ensuring(Deferred.succeed(stderrDone, undefined)),
      Effect.forkScoped
    )

    const dispatch = (line: string) =>
      Effect.gen(function*() {
        if (line.trim() === "") return
        let raw: unknown
        try {
          raw = JSON.parse(line)
        } catch {
          return yield* breakWith((op) =>
            new WorkerProtocolError({ op, message: `worker wrote a non-JSON line to stdout: ${JSON.stringify(line.slice(0, 200))}` })
          )
        }
        const env = Schema.decodeUnknownOption(Envelope)(raw)
        if (env._tag === "None") {
          return yield* breakWith((op) => new WorkerProtocolError({ op, message: `worker reply lacks id/ok: ${line.slice(0, 200)}` }))
        }
        const id = env.value.id
        const p = id === null ? undefined : pending.get(id)
        if (p === undefined) {
          return yield* breakWith((op) =>
            new WorkerProtocolError({ op, message: `worker replied to unknown request id ${id}: ${line.slice(0, 200)}` })
          )
        }
        pending.delete(id!)
        if (env.value.ok) return yield* Deferred.succeed(p.deferred, raw)
        const err = Schema.decodeUnknownOption(ErrorReply)(raw)
        if (err._tag === "None") {
          return yield* Deferred.fail(p.deferred, new WorkerProtocolError({ op: p.op, message: `malformed error reply: ${line.slice(0, 200)}` }))
        }
        const { kind, message } = err.value.error
        const where = `worker op ${p.op}: ${message}`
        yield* Deferred.fail(
          p.deferred,
          kind === "oom"
            ? new WorkerOutOfMemory({ op: p.op, message: where })
            : kind === "protocol"
            ? new WorkerProtocolError({ op: p.op, message: where })
            : new WorkerFailed({ op: p.op, kind, message: where })
        )
      })

    // stdout ends when the worker exits: every outstanding request then fails with the exit status
    yield* handle.stdout.pipe(
      Stream.decodeText(),
      Stream.splitLines,
      Stream.runForEach(dispatch),
      Effect.ignore,
      Effect.andThen(
        Effect.gen(function*() {
          type Status = { exitCode?: number; signal?: string }
          const status: Status = yield* handle.exitCode.pipe(
            Effect.map((code): Status => ({ exitCode: Number(code) })),
            Effect.catch((e) => Effect.succeed<Status>(signalOf(e) !== undefined ? { signal: signalOf(e)! } : {})),
            Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.succeed<Status>({}) })
          )
          yield* Deferred.await(stderrDone).pipe(Effect.timeout("1 second"), Effect.ignore)
          const how = status.signal !== undefined
            ? `was killed by ${status.signal}`
            : status.exitCode !== undefined
            ? `exited with code ${status.exitCode}`
            : "closed its stdout"
          // under torchrun: the rank its summary names as the root cause
          const failed = torchrun !== undefined ? rankFailureOf(tail.value) : undefined
          const rankText = failed === undefined
            ? ""
            : `; rank ${failed.rank} ${
              failed.signal !== undefined ? `was killed by ${failed.signal}` : `exited with code ${failed.exitCode ?? "?"}`
            }`
          yield* breakWith((op) =>
            new WorkerCrashed({
              op,
              ...status,
              ...(failed !== undefined ? { rank: failed.rank } : {}),
              stderrTail: tail.value,
              message: `worker ${commandText} (pid ${handle.pid}) ${how}${op ? ` during ${op}` : ""}${rankText}${
                tail.value ? `; stderr ends: ${tail.value.trim().split("\n").slice(-3).join(" | ")}` : ""
              }`
            })
          )
        })
      ),
      Effect.forkScoped
    )

    const kill = Effect.ignore(handle.kill({ killSignal: "SIGKILL" }))

    const request = <S extends Schema.Decoder<unknown>>(
      op: string,
      payload: Record<string, unknown>,
      reply: S,
      ro: { readonly timeout?: Duration.Input } = {}
    ): Effect.Effect<S["Type"], WorkerError> =>
      Effect.gen(function*() {
        if (broken !== undefined) return yield* Effect.fail(withOp(broken, op))
        const id = nextId++
        const deferred = yield* Deferred.make<unknown, WorkerError>()
        pending.set(id, { op, deferred })
        yield* Queue.offer(input, encoder.encode(JSON.stringify({ ...payload, id, op }) + "\n"))
        const timeout = ro.timeout ?? options.requestTimeout ?? "10 minutes"
        const raw = yield* Deferred.await(deferred).pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () =>
              Effect.gen(function*() {
                const e = new WorkerTimeout({ op, afterMillis: Duration.toMillis(Duration.fromInputUnsafe(timeout)) })
                broken ??= e
                yield* kill
                return yield* Effect.fail(e)
              })
          }),
          Effect.ensuring(Effect.sync(() => pending.delete(id)))
        )
        return yield* Schema.decodeUnknownEffect(reply)(raw).pipe(
          Effect.mapError((e) => new WorkerProtocolError({ op, message: `worker reply to ${op} does not match its schema: ${e.message}` }))
        )
      })

    // graceful shutdown when the scope closes successfully (the spawner's release then kills what is left)
    yield* Effect.addFinalizer((exit) =>
      exit._tag === "Success" && broken === undefined
        ? request("shutdown", {}, Schema.Unknown, { timeout: "2 seconds" }).pipe(
          // a torchrun group's agents pass an exit barrier (every node's agent) before they exit: give them longer
          Effect.andThen(handle.exitCode.pipe(Effect.timeout(torchrun !== undefined ? "20 seconds" : "2 seconds"))),
          Effect.ignore
        )
        : Effect.void
    )

    const hello = yield* request("ping", {}, PingReply, { timeout: options.handshakeTimeout ?? "30 seconds" })
    if (hello.protocol !== protocolVersion) {
      return yield* Effect.fail(
        new WorkerProtocolError({ op: "ping", message: `worker speaks protocol ${hello.protocol}, this client ${protocolVersion}` })
      )
    }
    return {
      pid: Number(handle.pid),
      request,
      isRunning: handle.isRunning.pipe(Effect.orElseSucceed(() => false))
    }
  })

/** The same error, re-labelled with the op that found the session already broken. */
const withOp = (e: WorkerError, op: string): WorkerError => {
  switch (e._tag) {
    case "WorkerCrashed":
      return new WorkerCrashed({ ...e, op, message: e.message })
    case "WorkerProtocolError":
      return new WorkerProtocolError({ op, message: `session already broken: ${e.message}` })
    case "WorkerTimeout":
      return new WorkerCrashed({ op, stderrTail: "", message: `worker was killed after ${e.op} timed out (${e.afterMillis} ms)` })
    default:
      return e
  }
}
