/**
 * Shared by the Python tool tests: a Toolbox over the sandboxed Python tool on a ManagedRuntime (real
 * clock and processes), a record of every sandbox run started, and checks that a run left nothing
 * behind (no process of the run alive, its cgroups and scratch directory gone). Not a test file.
 */
import * as Fs from "node:fs"
import { Effect, Layer, ManagedRuntime } from "effect"
import * as Events from "../../src/events/Events.ts"
import type { SandboxUnavailable } from "../../src/tools/errors.ts"
import * as Python from "../../src/tools/python.ts"
import { Sandbox, type SandboxConfig, type SandboxRecord } from "../../src/tools/sandbox.ts"
import { Toolbox, type ToolboxConfig } from "../../src/tools/Toolbox.ts"

export type SpawnRecord = SandboxRecord

export const makeHarness = (sandbox: Partial<SandboxConfig>, toolbox: Partial<ToolboxConfig> = {}) => {
  /** sandboxes that served a call */
  const spawned: Array<SpawnRecord> = []
  /** every sandbox started, pre-started ones included */
  const started: Array<SpawnRecord> = []
  const sandboxLayer = Sandbox.layer(sandbox, { onSpawn: (r) => spawned.push(r), onStart: (r) => started.push(r) })
  const layer = Toolbox.layer([Python.tool()], toolbox).pipe(
    Layer.provideMerge(sandboxLayer),
    Layer.provideMerge(Events.Events.layerMemory)
  )
  const runtime = ManagedRuntime.make(layer)
  const python = (code: string) => runtime.runPromise(Toolbox.use((box) => box.run({ tool: "python", content: code })))
  return { runtime, python, spawned, started }
}

/** Why the sandbox cannot run here, or undefined when it can. Root on Linux must always be able to. */
export const unavailableReason = async (): Promise<string | undefined> => {
  const exit = await Effect.runPromise(
    Effect.result(Effect.scoped(Layer.build(Sandbox.layer({ prestart: 0 }))))
  )
  if (exit._tag === "Success") return undefined
  const reason = (exit.failure as SandboxUnavailable).message
  if (process.platform === "linux" && process.getuid?.() === 0) {
    throw new Error(`the sandbox must work as root on Linux, but: ${reason}`)
  }
  console.warn(`SKIPPING python sandbox tests: ${reason}`)
  return reason
}

/** Whether a process runs (a zombie waiting for a reaper holds nothing but its pid, and counts as gone). */
const isAlive = (pid: number) => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
    return state !== "Z" && state !== "X"
  } catch {
    return false
  }
}

/**
 * Host pids of processes of these sandbox runs: the wrapper, the supervisor and every process forked
 * from it carry the run id in their command line (the supervisor's JSON argument); a program exec'd
 * inside carries it in its environment (ARPO_SANDBOX_RUN).
 */
export const processesOfRuns = (runIds: ReadonlyArray<string>): Array<number> => {
  const found: Array<number> = []
  for (const entry of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmdline = Fs.readFileSync(`/proc/${entry}/cmdline`, "latin1")
      const env = Fs.readFileSync(`/proc/${entry}/environ`, "latin1")
      if (runIds.some((id) => cmdline.includes(`"runId":"${id}"`) || env.includes(`ARPO_SANDBOX_RUN=${id}\0`))) found.push(Number(entry))
    } catch {
      // gone already, or a kernel thread
    }
  }
  return found
}

/** What each of these runs left behind: live pids, cgroups, scratch directories. Empty when clean. */
export const leftovers = (runs: ReadonlyArray<SpawnRecord>): Array<string> => {
  const out: Array<string> = []
  for (const r of runs) {
    if (isAlive(r.pid)) out.push(`run ${r.runId}: outer process ${r.pid} alive`)
    for (const g of r.cgroups) if (Fs.existsSync(g)) out.push(`run ${r.runId}: cgroup ${g} still exists`)
    if (Fs.existsSync(r.scratch)) out.push(`run ${r.runId}: scratch ${r.scratch} still exists`)
  }
  for (const pid of processesOfRuns(runs.map((r) => r.runId))) out.push(`process ${pid} of a finished run is alive`)
  return out
}

/**
 * What these runs left behind once they had `withinMs` to go: a call is answered as soon as its program
 * exits, while its namespace, scratch and cgroups are taken down just after. Empty when clean.
 */
export const leftoversAfter = async (runs: ReadonlyArray<SpawnRecord>, withinMs = 10_000): Promise<Array<string>> => {
  const until = Date.now() + withinMs
  let left = leftovers(runs)
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50))
    left = leftovers(runs)
  }
  return left
}
