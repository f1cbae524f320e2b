// The arpo CLI in-process (Command.runWith, TestConsole captures output) against a fake experiment
// registry and real run directories in temp folders, plus end-to-end spawns of src/cli/main.ts.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem, Layer, Result, Stream } from "effect"
import { CliError } from "effect/cli"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import { TestConsole } from "effect/testing"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { tokenIds } from "../../src/core/tokens.ts"
import * as Tree from "../../src/core/tree.ts"
import { cliWith } from "../../src/cli/app.ts"
import { type Experiment, Experiments, type RunOptions, registry } from "../../src/cli/experiments.ts"
import { describeNode, renderTree } from "../../src/cli/inspect.ts"
import { formatEvent } from "../../src/cli/replay.ts"
import { parseSeeds, parseSweep } from "../../src/cli/run.ts"
import { RunStore } from "../../src/io/RunStore.ts"
import { synthetic } from "../report/synthetic.ts"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")

const calls: Array<{ readonly op: string; readonly arg: unknown }> = []
const fake: Experiment = {
  name: "fake",
  description: "records what it was asked",
  run: (options: RunOptions) =>
    Effect.sync(() => {
      calls.push({ op: "run", arg: options })
      return NodePath.join(options.out, "fake", "r1")
    }),
  resume: (dir) => Effect.sync(() => (calls.push({ op: "resume", arg: dir }), dir)),
  evaluate: (checkpoint, options) => Effect.succeed([`evaluated ${NodePath.basename(checkpoint)} on ${options.task}`, "accuracy 0.5"])
}

const env = Layer.mergeAll(NodeServices.layer)
const withFake = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.provideService(self, Experiments, registry([fake]))

/** The temp root, holding a run directory demo/r1 with synthetic events and config. */
const withRun = <A, E, R>(f: (root: string, dir: string) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const root = yield* fs.makeTempDirectoryScoped({ prefix: "arpo-cli-" })
    const dir = NodePath.join(root, "fake", "r1")
    yield* Effect.gen(function*() {
      const store = yield* RunStore
      yield* store.appendEvents(synthetic({
        arms: [
          { name: "grpo", finalAccuracy: 0.4, toolCallsPerTrajectory: 2, branchRate: 0 },
          { name: "arpo", finalAccuracy: 0.7, toolCallsPerTrajectory: 1, branchRate: 0.5 }
        ],
        seeds: [1, 2, 3],
        steps: 6,
        noise: 0.02
      }))
      yield* store.writeCheckpoint("step-000005", (tmp) => fs.writeFileString(NodePath.join(tmp, "w.bin"), "w"))
    }).pipe(Effect.provide(RunStore.layerCreate({ root, experiment: "fake", runId: "r1", config: { experiment: "fake", lr: 1 } })))
    return yield* f(root, dir)
  }).pipe(Effect.scoped)

const userMessage = (e: unknown) => CliError.getUserMessage(e as object)
const tagOf = (e: unknown) => (e as { readonly _tag?: string })._tag

const lastLine = (lines: ReadonlyArray<unknown>) => String(lines[lines.length - 1])

describe("option parsing", () => {
  it("--seeds takes comma-separated distinct integers", () => {
    assert.deepStrictEqual(parseSeeds("1, 2,3"), Result.succeed([1, 2, 3]))
    assert.strictEqual(parseSeeds("1,x")._tag, "Failure")
    assert.strictEqual(parseSeeds("1,1")._tag, "Failure")
    assert.strictEqual(parseSeeds("")._tag, "Failure")
    const sweep = parseSweep({ lr: "1e-6, 3e-6", beta: "0.5" })
    assert.isTrue(sweep._tag === "Success" && sweep.success["lr"]!.length === 2)
    assert.strictEqual(parseSweep({ lr: " , " })._tag, "Failure")
  })
})

describe("arpo (in-process)", () => {
  it.effect("run passes parsed options to the experiment and prints the run directory last", () =>
    Effect.gen(function*() {
      calls.length = 0
      yield* cliWith(["run", "fake", "--profile", "full", "--seeds", "1,2,3", "--set", "lr=1e-6", "--set", "rollout.beta=0.5", "--sweep", "k=10,20", "--out", "out"])
      assert.deepStrictEqual(calls[0], {
        op: "run",
        arg: { profile: "full", seeds: [1, 2, 3], set: { lr: "1e-6", "rollout.beta": "0.5" }, sweep: { k: ["10", "20"] }, out: "out" }
      })
      assert.strictEqual(lastLine(yield* TestConsole.logLines), NodePath.join("out", "fake", "r1"))
      calls.length = 0
      yield* cliWith(["run", "fake"])
      assert.deepStrictEqual(calls[0]!.arg, { profile: "quick", seeds: undefined, set: {}, sweep: {}, out: "runs" })
      calls.length = 0
      yield* cliWith(["run", "fake", "--lanes", "3"])
      assert.strictEqual((calls[0]!.arg as RunOptions).lanes, 3)
    }).pipe(withFake, Effect.provide(env)))

  it.effect("an unknown experiment fails with 'experiment <name> not found; known: …'", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(cliWith(["run", "nope"]))
      assert.strictEqual(tagOf(error), "ExperimentNotFound")
      assert.strictEqual(userMessage(error), "experiment nope not found; known: fake")
      const empty = yield* Effect.flip(cliWith(["run", "nope"]).pipe(Effect.provideService(Experiments, registry([]))))
      assert.strictEqual(userMessage(empty), "experiment nope not found; known: (none registered yet)")
    }).pipe(withFake, Effect.provide(env)))

  it.effect("bad option values and bad experiment files fail with clear messages", () =>
    Effect.gen(function*() {
      const seeds = yield* Effect.flip(cliWith(["run", "fake", "--seeds", "1,two"]))
      assert.strictEqual(userMessage(seeds), `--seeds "1,two": "two" is not an integer`)
      const lanes = yield* Effect.flip(cliWith(["run", "fake", "--lanes", "0"]))
      assert.strictEqual(userMessage(lanes), "--lanes 0: give a whole number ≥ 1")
      const profile = yield* Effect.flip(cliWith(["run", "fake", "--profile", "huge"]))
      assert.strictEqual(tagOf(profile), "ShowHelp")
      const missing = yield* Effect.flip(cliWith(["run", "./no/such/experiment.ts"]))
      assert.strictEqual(userMessage(missing), "experiment file ./no/such/experiment.ts does not exist")
      const notExperiment = yield* Effect.flip(cliWith(["run", NodePath.join(repoRoot, "src/cli/present.ts")]))
      assert.match(userMessage(notExperiment)!, /exports no experiment/)
    }).pipe(withFake, Effect.provide(env)))

  it.effect("run loads an experiment from a module file", () =>
    withRun((root) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const moduleFile = NodePath.join(root, "good.mjs")
        yield* fs.writeFileString(
          moduleFile,
          `import { Effect } from ${JSON.stringify(NodePath.join(repoRoot, "node_modules/effect/dist/index.js"))}\n` +
            `export const experiment = { name: "file-exp", description: "", run: (o) => Effect.succeed(o.out + "/file-exp/" + o.profile) }\n`
        )
        yield* cliWith(["run", moduleFile, "--out", root])
        assert.strictEqual(lastLine(yield* TestConsole.logLines), `${root}/file-exp/quick`)
      })
    ).pipe(Effect.provide(env)))

  it.effect("resume finds the experiment from config.json and prints the run directory last", () =>
    withRun((_, dir) =>
      Effect.gen(function*() {
        calls.length = 0
        yield* cliWith(["resume", dir])
        assert.deepStrictEqual(calls, [{ op: "resume", arg: dir }])
        assert.strictEqual(lastLine(yield* TestConsole.logLines), dir)
        const missing = yield* Effect.flip(cliWith(["resume", NodePath.join(dir, "nope")]))
        assert.match(userMessage(missing)!, /nope is not a run directory: it does not exist/)
      })
    ).pipe(withFake, Effect.provide(env)))

  it.effect("eval dispatches to the run's experiment; a missing checkpoint is a clear error", () =>
    withRun((_, dir) =>
      Effect.gen(function*() {
        yield* cliWith(["eval", NodePath.join(dir, "checkpoints", "step-000005"), "--task", "gsm8k"])
        assert.deepStrictEqual(yield* TestConsole.logLines, ["evaluated step-000005 on gsm8k", "accuracy 0.5"])
        const missing = yield* Effect.flip(cliWith(["eval", NodePath.join(dir, "checkpoints", "nope"), "--task", "gsm8k"]))
        assert.match(userMessage(missing)!, /checkpoint .*nope does not exist/)
      })
    ).pipe(withFake, Effect.provide(env)))

  it.effect("report regenerates the reports from events.jsonl and prints the run directory last", () =>
    withRun((_, dir) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        yield* cliWith(["report", dir])
        const lines = (yield* TestConsole.logLines).map(String)
        assert.match(lines[0]!, /^arpo vs grpo, /)
        assert.include(lines, `wrote ${NodePath.join(dir, "report.html")}`)
        assert.strictEqual(lastLine(lines), dir)
        assert.isTrue(yield* fs.exists(NodePath.join(dir, "report.md")))
        assert.isTrue(yield* fs.exists(NodePath.join(dir, "summary.json")))
      })
    ).pipe(Effect.provide(env)))

  it.effect("replay prints one step's events, filtered by arm and seed, or raw lines with --json", () =>
    withRun((_, dir) =>
      Effect.gen(function*() {
        yield* cliWith(["replay", dir, "--step", "3", "--arm", "arpo", "--seed", "2"])
        const lines = (yield* TestConsole.logLines).map(String)
        assert.isAbove(lines.length, 5)
        for (const l of lines) assert.match(l, /^#\d+ arpo seed=2 /)
        assert.isTrue(lines.some((l) => /reward\.batch mean=/.test(l)))
        yield* cliWith(["replay", dir, "--step", "3", "--arm", "grpo", "--seed", "1", "--json"])
        const json = (yield* TestConsole.logLines).map(String).slice(lines.length)
        assert.strictEqual(JSON.parse(json[0]!).step, 3)
        yield* cliWith(["replay", dir, "--step", "99"])
        assert.match(lastLine(yield* TestConsole.logLines), /no events at step 99 .*\(steps 0–5\)/)
      })
    ).pipe(Effect.provide(env)))

  it.effect("inspect prints a tree with its branch decisions; bad files are clear errors", () =>
    withRun((root) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const file = NodePath.join(root, "tree.json")
        yield* fs.writeFileString(file, Tree.encodeJson(exampleTree))
        yield* cliWith(["inspect", file, "--window", "2"])
        const out = (yield* TestConsole.logLines).map(String).join("\n")
        assert.strictEqual(out, renderTree(exampleTree, { window: 2, chars: 60 }))
        assert.include(out, "branched ×2")
        const notJson = NodePath.join(root, "bad.json")
        yield* fs.writeFileString(notJson, "{")
        const e1 = yield* Effect.flip(cliWith(["inspect", notJson]))
        assert.match(userMessage(e1)!, /bad\.json: not valid JSON/)
        yield* fs.writeFileString(notJson, `{"prompt": 0}`)
        const e2 = yield* Effect.flip(cliWith(["inspect", notJson]))
        assert.match(userMessage(e2)!, /not a rollout tree/)
        const e3 = yield* Effect.flip(cliWith(["inspect", NodePath.join(root, "none.json")]))
        assert.match(userMessage(e3)!, /cannot read .*none\.json/)
      })
    ).pipe(Effect.provide(env)))
})

const exampleTree = (() => {
  let t = Tree.make(0, tokenIds([1, 2, 3]))
  let model: number
  ;[t, model] = Tree.append(t, 0, { kind: "model", tokens: tokenIds([4, 5, 6]), logprobs: [-0.5, -1, -1.5], entropies: [1, 2, 3], toolCall: { tool: "python", content: "print(1+1)" }, finish: "stop" })
  let tool: number
  ;[t, tool] = Tree.append(t, model, { kind: "tool", tokens: tokenIds([7, 8]), logprobs: [], entropies: [] })
  t = Tree.update(t, tool, (n) => ({ ...n, branch: { hAfterTool: 4, hInitial: 3, deltaH: 0.18, probability: 0.6, u: 0.2, branched: true, children: 2 } }))
  for (let i = 0; i < 3; i++) {
    ;[t] = Tree.append(t, tool, { kind: "model", tokens: tokenIds([9, 10]), logprobs: [-0.1, -0.2], entropies: [0.5, 0.5], finish: "eos" })
  }
  return t
})()

describe("pure renderers", () => {
  it("renderTree draws the structure with guides and the branch record", () => {
    const text = renderTree(exampleTree, { window: 2, chars: 40 })
    assert.strictEqual(
      text,
      [
        "tree of prompt 0: 6 nodes, 3 trajectories",
        "#0 prompt  3 tok",
        "└─ #1 model  3 tok  logprob mean -1  H[first 2] 3  → python \"print(1+1)\"  finish stop",
        "   └─ #2 tool  2 tok  branch: H_t 4 H_init 3 ΔH +0.18 p 0.6 u 0.2 → branched ×2",
        "      ├─ #3 model  2 tok  logprob mean -0.15  H[first 2] 1  finish eos",
        "      ├─ #4 model  2 tok  logprob mean -0.15  H[first 2] 1  finish eos",
        "      └─ #5 model  2 tok  logprob mean -0.15  H[first 2] 1  finish eos"
      ].join("\n")
    )
    const decoded = describeNode(exampleTree.nodes[1]!, 1, { window: 2, chars: 8, decode: (ts) => ts.map((x) => `tok${x}`).join(" ") })
    assert.match(decoded, /^#1 model {2}"tok4 to"… \(3 tok\)/)
  })

  it("formatEvent shows stamp and fields on one line", () => {
    const line = formatEvent({ stamp: { run: "r", arm: "arpo", seed: 1, step: 2, seq: 7 }, event: { _tag: "metric", name: "lr", value: 0.000123456 } })
    assert.strictEqual(line, "#7 arpo seed=1 metric name=lr value=0.0001235")
  })
})

describe("arpo (end to end, separate process)", () => {
  const arpo = (args: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
      const handle = yield* spawner.spawn(ChildProcess.make(process.execPath, [NodePath.join(repoRoot, "bin/arpo.js"), ...args], { cwd: repoRoot }))
      const [stdout, stderr, code] = yield* Effect.all([
        collect(handle.stdout),
        collect(handle.stderr),
        handle.exitCode
      ], { concurrency: "unbounded" })
      return { stdout, stderr, code: Number(code) }
    }).pipe(Effect.scoped)

  // One spawn only (each costs seconds of tsx start-up); the failure paths are covered in-process.
  it.live("bin/arpo.js report <dir> exits 0 with the run directory last", () =>
    withRun((_, dir) =>
      Effect.gen(function*() {
        const ok = yield* arpo(["report", dir])
        assert.strictEqual(ok.code, 0, ok.stderr)
        assert.strictEqual(ok.stdout.trimEnd().split("\n").pop(), dir)
        assert.strictEqual(ok.stderr, "")
      })
    ).pipe(Effect.provide(env)), 60_000)
})

const collect = (s: Stream.Stream<Uint8Array, unknown>) => s.pipe(Stream.decodeText(), Stream.mkString)
