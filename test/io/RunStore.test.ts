// RunStore: the events.jsonl line codec, the file-backed Events layer, resume truncation, tolerant
// reading, checkpoints and the run-directory errors. Real files in a scoped temp directory.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem, Layer, Result } from "effect"
import fc from "fast-check"
import * as NodePath from "node:path"
import * as Tree from "../../src/core/tree.ts"
import { EventBody, type StampedEvent } from "../../src/events/Event.ts"
import * as Events from "../../src/events/Events.ts"
import {
  decodeLine,
  encodeLine,
  lineKeys,
  parseEvents,
  RunStore,
  timestampRunId
} from "../../src/io/RunStore.ts"

const getStore = RunStore.use((s) => Effect.succeed(s))

const stamp = (step: number, seq: number, arm = "arpo", seed = 1) => ({ run: "r1", arm, seed, step, seq })

/** One event of every kind. */
const everyKind: ReadonlyArray<EventBody> = [
  { _tag: "engine.call", adapter: "embedded", op: "generate", sequences: 4, newTokens: 100, computedTokens: 120, reusedTokens: 30, engineMs: 12.5 },
  { _tag: "tool.call", tool: "python", outcome: "ok", attempts: 1, inputChars: 20, outputChars: 5, toolMs: 3 },
  {
    _tag: "rollout.batch", sampler: "arpo", prompts: 2, trajectories: 16, failedTrajectories: 0, tokensGenerated: 900,
    tokensComputed: 950, uniqueTreeTokens: 700, branchConsidered: 9, branchTaken: 4, toolCalls: 20, toolFailures: 1,
    meanEntropyInitial: 1.25, meanEntropyAfterTool: 1.5, engineMs: 40, toolMs: 10
  },
  { _tag: "rollout.branch", prompt: 0, node: "3", hInitial: 20.5, hAfterTool: 22, deltaH: 0.13, probability: 0.56, u: 0.2, branched: true },
  { _tag: "reward.batch", mean: 0.4, accuracy: 0.375, formatErrors: 1, toolCallsPerTrajectory: 1.25, toolCallsPerSolved: 1.5, trajectories: 16 },
  { _tag: "train.step", loss: -0.01, gradNorm: 0.8, clipFraction: 0.02, kl: 0.001, entropy: 1.1, tokens: 800, logprobMismatch: 1e-6, trainMs: 55 },
  { _tag: "sft.step", loss: 2.3, tokens: 512, trainMs: 20 },
  { _tag: "eval", split: "test", questions: 50, accuracyGreedy: 0.42, passAtK: 0.6, k: 4, toolCallsPerQuestion: 1.1, evalMs: 300 },
  { _tag: "checkpoint", path: "checkpoints/step-000010", policyVersion: 10 },
  { _tag: "metric", name: "lr", value: 1e-6 },
  { _tag: "note", level: "warn", message: "a \"quoted\"\nmultiline note" }
]

const withTempDir = <A, E, R>(f: (dir: string) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const dir = yield* fs.makeTempDirectoryScoped({ prefix: "arpo-runstore-" })
    return yield* f(dir)
  }).pipe(Effect.scoped, Effect.provide(NodeServices.layer))

describe("events.jsonl line codec", () => {
  it("every event kind round-trips losslessly and carries kind/step/arm/seed at the top level", () => {
    everyKind.forEach((event, i) => {
      const stamped: StampedEvent = { stamp: stamp(3, i), event }
      const line = encodeLine(stamped)
      assert.notInclude(line, "\n")
      const json = JSON.parse(line)
      assert.strictEqual(json.kind, event._tag)
      assert.strictEqual(json.step, 3)
      assert.strictEqual(json.arm, "arpo")
      assert.strictEqual(json.seed, 1)
      assert.notProperty(json, "_tag")
      const back = decodeLine(line)
      assert.isTrue(Result.isSuccess(back))
      if (Result.isSuccess(back)) assert.deepStrictEqual(back.success, stamped)
    })
  })

  it("no event body has a field named like a line key (kind, step, arm, seed, seq, run)", () => {
    for (const member of EventBody.members) {
      for (const key of lineKeys) assert.notProperty(member.fields, key, `${member.fields._tag} has field ${key}`)
    }
  })

  it("reward.batch lines round-trip for arbitrary finite figures", () => {
    fc.assert(
      fc.property(
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.nat(),
        fc.string(),
        fc.integer({ min: -5, max: 10_000 }),
        (mean, accuracy, trajectories, arm, step) => {
          const stamped: StampedEvent = {
            stamp: { run: "r", arm, seed: 7, step, seq: 0 },
            event: { _tag: "reward.batch", mean, accuracy, formatErrors: 0, toolCallsPerTrajectory: 1, toolCallsPerSolved: 2, trajectories }
          }
          const back = decodeLine(encodeLine(stamped))
          return Result.isSuccess(back) && JSON.stringify(back.success) === JSON.stringify(stamped) && Object.is(back.success.event._tag, "reward.batch")
        }
      ),
      { seed: 42, numRuns: 200 }
    )
  })

  it("an event that does not encode (NaN loss) becomes an error note with the same stamp", () => {
    const bad: StampedEvent = { stamp: stamp(2, 5), event: { _tag: "sft.step", loss: Number.NaN, tokens: 1, trainMs: 1 } }
    const back = decodeLine(encodeLine(bad))
    assert.isTrue(Result.isSuccess(back))
    if (Result.isSuccess(back)) {
      assert.deepStrictEqual(back.success.stamp, bad.stamp)
      assert.strictEqual(back.success.event._tag, "note")
      if (back.success.event._tag === "note") assert.match(back.success.event.message, /sft\.step not recorded/)
    }
  })

  it("a corrupt middle line is an error naming the file and line; a partial last line is dropped with a note", () => {
    const good = encodeLine({ stamp: stamp(0, 0), event: everyKind[9]! })
    const corrupt = parseEvents("runs/x/events.jsonl", `${good}\n{"kind":"metric","oops\n${good}\n`)
    assert.isTrue(Result.isFailure(corrupt))
    if (Result.isFailure(corrupt)) {
      assert.strictEqual(corrupt.failure.line, 2)
      assert.match(corrupt.failure.message, /^runs\/x\/events\.jsonl line 2: not JSON/)
    }
    const wrongShape = parseEvents("e.jsonl", `{"kind":"metric","step":0,"arm":"a","seed":1,"seq":0,"run":"r","name":"x"}\n`)
    assert.isTrue(Result.isFailure(wrongShape))
    if (Result.isFailure(wrongShape)) assert.match(wrongShape.failure.message, /e\.jsonl line 1: bad "metric" event/)
    const partial = parseEvents("e.jsonl", `${good}\n${good.slice(0, 30)}`)
    assert.isTrue(Result.isSuccess(partial))
    if (Result.isSuccess(partial)) {
      assert.strictEqual(partial.success.events.length, 1)
      assert.match(partial.success.notes[0]!, /e\.jsonl line 2: dropped a partially written last line/)
    }
    const complete = parseEvents("e.jsonl", `${good}\n${good}`)
    assert.isTrue(Result.isSuccess(complete) && complete.success.events.length === 2 && complete.success.notes.length === 0)
  })

  it("run ids from the clock are file-name safe and sort in time order", () => {
    assert.strictEqual(timestampRunId(new Date("2026-11-24T10:22:33.456Z")), "2026-11-24T10-22-33Z")
  })
})

/** Emit every kind of event for (arm, seed, step) through the Events service. */
const emitStep = (arm: string, seed: number, step: number) =>
  Effect.forEach(everyKind, (e) => Events.emit(e), { discard: true }).pipe(Events.withScope({ run: "r1", arm, seed, step }))

describe("RunStore on disk", () => {
  it.effect("the events layer appends every event to events.jsonl and continues seq after a restart", () =>
    withTempDir((root) =>
      Effect.gen(function*() {
        const storeLayer = RunStore.layerCreate({ root, experiment: "demo", runId: "r1", config: { lr: 1e-6, arms: ["arpo"] } })
        const store = yield* Effect.provide(getStore, storeLayer)
        const dir = store.paths.dir
        assert.strictEqual(dir, NodePath.join(root, "demo", "r1"))
        const open = RunStore.layerOpen(dir)
        const first = yield* Effect.gen(function*() {
          yield* emitStep("arpo", 1, 0)
          yield* emitStep("arpo", 1, 1)
          return yield* Events.Events.use((e) => e.recorded)
        }).pipe(Effect.provide(RunStore.eventsLayer.pipe(Layer.provideMerge(open))))
        const log = yield* RunStore.use((s) => s.readEvents).pipe(Effect.provide(open))
        assert.deepStrictEqual(log.events, first)
        assert.deepStrictEqual(log.events.map((e) => e.stamp.seq), first.map((_, i) => i))
        // a second process (fresh layer) continues numbering
        const second = yield* Effect.gen(function*() {
          yield* emitStep("arpo", 1, 2)
          return yield* Events.Events.use((e) => e.recorded)
        }).pipe(Effect.provide(RunStore.eventsLayer.pipe(Layer.provideMerge(open))))
        assert.strictEqual(second[0]!.stamp.seq, first.length)
        const all = yield* RunStore.use((s) => s.readEvents).pipe(Effect.provide(open))
        assert.strictEqual(all.events.length, 3 * everyKind.length)
        const config = yield* RunStore.use((s) => s.readConfig).pipe(Effect.provide(open))
        assert.deepStrictEqual(config, { lr: 1e-6, arms: ["arpo"] })
      })
    ))

  it.effect("truncateAfterStep keeps steps ≤ n, and appending afterwards goes to the rewritten file", () =>
    withTempDir((root) =>
      Effect.gen(function*() {
        const open = RunStore.layerCreate({ root, experiment: "demo", runId: "r1" })
        yield* Effect.gen(function*() {
          const store = yield* RunStore
          for (const step of [0, 1, 2, 3]) yield* emitStep("arpo", 1, step)
          for (const step of [0, 1, 2, 3]) yield* emitStep("grpo", 1, step)
          const result = yield* store.truncateAfterStep(1, { arm: "arpo" })
          assert.strictEqual(result.dropped, 2 * everyKind.length)
          yield* emitStep("arpo", 1, 2)
          const log = yield* store.readEvents
          const arpoSteps = log.events.filter((e) => e.stamp.arm === "arpo").map((e) => e.stamp.step)
          assert.deepStrictEqual([...new Set(arpoSteps)], [0, 1, 2])
          assert.strictEqual(log.events.filter((e) => e.stamp.arm === "grpo").length, 4 * everyKind.length)
          const all = yield* store.truncateAfterStep(0)
          assert.strictEqual(all.kept, 2 * everyKind.length)
          const fs = yield* FileSystem.FileSystem
          const leftovers = (yield* fs.readDirectory(store.paths.dir)).filter((n) => n.startsWith("."))
          assert.deepStrictEqual(leftovers, [])
        }).pipe(Effect.provide(RunStore.eventsLayer.pipe(Layer.provideMerge(open))))
      })
    ))

  it.effect("a partially written last line is dropped when reading and repaired before appending", () =>
    withTempDir((root) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const dir = NodePath.join(root, "demo", "r1")
        yield* fs.makeDirectory(dir, { recursive: true })
        const good = encodeLine({ stamp: stamp(0, 0), event: everyKind[9]! })
        yield* fs.writeFileString(NodePath.join(dir, "events.jsonl"), `${good}\n${good.slice(0, 25)}`)
        const open = RunStore.layerOpen(dir)
        yield* Effect.gen(function*() {
          const store = yield* RunStore
          const log = yield* store.readEvents
          assert.strictEqual(log.events.length, 1)
          assert.strictEqual(log.notes.length, 1)
          yield* emitStep("arpo", 1, 1)
          const after = yield* store.readEvents
          assert.strictEqual(after.events.length, 1 + everyKind.length)
          assert.strictEqual(after.notes.length, 0)
          assert.strictEqual(after.events[1]!.stamp.seq, 1)
        }).pipe(Effect.provide(RunStore.eventsLayer.pipe(Layer.provideMerge(open))))
      })
    ))

  it.effect("a corrupt line fails reading with CorruptEventLine naming file and line", () =>
    withTempDir((root) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const good = encodeLine({ stamp: stamp(0, 0), event: everyKind[9]! })
        yield* fs.writeFileString(NodePath.join(root, "events.jsonl"), `${good}\n\n${good}\nnot json\n`)
        const error = yield* Effect.flip(RunStore.use((s) => s.readEvents).pipe(Effect.provide(RunStore.layerOpen(root))))
        assert.strictEqual(error._tag, "CorruptEventLine")
        assert.match(error.message, /events\.jsonl line 4: not JSON/)
      })
    ))

  it.effect("checkpoints are written atomically: a failing writer leaves the previous checkpoint intact", () =>
    withTempDir((root) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        yield* Effect.gen(function*() {
          const store = yield* RunStore
          const path = yield* store.writeCheckpoint("step-000001", (tmp) => fs.writeFileString(NodePath.join(tmp, "weights.bin"), "v1"))
          assert.strictEqual(yield* fs.readFileString(NodePath.join(path, "weights.bin")), "v1")
          const failed = yield* Effect.flip(
            store.writeCheckpoint("step-000001", (tmp) =>
              fs.writeFileString(NodePath.join(tmp, "weights.bin"), "v2-partial").pipe(Effect.andThen(Effect.fail("trainer crashed" as const))))
          )
          assert.strictEqual(failed, "trainer crashed")
          assert.strictEqual(yield* fs.readFileString(NodePath.join(path, "weights.bin")), "v1")
          yield* store.writeCheckpoint("step-000001", (tmp) => fs.writeFileString(NodePath.join(tmp, "weights.bin"), "v2"))
          assert.strictEqual(yield* fs.readFileString(NodePath.join(path, "weights.bin")), "v2")
          yield* store.writeCheckpoint("step-000002", () => Effect.void)
          assert.deepStrictEqual(yield* store.listCheckpoints, ["step-000001", "step-000002"])
          const tree = Tree.make(0, [])
          const treesPath = yield* store.writeTrees("step-000002", [tree, tree])
          assert.strictEqual(JSON.parse(yield* fs.readFileString(treesPath)).length, 2)
          yield* store.writeSummary({ headline: "x" })
          assert.deepStrictEqual(yield* store.readSummary, { headline: "x" })
        }).pipe(Effect.provide(RunStore.layerCreate({ root, experiment: "demo", runId: "r1" })))
      })
    ))

  it.effect("run directory errors name the directory", () =>
    withTempDir((root) =>
      Effect.gen(function*() {
        const missing = yield* Effect.flip(Effect.provide(getStore, RunStore.layerOpen(NodePath.join(root, "nope"))))
        assert.strictEqual(missing._tag, "RunDirectoryNotFound")
        assert.include(missing.message, "nope does not exist")
        yield* Effect.provide(getStore, RunStore.layerCreate({ root, experiment: "demo", runId: "r1" }))
        const exists = yield* Effect.flip(Effect.provide(getStore, RunStore.layerCreate({ root, experiment: "demo", runId: "r1" })))
        assert.strictEqual(exists._tag, "RunDirectoryExists")
        const bad = yield* Effect.flip(Effect.provide(getStore, RunStore.layerCreate({ root, experiment: "../etc", runId: "r1" })))
        assert.strictEqual(bad._tag, "InvalidRunName")
        const auto = yield* Effect.provide(getStore, RunStore.layerCreate({ root, experiment: "demo" }))
        assert.match(NodePath.basename(auto.paths.dir), /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ/)
      })
    ))
})
