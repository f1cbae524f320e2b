// An interrupted run (SIGINT as Ctrl-C sends it, SIGTERM as a job scheduler does) says on stderr where
// its run directory is and the exact command that resumes it; real child processes, real signals.
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")

const runUntilStarted = async (entry: ReadonlyArray<string>, signal: NodeJS.Signals) => {
  const out = fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-int-"))
  const child = spawn(process.execPath, [...entry, "run", "test/cli/slowTiny.ts", "--out", out], {
    cwd: repoRoot,
    env: { ...process.env, ARPO_CACHE_DIR: fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-cache-")) },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stderr = ""
  let stdout = ""
  child.stderr.on("data", (b) => (stderr += String(b)))
  child.stdout.on("data", (b) => (stdout += String(b)))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const runDir = () => {
    const parent = NodePath.join(out, "tiny")
    const names = fs.existsSync(parent) ? fs.readdirSync(parent) : []
    return names.length === 0 ? undefined : NodePath.join(parent, names[0]!)
  }
  const deadline = Date.now() + 90_000
  while (Date.now() < deadline) {
    const d = runDir()
    if (d !== undefined && fs.existsSync(NodePath.join(d, "events.jsonl")) && fs.statSync(NodePath.join(d, "events.jsonl")).size > 0) break
    await new Promise((r) => setTimeout(r, 50))
  }
  child.kill(signal)
  const code = await exited
  return { code, stderr, stdout, dir: runDir()! }
}

describe("interrupting a run", () => {
  it("SIGINT: prints the run directory and the resume command, exits 130", async () => {
    const r = await runUntilStarted(["--import", "tsx", "src/cli/main.ts"], "SIGINT")
    expect(r.dir).toBeDefined()
    expect(r.stderr).toContain(`arpo: interrupted. The run directory is ${r.dir}`)
    expect(r.stderr).toContain(`Resume it from its last checkpoint with: arpo resume ${r.dir}`)
    expect(r.code).toBe(130)
  }, 120_000)

  it("SIGTERM to bin/arpo.js reaches the run, which says the same", async () => {
    const r = await runUntilStarted(["bin/arpo.js"], "SIGTERM")
    expect(r.stderr).toContain(`arpo: interrupted. The run directory is ${r.dir}`)
    expect(r.stderr).toContain(`npm run arpo -- resume ${r.dir}`)
    expect(r.code).not.toBe(0)
  }, 120_000)
})
