/**
 * "A failure loses nothing already computed": a run SIGKILLed after an arm's last checkpoint is complete
 * but before the arm has returned (the window where a resume takes the arm as done and skips it) resumes
 * to the events of an uninterrupted run, wall-time metrics included (their values aside). Real child
 * process, real SIGKILL, placed deterministically by the arm's layer finalizer (killAfterLastCheckpoint.ts).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { define } from "../../src/experiment/define.ts"
import { readEventsFile } from "../../src/io/RunStore.ts"
import { run, tempDir, tinySpec } from "../run/tiny.ts"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")

/** Every event with its stamp (run id aside), wall-clock values replaced by "wall" (they differ run to run; their presence must not). */
const eventsWithWalls = async (dir: string) => {
  const log = await run(readEventsFile(NodePath.join(dir, "events.jsonl")))
  return log.events.map((e) => {
    const { run: _run, ...stamp } = e.stamp
    const body: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(e.event)) {
      body[k] = k.endsWith("Ms") ? "wall" : k === "path" && typeof v === "string" ? NodePath.relative(dir, v) : v
    }
    if (e.event._tag === "metric" && e.event.name.endsWith("Ms")) body["value"] = "wall"
    return { stamp, event: body }
  })
}

const walls = (events: ReadonlyArray<{ stamp: { arm: string }; event: Record<string, unknown> }>, arm: string) =>
  events.filter((e) => e.stamp.arm === arm && e.event["_tag"] === "metric" && String(e.event["name"]).endsWith("Ms")).map((e) => e.event["name"])

describe("resume after a kill between an arm's last checkpoint and its end", () => {
  it("the killed arm's wall-time metrics are on disk and the resumed run's events equal an uninterrupted run's", async () => {
    process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
    const options = { profile: "quick" as const, seeds: undefined, set: {}, sweep: {}, out: tempDir("arpo-runs-") }
    const baseline = await eventsWithWalls(await run(define(tinySpec()).run(options)))
    expect(walls(baseline, "grpo")).toEqual(["arm.wallMs", "coldStart.wallMs"])

    const out = tempDir("arpo-runs-")
    const child = spawn(process.execPath, ["--import", "tsx", NodePath.join(repoRoot, "test/experiment/killAfterLastCheckpoint.ts"), out], {
      cwd: repoRoot,
      env: process.env,
      stdio: "ignore"
    })
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, s) => resolve(s)))
    expect(signal).toBe("SIGKILL")
    const [name] = fs.readdirSync(NodePath.join(out, "tiny"))
    const dir = NodePath.join(out, "tiny", name!)
    // killed in the window: grpo's last checkpoint complete, arpo not started, the run not finished
    expect(fs.existsSync(NodePath.join(dir, "checkpoints", "grpo.seed1.step-000004", "state.json"))).toBe(true)
    expect(fs.existsSync(NodePath.join(dir, "checkpoints", "arpo.seed1.step-000002"))).toBe(false)
    expect(fs.existsSync(NodePath.join(dir, "summary.json"))).toBe(false)
    const killed = await eventsWithWalls(dir)
    expect(killed.some((e) => e.stamp.arm === "arpo")).toBe(false)
    expect(walls(killed, "grpo")).toEqual(["arm.wallMs", "coldStart.wallMs"])

    await run(define(tinySpec()).resume!(dir))
    expect(await eventsWithWalls(dir)).toEqual(baseline)
  }, 240_000)
})
