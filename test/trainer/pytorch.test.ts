// The PyTorch trainer worker (workers/trainer.py) driven from TypeScript. Two tiers:
// - "worker protocol" needs only Python 3 (the worker answers ping/debug without importing torch): spawn,
//   handshake, typed crash/protocol/OOM/timeout errors, and that no process survives its scope or an interrupt.
// - "pytorch" (opt-in, scripts/pytorch-tier) needs `import torch`: the worker's model and loss are checked
//   against the embedded jax-js model and the core's reference loss, and the Trainer layer is exercised.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Deferred, Effect, Exit, Fiber, Schema, Scope } from "effect"
import { beforeAll } from "vitest"
import type { TrainBatch, TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, normalizer, type PolicyLossConfig, policyLoss } from "../../src/core/loss.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { Events } from "../../src/events/Events.ts"
import { decodeSafetensors, readCheckpoint, writeCheckpoint } from "../../src/model/checkpoint.ts"
import { type ModelConfig, tinyConfig } from "../../src/model/config.ts"
import { forwardLogits, ropePrefix, ropeTables, tokenLogprobs } from "../../src/model/forward.ts"
import { leaves } from "../../src/model/params.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { type AdamWConfig, Learner, packMicroBatches } from "../../src/model/train.ts"
import { aggregationScale } from "../../src/core/loss.ts"
import { openWorker, type PytorchWorker } from "../../src/trainer/pytorch.ts"
import * as Pytorch from "../../src/trainer/pytorch.ts"
import { Trainer } from "../../src/trainer/Trainer.ts"
import { PingReply, spawnWorker, type WorkerOptions } from "../../src/trainer/workerSession.ts"
import { numpy as np } from "@jax-js/jax"

/** Debian's interpreter (a per-user shim may come first on PATH and lack Debian's packages). */
const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
const script = path.resolve(import.meta.dirname, "../../workers/trainer.py")

const probe = (code: string) => spawnSync(python, ["-c", code], { encoding: "utf8", timeout: 60_000 })
const pythonOk = probe("import sys; assert sys.version_info >= (3, 8)").status === 0
const torchProbe = pythonOk ? probe("import torch") : undefined
const torchOk = torchProbe?.status === 0
if (!pythonOk) console.log(`worker protocol tier skipped: ${python} (3.8+) is not runnable`)
if (!torchOk) {
  console.log(
    `pytorch tier skipped: \`${python} -c "import torch"\` failed (${(torchProbe?.stderr ?? "no python").trim().split("\n").pop()}); ` +
      "run scripts/pytorch-tier to install Debian's python3-torch and run it"
  )
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Polls until the pid is gone (or the limit passes); returns whether it is gone. */
const gone = (pid: number, ms = 5000) =>
  Effect.promise(async () => {
    const until = Date.now() + ms
    while (Date.now() < until) {
      if (!alive(pid)) return true
      await new Promise((r) => setTimeout(r, 20))
    }
    return !alive(pid)
  })

const debugOptions: WorkerOptions = { python, script, env: { ARPO_WORKER_DEBUG: "1" }, forceKillAfter: "500 millis" }
const Slept = Schema.Struct({ slept: Schema.Number })
const Empty = Schema.Struct({})

describe.skipIf(!pythonOk)("worker protocol (Python only, no torch needed)", () => {
  it.live("handshakes, serves requests, and the process is gone when the scope closes", () =>
    Effect.gen(function*() {
      let pid = -1
      yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* spawnWorker(debugOptions)
        pid = w.pid
        assert.isTrue(alive(pid))
        const pong = yield* w.request("ping", {}, PingReply)
        assert.strictEqual(pong.pid, pid)
        // a stray print in the worker goes to stderr and cannot break the protocol
        yield* w.request("debug", { action: "print" }, Empty)
        assert.strictEqual((yield* w.request("debug", { action: "sleep", seconds: 0.01 }, Slept)).slept, 0.01)
      }))
      assert.isTrue(yield* gone(pid), "worker should have exited")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.live("a refused request is a typed WorkerProtocolError/WorkerOutOfMemory and the worker keeps serving", () =>
    Effect.scoped(Effect.gen(function*() {
      const w = yield* spawnWorker(debugOptions)
      const e1 = yield* Effect.flip(w.request("no-such-op", {}, Empty))
      assert.strictEqual(e1._tag, "WorkerProtocolError")
      assert.include(e1.message, "unknown op 'no-such-op'")
      const e2 = yield* Effect.flip(w.request("debug", { action: "oom" }, Empty))
      assert.strictEqual(e2._tag, "WorkerOutOfMemory")
      const e3 = yield* Effect.flip(w.request("ping", {}, Slept)) // reply of the wrong shape
      assert.strictEqual(e3._tag, "WorkerProtocolError")
      assert.include(e3.message, "does not match its schema")
      assert.strictEqual((yield* w.request("ping", {}, PingReply)).protocol, 1)
    })).pipe(Effect.provide(NodeServices.layer)))

  it.live("a worker that exits mid-request is WorkerCrashed with its exit code and stderr tail, and stays broken", () =>
    Effect.scoped(Effect.gen(function*() {
      const w = yield* spawnWorker(debugOptions)
      const e = yield* Effect.flip(w.request("debug", { action: "exit", code: 7, stderr: "boom: the worker fell over" }, Empty))
      assert.strictEqual(e._tag, "WorkerCrashed")
      if (e._tag === "WorkerCrashed") {
        assert.strictEqual(e.exitCode, 7)
        assert.strictEqual(e.op, "debug")
        assert.include(e.stderrTail, "boom: the worker fell over")
        assert.include(e.message, "exited with code 7")
      }
      const again = yield* Effect.flip(w.request("ping", {}, PingReply))
      assert.strictEqual(again._tag, "WorkerCrashed")
      assert.isTrue(yield* gone(w.pid))
    })).pipe(Effect.provide(NodeServices.layer)))

  it.live("a worker killed by a signal mid-request is WorkerCrashed naming the signal", () =>
    Effect.scoped(Effect.gen(function*() {
      const w = yield* spawnWorker(debugOptions)
      const fiber = yield* Effect.forkChild(Effect.flip(w.request("debug", { action: "sleep", seconds: 30 }, Slept)))
      yield* Effect.sleep("200 millis")
      process.kill(w.pid, "SIGKILL")
      const e = yield* Fiber.join(fiber)
      assert.strictEqual(e._tag, "WorkerCrashed")
      if (e._tag === "WorkerCrashed") {
        assert.strictEqual(e.signal, "SIGKILL")
        assert.isUndefined(e.exitCode)
        assert.include(e.message, "killed by SIGKILL during debug")
      }
      assert.isFalse(alive(w.pid))
    })).pipe(Effect.provide(NodeServices.layer)))

  it.live("interrupting the Effect using the worker kills the worker", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<number>()
      const fiber = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        const w = yield* spawnWorker(debugOptions)
        yield* Deferred.succeed(started, w.pid)
        return yield* w.request("debug", { action: "sleep", seconds: 30 }, Slept)
      })).pipe(Effect.provide(NodeServices.layer)))
      const pid = yield* Deferred.await(started)
      yield* Effect.sleep("100 millis")
      assert.isTrue(alive(pid))
      const t0 = Date.now()
      yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isFailure(yield* Fiber.await(fiber)))
      assert.isTrue(yield* gone(pid, 3000), "worker should be killed by the interruption")
      assert.isBelow(Date.now() - t0, 3000)
    }))

  it.live("a non-JSON line on stdout is a WorkerProtocolError", () =>
    Effect.scoped(Effect.gen(function*() {
      const w = yield* spawnWorker(debugOptions)
      const e = yield* Effect.flip(Effect.all([
        w.request("debug", { action: "garbage" }, Empty),
        w.request("ping", {}, PingReply)
      ], { concurrency: "unbounded" }))
      assert.strictEqual(e._tag, "WorkerProtocolError")
      assert.include(e.message, "non-JSON line")
    })).pipe(Effect.provide(NodeServices.layer)))

  it.live("a request past its timeout is WorkerTimeout and the worker is killed", () =>
    Effect.scoped(Effect.gen(function*() {
      const w = yield* spawnWorker(debugOptions)
      const e = yield* Effect.flip(w.request("debug", { action: "sleep", seconds: 30 }, Slept, { timeout: "200 millis" }))
      assert.strictEqual(e._tag, "WorkerTimeout")
      assert.isTrue(yield* gone(w.pid, 3000))
    })).pipe(Effect.provide(NodeServices.layer)))

  it.live("a handshake past its timeout is WorkerTimeout; a missing interpreter is WorkerUnavailable", () =>
    Effect.gen(function*() {
      const slow = yield* Effect.flip(Effect.scoped(spawnWorker({
        ...debugOptions,
        env: { ARPO_WORKER_DEBUG: "1", ARPO_WORKER_STARTUP_DELAY_S: "30" },
        handshakeTimeout: "300 millis"
      })))
      assert.strictEqual(slow._tag, "WorkerTimeout")
      assert.strictEqual(slow._tag === "WorkerTimeout" ? slow.op : "", "ping")
      const missing = yield* Effect.flip(Effect.scoped(spawnWorker({ python: "/nonexistent/python3", script })))
      assert.include(["WorkerUnavailable", "WorkerCrashed"], missing._tag)
    }).pipe(Effect.provide(NodeServices.layer)))
})

// ---------------------------------------------------------------------------------------------------------------------
// Tier "pytorch": parity with the embedded model and the core loss

const small: ModelConfig = { ...tinyConfig, dModel: 32, layers: 2, heads: 4, mlpWidth: 64, context: 32 }
const adam: AdamWConfig = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }

/** Embedded (jax-js) per-token log-probs and entropies of whole sequences, one forward per sequence. */
const embeddedLogprobs = (policy: Policy, seqs: ReadonlyArray<ReadonlyArray<number>>) => {
  const rope = ropeTables(policy.config)
  const out = seqs.map((s) => {
    const [cos, sin] = ropePrefix(rope, s.length)
    const tokens = np.array(Int32Array.from(s), { shape: [1, s.length], dtype: np.int32 })
    const logits = forwardLogits(policy.config, policy.params, tokens.ref, cos, sin)
    const { logp, entropy } = tokenLogprobs(logits, tokens, policy.config.vocab)
    return { logp: Array.from(logp.dataSync() as Float32Array), entropy: Array.from(entropy.dataSync() as Float32Array) }
  })
  rope.cos.dispose()
  rope.sin.dispose()
  return out
}

/** Deterministic pseudo-random token sequences and a batch over them with varied advantages and old log-probs. */
const lcg = (seed: number) => {
  let s = seed >>> 0
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296
}
const sequences = (n: number, vocab: number, seed: number): Array<Array<number>> => {
  const u = lcg(seed)
  return Array.from({ length: n }, (_, i) => Array.from({ length: 6 + ((i * 7) % 20) }, () => Math.floor(u() * (vocab - 2))))
}
const batchOf = (seqs: ReadonlyArray<ReadonlyArray<number>>, logp: ReadonlyArray<ReadonlyArray<number>>, seed: number, withRef: boolean): TrainBatch => {
  const u = lcg(seed)
  return {
    sequences: seqs.map((tokens, i): TrainSequence => {
      const start = 2 + (i % 3)
      const mask = tokens.map((_, t) => (t >= start && (t % 5 !== 4) ? 1 as const : 0 as const)) // some "tool" tokens masked out
      const adv = (i % 2 === 0 ? 1 : -1) * (0.5 + u())
      return {
        tokens: tokenIds(tokens),
        responseStart: start,
        lossMask: mask,
        advantages: tokens.map((_, t) => (t >= start ? adv * (1 + 0.1 * Math.sin(t)) : 0)),
        // old log-probs off by up to ±0.5 nats so that both clip sides and the dual clip are active
        oldLogprobs: tokens.map((_, t) => (mask[t] ? logp[i]![t]! + (u() - 0.5) : 0)),
        ...(withRef ? { refLogprobs: tokens.map((_, t) => (mask[t] ? logp[i]![t]! + 0.3 * (u() - 0.5) : 0)) } : {}),
        weight: i === 1 ? 0.5 : 1,
        group: Math.floor(i / 2),
        policyVersion: 0
      }
    })
  }
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

const losses: ReadonlyArray<[string, PolicyLossConfig]> = [
  ["PPO clip + dual clip, token-mean (ARPO default)", defaultPolicyLossConfig],
  ["clip-higher + AEPO balanced clip, seq-mean-token-mean", { ...defaultPolicyLossConfig, clipHigh: 0.28, balancedClip: true, aggregation: "seq-mean-token-mean" }],
  ["no dual clip, KL k3 0.1, seq-mean-token-sum", { ...defaultPolicyLossConfig, dualClip: undefined, klCoef: 0.1, aggregation: "seq-mean-token-sum" }],
  ["KL k2 0.05, seq-mean-token-sum-norm", { ...defaultPolicyLossConfig, klCoef: 0.05, klEstimator: "k2", aggregation: "seq-mean-token-sum-norm" }],
  ["KL k1 0.05, token-mean", { ...defaultPolicyLossConfig, klCoef: 0.05, klEstimator: "k1" }]
]

describe.skipIf(!torchOk)("pytorch tier: the worker reproduces the embedded model and the core loss", () => {
  let dir = ""
  let ckpt = ""
  let policy: Policy
  /** one worker for the read-only parity checks (each start imports torch: seconds) */
  let worker: PytorchWorker
  const workerOptions = { python, script, device: "cpu" as const, adam, threads: 1 }
  beforeAll(async () => {
    await ensureBackend()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-pytorch-test-"))
    policy = Policy.init(small)
    ckpt = path.join(dir, "init.safetensors")
    writeCheckpoint(ckpt, { config: small, policyVersion: 0, step: 0, params: policy.toHost() })
    const scope = Effect.runSync(Scope.make())
    worker = await Effect.runPromise(openWorker(ckpt, workerOptions).pipe(Scope.provide(scope), Effect.provide(NodeServices.layer)))
    return async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it.live("the same weights give the same per-token log-probs and entropies (|Δ| ≤ 1e-4, float32 on both sides)", () =>
    Effect.gen(function*() {
      const w = worker
      assert.strictEqual(w.info.device, "cpu")
      const seqs = sequences(6, small.vocab, 1)
      const r = yield* w.logprobs(seqs)
      const ref = embeddedLogprobs(policy, seqs)
      let dl = 0
      let de = 0
      seqs.forEach((_, i) => {
        assert.strictEqual(r.logprobs[i]!.length, seqs[i]!.length)
        dl = Math.max(dl, maxAbsDiff(r.logprobs[i]!, ref[i]!.logp))
        de = Math.max(de, maxAbsDiff(r.entropies[i]!, ref[i]!.entropy))
      })
      console.log(`pytorch tier: max |Δ logprob| = ${dl.toExponential(2)}, max |Δ entropy| = ${de.toExponential(2)}`)
      assert.isBelow(dl, 1e-4)
      assert.isBelow(de, 1e-4)
    }))

  it.live("the loss value and d loss/d logprob equal the core's policyLoss for every clip/KL/aggregation mode (rel 1e-5)", () =>
    Effect.gen(function*() {
      const w = worker
      const seqs = sequences(6, small.vocab, 2)
      const lp = (yield* w.logprobs(seqs)).logprobs
      for (const [name, cfg] of losses) {
        const batch = batchOf(seqs, lp, 3, cfg.klCoef !== 0)
        const core = policyLoss(batch, lp, cfg)
        // micro-batches of 2 rows with the global normalizer: the sum equals the full-batch loss
        const r = yield* w.loss(batch.sequences, cfg, normalizer(batch), { microBatchRows: 2 })
        const tol = 1e-5 * Math.max(1, Math.abs(core.value))
        assert.approximately(r.loss, core.value, tol, `${name}: loss`)
        assert.approximately(r.clipFraction, core.clipFraction, 1e-9, `${name}: clip fraction`)
        assert.isAbove(core.clipFraction, 0, `${name}: the clip is exercised`)
        let dg = 0
        let gmax = 0
        core.grad.forEach((g, i) => {
          dg = Math.max(dg, maxAbsDiff(r.tokenGrads[i]!, g))
          gmax = Math.max(gmax, ...Array.from(g, Math.abs))
        })
        assert.isBelow(dg, 1e-5 * Math.max(1, gmax), `${name}: d loss / d logprob`)
        if (cfg.klCoef !== 0) assert.approximately(r.kl, core.kl, 1e-5, `${name}: kl`)
      }
    }))

  it.live("the parameter gradient and one AdamW step match the embedded Learner", () =>
    Effect.scoped(Effect.gen(function*() {
      const w = yield* openWorker(ckpt, workerOptions)
      const seqs = sequences(5, small.vocab, 4)
      const lp = (yield* w.logprobs(seqs)).logprobs
      const cfg = losses[1]![1]
      const batch = batchOf(seqs, lp, 5, false)
      const norm = normalizer(batch)
      const gradsPath = path.join(dir, "grads.safetensors")
      const r = yield* w.loss(batch.sequences, cfg, norm, { gradsPath })
      // the embedded gradient of the same loss
      const local = Policy.fromHost(small, policy.toHost())
      const learner = new Learner(local, adam)
      const mbs = packMicroBatches(batch.sequences, (i, m) => aggregationScale(cfg.aggregation, norm, m) * batch.sequences[i]!.weight, 16, small.context, 267)
      const eg = learner.valueAndGrad(cfg, mbs)
      assert.approximately(r.loss, eg.value, 1e-5 * Math.max(1, Math.abs(eg.value)))
      const torchGrads = decodeSafetensors(new Uint8Array(fs.readFileSync(gradsPath))).tensors
      const jaxGrads = leaves(eg.grad).map((a) => a.ref.dataSync() as Float32Array)
      let worst = 0
      torchGrads.forEach((t, i) => {
        const scale = Math.max(1e-6, ...Array.from(jaxGrads[i]!, Math.abs))
        worst = Math.max(worst, maxAbsDiff(t.data, jaxGrads[i]!) / scale)
      })
      for (const a of leaves(eg.grad)) a.dispose()
      console.log(`pytorch tier: worst per-tensor max|Δ grad| / max|grad| = ${worst.toExponential(2)}`)
      assert.isBelow(worst, 1e-4)
      // one optimizer step on both sides: same loss and gradient norm, weights within a small multiple of float32 noise
      const step = yield* w.trainStep(batch.sequences, cfg, norm)
      const es = learner.policyStep(batch.sequences, cfg, norm, 16, 267)
      assert.approximately(step.loss, es.loss, 1e-5 * Math.max(1, Math.abs(es.loss)))
      assert.approximately(step.gradNorm, es.gradNorm, 1e-4 * es.gradNorm)
      const out = path.join(dir, "after-step.safetensors")
      yield* w.exportWeights(out, 1)
      const tw = readCheckpoint(out).params
      const jw = local.toHost()
      let dw = 0
      tw.forEach((t, i) => (dw = Math.max(dw, maxAbsDiff(t.data, jw[i]!.data))))
      console.log(`pytorch tier: after one AdamW step (lr ${adam.lr}) max |Δ weight| = ${dw.toExponential(2)}`)
      // AdamW's first step moves each weight by about lr·sign(g); where |g| is near float noise the sign may differ
      assert.isBelow(dw, 2 * adam.lr)
      learner.dispose()
    })).pipe(Effect.provide(NodeServices.layer)))

  it.live("killing the worker mid-step is WorkerCrashed (SIGKILL) and no process survives", () =>
    Effect.scoped(Effect.gen(function*() {
      const w = yield* openWorker(ckpt, { ...workerOptions, env: { ARPO_WORKER_DEBUG: "1" } })
      const seqs = sequences(3, small.vocab, 6)
      const batch = batchOf(seqs, (yield* w.logprobs(seqs)).logprobs, 7, false)
      const fiber = yield* Effect.forkChild(Effect.flip(w.trainStep(batch.sequences, defaultPolicyLossConfig, normalizer(batch), { debugDelayS: 30 })))
      yield* Effect.sleep("500 millis")
      process.kill(w.session.pid, "SIGKILL")
      const e = yield* Fiber.join(fiber)
      assert.strictEqual(e._tag, "WorkerCrashed")
      if (e._tag === "WorkerCrashed") {
        assert.strictEqual(e.op, "train_step")
        assert.strictEqual(e.signal, "SIGKILL")
      }
      assert.isTrue(yield* gone(w.session.pid))
    })).pipe(Effect.provide(NodeServices.layer)))

  it.live("interrupting a train step kills the worker", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<number>()
      const fiber = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        const w = yield* openWorker(ckpt, { ...workerOptions, env: { ARPO_WORKER_DEBUG: "1" } })
        const seqs = sequences(3, small.vocab, 8)
        const batch = batchOf(seqs, (yield* w.logprobs(seqs)).logprobs, 9, false)
        yield* Deferred.succeed(started, w.session.pid)
        return yield* w.trainStep(batch.sequences, defaultPolicyLossConfig, normalizer(batch), { debugDelayS: 30 })
      })).pipe(Effect.provide(NodeServices.layer)))
      const pid = yield* Deferred.await(started)
      yield* Effect.sleep("300 millis")
      yield* Fiber.interrupt(fiber)
      assert.isTrue(yield* gone(pid, 3000))
    }))

  it.live("layerPytorch trains from initial weights, hands them over as files (embedded safetensors, GGUF), saves and loads embedded checkpoints", () =>
    Effect.gen(function*() {
      const start = Policy.fromHost(small, policy.toHost())
      yield* Effect.provide(
        trainerChecks(start, path.join(dir, "trainer.safetensors")),
        Pytorch.trainerOf(workerOptions)({ config: small, params: start.toHost() })
      )
    }).pipe(Effect.provide(Events.layerMemory)))
})

/** What layerPytorch must do from `shared`'s weights (run with the layer provided; `shared` itself is never changed). */
const trainerChecks = (shared: Policy, file: string) =>
    Effect.gen(function*() {
      const before = shared.toHost()
      const trainer = yield* Trainer
      assert.include(trainer.name, "pytorch(cpu")
      const seqs = sequences(4, small.vocab, 10)
      const batch = batchOf(seqs, embeddedLogprobs(shared, seqs).map((x) => x.logp), 11, false)
      const report = yield* trainer.train(batch, { epochs: 1, miniBatches: 2, microBatchRows: 1 })
      assert.strictEqual(report.steps.length, 2)
      assert.strictEqual(report.weights.version, 1)
      assert.isBelow(report.steps[0]!.logprobMismatch, 0.5 + 1e-5) // old log-probs were perturbed by ≤ 0.5
      assert.strictEqual(yield* trainer.policyVersion, 1)
      // the new weights come back as a file in the embedded layout; the caller's policy is untouched
      assert.strictEqual(report.weights.format, "embedded")
      assert.strictEqual(report.weights.location._tag, "path")
      const exported = readCheckpoint(report.weights.location._tag === "path" ? report.weights.location.path : "")
      assert.isAbove(maxAbsDiff(exported.params[1]!.data, before[1]!.data), 0, "the exported weights are the trained ones")
      assert.strictEqual(maxAbsDiff(shared.toHost()[1]!.data, before[1]!.data), 0)
      const gguf = yield* trainer.weights("gguf")
      assert.strictEqual(gguf.format, "gguf")
      assert.isAbove(gguf.bytes!, 0)
      yield* trainer.save(file)
      const ck = readCheckpoint(file)
      assert.deepStrictEqual(ck.config, small)
      assert.strictEqual(ck.policyVersion, 1)
      assert.strictEqual(ck.step, 2)
      assert.isDefined(ck.optimizer)
      const sft = yield* trainer.sft({ sequences: seqs.map((tokens) => ({ tokens: tokenIds(tokens), lossMask: tokens.map((_, t) => (t > 0 ? 1 as const : 0 as const)) })) })
      assert.strictEqual(sft.weights.version, 2)
      yield* trainer.load(file)
      assert.strictEqual(yield* trainer.policyVersion, 1)
      const reloaded = yield* trainer.weights()
      assert.strictEqual(reloaded.version, 1)
      assert.strictEqual(maxAbsDiff(readCheckpoint(reloaded.location._tag === "path" ? reloaded.location.path : "").params[1]!.data, ck.params[1]!.data), 0)
      const stale = yield* Effect.flip(trainer.train({ sequences: batch.sequences.map((s) => ({ ...s, policyVersion: -5 })) }))
      assert.strictEqual(stale._tag, "StaleBatch")
    })
