// The read-only commands on run directories (in-process, real temp directories): compare overlays runs,
// and report / replay / compare refuse a directory that is not a run with a typed error, writing nothing.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem, Layer } from "effect"
import { CliError } from "effect/cli"
import { TestConsole } from "effect/testing"
import * as NodePath from "node:path"
import { cliWith } from "../../src/cli/app.ts"
import { RunStore } from "../../src/io/RunStore.ts"
import { synthetic } from "../report/synthetic.ts"

const env = Layer.mergeAll(NodeServices.layer)
const userMessage = (e: unknown) => CliError.getUserMessage(e as object)

/** Two run directories under a temp root (different accuracies), and the root. */
const withRuns = <A, E, R>(f: (root: string, dirs: ReadonlyArray<string>) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const root = yield* fs.makeTempDirectoryScoped({ prefix: "arpo-runs-" })
    const dirs: Array<string> = []
    for (const [runId, acc] of [["r1", 0.6], ["r2", 0.8]] as const) {
      yield* RunStore.use((s) =>
        s.appendEvents(synthetic({
          arms: [
            { name: "grpo", finalAccuracy: acc - 0.2, toolCallsPerTrajectory: 2, branchRate: 0 },
            { name: "arpo", finalAccuracy: acc, toolCallsPerTrajectory: 1, branchRate: 0.5 }
          ],
          seeds: [1, 2, 3],
          steps: 6,
          noise: 0.02,
          evalEvery: 3,
          questions: 20
        }))
      ).pipe(Effect.provide(RunStore.layerCreate({ root, experiment: "demo", runId, config: { experiment: "demo" } })))
      dirs.push(NodePath.join(root, "demo", runId))
    }
    return yield* f(root, dirs)
  }).pipe(Effect.scoped)

describe("arpo compare", () => {
  it.effect("overlays the runs on one page and prints its path last", () =>
    withRuns((root, dirs) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const out = NodePath.join(root, "cmp.html")
        yield* cliWith(["compare", ...dirs, "--out", out])
        const lines = (yield* TestConsole.logLines).map(String)
        assert.strictEqual(lines[lines.length - 1], out)
        assert.match(lines[0]!, /^demo\/r1: arpo vs grpo, /)
        const html = yield* fs.readFileString(out)
        assert.include(html, "r1: arpo")
        assert.include(html, "r2: arpo")
        assert.isAtLeast((html.match(/<svg /g) ?? []).length, 8)
        assert.notInclude(html, "NaN")
      })
    ).pipe(Effect.provide(env)))

  it.effect("needs two runs; --out errors name the path and the reason in words", () =>
    withRuns((root, dirs) =>
      Effect.gen(function*() {
        const one = yield* Effect.flip(cliWith(["compare", dirs[0]!]))
        assert.isDefined(one)
        const intoDir = yield* Effect.flip(cliWith(["compare", ...dirs, "--out", root]))
        assert.strictEqual(userMessage(intoDir), `--out ${root}: it is a directory; give a file name such as ${NodePath.join(root, "out.json")}`)
        const fs = yield* FileSystem.FileSystem
        const file = NodePath.join(root, "afile")
        yield* fs.writeFileString(file, "x")
        const underFile = yield* Effect.flip(cliWith(["compare", ...dirs, "--out", NodePath.join(file, "x.html")]))
        assert.strictEqual(userMessage(underFile), `--out ${NodePath.join(file, "x.html")}: ${file} is a file, so the directory cannot be created`)
        // a folder that does not exist yet is created
        yield* cliWith(["compare", ...dirs, "--out", NodePath.join(root, "new", "x.html")])
        assert.isTrue(yield* fs.exists(NodePath.join(root, "new", "x.html")))
      })
    ).pipe(Effect.provide(env)))
})

describe("a directory that is not a run", () => {
  it.effect("report, replay, compare, eval and resume refuse it with NotARunDirectory and write nothing there", () =>
    withRuns((root, dirs) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const plain = NodePath.join(root, "plain")
        yield* fs.makeDirectory(plain)
        for (const args of [["report", plain], ["replay", plain, "--step", "1"], ["compare", dirs[0]!, plain]]) {
          const e = yield* Effect.flip(cliWith(args))
          assert.strictEqual((e as { _tag?: string })._tag, "NotARunDirectory", args.join(" "))
          assert.match(userMessage(e)!, /plain is not a run directory: it holds neither events\.jsonl nor config\.json/)
        }
        assert.deepStrictEqual(yield* fs.readDirectory(plain), [])
        const ck = NodePath.join(plain, "checkpoints", "step-1")
        yield* fs.makeDirectory(ck, { recursive: true })
        for (const args of [["eval", ck, "--task", "arithmetic"], ["resume", plain]]) {
          const e = yield* Effect.flip(cliWith(args))
          assert.strictEqual((e as { _tag?: string })._tag, "NotARunDirectory", args.join(" "))
          assert.match(userMessage(e)!, /plain is not a run directory: it holds neither events\.jsonl nor config\.json/)
        }
        const loose = yield* Effect.flip(cliWith(["eval", root, "--task", "arithmetic"]))
        assert.strictEqual((loose as { _tag?: string })._tag, "NotARunDirectory")
        assert.match(userMessage(loose)!, /is not a checkpoint of a run: a run's checkpoints are runs\/<experiment>\/<run-id>\/checkpoints\/<name>/)
        const missing = yield* Effect.flip(cliWith(["report", NodePath.join(root, "nope")]))
        assert.match(userMessage(missing)!, /nope is not a run directory: it does not exist/)
        const file = NodePath.join(root, "f.txt")
        yield* fs.writeFileString(file, "x")
        const notDir = yield* Effect.flip(cliWith(["replay", file, "--step", "0"]))
        assert.match(userMessage(notDir)!, /f\.txt is not a run directory: it is a file, not a directory/)
      })
    ).pipe(Effect.provide(env)))
})

describe("arpo list and arpo run without an experiment", () => {
  it.effect("list shows every registered experiment with its description and both profiles", () =>
    Effect.gen(function*() {
      yield* cliWith(["list"])
      const out = (yield* TestConsole.logLines).map(String)
      const i = out.indexOf("arpo-vs-grpo")
      assert.isAtLeast(i, 0)
      assert.match(out[i + 1]!, /^ {4}ARPO vs GRPO/)
      assert.match(out[i + 2]!, /^ {4}--profile quick: seeds 1,2; .*rl\.steps=8/)
      assert.match(out[i + 3]!, /^ {4}--profile full: seeds 1,2,3; /)
      assert.match(out[out.length - 1]!, /^Run one: arpo run <name>/)
    }).pipe(Effect.provide(env)))

  it.effect("run with no experiment prints the same list and fails saying to name one", () =>
    Effect.gen(function*() {
      yield* cliWith(["list"])
      const listed = (yield* TestConsole.logLines).map(String)
      const e = yield* Effect.flip(cliWith(["run"]))
      assert.match(userMessage(e)!, /^arpo run: name an experiment to run \(listed above\)/)
      const out = (yield* TestConsole.logLines).map(String).slice(listed.length)
      assert.deepStrictEqual(out, listed)
    }).pipe(Effect.provide(env)))
})

describe("--out", () => {
  it.effect("arpo run --out names the path and the reason in words: a file, a file on the way, a read-only folder", () =>
    withRuns((root) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const file = NodePath.join(root, "afile")
        yield* fs.writeFileString(file, "x")
        const e1 = yield* Effect.flip(cliWith(["run", "arpo-vs-grpo", "--out", file]))
        assert.strictEqual(userMessage(e1), `--out ${file}: it is a file, not a directory (give the folder runs are written into, e.g. runs)`)
        const e2 = yield* Effect.flip(cliWith(["run", "arpo-vs-grpo", "--out", NodePath.join(file, "sub")]))
        assert.strictEqual(userMessage(e2), `--out ${NodePath.join(file, "sub")}: ${file} is a file, so the directory cannot be created`)
        // eval --benchmark checks its --out file before evaluating anything
        const e4 = yield* Effect.flip(cliWith(["eval", "--benchmark", "aime24", "--out", root]))
        assert.strictEqual(userMessage(e4), `--out ${root}: it is a directory; give a file name such as ${NodePath.join(root, "out.json")}`)
        if (process.getuid?.() !== 0) {
          const ro = NodePath.join(root, "ro")
          yield* fs.makeDirectory(ro)
          yield* fs.chmod(ro, 0o500)
          const e3 = yield* Effect.flip(cliWith(["run", "arpo-vs-grpo", "--out", NodePath.join(ro, "runs")]))
          assert.strictEqual(userMessage(e3), `--out ${NodePath.join(ro, "runs")}: ${ro} is not writable (permission denied)`)
        }
      })
    ).pipe(Effect.provide(env)))
})
