// The trainer worker as a torchrun group (src/trainer/torchrun.ts, workers/distributed.py), pytorch tier: needs
// Debian's torch (gloo, CPU); skips with the reason otherwise. Every check runs real process groups on loopback:
// - 2 gloo processes take the same 3 AdamW steps as 1 process (loss, gradient norm, weights within float tolerance);
// - a failure on one rank is a typed error naming the rank, and the group keeps serving;
// - SIGKILL of rank 1 mid-step ends the group with WorkerCrashed naming rank 1, and no rank survives;
// - a checkpoint saved by 2 processes resumes in 1 (weights and optimizer state); closing the scope ends every rank;
// - sharding "fsdp" is refused with an error naming why (Debian's torch 1.13 cannot import FSDP on Python 3.11).
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Fiber, Schema } from "effect"
import { beforeAll } from "vitest"
import type { TrainSequence } from "../../src/core/batch.ts"
import { defaultPolicyLossConfig, normalizer } from "../../src/core/loss.ts"
import { tokenIds } from "../../src/core/tokens.ts"
import { readCheckpoint, writeCheckpoint } from "../../src/model/checkpoint.ts"
import type { ModelConfig } from "../../src/model/config.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { openWorker, type PytorchWorkerOptions } from "../../src/trainer/pytorch.ts"
import { freePort, otherNodeCommand, rankFailureOf, type TorchrunConfig } from "../../src/trainer/torchrun.ts"

const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
const script = path.resolve(import.meta.dirname, "../../workers/trainer.py")
const probe = spawnSync(python, ["-c", "import torch, torch.distributed as d; assert d.is_available() and d.is_gloo_available()"], {
  encoding: "utf8",
  timeout: 60_000
})
const torchOk = probe.status === 0
if (!torchOk) {
  console.log(
    `torchrun tier skipped: ${python} cannot import torch with gloo (${(probe.stderr ?? "").trim().split("\n").pop()}); ` +
      "run scripts/pytorch-tier to install Debian's python3-torch"
  )
}

const config: ModelConfig = {
  vocab: 268,
  dModel: 32,
  layers: 2,
  heads: 4,
  mlpWidth: 64,
  context: 64,
  tiedHead: false,
  ropeTheta: 10000,
  normEps: 1e-5
}
const adam = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1.0 }
const base: PytorchWorkerOptions = {
  python,
  script,
  device: "cpu",
  adam,
  threads: 1,
  handshakeTimeout: "3 minutes",
  initTimeout: "3 minutes",
  env: { ARPO_WORKER_DEBUG: "1", OMP_NUM_THREADS: "1", GLOO_SOCKET_IFNAME: "lo" },
  forceKillAfter: "1 second"
}
const two: PytorchWorkerOptions = { ...base, processes: 2 }

const lcg = (seed: number) => {
  let s = seed >>> 0
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296
}
/** 7 sequences of varied lengths (so 4 micro-batches of 2 rows split unevenly over 2 ranks), varied advantages. */
const batch = (seed: number, logp?: ReadonlyArray<ReadonlyArray<number>>): Array<TrainSequence> => {
  const u = lcg(seed)
  return Array.from({ length: 7 }, (_, i) => {
    const tokens = Array.from({ length: 8 + ((i * 5) % 17) }, () => Math.floor(u() * (config.vocab - 2)))
    const start = 2 + (i % 3)
    const mask = tokens.map((_, t) => (t >= start && t % 5 !== 4 ? 1 as const : 0 as const))
    const adv = (i % 2 === 0 ? 1 : -1) * (0.5 + u())
    return {
      tokens: tokenIds(tokens),
      responseStart: start,
      lossMask: mask,
      advantages: tokens.map((_, t) => (t >= start ? adv : 0)),
      oldLogprobs: tokens.map((_, t) => (mask[t] ? (logp?.[i]?.[t] ?? -5.5) + (u() - 0.5) * 0.6 : 0)),
      weight: i === 1 ? 0.5 : 1,
      group: Math.floor(i / 2),
      policyVersion: 0
    }
  })
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
const allGone = (pids: ReadonlyArray<number>, ms = 15_000) =>
  Effect.promise(async () => {
    const until = Date.now() + ms
    while (Date.now() < until && pids.some(alive)) await new Promise((r) => setTimeout(r, 50))
    return pids.filter(alive)
  })

const Ranks = Schema.Struct({ ranks: Schema.Array(Schema.Struct({ rank: Schema.Int, pid: Schema.Int })) })

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

describe("torchrun's failure summary", () => {
  it("names the root-cause rank and its signal", () => {
    const tail = `torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
trainer.py FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-04_18:40:01
  host      : sandbox
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================`
    assert.deepStrictEqual(rankFailureOf(tail), { rank: 1, exitCode: -9, signal: "SIGKILL" })
    assert.strictEqual(rankFailureOf("no summary here"), undefined)
  })
})

describe.skipIf(!torchOk)("pytorch tier: the trainer worker as a torchrun group (gloo, CPU)", () => {
  let dir = ""
  let ckpt = ""
  beforeAll(async () => {
    await ensureBackend()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-torchrun-test-"))
    ckpt = path.join(dir, "init.safetensors")
    writeCheckpoint(ckpt, { config, policyVersion: 0, step: 0, params: Policy.init(config).toHost() })
    return () => fs.rmSync(dir, { recursive: true, force: true })
  })

  it.live("2 processes take the same 3 AdamW steps as 1 (loss, gradient norm, weights); a rank's failure is named; a 2-process checkpoint resumes in 1; closing the scope ends every rank", () =>
    Effect.gen(function*() {
      const loss = { ...defaultPolicyLossConfig, clipHigh: 0.28 }
      // the 1-process run (and the old log-probs of the batches, from the initial weights)
      const single = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* openWorker(ckpt, base)
        const lp = (yield* w.logprobs(batch(1).map((s) => s.tokens))).logprobs
        const steps = []
        for (let k = 0; k < 3; k++) {
          const seqs = batch(1 + k, lp)
          steps.push(yield* w.trainStep(seqs, loss, normalizer({ sequences: seqs }), { microBatchRows: 2 }))
        }
        yield* w.save(path.join(dir, "one.safetensors"), 3)
        return { steps, lp }
      }))
      let pids: Array<number> = []
      const multi = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* openWorker(ckpt, two)
        const ranks = yield* w.session.request("ranks", {}, Ranks)
        assert.deepStrictEqual(ranks.ranks.map((r) => r.rank), [0, 1])
        pids = [w.session.pid, ...ranks.ranks.map((r) => r.pid)]
        const steps = []
        for (let k = 0; k < 3; k++) {
          const seqs = batch(1 + k, single.lp)
          steps.push(yield* w.trainStep(seqs, loss, normalizer({ sequences: seqs }), { microBatchRows: 2 }))
          if (k === 0) yield* w.save(path.join(dir, "two-step1.safetensors"), 1)
        }
        yield* w.save(path.join(dir, "two.safetensors"), 3)
        // a sequence longer than the context in micro-batch 1 (rank 1's share only): a typed error naming rank 1
        const bad = batch(9, single.lp)
        const long = Array.from({ length: config.context + 4 }, (_, t) => t % 200)
        bad[2] = { ...bad[2]!, tokens: tokenIds(long), lossMask: long.map(() => 1 as const), advantages: long.map(() => 1), oldLogprobs: long.map(() => -5) }
        const e = yield* Effect.flip(w.trainStep(bad, loss, normalizer({ sequences: bad }), { microBatchRows: 2 }))
        assert.strictEqual(e._tag, "WorkerProtocolError")
        assert.include(e.message, "rank 1: a sequence of 68 tokens exceeds the context 64")
        // … and the group still serves: the same step as before the failure is refused nowhere
        const again = yield* w.session.request("ranks", {}, Ranks)
        assert.strictEqual(again.ranks.length, 2)
        return steps
      }))
      assert.deepStrictEqual(yield* allGone(pids), [], "every rank and torchrun are gone after the scope closed")
      for (let k = 0; k < 3; k++) {
        const a = single.steps[k]!, b = multi[k]!
        assert.strictEqual(b.tokens, a.tokens)
        assert.closeTo(b.loss, a.loss, 1e-6, `loss at step ${k + 1}`)
        assert.closeTo(b.gradNorm, a.gradNorm, 1e-5 * Math.max(1, a.gradNorm), `grad norm at step ${k + 1}`)
        assert.closeTo(b.clipFraction, a.clipFraction, 1e-9)
        assert.closeTo(b.entropy, a.entropy, 1e-5)
        assert.strictEqual(b.step, k + 1)
      }
      const one = readCheckpoint(path.join(dir, "one.safetensors"))
      const two2 = readCheckpoint(path.join(dir, "two.safetensors"))
      const byName = new Map(two2.params.map((t) => [t.name, t.data]))
      let worst = 0
      for (const t of one.params) worst = Math.max(worst, maxAbsDiff(t.data, byName.get(t.name)!))
      assert.strictEqual(byName.size, one.params.length)
      assert.isBelow(worst, 1e-5, "weights after 3 steps: 2 processes vs 1")
      console.log(
        `torchrun check: 2 gloo processes vs 1 after 3 AdamW steps: max |Δ loss| ${
          Math.max(...multi.map((b, k) => Math.abs(b.loss - single.steps[k]!.loss))).toExponential(2)
        }, max relative |Δ grad norm| ${
          Math.max(...multi.map((b, k) => Math.abs(b.gradNorm - single.steps[k]!.gradNorm) / single.steps[k]!.gradNorm)).toExponential(2)
        }, max |Δ weight| ${worst.toExponential(2)}`
      )
      assert.strictEqual(two2.step, 3)

      // saved by 2 processes after step 1, resumed by 1 process: steps 2 and 3 land where the 2-process run did
      const resumed = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* openWorker(path.join(dir, "two-step1.safetensors"), base)
        assert.strictEqual(w.info.step, 1)
        const out = []
        for (let k = 1; k < 3; k++) {
          const seqs = batch(1 + k, single.lp)
          out.push(yield* w.trainStep(seqs, loss, normalizer({ sequences: seqs }), { microBatchRows: 2 }))
        }
        return out
      }))
      assert.closeTo(resumed[0]!.loss, multi[1]!.loss, 1e-6)
      assert.closeTo(resumed[1]!.loss, multi[2]!.loss, 1e-6)
      assert.strictEqual(resumed[1]!.step, 3)
    }).pipe(Effect.provide(NodeServices.layer)), 600_000)

  it.live("SIGKILL of rank 1 mid-step ends the group: WorkerCrashed naming rank 1, no rank survives", () =>
    Effect.gen(function*() {
      let pids: Array<number> = []
      const e = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* openWorker(ckpt, two)
        const ranks = yield* w.session.request("ranks", {}, Ranks)
        pids = [w.session.pid, ...ranks.ranks.map((r) => r.pid)]
        const seqs = batch(3)
        const step = yield* Effect.forkChild(
          w.session.request("train_step", {
            sequences: seqs,
            loss: { ...defaultPolicyLossConfig, dualClip: defaultPolicyLossConfig.dualClip ?? null },
            normalizer: normalizer({ sequences: seqs }),
            microBatchRows: 2,
            debugReduceDelayS: 3
          }, Schema.Unknown)
        )
        yield* Effect.sleep("1500 millis") // both ranks are inside the step, before its all-reduce
        process.kill(ranks.ranks[1]!.pid, "SIGKILL")
        const killedAt = Date.now()
        const err = yield* Effect.flip(Fiber.join(step))
        console.log(`torchrun check: SIGKILL of rank 1 → ${err._tag} after ${Date.now() - killedAt} ms: ${err.message.slice(0, 300)}`)
        // the session stays broken with the same cause
        const later = yield* Effect.flip(w.session.request("ranks", {}, Ranks))
        assert.strictEqual(later._tag, "WorkerCrashed")
        return err
      }))
      assert.strictEqual(e._tag, "WorkerCrashed")
      if (e._tag === "WorkerCrashed") {
        assert.strictEqual(e.rank, 1)
        assert.strictEqual(e.op, "train_step")
        assert.include(e.message, "rank 1 was killed by SIGKILL")
      }
      assert.deepStrictEqual(yield* allGone(pids), [], "no rank (nor torchrun) survives")
    }).pipe(Effect.provide(NodeServices.layer)), 300_000)

  it.live("two nodes (here: two torchrun launchers on one machine, static rendezvous): node 1 joins with otherNodeCommand, the step equals 1 process's", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const cfg: TorchrunConfig = { processes: 1, nodes: 2, masterPort: port }
      const seqs = batch(5)
      const loss = defaultPolicyLossConfig
      const single = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* openWorker(ckpt, base)
        return yield* w.trainStep(seqs, loss, normalizer({ sequences: seqs }), { microBatchRows: 2 })
      }))
      // node 1: what a second machine would run (stdin from /dev/null: only rank 0 reads requests)
      const node1 = spawn("bash", ["-c", otherNodeCommand(cfg, python, script, port, 1)], {
        env: { ...process.env, ...base.env },
        stdio: ["ignore", "ignore", "pipe"],
        detached: true
      })
      let node1Err = ""
      node1.stderr!.on("data", (d) => (node1Err = (node1Err + String(d)).slice(-2000)))
      const exited = new Promise<number | null>((resolve) => node1.on("exit", (code) => resolve(code)))
      const two = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* openWorker(ckpt, { ...base, torchrun: cfg })
        const ranks = yield* w.session.request("ranks", {}, Ranks)
        assert.deepStrictEqual(ranks.ranks.map((r) => r.rank), [0, 1])
        assert.notStrictEqual(ranks.ranks[1]!.pid, ranks.ranks[0]!.pid)
        return yield* w.trainStep(seqs, loss, normalizer({ sequences: seqs }), { microBatchRows: 2 })
      })).pipe(Effect.ensuring(Effect.sync(() => {
        if (node1.exitCode === null) {
          setTimeout(() => {
            try {
              process.kill(-node1.pid!, "SIGKILL")
            } catch { /* already gone */ }
          }, 20_000)
        }
      })))
      assert.closeTo(two.loss, single.loss, 1e-6)
      assert.closeTo(two.gradNorm, single.gradNorm, 1e-5 * Math.max(1, single.gradNorm))
      // closing node 0's scope ended the whole group: node 1's launcher exits by itself (not killed 20 s later)
      const code = yield* Effect.promise(() => exited)
      assert.isNumber(code, node1Err)
      console.log(`torchrun check: two nodes: node 1's launcher exited with code ${code}`)
    }).pipe(Effect.provide(NodeServices.layer)), 300_000)

  it.live("sharding fsdp is refused with an error naming why; bad torchrun settings are a typed error", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(Effect.scoped(openWorker(ckpt, { ...base, torchrun: { processes: 2, sharding: "fsdp" } })))
      assert.strictEqual(e._tag, "WorkerProtocolError")
      assert.include(e.message, "sharding fsdp")
      const bad = yield* Effect.flip(Effect.scoped(openWorker(ckpt, { ...base, torchrun: { processes: 0 } })))
      assert.strictEqual(bad._tag, "WorkerUnavailable")
      assert.include(bad.message, "processes")
    }).pipe(Effect.provide(NodeServices.layer)), 300_000)
})
