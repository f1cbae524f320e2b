/**
 * Hostile programs against the sandboxed Python tool, bounded as CONVENTIONS.md requires: every loop has
 * a count and a time bound, memory is allocated up to a bound while a lower OS limit stops it, the
 * network test only connects to a listener this test opened on 127.0.0.1. Each must end with a clear
 * result text, the run must go on, and nothing of the run may be left behind.
 */
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { CHILD_CHECK } from "../../src/tools/sandbox.ts"
import { leftovers, makeHarness, unavailableReason } from "./sandboxHarness.ts"

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
  afterEach(() => {
    const runs = [...h.spawned.slice(checked), ...short.spawned.slice(checkedShort)]
    checked = h.spawned.length
    checkedShort = short.spawned.length
    expect(leftovers(runs)).toEqual([])
  })
  afterAll(async () => {
    await h.runtime.dispose()
    await short.runtime.dispose()
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

  it("the in-child check refuses to run a program as root or in our namespaces", () => {
    const ns = ["net", "pid", "mnt"].map((k) => Fs.readlinkSync(`/proc/self/ns/${k}`))
    const asRoot = spawnSync("/bin/sh", ["-c", CHILD_CHECK, "check", "net:[0]", "--", "/bin/echo", "RAN"], { encoding: "utf8" })
    expect(asRoot.status).toBe(97)
    expect(asRoot.stdout).not.toContain("RAN")
    expect(asRoot.stderr).toContain("would run as root")
    const sameNs = spawnSync(
      "/usr/bin/setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", CHILD_CHECK, "check", ...ns, "--", "/bin/echo", "RAN"],
      { encoding: "utf8", cwd: "/" }
    )
    expect(sameNs.status).toBe(97)
    expect(sameNs.stdout).not.toContain("RAN")
    expect(sameNs.stderr).toContain("namespace is the host's")
  })
})
