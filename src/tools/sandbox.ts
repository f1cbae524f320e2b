/**
 * The sandbox that model-written programs run in. Each run is one `setpriv --pdeathsig KILL unshare
 * --net --pid --mount --ipc --uts --fork --kill-child` child whose PID 1 is the supervisor
 * (`sandboxSupervisor.ts`): a chroot on a fresh tmpfs (read-only /usr and /etc, a private scratch), an
 * unprivileged user without capabilities, a seccomp filter denying the keyring, rlimits and cgroup limits
 * where writable, a clean environment, a wall-clock limit enforced both here and inside, an output cap.
 * Runs may be served by pre-started sandboxes (namespaces, root and interpreter made before the program
 * arrives, each used once). Processes are spawned with node:child_process, not the Effect spawner, because
 * a warm sandbox outlives any one call. It knows nothing of Python's semantics. Limits: docs/tools.md.
 */
import * as NodeChild from "node:child_process"
import { randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { Context, Effect, Layer, Option, Schema, Scope } from "effect"
import { SandboxUnavailable } from "./errors.ts"
import { END_TAG, READY_MARKER, REFUSED_EXIT, REFUSED_MARKER, SUPERVISOR, TIMEOUT_EXIT, TIMEOUT_MARKER } from "./sandboxSupervisor.ts"

export { READY_MARKER, REFUSED_EXIT, REFUSED_MARKER, TIMEOUT_EXIT, TIMEOUT_MARKER } from "./sandboxSupervisor.ts"

export const SandboxConfig = Schema.Struct({
  /** the interpreter an unprivileged user can execute (Debian's, not a shim under root's home); it also runs the supervisor */
  python: Schema.String,
  /** the unprivileged user and group the program runs as (nobody / nogroup on Debian) */
  uid: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  gid: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** wall-clock limit of one run, from the moment its program is handed over; the namespace is killed after it */
  timeoutMs: Schema.Finite.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** CPU seconds per process (RLIMIT_CPU) */
  cpuSeconds: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** address space per process (RLIMIT_AS), and the cgroup memory limit (plus the scratch size) */
  memoryBytes: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** processes: cgroup `pids.max` per run where available, else RLIMIT_NPROC for the user */
  processes: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** largest file the program may write (RLIMIT_FSIZE) */
  fileBytes: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0))),
  /** size of the tmpfs that holds the root and the scratch directory */
  scratchBytes: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** stdout kept; past it the run is killed and the output marked truncated */
  stdoutBytes: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  stderrBytes: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** use cgroup limits when a writable cgroup hierarchy exists */
  cgroups: Schema.Boolean,
  /** warm, not-yet-used sandboxes kept per program (`warm(argv)`); 0 = every run starts cold */
  prestart: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))
})
export type SandboxConfig = typeof SandboxConfig.Type

/** Any of the config's fields, for configs that override some (e.g. the python tool's `sandbox`). */
export const SandboxOverrides = Schema.Struct({
  python: Schema.optionalKey(SandboxConfig.fields.python),
  uid: Schema.optionalKey(SandboxConfig.fields.uid),
  gid: Schema.optionalKey(SandboxConfig.fields.gid),
  timeoutMs: Schema.optionalKey(SandboxConfig.fields.timeoutMs),
  cpuSeconds: Schema.optionalKey(SandboxConfig.fields.cpuSeconds),
  memoryBytes: Schema.optionalKey(SandboxConfig.fields.memoryBytes),
  processes: Schema.optionalKey(SandboxConfig.fields.processes),
  fileBytes: Schema.optionalKey(SandboxConfig.fields.fileBytes),
  scratchBytes: Schema.optionalKey(SandboxConfig.fields.scratchBytes),
  stdoutBytes: Schema.optionalKey(SandboxConfig.fields.stdoutBytes),
  stderrBytes: Schema.optionalKey(SandboxConfig.fields.stderrBytes),
  cgroups: Schema.optionalKey(SandboxConfig.fields.cgroups),
  prestart: Schema.optionalKey(SandboxConfig.fields.prestart)
})
export type SandboxOverrides = typeof SandboxOverrides.Type

export const defaultSandboxConfig: SandboxConfig = {
  python: "/usr/bin/python3",
  uid: 65534,
  gid: 65534,
  timeoutMs: 10_000,
  cpuSeconds: 11,
  memoryBytes: 512 * 1024 * 1024,
  processes: 64,
  fileBytes: 16 * 1024 * 1024,
  scratchBytes: 64 * 1024 * 1024,
  stdoutBytes: 64 * 1024,
  stderrBytes: 16 * 1024,
  cgroups: true,
  prestart: 4
}

/** What the machine gave us, found when the layer was built. */
export interface SandboxInfo {
  readonly cgroups: "v2" | "v1" | "none"
  /** our own namespaces (`net:[4026531840]` …), which the child must not share */
  readonly hostNamespaces: ReadonlyArray<string>
  /** what the start swept of runs whose owner process is dead (scratch directories, cgroups, processes killed) */
  readonly swept: { readonly scratch: number; readonly cgroups: number; readonly processes: number }
}

export interface SandboxRequest {
  /** the program and its arguments, as seen inside the sandbox (e.g. `/usr/bin/python3 -I -c …`) */
  readonly argv: ReadonlyArray<string>
  /** written to the program's stdin, then closed */
  readonly stdin: string
}

export interface SandboxRun {
  readonly runId: string
  /** exit code of the program (128 + n when signal n killed it); `undefined` when killed from outside */
  readonly exitCode: number | undefined
  readonly stdout: string
  readonly stderr: string
  readonly stdoutTruncated: boolean
  readonly stderrTruncated: boolean
  readonly timedOut: boolean
  /** from handing the program over to its result (the sandbox's start-up is not in it when it was warm) */
  readonly wallMs: number
  /** whether a pre-started sandbox served the run */
  readonly warm: boolean
}

/** One sandbox: its run id, the host pid of its outer process, its scratch directory and cgroups. */
export interface SandboxRecord {
  readonly runId: string
  readonly pid: number
  readonly scratch: string
  readonly cgroups: ReadonlyArray<string>
}

export interface SandboxHooks {
  /** called when a run gets its sandbox (tests use it to prove nothing is left running) */
  readonly onSpawn?: (run: SandboxRecord) => void
  /** called for every sandbox started, pre-started ones included (used or not) */
  readonly onStart?: (sandbox: SandboxRecord) => void
}

export class Sandbox extends Context.Service<Sandbox, {
  readonly config: SandboxConfig
  readonly info: SandboxInfo
  /** run a program; fails only when the sandbox could not be set up (the program is then not run) */
  readonly run: (request: SandboxRequest) => Effect.Effect<SandboxRun, SandboxUnavailable>
  /** keep `config.prestart` sandboxes of this program started and waiting for their stdin */
  readonly warm: (argv: ReadonlyArray<string>) => Effect.Effect<void>
  /** how many pre-started sandboxes of this program are waiting, and how many of them are ready */
  readonly pool: (argv: ReadonlyArray<string>) => { readonly waiting: number; readonly ready: number }
}>()("arpo/tools/Sandbox") {
  /**
   * Sweeps what dead owners left, probes the machine (namespaces, user switch, cgroups, seccomp) by
   * running a trivial program, and fails if it cannot. Closing the layer kills the warm sandboxes.
   */
  static readonly layer = (
    config: Partial<SandboxConfig> = {},
    hooks: SandboxHooks = {}
  ): Layer.Layer<Sandbox, SandboxUnavailable> => Layer.effect(Sandbox, make(config, hooks))

  /**
   * Like `layer`, but where the machine cannot provide the sandbox every run fails with that
   * `SandboxUnavailable` (the model then reads the reason as the tool's result) instead of the layer.
   */
  static readonly layerOrUnavailable = (
    config: Partial<SandboxConfig> = {},
    hooks: SandboxHooks = {}
  ): Layer.Layer<Sandbox> =>
    Layer.effect(
      Sandbox,
      make(config, hooks).pipe(
        Effect.catch((error) =>
          Effect.succeed(Sandbox.of({
            config: { ...defaultSandboxConfig, ...config },
            info: { cgroups: "none", hostNamespaces: [], swept: { scratch: 0, cgroups: 0, processes: 0 } },
            run: () => Effect.fail(error),
            warm: () => Effect.void,
            pool: () => ({ waiting: 0, ready: 0 })
          }))
        )
      )
    )
}

/** What the supervisor is told (JSON, its one argument). */
export interface SupervisorSpec {
  readonly runId: string
  readonly root: string
  readonly tmpfsBytes: number
  readonly limits: { readonly nproc: number; readonly as: number; readonly fsize: number; readonly cpu: number }
  readonly uid: number
  readonly gid: number
  readonly cgroups: ReadonlyArray<string>
  readonly hostNamespaces: ReadonlyArray<string>
  readonly env: Record<string, string>
  readonly timeoutMs: number
  readonly argv: ReadonlyArray<string>
}

/** The inside limit runs from the end of stdin; this grace lets the host's timer, which reports, usually fire first. */
const INSIDE_GRACE_MS = 500

/** This process, as owners are named in scratch and cgroup names: pid and start time (so a reused pid is not mistaken). */
const processStart = (pid: number): string | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return fields[0] === "Z" || fields[0] === "X" ? undefined : fields[19] // a zombie is dead
  } catch {
    return undefined
  }
}
const ownerTag = (): string => `${process.pid}.${processStart(process.pid) ?? "0"}`
const OWNED = /^arpo-sandbox-(\d+)\.(\d+)-[0-9a-f]+$/

const cgroupRoots = {
  v2: ["/sys/fs/cgroup"],
  v1: ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"]
} as const

const tryWrite = (file: string, value: string): boolean => {
  try {
    Fs.writeFileSync(file, value)
    return true
  } catch {
    return false
  }
}

const removeDir = (dir: string): boolean => {
  try {
    Fs.rmdirSync(dir)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT"
  }
}

/** Per-run cgroup directories with limits written, or [] when none; pure Node I/O, synchronous. */
const makeCgroups = (mode: SandboxInfo["cgroups"], name: string, config: SandboxConfig): Array<string> => {
  if (mode === "none") return []
  const dirs: Array<string> = []
  const memory = String(config.memoryBytes + config.scratchBytes)
  const ok = (() => {
    if (mode === "v2") {
      const dir = NodePath.join(cgroupRoots.v2[0], name)
      Fs.mkdirSync(dir)
      dirs.push(dir)
      return tryWrite(NodePath.join(dir, "pids.max"), String(config.processes)) &&
        tryWrite(NodePath.join(dir, "memory.max"), memory) &&
        (tryWrite(NodePath.join(dir, "memory.swap.max"), "0") || true)
    }
    const pids = NodePath.join(cgroupRoots.v1[0], name)
    const mem = NodePath.join(cgroupRoots.v1[1], name)
    Fs.mkdirSync(pids)
    dirs.push(pids)
    Fs.mkdirSync(mem)
    dirs.push(mem)
    return tryWrite(NodePath.join(pids, "pids.max"), String(config.processes)) &&
      tryWrite(NodePath.join(mem, "memory.limit_in_bytes"), memory)
  })()
  if (!ok) {
    for (const d of dirs) removeDir(d)
    throw new Error(`cannot write limits into cgroup ${name}`)
  }
  return dirs
}

/** Which cgroup hierarchy we may use: creates, limits and removes a probe group. */
const probeCgroups = (config: SandboxConfig): SandboxInfo["cgroups"] => {
  if (!config.cgroups) return "none"
  for (const mode of ["v2", "v1"] as const) {
    if (mode === "v2" && !Fs.existsSync("/sys/fs/cgroup/cgroup.subtree_control")) continue
    if (mode === "v1" && !cgroupRoots.v1.every((r) => Fs.existsSync(NodePath.join(r, "cgroup.procs")))) continue
    try {
      const dirs = makeCgroups(mode, `arpo-probe-${randomBytes(4).toString("hex")}`, config)
      for (const d of dirs) removeDir(d)
      return mode
    } catch {
      // not writable, or the controllers are not enabled here: try the next, or go without
    }
  }
  return "none"
}


const removeDirAsync = async (dir: string, attempts: number): Promise<boolean> => {
  for (let i = 0; i < attempts; i++) {
    if (removeDir(dir)) return true
    await new Promise((r) => setTimeout(r, Math.min(50, 5 * (i + 1))))
  }
  return false
}

/** Scratch directories and cgroups of sandboxes whose owner process is gone: their processes killed, then removed. */
export const sweepDead = (tmpdir: string = Os.tmpdir()): SandboxInfo["swept"] => {
  const dead = (name: string): boolean => {
    const m = OWNED.exec(name)
    return m !== null && processStart(Number(m[1])) !== m[2]
  }
  let scratch = 0
  let cgroups = 0
  let processes = 0
  const entries = (dir: string): Array<string> => {
    try {
      return Fs.readdirSync(dir)
    } catch {
      return []
    }
  }
  const groups: Array<string> = []
  for (const root of [...cgroupRoots.v1, cgroupRoots.v2[0]]) {
    for (const name of entries(root)) if (dead(name)) groups.push(NodePath.join(root, name))
  }
  for (let round = 0; round < 20 && groups.length > 0; round++) {
    for (const dir of [...groups]) {
      let pids: Array<number> = []
      try {
        pids = Fs.readFileSync(NodePath.join(dir, "cgroup.procs"), "utf8").split("\n").filter((l) => l !== "").map(Number)
      } catch {
        // not a cgroup directory we can read
      }
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL")
          if (round === 0) processes++
        } catch {
          // gone already
        }
      }
      if (removeDir(dir)) {
        groups.splice(groups.indexOf(dir), 1)
        cgroups++
      }
    }
    if (groups.length > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
  }
  for (const name of entries(tmpdir)) {
    if (!dead(name)) continue
    try {
      Fs.rmSync(NodePath.join(tmpdir, name), { recursive: true, force: true })
      scratch++
    } catch {
      // a tmpfs still mounted in a dying namespace is not visible here; the host directory is empty
    }
  }
  return { scratch, cgroups, processes }
}

interface Output {
  readonly chunks: Array<Buffer>
  bytes: number
  truncated: boolean
  /** the last bytes, held back until it is clear they do not begin the end tag */
  pending: Buffer
  /** the end tag came: the program's output is complete (what follows is a leftover process's, dropped) */
  ended: boolean
}

/** How a sandbox ended: its program's exit status as its PID 1 reported it, or the wrapper's when it closed. */
interface Finish {
  readonly code: number | null
  /** PID 1 reported the program's end (the namespace may still be being torn down) */
  readonly reported: boolean
}

/** One started sandbox: its process, the output gathered since it started, and how it ended. */
interface Box extends SandboxRecord {
  readonly child: NodeChild.ChildProcess
  readonly key: string
  /** written to PID 1's status pipe; PID 1 ends stdout and stderr with it */
  readonly endTag: Buffer
  readonly stdout: Output
  readonly stderr: Output
  /** the supervisor's child said it is set up (READY_MARKER, stripped from stderr) */
  ready: boolean
  /** bytes of stderr still to compare with READY_MARKER */
  markerLeft: number
  /** the program's exit status from PID 1's status pipe */
  status: number | undefined
  used: boolean
  /** the kill was ours (timeout or output cap) */
  killed: boolean
  readonly closed: Promise<{ readonly code: number | null }>
  readonly finished: Promise<Finish>
  finish: (f: Finish) => void
}

/** How long refilling the pool waits for the calls in flight to finish before it goes ahead anyway. */
const REFILL_WAIT_MS = 500

/** The nice value pre-started sandboxes start up at. */
const PRESTART_NICE = 10

/** Sets the priority of a process and all its descendants, parents first (a later fork inherits it). */
const renice = (pid: number, priority: number): void => {
  try {
    Os.setPriority(pid, priority)
  } catch {
    return // gone
  }
  let children: Array<number> = []
  try {
    for (const tid of Fs.readdirSync(`/proc/${pid}/task`)) {
      children = children.concat(Fs.readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").split(" ").filter((x) => x !== "").map(Number))
    }
  } catch {
    // gone meanwhile
  }
  for (const c of children) renice(c, priority)
}

const keyOf = (argv: ReadonlyArray<string>): string => JSON.stringify(argv)

const text = (o: Output): string => Buffer.concat(o.chunks).toString("utf8")

/** Builds the Sandbox service: sweeps dead owners' leftovers, checks the binaries, probes cgroups, runs a trivial program. */
export const make = (
  partial: Partial<SandboxConfig> = {},
  hooks: SandboxHooks = {}
): Effect.Effect<Sandbox["Service"], SandboxUnavailable> =>
  Effect.gen(function*() {
    const config = yield* Schema.decodeUnknownEffect(SandboxConfig)({ ...defaultSandboxConfig, ...partial }).pipe(
      Effect.mapError((e) => new SandboxUnavailable({ reason: `invalid sandbox config: ${e.message}` }))
    )
    if (process.platform !== "linux") {
      return yield* new SandboxUnavailable({ reason: `needs Linux namespaces (this is ${process.platform})` })
    }
    if (process.getuid?.() !== 0) {
      return yield* new SandboxUnavailable({
        reason: "needs root to create namespaces and switch to an unprivileged user (running as uid " +
          `${process.getuid?.()})`
      })
    }
    for (const bin of ["/usr/bin/unshare", "/usr/bin/setpriv", "/usr/bin/nice", config.python]) {
      if (!Fs.existsSync(bin)) return yield* new SandboxUnavailable({ reason: `${bin} is missing` })
    }
    if (!config.python.startsWith("/usr/") && !config.python.startsWith("/bin/")) {
      return yield* new SandboxUnavailable({ reason: `interpreter ${config.python} is not under /usr or /bin, so it is not visible in the sandbox` })
    }
    const hostNamespaces = yield* Effect.try({
      try: () => ["net", "pid", "mnt", "ipc", "uts"].map((k) => Fs.readlinkSync(`/proc/self/ns/${k}`)),
      catch: (e) => new SandboxUnavailable({ reason: `cannot read our namespaces: ${String(e)}` })
    })
    const swept = sweepDead()
    const info: SandboxInfo = { cgroups: probeCgroups(config), hostNamespaces, swept }
    const nproc = info.cgroups === "none" ? config.processes : Math.max(1024, config.processes * 16)
    const owner = ownerTag()
    const env: Record<string, string> = {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: "/scratch",
      TMPDIR: "/tmp",
      LANG: "C.UTF-8",
      PYTHONIOENCODING: "utf-8",
      PYTHONDONTWRITEBYTECODE: "1"
    }

    const live = new Set<Box>()
    const cleanups = new Set<Promise<void>>()
    const pools = new Map<string, { readonly argv: ReadonlyArray<string>; readonly boxes: Array<Box> }>()
    let closing = false
    let unscoped = false
    const setRef = (box: Box, ref: boolean) => {
      for (const h of [box.child, ...box.child.stdio] as Array<{ ref?: () => void; unref?: () => void } | null>) {
        if (ref) h?.ref?.()
        else h?.unref?.()
      }
    }

    const keep = (box: Box, which: "stdout" | "stderr", data: Buffer) => {
      const out = box[which]
      if (out.truncated || data.length === 0) return
      const cap = which === "stdout" ? config.stdoutBytes : config.stderrBytes
      const room = cap - out.bytes
      if (data.length > room) {
        out.chunks.push(data.subarray(0, room))
        out.bytes = cap
        out.truncated = true
        kill(box)
        return
      }
      out.chunks.push(data)
      out.bytes += data.length
    }

    const maybeFinished = (box: Box) => {
      if (box.status !== undefined && box.stdout.ended && box.stderr.ended) box.finish({ code: box.status, reported: true })
    }

    const capture = (box: Box, which: "stdout" | "stderr", chunk: Buffer) => {
      const out = box[which]
      if (out.ended) return
      if (which === "stderr" && box.markerLeft > 0) {
        const want = READY_MARKER.slice(READY_MARKER.length - box.markerLeft)
        const head = chunk.subarray(0, box.markerLeft).toString("latin1")
        if (want.startsWith(head)) {
          box.markerLeft -= head.length
          chunk = chunk.subarray(head.length)
          if (box.markerLeft === 0) box.ready = true
        } else {
          box.markerLeft = 0
        }
        if (chunk.length === 0) return
      }
      const data = out.pending.length === 0 ? chunk : Buffer.concat([out.pending, chunk])
      const at = data.indexOf(box.endTag)
      if (at >= 0) {
        out.pending = Buffer.alloc(0)
        keep(box, which, data.subarray(0, at))
        out.ended = true
        maybeFinished(box)
        return
      }
      const held = Math.min(data.length, box.endTag.length - 1)
      out.pending = data.subarray(data.length - held)
      keep(box, which, data.subarray(0, data.length - held))
    }

    const kill = (box: Box) => {
      box.killed = true
      try {
        box.child.kill("SIGKILL")
      } catch {
        // already gone
      }
    }

    /** Starts one sandbox for `argv`; synchronous; throws when the scratch or cgroups cannot be made. */
    const start = (argv: ReadonlyArray<string>, prestarted: boolean): Box => {
      const runId = randomBytes(6).toString("hex")
      const name = `arpo-sandbox-${owner}-${runId}`
      const scratch = NodePath.join(Os.tmpdir(), name)
      Fs.mkdirSync(scratch, { mode: 0o700 })
      let cgroups: Array<string> = []
      try {
        cgroups = makeCgroups(info.cgroups, name, config)
      } catch (e) {
        removeDir(scratch)
        throw e
      }
      const spec: SupervisorSpec = {
        runId,
        root: scratch,
        tmpfsBytes: config.scratchBytes,
        limits: { nproc, as: config.memoryBytes, fsize: config.fileBytes, cpu: config.cpuSeconds },
        uid: config.uid,
        gid: config.gid,
        cgroups,
        hostNamespaces,
        env: { ...env, ARPO_SANDBOX_RUN: runId },
        timeoutMs: config.timeoutMs + INSIDE_GRACE_MS,
        argv
      }
      const wrapper = [
        "/usr/bin/setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        "/usr/bin/unshare",
        "--net",
        "--pid",
        "--mount",
        "--ipc",
        "--uts",
        "--fork",
        "--kill-child",
        "--",
        config.python,
        "-I",
        "-c",
        SUPERVISOR,
        JSON.stringify(spec)
      ]
      // a pre-started sandbox starts up at a lower priority, so that refilling the pool yields the CPU to
      // the calls in flight; it gets the normal priority back when its program arrives (`renice`)
      const command = prestarted ? ["/usr/bin/nice", "-n", String(PRESTART_NICE), ...wrapper] : wrapper
      const child = NodeChild.spawn(command[0]!, command.slice(1), { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8" }, cwd: "/", stdio: ["pipe", "pipe", "pipe", "pipe"] })
      const closed = new Promise<{ code: number | null }>((resolve) => {
        child.once("close", (code) => resolve({ code }))
        child.once("error", () => resolve({ code: null }))
      })
      const tag = randomBytes(8).toString("hex")
      let finish: (f: Finish) => void = () => {}
      const finished = new Promise<Finish>((resolve) => (finish = resolve))
      const box: Box = {
        runId,
        pid: child.pid ?? -1,
        scratch,
        cgroups,
        child,
        key: keyOf(argv),
        endTag: Buffer.from(`\0${END_TAG}${tag}\n`, "latin1"),
        stdout: { chunks: [], bytes: 0, truncated: false, pending: Buffer.alloc(0), ended: false },
        stderr: { chunks: [], bytes: 0, truncated: false, pending: Buffer.alloc(0), ended: false },
        ready: false,
        markerLeft: READY_MARKER.length,
        status: undefined,
        used: false,
        killed: false,
        closed,
        finished,
        finish
      }
      live.add(box)
      child.stdout!.on("data", (c: Buffer) => capture(box, "stdout", c))
      child.stderr!.on("data", (c: Buffer) => capture(box, "stderr", c))
      child.stdin!.on("error", () => {
        // the sandbox ended before reading its stdin (refused or killed): its output says why
      })
      const status = child.stdio[3] as unknown as NodeJS.ReadWriteStream & { on: (e: string, f: (c: Buffer) => void) => void }
      status.on("error", () => {})
      status.on("data", (c: Buffer) => {
        const n = Number.parseInt(c.toString("latin1").trim(), 10)
        if (Number.isInteger(n)) {
          box.status = n
          maybeFinished(box)
        }
      })
      status.write(`${tag}\n`)
      void closed.then(({ code }) => {
        // what was held back is output too when the tag never came (killed, refused, timed out inside)
        for (const which of ["stdout", "stderr"] as const) {
          if (!box[which].ended) keep(box, which, box[which].pending)
        }
        box.finish({ code, reported: false })
        live.delete(box)
        const pool = pools.get(box.key)
        if (pool !== undefined && !box.used) {
          const i = pool.boxes.indexOf(box)
          if (i >= 0) pool.boxes.splice(i, 1)
        }
        const done = cleanup(box)
        cleanups.add(done)
        void done.finally(() => cleanups.delete(done))
      })
      hooks.onStart?.(box)
      return box
    }

    /** Removes a finished sandbox's cgroups and scratch directory (its namespaces are gone with its PID 1). */
    const cleanup = async (box: Box): Promise<void> => {
      await Promise.all(box.cgroups.map((dir) => removeDirAsync(dir, 100)))
      await removeDirAsync(box.scratch, 20)
      if (Fs.existsSync(box.scratch)) Fs.rmSync(box.scratch, { recursive: true, force: true })
    }

    /**
     * Tops the pools up, one sandbox per event-loop turn (a spawn blocks the loop for a moment). It waits
     * while calls are in flight, so that a burst of calls is not slowed by refilling behind it, but no
     * longer than REFILL_WAIT_MS after a take, so that a steady stream of calls still gets warm sandboxes.
     */
    let inFlight = 0
    let refillTimer: ReturnType<typeof setTimeout> | undefined
    let refilling = false
    const refillStep = () => {
      refilling = false
      if (closing) return
      for (const pool of pools.values()) {
        if (pool.boxes.length >= config.prestart) continue
        try {
          const box = start(pool.argv, true)
          if (unscoped) setRef(box, false)
          pool.boxes.push(box)
        } catch {
          return // the next run starts cold and reports why
        }
        refilling = true
        setImmediate(refillStep)
        return
      }
    }
    const refillNow = () => {
      if (refillTimer !== undefined) clearTimeout(refillTimer)
      refillTimer = undefined
      if (!refilling) refillStep()
    }
    const refillSoon = () => {
      if (inFlight === 0) return refillNow()
      refillTimer ??= setTimeout(refillNow, REFILL_WAIT_MS)
      if (unscoped) refillTimer.unref()
    }

    /** A pre-started sandbox of this program (ready ones first), or a new one. */
    const take = (argv: ReadonlyArray<string>): { box: Box; warm: boolean } => {
      const key = keyOf(argv)
      const pool = pools.get(key)
      if (pool !== undefined) {
        const i = pool.boxes.findIndex((b) => b.ready)
        const j = i >= 0 ? i : pool.boxes.length > 0 ? 0 : -1
        if (j >= 0) {
          const box = pool.boxes.splice(j, 1)[0]!
          renice(box.pid, 0)
          refillSoon()
          return { box, warm: true }
        }
        refillSoon()
      }
      return { box: start(argv, false), warm: false }
    }

    const run = (request: SandboxRequest): Effect.Effect<SandboxRun, SandboxUnavailable> =>
      Effect.callback<SandboxRun, SandboxUnavailable>((resume) => {
        let taken: { box: Box; warm: boolean }
        try {
          taken = take(request.argv)
        } catch (e) {
          resume(Effect.fail(new SandboxUnavailable({ reason: `cannot prepare a sandbox: ${String(e)}` })))
          return
        }
        const { box, warm } = taken
        inFlight++
        let counted = true
        const done = () => {
          if (!counted) return
          counted = false
          inFlight--
          if (inFlight === 0 && refillTimer !== undefined) refillNow()
        }
        box.used = true
        setRef(box, true)
        hooks.onSpawn?.(box)
        const started = performance.now()
        let timedOut = false
        const timer = setTimeout(() => {
          timedOut = true
          kill(box)
        }, config.timeoutMs)
        box.child.stdin!.end(request.stdin)
        void box.finished.then(({ code, reported }) => {
          clearTimeout(timer)
          done()
          const wallMs = performance.now() - started
          if (reported) {
            // PID 1 is exiting by itself; make sure of it
            setTimeout(() => kill(box), 5_000).unref()
          }
          const stderr = text(box.stderr)
          if (code === REFUSED_EXIT && stderr.includes(REFUSED_MARKER)) {
            const line = stderr.split("\n").find((l) => l.includes(REFUSED_MARKER)) ?? stderr
            resume(Effect.fail(new SandboxUnavailable({ reason: `run ${box.runId}: ${line.slice(line.indexOf(REFUSED_MARKER) + REFUSED_MARKER.length).trim()}` })))
            return
          }
          const insideTimeout = !reported && code === TIMEOUT_EXIT && stderr.endsWith(`\n${TIMEOUT_MARKER}\n`)
          resume(Effect.succeed<SandboxRun>({
            runId: box.runId,
            exitCode: (box.killed && !reported) || insideTimeout || code === null ? undefined : code,
            stdout: text(box.stdout),
            stderr: insideTimeout ? stderr.slice(0, -(TIMEOUT_MARKER.length + 2)) : stderr,
            stdoutTruncated: box.stdout.truncated,
            stderrTruncated: box.stderr.truncated,
            timedOut: timedOut || insideTimeout,
            wallMs,
            warm
          }))
        })
        return Effect.sync(() => {
          clearTimeout(timer)
          done()
          kill(box)
        })
      })

    const warm = (argv: ReadonlyArray<string>): Effect.Effect<void> =>
      Effect.sync(() => {
        const key = keyOf(argv)
        if (!pools.has(key)) pools.set(key, { argv, boxes: [] })
        refillNow()
      })

    // In a Scope (a layer), closing it kills the warm sandboxes. Without one, warm sandboxes do not keep
    // this process alive (they are unref'd until used) and die with it (PR_SET_PDEATHSIG); the next
    // start sweeps their scratch and cgroups.
    const scope = yield* Effect.serviceOption(Scope.Scope)
    unscoped = Option.isNone(scope)
    if (Option.isSome(scope)) {
      yield* Scope.addFinalizer(
        scope.value,
        Effect.promise(async () => {
          closing = true
          if (refillTimer !== undefined) clearTimeout(refillTimer)
          const all = [...live]
          for (const box of all) if (!box.used) kill(box)
          await Promise.all(all.map((box) => box.closed))
          await Promise.all([...cleanups])
        })
      )
    }

    const sandbox = Sandbox.of({
      config,
      info,
      run,
      warm,
      pool: (argv) => {
        const boxes = pools.get(keyOf(argv))?.boxes ?? []
        return { waiting: boxes.length, ready: boxes.filter((b) => b.ready).length }
      }
    })
    // prove it works here before anyone relies on it
    const probe = yield* run({ argv: [config.python, "-I", "-c", "import os; print(os.getuid())"], stdin: "" })
    if (probe.exitCode !== 0 || probe.stdout.trim() !== String(config.uid)) {
      return yield* new SandboxUnavailable({
        reason: `the probe program failed (exit ${probe.exitCode}${probe.timedOut ? ", timed out" : ""}): ${
          (probe.stderr || probe.stdout).trim().slice(0, 500)
        }`
      })
    }
    return sandbox
  })
