// The llama-server launcher's lifecycle with a real child process (no llama-server needed): a small Node
// server (fixtures/fakeLlamaServer.mjs) that takes llama-server's arguments and serves /health, started with
// process.execPath. Waits for health, typed failures with the output tail, no process left after the scope
// closes or is interrupted (SIGKILL when SIGTERM is ignored), restart on the same port, managed weight sync.
import { NodeHttpClient, NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer } from "effect"
import type { ChildProcessSpawner } from "effect/process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { derive, root } from "../../src/core/random.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { pathWeights } from "../../src/core/weights.ts"
import * as LlamaServer from "../../src/engine/llamaServer.ts"
import { Events } from "../../src/events/Events.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { writeGguf } from "../../src/model/gguf.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "fakeLlamaServer.mjs")

const fake = (extraArgs: ReadonlyArray<string> = [], more: Partial<LlamaServer.LaunchOptions> = {}): LlamaServer.LaunchOptions => ({
  binary: process.execPath,
  binaryArgs: [fixture],
  model: "first.gguf",
  extraArgs,
  startTimeout: "3 seconds",
  healthPollInterval: "20 millis",
  stopGrace: "1 second",
  ...more
})

/** Whether a process with this id exists (signal 0 checks without sending anything). */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const getJson = (url: string) => Effect.promise(() => fetch(url).then((r) => r.json() as Promise<Record<string, unknown>>))

const withSpawner = <A, E>(e: Effect.Effect<A, E, ChildProcessSpawner.ChildProcessSpawner>) => e.pipe(Effect.provide(NodeServices.layer))

describe("llama-server launcher", () => {
  it.live("waits until /health answers 200, serves on 127.0.0.1, and no process is left after the scope closes", () =>
    Effect.gen(function*() {
      let pid = -1
      const t0 = Date.now()
      yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* LlamaServer.launch(fake(["--fake-healthy-after-ms", "200"]))
        const waited = Date.now() - t0
        assert.isAtLeast(waited, 200)
        assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
        pid = yield* server.pid
        assert.isTrue(alive(pid))
        assert.isTrue(yield* server.isRunning)
        const props = yield* getJson(`${server.url}/props`)
        assert.deepStrictEqual(props, { model_path: "first.gguf", pid })
        assert.include(yield* server.output, "loading model 'first.gguf'")
      }))
      assert.isFalse(alive(pid))
    }).pipe(withSpawner))

  it.live("a server that exits before it is healthy fails with its exit code and output tail", () =>
    Effect.gen(function*() {
      const f = yield* Effect.flip(Effect.scoped(LlamaServer.launch(fake(["--fake-healthy-after-ms", "5000", "--fake-exit-after-ms", "100", "--fake-exit-code", "3"]))))
      assert.strictEqual(f._tag, "ServerLaunchFailed")
      assert.strictEqual(f.reason, "exited")
      assert.strictEqual(f.exitCode, 3)
      assert.include(f.stderrTail, "failed to load model 'first.gguf'")
      assert.include(f.message, "exited with code 3")
      assert.isFalse(alive(f.pid!))
    }).pipe(withSpawner))

  it.live("a server that never gets healthy fails with a timeout and is stopped", () =>
    Effect.gen(function*() {
      const f = yield* Effect.flip(Effect.scoped(LlamaServer.launch(fake(["--fake-never-healthy"], { startTimeout: "600 millis" }))))
      assert.strictEqual(f.reason, "timeout")
      assert.include(f.message, "did not answer 200 on /health within 600 ms")
      // (on a loaded machine Node may still be starting when the time is up; then nothing answered yet)
      if (f.stderrTail.includes("listening on")) assert.include(f.message, "HTTP 503")
      assert.isFalse(alive(f.pid!))
    }).pipe(withSpawner))

  it.live("interrupting the fiber that holds the server stops it, with SIGKILL when SIGTERM is ignored", () =>
    Effect.gen(function*() {
      for (const args of [[], ["--fake-ignore-sigterm"]]) {
        const started = yield* Deferred.make<number>()
        const fiber = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
          const server = yield* LlamaServer.launch(fake(args, { stopGrace: "300 millis" }))
          yield* Deferred.succeed(started, yield* server.pid)
          return yield* Effect.never
        })))
        const pid = yield* Deferred.await(started)
        assert.isTrue(alive(pid))
        yield* Fiber.interrupt(fiber)
        assert.isFalse(alive(pid), `pid ${pid} (${args.join(" ") || "plain"}) still alive after interruption`)
      }
    }).pipe(withSpawner))

  it.live("restart serves a new model on the same port and stops the old process, also after the server was killed from outside", () =>
    Effect.gen(function*() {
      const pids: Array<number> = []
      yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* LlamaServer.launch(fake())
        pids.push(yield* server.pid)
        yield* server.restart("second.gguf")
        pids.push(yield* server.pid)
        assert.notStrictEqual(pids[1], pids[0])
        assert.isFalse(alive(pids[0]!))
        const props = yield* getJson(`${server.url}/props`)
        assert.deepStrictEqual(props, { model_path: "second.gguf", pid: pids[1] })
        assert.strictEqual(yield* server.model, "second.gguf")
        // a server killed from outside comes back on the same port
        process.kill(pids[1]!, "SIGKILL")
        // the exit is noticed asynchronously: poll (up to 5 s on a loaded machine) instead of one fixed sleep
        let running = true
        for (let i = 0; i < 100 && running; i++) {
          yield* Effect.sleep("50 millis")
          running = yield* server.isRunning
        }
        assert.isFalse(running)
        yield* server.restart("third.gguf")
        pids.push(yield* server.pid)
        assert.strictEqual((yield* getJson(`${server.url}/props`))["model_path"], "third.gguf")
      }))
      for (const pid of pids) assert.isFalse(alive(pid))
    }).pipe(withSpawner))

  it.effect("findBinary: ARPO_LLAMA_SERVER, else the scripts/llama-server cache path, else a typed error naming the script", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-find-"))
      try {
        const missing = yield* Effect.flip(LlamaServer.findBinary({ XDG_CACHE_HOME: dir }))
        assert.strictEqual(missing._tag, "LlamaServerNotFound")
        assert.include(missing.message, "scripts/llama-server")
        assert.include(missing.searched, path.join(dir, "arpo", "llama-server-3.21.1", "build", "bin", "llama-server"))
        const bad = yield* Effect.flip(LlamaServer.findBinary({ ARPO_LLAMA_SERVER: path.join(dir, "nope") }))
        assert.include(bad.message, "not an executable")
        const cached = LlamaServer.cachedBinaryPath({ XDG_CACHE_HOME: dir })
        fs.mkdirSync(path.dirname(cached), { recursive: true })
        fs.writeFileSync(cached, "#!/bin/sh\n", { mode: 0o755 })
        assert.strictEqual(yield* LlamaServer.findBinary({ XDG_CACHE_HOME: dir }), cached)
        assert.strictEqual(LlamaServer.cachedBinaryPath({ ARPO_LLAMA_CACHE: "/c", XDG_CACHE_HOME: dir }), path.join("/c", "build", "bin", "llama-server"))
        assert.strictEqual(yield* LlamaServer.findBinary({ XDG_CACHE_HOME: dir, ARPO_LLAMA_SERVER: process.execPath }), process.execPath)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.live("the managed engine starts its server on the first GGUF it loads and restarts it on each later one, on the same port", () =>
    Effect.gen(function*() {
      yield* Effect.promise(ensureBackend)
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-managed-"))
      const files = [5, 6].map((seed, i) => {
        const file = path.join(dir, `policy-v${i}.gguf`)
        writeGguf(file, tinyConfig, Policy.init(tinyConfig, root(seed)).toHost())
        return file
      })
      const request = { tokens: tokenIds([1, 2, 3]), maxTokens: 2, temperature: 1, topP: 1, stopTokens: tokenIds([]), stopStrings: [], key: derive(root(1), 0) }
      let pids: Array<number> = []
      yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* LlamaServer.makeManaged({ binary: process.execPath, server: { binaryArgs: [fixture], healthPollInterval: "20 millis" } })
        assert.deepStrictEqual(engine.accepts, ["gguf"])
        // nothing served before the first load
        assert.isTrue(Exit.isFailure(yield* Effect.exit(engine.generate([request]))))
        yield* engine.load(pathWeights(0, "gguf", files[0]!))
        const server = yield* engine.server
        const [g] = yield* engine.generate([request])
        assert.deepStrictEqual(g!.tokens, tokenIds([257]))
        assert.strictEqual(String((yield* getJson(`${server.url}/props`))["model_path"]), files[0])
        pids.push(yield* server.pid)
        assert.strictEqual(yield* engine.restarts, 0)
        assert.strictEqual(yield* engine.policyVersion, 0)

        yield* engine.load(pathWeights(1, "gguf", files[1]!))
        assert.strictEqual(yield* engine.restarts, 1)
        assert.strictEqual(yield* engine.policyVersion, 1)
        yield* engine.generate([request])
        assert.strictEqual((yield* engine.server).url, server.url)
        assert.strictEqual(String((yield* getJson(`${server.url}/props`))["model_path"]), files[1])
        pids.push(yield* server.pid)
        assert.isFalse(alive(pids[0]!))
        const refused = yield* Effect.flip(engine.load(pathWeights(2, "embedded", files[1]!)))
        assert.strictEqual(refused._tag, "WeightsFormatUnsupported")
      })).pipe(Effect.provide(Layer.mergeAll(NodeServices.layer, NodeHttpClient.layerNodeHttp, Events.layerMemory)))
      fs.rmSync(dir, { recursive: true, force: true })
      for (const pid of pids) assert.isFalse(alive(pid))
      pids = []
    }))
})
