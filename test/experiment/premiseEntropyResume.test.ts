/**
 * `premise-entropy` resumes (a failure loses nothing already computed): a tiny study (entropyTiny.ts: two
 * variants × two seeds, each unit its own cold start) run straight through, and the same study in a real
 * child process SIGKILLed after its second unit has sampled and recorded its events but before that unit's
 * completion marker (killEntropyUnit.ts), then `resume`d: the finished unit is not sampled again, and the
 * records, events, trees, tables, figures and plot equal the straight run's (wall times aside). A damaged
 * unit file is refused before anything changes.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { Exit } from "effect"
import { describe, expect, it } from "vitest"
import { entropyUnitFile, premiseEntropy, runPremiseEntropy } from "../../src/experiment/catalog/premise.ts"
import { comparableEvents, run, runExit, tempDir } from "../run/tiny.ts"
import { entropyTinyOptions, entropyTinySpec } from "./entropyTiny.ts"

const repoRoot = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../..")

const read = (dir: string, file: string) => fs.readFileSync(NodePath.join(dir, file), "utf8")
const json = (dir: string, file: string) => JSON.parse(read(dir, file)) as Record<string, unknown>

/** What a run leaves that must not depend on an interruption: wall-clock values masked. */
const outputs = async (dir: string) => {
  const wall = (s: string) => s.replace(/; wall \d+ s/, "; wall <s> s")
  const result = json(dir, "premise-entropy.json")
  const figures = json(dir, "premise-entropy.figures.json")
  const timing = (result["timing"] as ReadonlyArray<{ arm: string; seed: number; finalLoss?: number }>).map(({ arm, seed, finalLoss }) => ({ arm, seed, finalLoss }))
  // the markdown up to the wall-time table; that table's variant, seed and SFT loss columns
  const md = read(dir, "premise-entropy.md").split("\n")
  const cut = md.findIndex((l) => l.startsWith("Cold starts and sampling"))
  return {
    records: JSON.stringify(result["records"]),
    seeds: result["seeds"],
    setup: wall(String(result["setup"])),
    timing,
    figures: JSON.stringify({ ...figures, setup: wall(String(figures["setup"])), timing: [] }),
    markdown: [...md.slice(0, cut).map(wall), ...md.slice(cut).filter((l) => /^\| flaky/.test(l)).map((l) => l.split("|").slice(0, 4).join("|"))],
    svg: read(dir, "premise-entropy.svg"),
    trees: Object.fromEntries(fs.readdirSync(NodePath.join(dir, "trees")).sort().map((f) => [f, read(dir, NodePath.join("trees", f))])),
    events: await comparableEvents(dir)
  }
}

describe("premise-entropy resume", () => {
  it("a run SIGKILLed between a unit's events and its completion marker resumes to the records, events and tables of a run straight through", async () => {
    process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
    const straight = await run(runPremiseEntropy(entropyTinySpec(), entropyTinyOptions(tempDir("arpo-runs-"))))
    const reference = await outputs(straight)
    // the study measured something: tool results in every unit, NaN profile entries among them
    expect(JSON.parse(reference.records).length).toBeGreaterThan(10)
    expect(reference.records).toContain("null")
    expect(reference.timing.map((t) => `${t.arm}.seed${t.seed}`)).toEqual(["flaky.seed1", "flaky-control.seed1", "flaky.seed2", "flaky-control.seed2"])

    const out = tempDir("arpo-runs-")
    const child = spawn(process.execPath, ["--import", "tsx", NodePath.join(repoRoot, "test/experiment/killEntropyUnit.ts"), out], { cwd: repoRoot, env: process.env, stdio: "ignore" })
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, s) => resolve(s)))
    expect(signal).toBe("SIGKILL")
    const [name] = fs.readdirSync(NodePath.join(out, "premise-entropy"))
    const dir = NodePath.join(out, "premise-entropy", name!)
    // killed in the window: flaky seed 1 done, flaky-control seed 1 sampled (its events on disk) but not marked done
    const first = entropyUnitFile(dir, "flaky", 1)
    expect(fs.existsSync(first)).toBe(true)
    expect(fs.existsSync(entropyUnitFile(dir, "flaky-control", 1))).toBe(false)
    expect(fs.existsSync(NodePath.join(dir, "premise-entropy.json"))).toBe(false)
    const killed = (await comparableEvents(dir)) as ReadonlyArray<{ stamp: { arm: string; seed: number } }>
    expect(killed.some((e) => e.stamp.arm === "flaky-control" && e.stamp.seed === 1)).toBe(true)
    const before = { ino: fs.statSync(first).ino, mtime: fs.statSync(first).mtimeMs, text: fs.readFileSync(first, "utf8") }

    expect(await run(premiseEntropy.resume!(dir))).toBe(dir)
    // the finished unit was read back, not sampled and written again
    expect({ ino: fs.statSync(first).ino, mtime: fs.statSync(first).mtimeMs, text: fs.readFileSync(first, "utf8") }).toEqual(before)
    expect(await outputs(dir)).toEqual(reference)

    // a damaged unit file: refused with its path, nothing changed
    const events = read(dir, "events.jsonl")
    fs.writeFileSync(first, "{\"arm\": \"flaky\", \"se")
    const exit = await runExit(premiseEntropy.resume!(dir))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(String(Exit.isFailure(exit) ? JSON.stringify(exit.cause) : "")).toContain("flaky.seed1.json is damaged")
    expect(read(dir, "events.jsonl")).toBe(events)
  }, 300_000)
})
