/**
 * Hostile programs against the sandboxed Python tool, bounded as CONVENTIONS.md requires: every loop has
 * a count and a time bound, memory is allocated up to a bound while a lower OS limit stops it, the
 * network test only connects to a listener this test opened on 127.0.0.1. Each must end with a clear
 * result text, the run must go on, and nothing of the run may be left behind.
 */
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { Context, Effect, Layer } from "effect"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { Sandbox, type SandboxRecord, type SupervisorSpec } from "../../src/tools/sandbox.ts"
import { SUPERVISOR, TIMEOUT_EXIT, TIMEOUT_MARKER } from "../../src/tools/sandboxSupervisor.ts"

import { leftovers, leftoversAfter, makeHarness, processesOfRuns, unavailableReason } from "./sandboxHarness.ts"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")
const skip = await unavailableReason()

describe.skipIf(skip !== undefined)("python sandbox contains hostile programs", () => {
  // Programs that end by themselves (stopped by a limit) get a generous wall clock, so a loaded CI
  // machine cannot turn their result into a timeout; the endless loop gets a short one.
  const limits = { cpuSeconds: 3, memoryBytes: 256 * 1024 * 1024, processes: 32, stdoutBytes: 64 * 1024 }
  const h = makeHarness({ ...limits, timeoutMs: 20_000 }, { timeoutMs: 30_000, maxAttempts: 1 })
  const short = makeHarness({ ...limits, timeoutMs: 2_000 }, { timeoutMs: 30_000, maxAttempts: 1 })
  let checked = 0
  let checkedShort = 0
  afterEach(async () => {
    const runs = [...h.spawned.slice(checked), ...short.spawned.slice(checkedShort)]
    checked = h.spawned.length
    checkedShort = short.spawned.length
    expect(await leftoversAfter(runs)).toEqual([])
  })
  afterAll(async () => {
    await h.runtime.dispose()
    await short.runtime.dispose()
    // the pre-started sandboxes no call used are gone with the layer
    expect(leftovers([...h.started, ...short.started])).toEqual([])
  })

  it("an infinite loop is stopped by the wall-clock timeout", async () => {
    const started = Date.now()
    const r = await short.python("while True:\n    pass")
    expect(r).toMatchObject({ outcome: "timeout", output: "Error: Tool(python) timed out after 2000 ms." })
    expect(Date.now() - started).toBeLessThan(10_000)
    // a loop that sleeps (so no CPU limit applies) is stopped too
    expect(await short.python("import time\nwhile True:\n    time.sleep(0.05)")).toMatchObject({ outcome: "timeout" })
  })

  it("a bounded fork loop hits the process limit, and its children die with the run", async () => {
    const code = [
      "import os, time",
      "start = time.time()",
      "made = 0",
      "for i in range(200):",
      "    if time.time() - start > 1.0:",
      "        break",
      "    try:",
      "        pid = os.fork()",
      "    except OSError as e:",
      "        print('fork refused after', made, 'children:', type(e).__name__)",
      "        break",
      "    if pid == 0:",
      "        time.sleep(30)",
      "        os._exit(0)",
      "    made += 1",
      "print('made', made)"
    ].join("\n")
    const r = await h.python(code)
    expect(r.outcome).toBe("ok")
    expect(r.output).toMatch(/fork refused after \d+ children: BlockingIOError/)
    const made = Number(/made (\d+)/.exec(r.output)![1])
    expect(made).toBeLessThan(32)
  })

  it("a memory bomb is stopped by the address-space limit", async () => {
    const code = [
      "chunks = []",
      "try:",
      "    for i in range(64):  # at most 1 GiB, far above the 256 MiB limit",
      "        chunks.append(b'x' * (16 * 1024 * 1024))",
      "    print('allocated', len(chunks))",
      "except MemoryError:",
      "    print('MemoryError after', len(chunks), 'chunks')"
    ].join("\n")
    const r = await h.python(code)
    expect(r.outcome).toBe("ok")
    const m = /MemoryError after (\d+) chunks/.exec(r.output)
    expect(m).not.toBeNull()
    expect(Number(m![1])).toBeLessThan(16)
  })

  it("a 100 MB print is cut at the output cap and the program stopped", async () => {
    const started = Date.now()
    const r = await h.python("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000)")
    expect(r.outcome).toBe("ok")
    // the sandbox kept 64 KiB and stopped the program; the Toolbox shows the model its first 16 KiB
    expect(r.output).toMatch(/^x{16384}\n… \[output truncated: \d+ more characters\]$/)
    expect(Date.now() - started).toBeLessThan(15_000)
  })

  it("cannot write outside its scratch directory", async () => {
    const hostDir = Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "arpo-escape-"))
    Fs.chmodSync(hostDir, 0o777)
    try {
      const targets = ["/etc/arpo-escape", "/usr/arpo-escape", "/arpo-escape", "/dev/arpo-escape", `${hostDir}/escape.txt`, NodePath.join(repoRoot, "arpo-escape")]
      const code = [
        "results = []",
        `for p in ${JSON.stringify(targets)}:`,
        "    try:",
        "        open(p, 'w').write('x')",
        "        results.append('WROTE ' + p)",
        "    except OSError as e:",
        "        results.append('refused ' + type(e).__name__)",
        "print('\\n'.join(results))"
      ].join("\n")
      const r = await h.python(code)
      expect(r.outcome).toBe("ok")
      expect(r.output).not.toContain("WROTE")
      expect(r.output.split("\n")).toHaveLength(targets.length)
      expect(Fs.existsSync(`${hostDir}/escape.txt`)).toBe(false)
      expect(Fs.existsSync("/etc/arpo-escape")).toBe(false)
      expect(Fs.existsSync(NodePath.join(repoRoot, "arpo-escape"))).toBe(false)
    } finally {
      Fs.rmSync(hostDir, { recursive: true, force: true })
    }
  })

  it("cannot read the project's files", async () => {
    const file = NodePath.join(repoRoot, "package.json")
    expect(Fs.existsSync(file)).toBe(true)
    const r = await h.python(`print(open(${JSON.stringify(file)}).read())`)
    expect(r.outcome).toBe("error")
    expect(r.output).toMatch(/FileNotFoundError/)
    expect(r.output).not.toContain("\"name\": \"arpo\"")
  })

  it("cannot connect to a listener on 127.0.0.1 (it has its own network namespace)", async () => {
    let connections = 0
    const server = Net.createServer((socket) => {
      connections++
      socket.destroy()
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const port = (server.address() as Net.AddressInfo).port
    try {
      const r = await h.python(
        `import socket\ntry:\n    socket.create_connection(('127.0.0.1', ${port}), timeout=1)\n    print('CONNECTED')\nexcept OSError as e:\n    print('refused', e)`
      )
      expect(r.output).toMatch(/^refused /)
      expect(connections).toBe(0)
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })

  it("cannot kill its parent, the namespace's init, or us", async () => {
    const r = await h.python(
      [
        "import os, signal",
        `for pid in (os.getppid(), 1, ${process.pid}):`,
        "    try:",
        "        os.kill(pid, signal.SIGKILL)",
        "        print('KILLED', pid)",
        "    except OSError as e:",
        "        print('refused', type(e).__name__)"
      ].join("\n")
    )
    expect(r.outcome).toBe("ok")
    expect(r.output).not.toContain("KILLED")
    // and the run goes on
    expect((await h.python("6 * 7")).output).toBe("42")
  })

  it("hostile calls running at the same time as normal ones do not change the normal ones' answers", async () => {
    const hostile = [
      // a bounded fork loop, a memory bomb under the limit, an output flood, a busy loop stopped by RLIMIT_CPU
      "import os, time\nfor i in range(100):\n    try:\n        if os.fork() == 0:\n            time.sleep(5)\n            os._exit(0)\n    except OSError:\n        break\nprint('forked')",
      "chunks = []\ntry:\n    for i in range(64):\n        chunks.append(b'x' * (16 * 1024 * 1024))\nexcept MemoryError:\n    print('MemoryError')",
      "import sys\nfor _ in range(100):\n    sys.stdout.write('y' * 1_000_000)",
      "import time\nwhile time.process_time() < 10:\n    pass\nprint('ran 10 CPU seconds')"
    ]
    const normal = [1, 2, 3, 4, 5, 6].map((i) => `sum(range(${i * 1000}))`)
    const results = await Promise.all([...hostile, ...normal].map((code) => h.python(code)))
    expect(results.slice(hostile.length).map((r) => r.output)).toEqual([1, 2, 3, 4, 5, 6].map((i) => String((i * 1000 * (i * 1000 - 1)) / 2)))
    expect(results[0]!.output).toBe("forked")
    expect(results[1]!.output).toBe("MemoryError")
    expect(results[2]!.output).toMatch(/^y{16384}\n… \[output truncated/)
    // the busy loop is stopped by its CPU limit (SIGXCPU), or by the wall clock when the loaded machine gives it too little CPU
    expect(results[3]!.output).toMatch(/CPU time limit exceeded|timed out/)
  })

  it("SysV shared memory and message queues made inside are gone after the call; the host's are invisible inside", async () => {
    const hostShm = ipcmk("-M", "4096")
    const hostQueue = ipcmk("-Q")
    const key = 0x41520000 + Math.floor(Math.random() * 0xffff)
    try {
      const program = (create: boolean) =>
        [
          "import ctypes",
          "libc = ctypes.CDLL(None, use_errno=True)",
          "buf = ctypes.create_string_buffer(512)",
          "def res(r):",
          "    return 'ok' if r >= 0 else 'errno %d' % ctypes.get_errno()",
          `print('host shm by key', res(libc.shmget(${hostShm.key}, 0, 0)))`,
          `print('host shm by id', res(libc.shmctl(${hostShm.id}, 2, buf)))`,
          `print('host queue by key', res(libc.msgget(${hostQueue.key}, 0)))`,
          `print('host queue by id', res(libc.msgctl(${hostQueue.id}, 2, buf)))`,
          "print('listed', len(open('/proc/sysvipc/shm').readlines()) - 1, len(open('/proc/sysvipc/msg').readlines()) - 1)",
          `print('earlier shm', res(libc.shmget(${key}, 0, 0)))`,
          `print('earlier queue', res(libc.msgget(${key + 1}, 0)))`,
          ...(create
            ? [
              `print('made shm', res(libc.shmget(${key}, 1 << 20, 0o1000 | 0o666)))`,
              `print('made queue', res(libc.msgget(${key + 1}, 0o1000 | 0o666)))`
            ]
            : [])
        ].join("\n")
      const first = await h.python(program(true))
      expect(first.outcome).toBe("ok")
      // EINVAL for the host's ids, ENOENT for its keys: the IPC namespace is new
      expect(first.output.split("\n")).toEqual([
        "host shm by key errno 2",
        "host shm by id errno 22",
        "host queue by key errno 2",
        "host queue by id errno 22",
        "listed 0 0",
        "earlier shm errno 2",
        "earlier queue errno 2",
        "made shm ok",
        "made queue ok"
      ])
      // gone with the call: not on the host, and not found by the next call
      expect(sysvKeys("shm")).not.toContain(key)
      expect(sysvKeys("msg")).not.toContain(key + 1)
      const second = await h.python(program(false))
      expect(second.output).toContain("earlier shm errno 2\nearlier queue errno 2")
      expect(second.output).toContain("listed 0 0")
    } finally {
      spawnSync("/usr/bin/ipcrm", ["-m", String(hostShm.id), "-q", String(hostQueue.id)])
    }
    expect(sysvKeys("shm")).not.toContain(hostShm.key)
  })

  it("the keyring: no key can be made or read inside, and the host's keys are invisible", async () => {
    const description = `arpo-host-${process.pid}-${Date.now()}`
    const hostKey = hostKeyring(`
kid = sc(NR["add_key"], b"user", ${JSON.stringify(description)}.encode(), b"host-secret", 11, ctypes.c_long(-4))
assert kid > 0, ctypes.get_errno()
assert sc(NR["keyctl"], 5, kid, 0x3f3f3f3f) == 0  # KEYCTL_SETPERM: everyone may do everything
print(kid)`)
    try {
      const r = await h.python(
        [
          "import ctypes, errno, os",
          `NR = ${JSON.stringify(keyringNumbers)}[os.uname().machine]`,
          "libc = ctypes.CDLL(None, use_errno=True)",
          "libc.syscall.restype = ctypes.c_long",
          "sc = lambda *a: libc.syscall(*[ctypes.c_long(x) if isinstance(x, int) else x for x in a])",
          "res = lambda r: 'ok %d' % r if r >= 0 else errno.errorcode[ctypes.get_errno()]",
          "buf = ctypes.create_string_buffer(64)",
          `print('read host key', res(sc(NR['keyctl'], 11, ${hostKey}, buf, 64)))`,
          "print('add to user keyring', res(sc(NR['add_key'], b'user', b'arpo-inside', b'x', 1, -4)))",
          "print('add to session keyring', res(sc(NR['add_key'], b'user', b'arpo-inside', b'x', 1, -3)))",
          "print('join a new session keyring', res(sc(NR['keyctl'], 1, 0)))",
          "print('request a key', res(sc(NR['request_key'], b'user', b'arpo-inside', 0, 0)))",
          "print('listed', repr(open('/proc/keys').read()), repr(open('/proc/key-users').read()))"
        ].join("\n")
      )
      expect(r.outcome).toBe("ok")
      expect(r.output.split("\n")).toEqual([
        "read host key EPERM",
        "add to user keyring EPERM",
        "add to session keyring EPERM",
        "join a new session keyring EPERM",
        "request a key EPERM",
        "listed '' ''"
      ])
      expect(r.output).not.toContain("host-secret")
      expect(Fs.readFileSync("/proc/keys", "utf8")).not.toContain("arpo-inside")
    } finally {
      hostKeyring(`assert sc(NR["keyctl"], 21, ${hostKey}) == 0  # KEYCTL_INVALIDATE`)
    }
    // the kernel's key collector removes an invalidated key shortly after
    const until = Date.now() + 10_000
    while (Fs.readFileSync("/proc/keys", "utf8").includes(description) && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
    expect(Fs.readFileSync("/proc/keys", "utf8")).not.toContain(description)
  })

  it("the supervisor refuses to run a program as root, in our namespaces, or outside a new PID namespace", () => {
    const spec = (over: Partial<SupervisorSpec>): string =>
      JSON.stringify({
        runId: "check",
        root: Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "arpo-check-")),
        tmpfsBytes: 1 << 20,
        limits: { nproc: 1024, as: 512 << 20, fsize: 1 << 20, cpu: 5 },
        uid: 65534,
        gid: 65534,
        cgroups: [],
        hostNamespaces: ["net", "pid", "mnt", "ipc", "uts"].map((k) => Fs.readlinkSync(`/proc/self/ns/${k}`)),
        env: {},
        timeoutMs: 5000,
        argv: ["/bin/echo", "RAN"],
        ...over
      } satisfies SupervisorSpec)
    const supervise = (unshare: ReadonlyArray<string>, json: string) => {
      try {
        return spawnSync(
          "/usr/bin/unshare",
          [...unshare, "--fork", "--kill-child", "--", "/usr/bin/python3", "-I", "-c", SUPERVISOR, json],
          { encoding: "utf8", cwd: "/", input: "", timeout: 30_000 }
        )
      } finally {
        Fs.rmSync(JSON.parse(json).root, { recursive: true, force: true })
      }
    }
    const all = ["--net", "--pid", "--mount", "--ipc", "--uts"]
    const cases: Array<[ReadonlyArray<string>, string, string]> = [
      [all, spec({ uid: 0, gid: 0 }), "would run as root"],
      [all.filter((a) => a !== "--net"), spec({}), "the net namespace is the host's"],
      [all.filter((a) => a !== "--ipc"), spec({}), "the ipc namespace is the host's"],
      [all.filter((a) => a !== "--uts" && a !== "--ipc"), spec({}), "namespace is the host's"],
      [["--mount"], spec({}), "not PID 1"]
    ]
    for (const [unshare, json, reason] of cases) {
      const r = supervise(unshare, json)
      expect(r.status, r.stderr).toBe(97)
      expect(r.stdout).not.toContain("RAN")
      expect(r.stderr).toContain(reason)
    }
    // and the same supervisor with everything in place runs it
    const ok = supervise(all, spec({}))
    expect(ok.stdout).toBe("RAN\n")
  })

  it("the supervisor enforces the wall-clock limit itself, whatever the host does", () => {
    // a shell that leaves a background sleeper behind and sleeps itself (both bounded at 30 s); no timer on our side
    const root = Fs.mkdtempSync(NodePath.join(Os.tmpdir(), "arpo-check-"))
    try {
      const spec: SupervisorSpec = {
        runId: "wallclock",
        root,
        tmpfsBytes: 1 << 20,
        limits: { nproc: 1024, as: 512 << 20, fsize: 1 << 20, cpu: 5 },
        uid: 65534,
        gid: 65534,
        cgroups: [],
        hostNamespaces: ["net", "pid", "mnt", "ipc", "uts"].map((k) => Fs.readlinkSync(`/proc/self/ns/${k}`)),
        env: { PATH: "/usr/bin:/bin" },
        timeoutMs: 1000,
        argv: ["/bin/sh", "-c", "sleep 30 & sleep 30; echo ENDED"]
      }
      const started = Date.now()
      // spawnSync returns when every holder of the output pipes is gone: the sleepers died with the namespace
      const r = spawnSync(
        "/usr/bin/unshare",
        ["--net", "--pid", "--mount", "--ipc", "--uts", "--fork", "--kill-child", "--", "/usr/bin/python3", "-I", "-c", SUPERVISOR, JSON.stringify(spec)],
        { encoding: "utf8", cwd: "/", input: "", timeout: 60_000 }
      )
      expect(r.status).toBe(TIMEOUT_EXIT)
      expect(r.stderr).toContain(TIMEOUT_MARKER)
      expect(r.stdout).not.toContain("ENDED")
      expect(Date.now() - started).toBeLessThan(29_000)
    } finally {
      Fs.rmSync(root, { recursive: true, force: true })
    }
  })
})

describe.skipIf(skip !== undefined)("python sandbox when its parent is SIGKILLed", () => {
  it("no process of four hostile calls is left 10 s after their parent was SIGKILLed (wall clock 60 s), and the next start sweeps their scratch and cgroups", async () => {
    // A long wall clock, so that what ends the calls is the kill chain (pdeathsig → wrapper → PID 1 → the
    // namespace), not the in-sandbox timer, which cannot fire in the 10 s we wait (the timer is tested above).
    const timeoutMs = 60_000
    const waitMs = 10_000
    const child = spawn(process.execPath, ["--import", "tsx", NodePath.join(repoRoot, "test/tools/sandboxKilledParent.ts"), String(timeoutMs)], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"]
    })
    const started: Array<SandboxRecord> = []
    const spawned: Array<SandboxRecord> = []
    let stderr = ""
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()))
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    const inflight = new Promise<void>((resolve, reject) => {
      let buffered = ""
      child.stdout.on("data", (c: Buffer) => {
        buffered += c.toString()
        let nl: number
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const msg = JSON.parse(buffered.slice(0, nl))
          buffered = buffered.slice(nl + 1)
          if (msg.started) started.push(msg.started)
          if (msg.spawned) spawned.push(msg.spawned)
          if (msg.inflight) resolve()
        }
      })
      child.once("exit", (code) => reject(new Error(`the child exited (${code}) before its calls were in flight: ${stderr}`)))
    })
    try {
      await inflight
      expect(spawned).toHaveLength(4)
      // each call's sandbox is running (its wrapper, supervisor and program at least; a loaded machine may take a while)
      const running = () => spawned.every((run) => processesOfRuns([run.runId]).length >= 3)
      const until = Date.now() + 30_000
      while (!running() && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
      for (const run of spawned) expect(processesOfRuns([run.runId]).length, run.runId).toBeGreaterThanOrEqual(3)
    } finally {
      child.kill("SIGKILL")
    }
    const killedAt = Date.now()
    const ids = started.map((r) => r.runId)
    let left = processesOfRuns(ids)
    while (left.length > 0 && Date.now() - killedAt < waitMs) {
      await new Promise((r) => setTimeout(r, 100))
      left = processesOfRuns(ids)
    }
    expect(left).toEqual([])
    // the dead owner's scratch directories and cgroups are swept when a sandbox starts next
    await exited
    const orphaned = started.filter((r) => Fs.existsSync(r.scratch)).length
    expect(orphaned).toBeGreaterThanOrEqual(4)
    const info = await Effect.runPromise(Effect.scoped(Effect.map(Layer.build(Sandbox.layer({ prestart: 0 })), (ctx) => Context.get(ctx, Sandbox).info)))
    expect(info.swept.scratch).toBeGreaterThanOrEqual(orphaned)
    expect(leftovers(started)).toEqual([])
  }, 150_000)
})

/** Makes a SysV object on the host with util-linux's ipcmk (mode 0666) and finds its key. */
const ipcmk = (kind: "-M" | "-Q", ...args: Array<string>): { id: number; key: number } => {
  const r = spawnSync("/usr/bin/ipcmk", [kind, ...args, "-p", "0666"], { encoding: "utf8" })
  const id = Number(/id: (\d+)/.exec(r.stdout)?.[1])
  expect(Number.isInteger(id), r.stdout + r.stderr).toBe(true)
  const table = kind === "-M" ? "shm" : "msg"
  const row = Fs.readFileSync(`/proc/sysvipc/${table}`, "utf8").split("\n").map((l) => l.trim().split(/\s+/)).find((f) => Number(f[1]) === id)
  return { id, key: Number(row![0]) }
}

const sysvKeys = (table: "shm" | "msg"): Array<number> =>
  Fs.readFileSync(`/proc/sysvipc/${table}`, "utf8").split("\n").slice(1).filter((l) => l.trim() !== "").map((l) => Number(l.trim().split(/\s+/)[0]))

const keyringNumbers = { x86_64: { add_key: 248, request_key: 249, keyctl: 250 }, aarch64: { add_key: 217, request_key: 218, keyctl: 219 } }

/** Runs a snippet on the host (as root, outside any sandbox) with keyring syscall helpers; returns its stdout. */
const hostKeyring = (snippet: string): string => {
  const r = spawnSync("/usr/bin/python3", ["-I", "-c", [
    "import ctypes, os",
    `NR = ${JSON.stringify(keyringNumbers)}[os.uname().machine]`,
    "libc = ctypes.CDLL(None, use_errno=True)",
    "libc.syscall.restype = ctypes.c_long",
    "sc = lambda *a: libc.syscall(*[ctypes.c_long(x) if isinstance(x, int) else x for x in a])",
    snippet
  ].join("\n")], { encoding: "utf8" })
  expect(r.status, r.stderr).toBe(0)
  return r.stdout.trim()
}
