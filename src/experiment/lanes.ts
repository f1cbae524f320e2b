/**
 * Lanes: an experiment run's independent parts at once, each in its own child process, merged into the
 * one run directory. A part is a set of (arm, seed) units that belong together (e.g. the arms of one task
 * variant and seed, which share a cold start); each part runs in `<run>/lanes/<part>/`, a run directory of
 * its own (events.jsonl, checkpoints/, trees/), with the stamps of the main run. When every part is done,
 * `mergeLanes` moves checkpoints and trees into the run directory and writes events.jsonl as every part's
 * events in run order (seed-major, arms in the experiment's order) numbered afresh, so an arm's events do
 * not depend on how many lanes ran or which lane ran it (only wall times differ).
 *
 * Why child processes (not worker threads): the embedded model's jax-js backend is one per thread anyway,
 * a process keeps a part's crash (out of memory, a wasm abort) from taking the others with it, a killed
 * run kills its parts cleanly (an interrupted parent sends SIGTERM; a child whose parent died stops when
 * its IPC channel closes), and a part is exactly what `runOne` does in a normal run, so nothing about
 * training changes.
 *
 * Resuming: a part is done when its `done` file exists (written last by the part); an unfinished part
 * continues from its own last checkpoints, as `arpo resume` does for a whole run. It does not decide what
 * the parts are, nor evaluate (the experiment passes both in: src/experiment/catalog/premise.ts).
 */
import { Console, Effect, Schema } from "effect"
import * as NodeChild from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { encodeLine, readEventsFile, RunStore } from "../io/RunStore.ts"
import { writeFileAtomic } from "../io/atomic.ts"
import { checkCheckpoint, checkpointName, type ExperimentSpec, lastCheckpoint, order, type ResolvedArm, runOne } from "./define.ts"

/** A lane's unit of work: (arm, seed) units that run one after another in one process, in run order. */
export interface LanePart {
  /** letters, digits and . _ = + - (it names `lanes/<id>/`) */
  readonly id: string
  readonly units: ReadonlyArray<{ readonly arm: ResolvedArm; readonly seed: number }>
}

/** A part failed (its process exited non-zero, or could not start), or a part named on a command line does not exist. */
export class LaneFailed extends Schema.TaggedError<LaneFailed>()("LaneFailed", {
  dir: Schema.String,
  part: Schema.String,
  message: Schema.String
}) {}

/** The folder of a run's parts. */
export const lanesDir = (dir: string): string => NodePath.join(dir, "lanes")
export const partDir = (dir: string, part: string): string => NodePath.join(lanesDir(dir), part)
/** Written last by a part that finished (RL and whatever the experiment does after it). */
export const partDoneFile = "done.json"
export const partDone = (dir: string, part: string): boolean => fs.existsSync(NodePath.join(partDir(dir, part), partDoneFile))

/** How many lanes when none is asked for: the cores this process may use. */
export const defaultLanes = (): number => Math.max(1, os.availableParallelism())

/** The parts of a run: units in run order (seed-major), grouped by `keyOf` in order of first appearance. */
export const laneParts = (
  arms: ReadonlyArray<ResolvedArm>,
  seeds: ReadonlyArray<number>,
  keyOf: (arm: ResolvedArm, seed: number) => string
): ReadonlyArray<LanePart> => {
  const parts: Array<{ id: string; units: Array<{ arm: ResolvedArm; seed: number }> }> = []
  for (const u of order(arms, seeds)) {
    const id = keyOf(u.arm, u.seed)
    const p = parts.find((x) => x.id === id)
    if (p === undefined) parts.push({ id, units: [u] })
    else p.units.push(u)
  }
  return parts
}

/**
 * Run (or continue) a part's RL in `lanes/<part>/`: every unit from its last complete checkpoint there, the
 * events after it dropped first (as `arpo resume` does), stamped with the main run's name.
 */
export const runPartRl = (spec: ExperimentSpec, dir: string, part: LanePart) =>
  Effect.gen(function*() {
    const here = partDir(dir, part.id)
    fs.mkdirSync(NodePath.join(here, "checkpoints"), { recursive: true })
    const run = NodePath.basename(dir)
    yield* Effect.gen(function*() {
      const store = yield* RunStore
      const starts = new Map<string, number>()
      for (const { arm, seed } of part.units) {
        const last = yield* lastCheckpoint(store, arm.name, seed)
        if (last >= 0) yield* checkCheckpoint(here, store.checkpointPath(checkpointName(arm.name, seed, last)), arm.name, seed, last)
        starts.set(`${arm.name}/${seed}`, last + 1)
        // events after the checkpoint are recomputed: drop them so nothing is recorded twice
        if (last < arm.config.rl.steps) yield* store.truncateAfterStep(last, { arm: arm.name, seed })
      }
      yield* Effect.gen(function*() {
        for (const { arm, seed } of part.units) {
          const from = starts.get(`${arm.name}/${seed}`)!
          if (from <= arm.config.rl.steps) yield* runOne(spec, run, arm, seed, from)
        }
      }).pipe(Effect.provide(RunStore.eventsLayer))
    }).pipe(Effect.provide(RunStore.layerOpen(here)))
  })

/** The child process of a part: `node <entry> <run dir> <part>`, its output on stderr line by line behind `[lane n part]`. */
const spawnPart = (entry: string, dir: string, part: string, lane: number) =>
  Effect.callback<void, LaneFailed>((resume) => {
    // the child runs the TypeScript sources as they are (Node ≥ 24 strips types) or the built .js
    const args = [...(entry.endsWith(".ts") ? ["--conditions=development"] : []), entry, dir, part]
    let child: NodeChild.ChildProcess
    try {
      child = NodeChild.spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe", "ipc"], env: process.env })
    } catch (e) {
      resume(Effect.fail(new LaneFailed({ dir, part, message: `lane ${lane}: could not start ${process.execPath} ${args.join(" ")}: ${String(e)}` })))
      return
    }
    const prefix = `[lane ${lane} ${part}] `
    const tail: Array<string> = []
    const forward = (stream: NodeJS.ReadableStream | null) => {
      if (stream === null) return
      let buffer = ""
      stream.setEncoding("utf8")
      stream.on("data", (chunk: string) => {
        buffer += chunk
        // a progress bar redraws with \r: each redraw is a line here
        const lines = buffer.split(/\r?\n|\r/)
        buffer = lines.pop() ?? ""
        for (const raw of lines) {
          const line = raw.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "")
          if (line.trim() === "") continue
          process.stderr.write(`${prefix}${line}\n`)
          tail.push(line)
          if (tail.length > 12) tail.shift()
        }
      })
      stream.on("end", () => {
        if (buffer.trim() !== "") process.stderr.write(`${prefix}${buffer}\n`)
      })
    }
    forward(child.stdout)
    forward(child.stderr)
    let exited = false
    child.on("error", (e) => {
      exited = true
      resume(Effect.fail(new LaneFailed({ dir, part, message: `lane ${lane}: part ${part} of ${dir}: ${e.message}` })))
    })
    child.on("exit", (code, signal) => {
      exited = true
      if (code === 0) resume(Effect.void)
      else {
        resume(Effect.fail(
          new LaneFailed({
            dir,
            part,
            message: `lane ${lane}: part ${part} of ${dir} failed (${code !== null ? `exit code ${code}` : `signal ${signal}`}); its last lines:\n  ${tail.join("\n  ")}`
          })
        ))
      }
    })
    // interrupted (Ctrl-C, SIGTERM, another part failed): stop the child and wait for it, so its events are synced
    return Effect.callback<void>((done) => {
      if (exited) return done(Effect.void)
      const hard = setTimeout(() => child.kill("SIGKILL"), 30_000)
      child.once("exit", () => {
        clearTimeout(hard)
        done(Effect.void)
      })
      child.kill("SIGTERM")
    })
  })

/**
 * Run the parts not done yet, at most `lanes` at once: in this process one after another when `lanes` is 1
 * (`inProcess`), else each in a child process running `entry` (which calls the same `inProcess`). A part
 * that fails lets the running ones finish and starts no more; the run then fails naming it (resume continues).
 */
export const runParts = <E, R>(options: {
  readonly dir: string
  readonly parts: ReadonlyArray<LanePart>
  readonly lanes: number
  readonly entry: string
  readonly inProcess: (part: LanePart) => Effect.Effect<void, E, R>
}) =>
  Effect.gen(function*() {
    const { dir, parts } = options
    const pending = parts.filter((p) => !partDone(dir, p.id))
    const lanes = Math.max(1, Math.min(options.lanes, pending.length))
    const started = performance.now()
    const seconds = () => ((performance.now() - started) / 1000).toFixed(0)
    yield* Console.error(
      `lanes: ${parts.length} parts (${parts.map((p) => p.id).join(", ")}); ${parts.length - pending.length} done already, ${pending.length} to run in ${lanes} lane${lanes === 1 ? "" : "s"}`
    )
    let finished = 0
    if (options.lanes <= 1) {
      for (const part of pending) {
        yield* Console.error(`lane 1: ${part.id} (${part.units.length} arm runs) started at ${seconds()} s`)
        yield* options.inProcess(part)
        yield* Console.error(`lane 1: ${part.id} done at ${seconds()} s (${++finished}/${pending.length})`)
      }
      return
    }
    let next = 0
    const failures: Array<LaneFailed> = []
    const lane = (n: number) =>
      Effect.gen(function*() {
        while (next < pending.length && failures.length === 0) {
          const part = pending[next++]!
          yield* Console.error(`lane ${n}: ${part.id} (${part.units.length} arm runs) started at ${seconds()} s`)
          const ok = yield* spawnPart(options.entry, dir, part.id, n).pipe(
            Effect.as(true),
            Effect.catch((e) => Effect.sync(() => failures.push(e)).pipe(Effect.as(false)))
          )
          if (ok) yield* Console.error(`lane ${n}: ${part.id} done at ${seconds()} s (${++finished}/${pending.length})`)
          else yield* Console.error(`lane ${n}: ${part.id} failed at ${seconds()} s; no new parts start`)
        }
      })
    yield* Effect.all(Array.from({ length: lanes }, (_, i) => lane(i + 1)), { concurrency: "unbounded", discard: true })
    if (failures.length > 0) {
      const first = failures[0]!
      return yield* new LaneFailed({
        dir,
        part: first.part,
        message: `${failures.length} part${failures.length === 1 ? "" : "s"} of ${dir} failed (${failures.map((f) => f.part).join(", ")}); the others' work is kept — resume with: arpo resume ${dir}\n${first.message}`
      })
    }
  })

/**
 * Merge finished parts into the run directory: their checkpoints and trees moved in (a name already there
 * is kept), and events.jsonl written at once as every part's events in part order, `seq` numbered from 0.
 * Idempotent: a merge cut short is redone whole by the next one.
 */
export const mergeLanes = (dir: string, parts: ReadonlyArray<LanePart>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    for (const part of parts) {
      const here = partDir(dir, part.id)
      for (const sub of ["checkpoints", "trees"]) {
        const from = NodePath.join(here, sub)
        if (!fs.existsSync(from)) continue
        fs.mkdirSync(NodePath.join(dir, sub), { recursive: true })
        for (const name of fs.readdirSync(from).sort()) {
          const to = NodePath.join(dir, sub, name)
          if (!fs.existsSync(to)) fs.renameSync(NodePath.join(from, name), to)
        }
      }
      const log = yield* readEventsFile(NodePath.join(here, "events.jsonl"))
      const moved = `${NodePath.join(here, "checkpoints")}${NodePath.sep}`
      for (const e of log.events) {
        // a checkpoint event names where the checkpoint is now: the run's checkpoints/
        const event = e.event._tag === "checkpoint" && e.event.path.startsWith(moved)
          ? { ...e.event, path: NodePath.join(dir, "checkpoints", e.event.path.slice(moved.length)) }
          : e.event
        lines.push(encodeLine({ stamp: { ...e.stamp, seq: lines.length }, event }))
      }
    }
    yield* writeFileAtomic(NodePath.join(dir, "events.jsonl"), lines.length === 0 ? "" : `${lines.join("\n")}\n`)
  })
