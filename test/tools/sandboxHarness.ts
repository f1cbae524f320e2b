/**
 * Shared by the Python tool tests: a Toolbox over the sandboxed Python tool on a ManagedRuntime (real
 * clock and processes), a record of every sandbox run started, and checks that a run left nothing
 * behind (no process of the run alive, its cgroups and scratch directory gone). Not a test file.
 */
import * as Fs from "node:fs"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, ManagedRuntime } from "effect"
import * as Events from "../../src/events/Events.ts"
import type { SandboxUnavailable } from "../../src/tools/errors.ts"
import * as Python from "../../src/tools/python.ts"
import { Sandbox, type SandboxConfig } from "../../src/tools/sandbox.ts"
import { Toolbox, type ToolboxConfig } from "../../src/tools/Toolbox.ts"

export interface SpawnRecord {
  readonly runId: string
  readonly pid: number
  readonly scratch: string
  readonly cgroups: ReadonlyArray<string>
}

export const makeHarness = (sandbox: Partial<SandboxConfig>, toolbox: Partial<ToolboxConfig> = {}) => {
  const spawned: Array<SpawnRecord> = []
  const sandboxLayer = Sandbox.layer(sandbox, { onSpawn: (r) => spawned.push(r) }).pipe(Layer.provide(NodeServices.layer))
  const layer = Toolbox.layer([Python.tool()], toolbox).pipe(
    Layer.provideMerge(sandboxLayer),
    Layer.provideMerge(Events.Events.layerMemory)
  )
  const runtime = ManagedRuntime.make(layer)
  const python = (code: string) => runtime.runPromise(Toolbox.use((box) => box.run({ tool: "python", content: code })))
  return { runtime, python, spawned }
}

/** Why the sandbox cannot run here, or undefined when it can. Root on Linux must always be able to. */
export const unavailableReason = async (): Promise<string | undefined> => {
  const exit = await Effect.runPromise(
    Effect.result(Effect.scoped(Layer.build(Sandbox.layer({}).pipe(Layer.provide(NodeServices.layer)))))
  )
  if (exit._tag === "Success") return undefined
  const reason = (exit.failure as SandboxUnavailable).message
  if (process.platform === "linux" && process.getuid?.() === 0) {
    throw new Error(`the sandbox must work as root on Linux, but: ${reason}`)
  }
  console.warn(`SKIPPING python sandbox tests: ${reason}`)
  return reason
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Host pids of processes whose environment names one of these sandbox runs. */
export const processesOfRuns = (runIds: ReadonlyArray<string>): Array<number> => {
  const found: Array<number> = []
  for (const entry of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const env = Fs.readFileSync(`/proc/${entry}/environ`, "latin1")
      if (runIds.some((id) => env.includes(`ARPO_SANDBOX_RUN=${id}\0`))) found.push(Number(entry))
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
