/**
 * The sandbox that model-written programs run in: new net/PID/mount namespaces, a chroot on a fresh
 * tmpfs (read-only /usr and /etc, a private scratch), an unprivileged user, rlimits and cgroup limits
 * where writable, a clean environment, a wall-clock timeout and an output cap; an in-child check refuses
 * to run anything as root or in our namespaces. It knows nothing of Python. Limits: docs/tools.md.
 */
import { randomUUID } from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { Context, Effect, Layer, Result, Schema, Stream } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import { SandboxUnavailable } from "./errors.ts"

export const SandboxConfig = Schema.Struct({
  /** the interpreter an unprivileged user can execute (Debian's, not a shim under root's home) */
  python: Schema.String,
  /** the unprivileged user and group the program runs as (nobody / nogroup on Debian) */
  uid: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  gid: Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0))),
  /** wall-clock limit of one run; the process tree is killed after it */
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
  cgroups: Schema.Boolean
})
export type SandboxConfig = typeof SandboxConfig.Type

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
  cgroups: true
}

/** What the machine gave us, found when the layer was built. */
export interface SandboxInfo {
  readonly cgroups: "v2" | "v1" | "none"
  /** our own namespaces (`net:[4026531840]` …), which the child must not share */
  readonly hostNamespaces: ReadonlyArray<string>
}

export interface SandboxRequest {
  /** the program and its arguments, as seen inside the sandbox (e.g. `/usr/bin/python3 -c …`) */
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
  readonly wallMs: number
}

export interface SandboxHooks {
  /** called once per run when the outer process is up (tests use it to prove nothing is left running) */
  readonly onSpawn?: (run: { readonly runId: string; readonly pid: number; readonly scratch: string; readonly cgroups: ReadonlyArray<string> }) => void
}

export class Sandbox extends Context.Service<Sandbox, {
  readonly config: SandboxConfig
  readonly info: SandboxInfo
  /** run a program; fails only when the sandbox could not be set up (the program is then not run) */
  readonly run: (request: SandboxRequest) => Effect.Effect<SandboxRun, SandboxUnavailable>
}>()("arpo/tools/Sandbox") {
  /** Probes the machine (namespaces, user switch, cgroups) by running a trivial program; fails if it cannot. */
  static readonly layer = (
    config: Partial<SandboxConfig> = {},
    hooks: SandboxHooks = {}
  ): Layer.Layer<Sandbox, SandboxUnavailable, ChildProcessSpawner.ChildProcessSpawner> =>
    Layer.effect(Sandbox, make(config, hooks))

  /**
   * Like `layer`, but where the machine cannot provide the sandbox every run fails with that
   * `SandboxUnavailable` (the model then reads the reason as the tool's result) instead of the layer.
   */
  static readonly layerOrUnavailable = (
    config: Partial<SandboxConfig> = {},
    hooks: SandboxHooks = {}
  ): Layer.Layer<Sandbox, never, ChildProcessSpawner.ChildProcessSpawner> =>
    Layer.effect(
      Sandbox,
      make(config, hooks).pipe(
        Effect.catch((error) =>
          Effect.succeed(Sandbox.of({
            config: { ...defaultSandboxConfig, ...config },
            info: { cgroups: "none", hostNamespaces: [] },
            run: () => Effect.fail(error)
          }))
        )
      )
    )
}

/** Exit code and stderr marker of a refusal by the wrapper or the in-child check. */
export const REFUSED_EXIT = 97
export const REFUSED_MARKER = "arpo-sandbox-refused:"

/**
 * Runs as root, as PID 1 of the new PID namespace, inside the new mount and network namespaces.
 * Builds the root on a tmpfs mounted over the (empty, host-side) scratch path, joins the cgroups, and
 * starts the check + program under prlimit → chroot → env -i → setpriv. Args: run id, scratch path,
 * limits, uid, gid, cgroup dirs (":"-separated), our namespaces, "--", the program.
 */
const OUTER = String.raw`
refuse() { echo "${REFUSED_MARKER} $*" >&2; exit ${REFUSED_EXIT}; }
RUNID="$1"; shift
R="$1"; TMPFS="$2"; NPROC="$3"; AS="$4"; FSIZE="$5"; CPU="$6"; SUID="$7"; SGID="$8"; CG="$9"; shift 9
[ "$$" = 1 ] || refuse "not PID 1 of a new PID namespace (pid $$)"
[ "$(id -u)" = 0 ] || refuse "the outer wrapper must start as root to build the sandbox"
mount -t tmpfs -o "size=$TMPFS,mode=0755,nosuid,nodev" tmpfs "$R" || refuse "cannot mount a tmpfs on $R"
for d in usr etc; do
  mkdir "$R/$d" && mount --bind -o ro,nosuid,nodev "/$d" "$R/$d" || refuse "cannot bind /$d read-only"
done
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"
  elif [ -d "/$d" ]; then mkdir "$R/$d" && mount --bind -o ro,nosuid,nodev "/$d" "$R/$d" || refuse "cannot bind /$d"; fi
done
mkdir "$R/dev" "$R/proc" "$R/scratch" "$R/tmp" || refuse "cannot create directories in the root"
for n in null zero random urandom; do
  touch "$R/dev/$n" && mount --bind "/dev/$n" "$R/dev/$n" || refuse "cannot bind /dev/$n"
done
mount -t proc -o nosuid,nodev,noexec proc "$R/proc" || refuse "cannot mount /proc of the new PID namespace"
chown "$SUID:$SGID" "$R/scratch" && chmod 0700 "$R/scratch" && chmod 1777 "$R/tmp" || refuse "cannot prepare the scratch directory"
chmod 0555 "$R" || refuse "cannot seal the root"
if [ -n "$CG" ]; then
  OLDIFS="$IFS"; IFS=:
  for g in $CG; do echo $$ > "$g/cgroup.procs" || refuse "cannot join cgroup $g"; done
  IFS="$OLDIFS"
fi
prlimit --nproc="$NPROC" --as="$AS" --fsize="$FSIZE" --cpu="$CPU" --core=0 -- \
  chroot "$R" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/scratch TMPDIR=/tmp LANG=C.UTF-8 \
    PYTHONIOENCODING=utf-8 PYTHONDONTWRITEBYTECODE=1 ARPO_SANDBOX_RUN="$RUNID" \
  /usr/bin/setpriv --reuid="$SUID" --regid="$SGID" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- \
  /bin/sh -c "$INNER_CHECK" arpo-sandbox-check "$@"
exit $?
`

/**
 * Runs as the unprivileged user inside the chroot, before the program: refuses unless the uid and gid
 * are not 0 and each of our namespaces (args before `--`) differs from the child's. Then execs the program.
 */
export const CHILD_CHECK = String.raw`
refuse() { echo "${REFUSED_MARKER} $*" >&2; exit ${REFUSED_EXIT}; }
[ "$(id -u)" != 0 ] && [ "$(id -g)" != 0 ] || refuse "the program would run as root (uid $(id -u))"
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in net:*) kind=net ;; pid:*) kind=pid ;; mnt:*) kind=mnt ;; *) refuse "unknown namespace $1" ;; esac
  mine="$(readlink "/proc/self/ns/$kind")" || refuse "cannot read /proc/self/ns/$kind"
  [ -n "$mine" ] && [ "$mine" != "$1" ] || refuse "the $kind namespace is the host's ($1)"
  shift
done
[ "$1" = "--" ] || refuse "no program given"
shift
cd /scratch || refuse "no scratch directory"
unset PWD OLDPWD
exec "$@"
`

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
      const dirs = makeCgroups(mode, `arpo-probe-${randomUUID().slice(0, 8)}`, config)
      for (const d of dirs) removeDir(d)
      return mode
    } catch {
      // not writable, or the controllers are not enabled here: try the next, or go without
    }
  }
  return "none"
}

/** Reads a stream up to `cap` bytes; reports whether it had more (then the caller kills the run). */
const collectCapped = <E>(stream: Stream.Stream<Uint8Array, E>, cap: number) =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    let n = 0
    let truncated = false
    yield* Stream.runForEachWhile(stream, (chunk) =>
      Effect.sync(() => {
        const room = cap - n
        if (chunk.length > room) {
          chunks.push(chunk.subarray(0, room))
          n = cap
          truncated = true
          return false
        }
        chunks.push(chunk)
        n += chunk.length
        return true
      }))
    return { text: Buffer.concat(chunks).toString("utf8"), truncated }
  })

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/** Builds the Sandbox service: checks the binaries and namespaces, probes cgroups, runs a trivial program. */
export const make = (
  partial: Partial<SandboxConfig> = {},
  hooks: SandboxHooks = {}
): Effect.Effect<Sandbox["Service"], SandboxUnavailable, ChildProcessSpawner.ChildProcessSpawner> =>
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
    for (const bin of ["/usr/bin/unshare", "/usr/bin/setpriv", "/usr/bin/prlimit", "/usr/sbin/chroot", "/usr/bin/env", config.python]) {
      if (!Fs.existsSync(bin)) return yield* new SandboxUnavailable({ reason: `${bin} is missing` })
    }
    if (!config.python.startsWith("/usr/") && !config.python.startsWith("/bin/")) {
      return yield* new SandboxUnavailable({ reason: `interpreter ${config.python} is not under /usr or /bin, so it is not visible in the sandbox` })
    }
    const hostNamespaces = yield* Effect.try({
      try: () => ["net", "pid", "mnt"].map((k) => Fs.readlinkSync(`/proc/self/ns/${k}`)),
      catch: (e) => new SandboxUnavailable({ reason: `cannot read our namespaces: ${String(e)}` })
    })
    const info: SandboxInfo = { cgroups: probeCgroups(config), hostNamespaces }
    const spawner = yield* ChildProcessSpawner.ChildProcessSpawner

    const nproc = info.cgroups === "none" ? config.processes : Math.max(1024, config.processes * 16)

    const run = (request: SandboxRequest): Effect.Effect<SandboxRun, SandboxUnavailable> => {
      const runId = randomUUID().slice(0, 12)
      const started = performance.now()
      const acquire = Effect.try({
        try: () => {
          const scratch = Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "arpo-sandbox-"))
          let cgroups: Array<string> = []
          try {
            cgroups = makeCgroups(info.cgroups, `arpo-sandbox-${runId}`, config)
          } catch (e) {
            Fs.rmSync(scratch, { recursive: true, force: true })
            throw e
          }
          return { scratch, cgroups }
        },
        catch: (e) => new SandboxUnavailable({ reason: `cannot prepare run ${runId}: ${String(e)}` })
      })
      const release = ({ cgroups, scratch }: { scratch: string; cgroups: Array<string> }) =>
        Effect.sync(() => {
          // the PID namespace is gone once its init exited; the cgroup may take a moment to empty
          for (const dir of cgroups) {
            for (let i = 0; i < 100 && !removeDir(dir); i++) sleepSync(10)
          }
          Fs.rmSync(scratch, { recursive: true, force: true })
        })
      const body = ({ cgroups, scratch }: { scratch: string; cgroups: Array<string> }) =>
        Effect.gen(function*() {
          const command = ChildProcess.make("/usr/bin/unshare", [
            "--net",
            "--pid",
            "--mount",
            "--fork",
            "--kill-child",
            "--",
            "/bin/sh",
            "-c",
            OUTER,
            "arpo-sandbox",
            runId,
            scratch,
            String(config.scratchBytes),
            String(nproc),
            String(config.memoryBytes),
            String(config.fileBytes),
            String(config.cpuSeconds),
            String(config.uid),
            String(config.gid),
            cgroups.join(":"),
            ...hostNamespaces,
            "--",
            ...request.argv
          ], {
            env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", INNER_CHECK: CHILD_CHECK },
            extendEnv: false,
            cwd: "/",
            stdin: { stream: Stream.make(new TextEncoder().encode(request.stdin)), endOnDone: true },
            killSignal: "SIGKILL",
            forceKillAfter: "1 second"
          })
          const handle = yield* spawner.spawn(command)
          hooks.onSpawn?.({ runId, pid: handle.pid, scratch, cgroups })
          const kill = Effect.ignore(handle.kill({ killSignal: "SIGKILL" }))
          const [out, err] = yield* Effect.all([
            collectCapped(handle.stdout, config.stdoutBytes).pipe(Effect.tap((o) => (o.truncated ? kill : Effect.void))),
            collectCapped(handle.stderr, config.stderrBytes).pipe(Effect.tap((o) => (o.truncated ? kill : Effect.void)))
          ], { concurrency: 2 })
          const code = yield* Effect.result(handle.exitCode)
          return { out, err, exitCode: Result.isSuccess(code) ? Number(code.success) : undefined }
        }).pipe(Effect.scoped)
      const timed = (resources: { scratch: string; cgroups: Array<string> }) =>
        body(resources).pipe(
          Effect.map((r) => ({ ...r, timedOut: false })),
          Effect.timeoutOrElse({
            duration: config.timeoutMs,
            orElse: () =>
              Effect.succeed({
                out: { text: "", truncated: false },
                err: { text: "", truncated: false },
                exitCode: undefined,
                timedOut: true
              })
          }),
          Effect.catch((e) => Effect.fail(new SandboxUnavailable({ reason: `run ${runId}: cannot start the sandbox: ${e.message}` })))
        )
      return Effect.acquireUseRelease(acquire, timed, release).pipe(
        Effect.flatMap(({ err, exitCode, out, timedOut }) => {
          if (exitCode === REFUSED_EXIT && err.text.includes(REFUSED_MARKER)) {
            const line = err.text.split("\n").find((l) => l.includes(REFUSED_MARKER)) ?? err.text
            return Effect.fail(new SandboxUnavailable({ reason: line.slice(line.indexOf(REFUSED_MARKER) + REFUSED_MARKER.length).trim() }))
          }
          return Effect.succeed<SandboxRun>({
            runId,
            exitCode,
            stdout: out.text,
            stderr: err.text,
            stdoutTruncated: out.truncated,
            stderrTruncated: err.truncated,
            timedOut,
            wallMs: performance.now() - started
          })
        })
      )
    }

    // prove it works here before anyone relies on it
    const probe = yield* run({ argv: [config.python, "-I", "-c", "import os; print(os.getuid())"], stdin: "" })
    if (probe.exitCode !== 0 || probe.stdout.trim() !== String(config.uid)) {
      return yield* new SandboxUnavailable({
        reason: `the probe program failed (exit ${probe.exitCode}${probe.timedOut ? ", timed out" : ""}): ${
          (probe.stderr || probe.stdout).trim().slice(0, 500)
        }`
      })
    }
    return Sandbox.of({ config, info, run })
  })
