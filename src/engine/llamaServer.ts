/**
 * llama-server (llama.cpp's HTTP server) launched by arpo as a scoped resource: started on 127.0.0.1, awaited
 * on GET /health, stopped when the scope closes (SIGTERM, SIGKILL after a grace period, on success, failure or
 * interruption), and restarted on the same port on a new GGUF (weight sync: llama-server cannot reload weights).
 * `layerManaged` is the HTTP Engine (dialect "llama-server") over such a server: its `load(gguf weights)`
 * starts the server on the first file and restarts it on each later one.
 * It does not build llama-server (scripts/llama-server does) and does not talk to a server it did not start.
 */
import { NodeHttpClient, NodeServices } from "@effect/platform-node"
import { Deferred, Duration, Effect, Exit, Layer, Ref, Schema, Scope, Semaphore, Stream } from "effect"
import type { HttpClient } from "effect/http"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Events } from "../events/Events.ts"
import { type PolicyWeights, type WeightsFormat, WeightsFormatUnsupported } from "../core/weights.ts"
import type { ModelConfig } from "../model/config.ts"
import { byteTokenizer } from "../model/tokenizer.ts"
import { Engine, EngineFailure, type Tokenizer } from "./Engine.ts"
import { type HttpEngine, type HttpEngineOptions, make as makeHttp, type ServerHealth } from "./http.ts"

// ---------------------------------------------------------------------------------------------------------------------
// Errors

/** No llama-server binary was found where arpo looks for one. */
export class LlamaServerNotFound extends Schema.TaggedError<LlamaServerNotFound>()("LlamaServerNotFound", {
  /** the places looked at, in order */
  searched: Schema.String,
  message: Schema.String
}) {}

/** The server could not be started, died before it answered /health, or did not answer in time. */
export class ServerLaunchFailed extends Schema.TaggedError<ServerLaunchFailed>()("ServerLaunchFailed", {
  binary: Schema.String,
  model: Schema.String,
  url: Schema.String,
  reason: Schema.Literals(["spawn", "exited", "timeout"]),
  /** the process id, when it was started */
  pid: Schema.optionalKey(Schema.Int),
  /** exit code, when it exited by itself */
  exitCode: Schema.optionalKey(Schema.Int),
  /** the signal that ended it, when one did */
  signal: Schema.optionalKey(Schema.String),
  /** the last lines the server wrote (stderr, with stdout interleaved) */
  stderrTail: Schema.String,
  message: Schema.String
}) {}

// ---------------------------------------------------------------------------------------------------------------------
// Binary discovery

/** The llama.cpp bundled with this node-llama-cpp release is what scripts/llama-server builds. */
export const llamaServerVersion = "3.21.1"

const set = (v: string | undefined): v is string => v !== undefined && v !== ""

/**
 * Where scripts/llama-server puts the binary: <cache>/build/bin/llama-server, the cache being $ARPO_LLAMA_CACHE
 * or ${XDG_CACHE_HOME:-~/.cache}/arpo/llama-server-<version> (as in the script).
 */
export const cachedBinaryPath = (env: NodeJS.ProcessEnv = process.env): string => {
  const cache = set(env["ARPO_LLAMA_CACHE"])
    ? env["ARPO_LLAMA_CACHE"]
    : path.join(set(env["XDG_CACHE_HOME"]) ? env["XDG_CACHE_HOME"] : path.join(os.homedir(), ".cache"), "arpo", `llama-server-${llamaServerVersion}`)
  return path.join(cache, "build", "bin", "llama-server")
}

const executable = (file: string): boolean => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/**
 * The llama-server binary: `ARPO_LLAMA_SERVER` when set (it must be executable), else the cache path
 * scripts/llama-server builds into, else a typed error saying to run scripts/llama-server.
 */
export const findBinary = (env: NodeJS.ProcessEnv = process.env): Effect.Effect<string, LlamaServerNotFound> =>
  Effect.suspend(() => {
    const given = env["ARPO_LLAMA_SERVER"]
    if (given !== undefined && given !== "") {
      return executable(given)
        ? Effect.succeed(given)
        : Effect.fail(
          new LlamaServerNotFound({
            searched: given,
            message: `ARPO_LLAMA_SERVER=${given} is not an executable file (scripts/llama-server --build-only builds one and prints its path)`
          })
        )
    }
    const cached = cachedBinaryPath(env)
    return executable(cached)
      ? Effect.succeed(cached)
      : Effect.fail(
        new LlamaServerNotFound({
          searched: `$ARPO_LLAMA_SERVER (unset), ${cached}`,
          message: `no llama-server binary: ARPO_LLAMA_SERVER is unset and ${cached} does not exist; run scripts/llama-server --build-only (builds it there, ~9 min on 2 cores)`
        })
      )
  })

// ---------------------------------------------------------------------------------------------------------------------
// Launch

export interface LaunchOptions {
  /** the llama-server executable (see `findBinary`) */
  readonly binary: string
  /** arguments placed before llama-server's own (an interpreter's script, a wrapper's options; tests use it) */
  readonly binaryArgs?: ReadonlyArray<string>
  /** the GGUF file to serve (`-m`) */
  readonly model: string
  /** the loopback port (default: a free one picked by the OS); the host is always 127.0.0.1 */
  readonly port?: number
  /** `-t` (default 1: more threads than cores spin-wait, and tiny models gain nothing from more) */
  readonly threads?: number
  /** `-c`, the KV cache size in tokens over all slots (default: the GGUF's own) */
  readonly ctxSize?: number
  /** `-np`, parallel sequence slots (default: llama-server's) */
  readonly parallel?: number
  /** further llama-server arguments, appended last */
  readonly extraArgs?: ReadonlyArray<string>
  /** from spawn to a 200 on /health (default 60 s) */
  readonly startTimeout?: Duration.Input
  /** between /health polls (default 50 ms) */
  readonly healthPollInterval?: Duration.Input
  /** SIGTERM, then SIGKILL after this long when stopping (default 3 s) */
  readonly stopGrace?: Duration.Input
  /** characters of output kept for failure reports (default 4000) */
  readonly tailChars?: number
}

/** A llama-server this scope owns. */
export interface RunningServer {
  /** http://127.0.0.1:<port>, unchanged by restarts */
  readonly url: string
  readonly port: number
  /** the process id of the server started last (it may have died since; see `isRunning`) */
  readonly pid: Effect.Effect<number>
  /** the GGUF the server started last serves */
  readonly model: Effect.Effect<string>
  readonly isRunning: Effect.Effect<boolean>
  /** the last output of the server started last */
  readonly output: Effect.Effect<string>
  /**
   * Stops the server (if it still runs) and starts it on `model` on the same port, then waits for /health.
   * Restarts are serialized. If the new server fails to start, no server runs until the next restart.
   */
  readonly restart: (model: string) => Effect.Effect<void, ServerLaunchFailed>
}

/** A port on 127.0.0.1 that was free a moment ago (the OS picks it; it is released before returning). */
export const freeLoopbackPort: Effect.Effect<number, Error> = Effect.callback<number, Error>((resume) => {
  const s = net.createServer()
  s.once("error", (e) => resume(Effect.fail(e)))
  s.listen(0, "127.0.0.1", () => {
    const port = (s.address() as net.AddressInfo).port
    s.close(() => resume(Effect.succeed(port)))
  })
})

/** llama-server's command line for these options. */
export const serverArgs = (options: LaunchOptions, port: number, model: string): Array<string> => [
  ...(options.binaryArgs ?? []),
  "-m",
  model,
  "--host",
  "127.0.0.1",
  "--port",
  String(port),
  "-t",
  String(options.threads ?? 1),
  ...(options.ctxSize !== undefined ? ["-c", String(options.ctxSize)] : []),
  ...(options.parallel !== undefined ? ["-np", String(options.parallel)] : []),
  ...(options.extraArgs ?? [])
]

/** The status code of GET /health, or undefined when nothing answered (refused, reset, no reply within 2 s). */
const healthStatus = (url: string): Effect.Effect<number | undefined> =>
  Effect.promise(() =>
    fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) }).then(
      async (r) => {
        await r.arrayBuffer().catch(() => undefined)
        return r.status
      },
      () => undefined
    )
  )

/** Exit code or signal from the spawner's exit status (a signal arrives as a failure naming it). */
const exitStatus = (handle: ChildProcessSpawner.ChildProcessHandle): Effect.Effect<{ exitCode?: number; signal?: string }> =>
  handle.exitCode.pipe(
    Effect.map((code) => ({ exitCode: Number(code) })),
    Effect.catch((e: unknown) => {
      const m = /signal: '?([A-Z0-9]+)'?/.exec(String((e as { message?: unknown }).message ?? e)) ??
        /signal: '?([A-Z0-9]+)'?/.exec(String((e as { cause?: { message?: unknown } }).cause?.message ?? ""))
      return Effect.succeed(m !== null ? { signal: m[1]! } : {})
    }),
    Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.succeed({}) })
  )

interface Instance {
  readonly scope: Scope.Closeable
  readonly pid: number
  readonly model: string
  readonly handle: ChildProcessSpawner.ChildProcessHandle
  readonly tail: { text: string }
}

/** Spawns one server process in the current scope and waits until it answers 200 on /health. */
const startInstance = (
  spawner: ChildProcessSpawner.ChildProcessSpawner["Service"],
  options: LaunchOptions,
  port: number,
  model: string
): Effect.Effect<Omit<Instance, "scope">, ServerLaunchFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const url = `http://127.0.0.1:${port}`
    const cap = options.tailChars ?? 4000
    const tail = { text: "" }
    let pid: { pid?: number } = {}
    const failed = (reason: "spawn" | "exited" | "timeout", detail: string, status: { exitCode?: number; signal?: string } = {}) =>
      new ServerLaunchFailed({
        binary: options.binary,
        model,
        url,
        reason,
        ...pid,
        ...status,
        stderrTail: tail.text,
        message: `llama-server ${options.binary} on ${url} (model ${model}) ${detail}${
          tail.text.trim() !== "" ? `; output ends: ${tail.text.trim().split("\n").slice(-3).join(" | ")}` : ""
        }`
      })
    const grace = options.stopGrace ?? "3 seconds"
    const handle = yield* spawner.spawn(
      ChildProcess.make(options.binary, serverArgs(options, port, model), {
        stdin: "ignore",
        killSignal: "SIGTERM",
        forceKillAfter: grace
      })
    ).pipe(Effect.mapError((e) => failed("spawn", `could not be started: ${e.message}`)))
    pid = { pid: Number(handle.pid) }

    // read all output (an unread pipe would block the server once full), keeping the last `cap` characters
    const drained = yield* Deferred.make<void>()
    yield* handle.all.pipe(
      Stream.decodeText(),
      Stream.runForEach((s) => Effect.sync(() => (tail.text = (tail.text + s).slice(-cap)))),
      Effect.ignore,
      Effect.ensuring(Deferred.succeed(drained, undefined)),
      Effect.forkScoped
    )

    const timeoutMs = Duration.toMillis(Duration.fromInputUnsafe(options.startTimeout ?? "60 seconds"))
    const poll = Duration.fromInputUnsafe(options.healthPollInterval ?? "50 millis")
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const running = yield* handle.isRunning.pipe(Effect.orElseSucceed(() => false))
      if (!running) {
        const status = yield* exitStatus(handle)
        yield* Deferred.await(drained).pipe(Effect.timeout("1 second"), Effect.ignore)
        const how = status.signal !== undefined ? `was killed by ${status.signal}` : `exited with code ${status.exitCode ?? "?"}`
        return yield* failed("exited", `${how} before answering /health`, status)
      }
      const code = yield* healthStatus(url)
      if (code === 200) {
        // a 200 from another process holding the port while ours fails to bind must not count
        const still = yield* handle.isRunning.pipe(Effect.orElseSucceed(() => false))
        if (still) return { pid: Number(handle.pid), model, handle, tail } as Omit<Instance, "scope">
        continue
      }
      if (Date.now() >= deadline) {
        return yield* failed("timeout", `did not answer 200 on /health within ${timeoutMs} ms (last: ${code === undefined ? "no answer" : `HTTP ${code}`})`)
      }
      yield* Effect.sleep(poll)
    }
  })

/**
 * Starts llama-server on 127.0.0.1 (port: `options.port` or a free one) and waits for /health. The server
 * (and every later one `restart` starts) is stopped when the enclosing scope closes; a server that fails to
 * start is stopped before the failure is returned.
 */
export const launch = (
  options: LaunchOptions
): Effect.Effect<RunningServer, ServerLaunchFailed, Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const outer = yield* Scope.Scope
    const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
    const port = options.port ?? (yield* freeLoopbackPort.pipe(
      Effect.mapError((e) =>
        new ServerLaunchFailed({
          binary: options.binary,
          model: options.model,
          url: "http://127.0.0.1",
          reason: "spawn",
          stderrTail: "",
          message: `no free loopback port for llama-server: ${e.message}`
        })
      )
    ))
    const url = `http://127.0.0.1:${port}`
    const lock = yield* Semaphore.make(1)
    let current: Instance | undefined
    let last: { pid: number; model: string; tail: { text: string } } = { pid: -1, model: options.model, tail: { text: "" } }

    /** One server in its own child scope of the launch scope, so a restart can close it alone. */
    const start = (model: string) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(outer)
        const instance = yield* startInstance(spawner, options, port, model).pipe(
          Scope.provide(scope),
          Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
        )
        current = { ...instance, scope }
        last = instance
      })

    const stop = Effect.suspend(() => {
      const c = current
      current = undefined
      return c === undefined ? Effect.void : Scope.close(c.scope, Exit.void)
    })

    yield* start(options.model)
    return {
      url,
      port,
      pid: Effect.sync(() => last.pid),
      model: Effect.sync(() => last.model),
      isRunning: Effect.suspend(() =>
        current === undefined ? Effect.succeed(false) : current.handle.isRunning.pipe(Effect.orElseSucceed(() => false))
      ),
      output: Effect.sync(() => last.tail.text),
      restart: (model: string) => lock.withPermits(1)(Effect.andThen(stop, start(model)))
    }
  })

// ---------------------------------------------------------------------------------------------------------------------
// Managed: the HTTP Engine over a launched server that restarts on each GGUF it is told to load

export interface ManagedOptions {
  /** the llama-server executable (default: `findBinary()`) */
  readonly binary?: string
  /** launch settings; the model is the loaded GGUF. Defaults: threads 1, parallel 4, ctxSize context × parallel */
  readonly server?: Omit<LaunchOptions, "binary" | "model">
  /** HTTP Engine settings (dialect, URL and health check are the launcher's) */
  readonly http?: Omit<HttpEngineOptions, "dialect" | "baseUrls" | "tokenizer" | "checkHealthOnStart"> & {
    readonly tokenizer?: Tokenizer
  }
  /**
   * Ban byte tokens 0x80–0xFF in sampling (default true). This llama.cpp parses generated text and answers
   * HTTP 500 "does not match the expected Content-only format" when sampled bytes are not valid UTF-8,
   * which random or barely trained byte-level models do; the reported log-probs stay the model's own
   * (n_probs is taken before the sampler chain), so the ban shows up as off-policy sampling on those bytes only.
   */
  readonly asciiOnly?: boolean
  /** the served model's context per slot (the default ctxSize is this × parallel; default: the GGUF's own) */
  readonly context?: number
}

/**
 * llama-server arguments that make its numbers match the embedded model: F32 KV cache (F16 costs ~2.5e-3
 * in log-probs), no flash attention, no model download, no warm-up pass.
 */
export const parityArgs: ReadonlyArray<string> = ["--offline", "--no-warmup", "--cache-type-k", "f32", "--cache-type-v", "f32", "-fa", "off"]

/** logit_bias entries banning the byte tokens 0x80–0xFF (ids equal byte values in the embedded vocabulary). */
export const nonAsciiBan: ReadonlyArray<readonly [number, boolean]> = Array.from({ length: 128 }, (_, i) => [128 + i, false] as const)

/** The managed engine: the Engine service plus the server it runs on. */
export type ManagedEngine = Engine["Service"] & {
  /** the launched server (after the first load) */
  readonly server: Effect.Effect<RunningServer>
  readonly health: Effect.Effect<ReadonlyArray<ServerHealth>>
  /** how many weight syncs restarted the server so far */
  readonly restarts: Effect.Effect<number>
}

export type ManagedError = LlamaServerNotFound | EngineFailure

/** The formats a managed llama-server loads. */
export const accepts: ReadonlyArray<WeightsFormat> = ["gguf"]

/** How many calls may hold the served weights at once; a restart takes them all. */
const gateSize = 1 << 20

/**
 * The HTTP Engine on a llama-server arpo launches: the first `load` starts the server on that GGUF, every
 * later one restarts it on the new file once calls in flight have finished; a server found dead before a
 * call is restarted on the file it served. `policyVersion` is the served weights' version. Until the first
 * load, calls fail. The server stops when the scope closes.
 */
export const makeManaged = (
  options: ManagedOptions = {}
): Effect.Effect<ManagedEngine, ManagedError, Scope.Scope | Events | ChildProcessSpawner.ChildProcessSpawner | HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const events = yield* Events
    const scope = yield* Scope.Scope
    const services = yield* Effect.context<Events | ChildProcessSpawner.ChildProcessSpawner | HttpClient.HttpClient>()
    const binary = options.binary ?? (yield* findBinary())
    const s = options.server ?? {}
    const parallel = s.parallel ?? 4
    const { tokenizer: givenTokenizer, extraBody, ...httpRest } = options.http ?? {}
    const tokenizer = givenTokenizer ?? byteTokenizer
    const name = httpRest.name ?? "llama-server(managed)"
    const adapter = "http/llama-server"
    let serving: { readonly server: RunningServer; readonly http: HttpEngine; readonly path: string } | undefined
    const restarts = yield* Ref.make(0)
    const lock = yield* Semaphore.make(1)
    const gate = yield* Semaphore.make(gateSize)
    const fail = (message: string, transient: boolean) => new EngineFailure({ adapter, message, transient })

    const start = (path: string) =>
      Effect.gen(function*() {
        const server = yield* launch({
          ...s,
          binary,
          model: path,
          parallel,
          ...(s.ctxSize !== undefined ? { ctxSize: s.ctxSize } : options.context !== undefined ? { ctxSize: options.context * parallel } : {}),
          extraArgs: [...parityArgs, ...(s.extraArgs ?? [])]
        }).pipe(Scope.provide(scope))
        const http: HttpEngine = yield* makeHttp({
          maxConcurrency: parallel,
          ...httpRest,
          dialect: "llama-server",
          baseUrls: [server.url],
          tokenizer,
          checkHealthOnStart: false,
          name,
          ...((options.asciiOnly ?? true) || extraBody !== undefined
            ? { extraBody: { ...((options.asciiOnly ?? true) ? { logit_bias: nonAsciiBan } : {}), ...extraBody } }
            : {})
        })
        serving = { server, http, path }
      })

    const restartOn = (path: string) =>
      Effect.gen(function*() {
        const t0 = performance.now()
        yield* gate.withPermits(gateSize)(serving!.server.restart(path))
        serving = { ...serving!, path }
        yield* Ref.update(restarts, (n) => n + 1)
        yield* events.emit({ _tag: "metric", name: "llama-server.restart_ms", value: performance.now() - t0 })
      })

    const load = (w: PolicyWeights): Effect.Effect<void, EngineFailure | WeightsFormatUnsupported> =>
      Effect.gen(function*() {
        if (!accepts.includes(w.format) || w.location._tag !== "path") {
          return yield* new WeightsFormatUnsupported({ engine: name, accepts: [...accepts], trainer: "the weights given", produces: [`${w.format} (${w.location._tag})`] })
        }
        const path = w.location.path
        yield* lock.withPermits(1)(
          Effect.gen(function*() {
            if (serving === undefined) yield* start(path)
            else yield* restartOn(path)
            yield* serving!.http.setPolicyVersion(w.version)
          }).pipe(
            Effect.provideContext(services),
            Effect.mapError((e) => e._tag === "EngineFailure" ? e : fail(`loading ${path}: ${e.message}`, true))
          )
        )
      })

    /** Restarts a server that is no longer running (it crashed or was killed) on the file it served. */
    const revive = lock.withPermits(1)(
      Effect.gen(function*() {
        if (serving === undefined) return yield* fail("no GGUF loaded yet (call load first)", false)
        if (yield* serving.server.isRunning) return serving.http
        yield* restartOn(serving.path)
        return serving.http
      }).pipe(
        Effect.mapError((e) => e._tag === "EngineFailure" ? e : fail(`restarting ${serving?.server.url ?? "llama-server"}: ${e.message}`, true))
      )
    )
    const serve = <A, E>(call: (http: HttpEngine) => Effect.Effect<A, E>) => Effect.flatMap(revive, (http) => gate.withPermits(1)(call(http)))
    const notStarted = Effect.die(new Error("llama-server: not started (load weights first)"))

    return {
      name,
      capabilities: { entropy: { topK: httpRest.topK ?? 20, point: httpRest.entropyPoint ?? "mid" }, prefixReuse: true, maxConcurrency: parallel, deterministic: false },
      tokenizer,
      policyVersion: Effect.suspend(() => serving === undefined ? Effect.succeed(0) : serving.http.policyVersion),
      accepts,
      load,
      generate: (requests) => serve((http) => http.generate(requests)),
      score: (sequences) => serve((http) => http.score(sequences)),
      server: Effect.suspend(() => serving === undefined ? notStarted : Effect.succeed(serving.server)),
      health: Effect.suspend(() => serving === undefined ? Effect.succeed([]) : serving.http.health),
      restarts: Ref.get(restarts)
    } satisfies ManagedEngine
  })

/**
 * The managed llama-server Engine as a Layer needing only Events (it brings Node's process spawner and HTTP
 * client): a drop-in for a run's engine, e.g. `engine: (config) => LlamaServer.layerManaged({ context: config.model.context })`.
 * The server stops when the layer's scope closes.
 */
export const layerManaged = (options: ManagedOptions = {}): Layer.Layer<Engine, ManagedError, Events> =>
  Layer.effect(Engine, Effect.map(makeManaged(options), (m): Engine["Service"] => m)).pipe(
    Layer.provide(Layer.merge(NodeServices.layer, NodeHttpClient.layerNodeHttp))
  )

/** A run's engine: `components: { engine: LlamaServer.engineOf({ server: { threads: 1 } }) }` (one slot per engine slot). */
export const engineOf = (options: ManagedOptions = {}) =>
  (config: { readonly engine: { readonly maxSlots: number }; readonly model: ModelConfig }): Layer.Layer<Engine, ManagedError, Events> =>
    layerManaged({
      context: config.model.context,
      ...options,
      server: { parallel: config.engine.maxSlots, ...options.server }
    })
