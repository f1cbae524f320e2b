// Reports from events.jsonl alone: Markdown and self-contained HTML content, and writing them into a
// run directory through RunStore. Plus the opt-in Chromium screenshot tier (skips without chromium).
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem, Layer } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as NodePath from "node:path"
import { deflateSync, inflateSync } from "node:zlib"
import { renderHtml } from "../../src/report/html.ts"
import { renderMarkdown } from "../../src/report/markdown.ts"
import { writeReports } from "../../src/report/report.ts"
import { summarize } from "../../src/report/summarize.ts"
import { readRecords } from "../../src/report/tensorboard.ts"
import { RunStore } from "../../src/run/RunStore.ts"
import { synthetic } from "./synthetic.ts"

const events = synthetic({
  arms: [
    { name: "grpo", finalAccuracy: 0.4, toolCallsPerTrajectory: 2.4, branchRate: 0 },
    { name: "arpo", finalAccuracy: 0.7, toolCallsPerTrajectory: 1.2, branchRate: 0.5 }
  ],
  seeds: [1, 2, 3],
  steps: 30,
  noise: 0.02,
  evalEvery: 10
})
const summary = summarize(events)

describe("markdown report", () => {
  const md = renderMarkdown(summary, { title: "demo/r1" })
  it("opens with the headline answer and a table of arms", () => {
    assert.match(md, /^# demo\/r1\n/)
    assert.match(md, /## Headline\n\narpo vs grpo, .* arpo beats grpo/)
    assert.match(md, /\| arm \| seeds \| last step \| accuracy \| RL tool calls \/ trajectory \| RL generated tokens \/ trajectory \|/)
    assert.match(md, /\| arpo \| 3 \| 29 \| 0\.\d+ \[0\.\d+, 0\.\d+\] \(3 seeds\) \|/)
  })
  it("has every section, with step tables subsampled to at most 12 rows", () => {
    for (const h of ["Reward per step", "Accuracy per step", "Tool calls per trajectory", "Entropy after tool results vs H_initial", "Branching", "Tool calls", "Time split", "Evaluation accuracy", "Notes", "Events"]) {
      assert.include(md, `## ${h}`)
    }
    const accuracy = md.split("## Accuracy per step\n\n")[1]!.split("\n\n")[0]!
    assert.strictEqual(accuracy.split("\n").length, 2 + 12)
    assert.match(accuracy, /\| 29 \|/)
  })
})

describe("html report", () => {
  const html = renderHtml(summary, { title: "demo/r1" })
  it("is self-contained: inline CSS and SVG, no scripts, no external URLs", () => {
    assert.match(html, /^<!DOCTYPE html>/)
    assert.include(html, "<style>")
    assert.notInclude(html, "<script")
    assert.notMatch(html, /(src|href)=["']?(https?:)?\/\//)
    assert.notInclude(html, "NaN")
    const svgs = html.match(/<svg /g) ?? []
    assert.isAtLeast(svgs.length, 7)
    assert.isAtLeast((html.match(/<polygon class="band"/g) ?? []).length, 4)
    assert.include(html, "ΔH at branch points")
    assert.include(html, "arpo beats grpo")
  })
})

describe("writing reports into the run directory", () => {
  it.effect("report.html, report.md and summary.json are regenerated from events.jsonl", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const root = yield* fs.makeTempDirectoryScoped({ prefix: "arpo-report-" })
      const store = RunStore.layerCreate({ root, experiment: "demo", runId: "r1" })
      const written = yield* Effect.gen(function*() {
        yield* RunStore.use((s) => s.appendEvents(events))
        return yield* writeReports
      }).pipe(Effect.provide(store))
      // summary.json, report.html, report.md, metrics.csv and one TensorBoard file per arm and seed
      assert.strictEqual(written.files.length, 4 + 2 * 3)
      const csv = yield* fs.readFileString(NodePath.join(root, "demo", "r1", "metrics.csv"))
      assert.strictEqual(csv.split("\n")[0], "arm,seed,step,metric,value")
      const tb = yield* fs.readDirectory(NodePath.join(root, "demo", "r1", "tb"))
      assert.deepStrictEqual([...tb].sort(), ["arpo-seed1", "arpo-seed2", "arpo-seed3", "grpo-seed1", "grpo-seed2", "grpo-seed3"])
      const tbFile = written.files.find((f) => f.includes("arpo-seed2"))!
      assert.isAbove(readRecords(yield* fs.readFile(tbFile)).length, 30 * 10)
      // regenerating keeps one event file per directory
      yield* writeReports.pipe(Effect.provide(RunStore.layerOpen(NodePath.join(root, "demo", "r1"))))
      assert.strictEqual((yield* fs.readDirectory(NodePath.join(root, "demo", "r1", "tb", "arpo-seed2"))).length, 1)
      const json = JSON.parse(yield* fs.readFileString(NodePath.join(root, "demo", "r1", "summary.json")))
      assert.strictEqual(json.headline.comparisons[0].verdict, "beats")
      assert.match(yield* fs.readFileString(NodePath.join(root, "demo", "r1", "report.md")), /^# Run report: demo\/r1/)
      assert.include(yield* fs.readFileString(NodePath.join(root, "demo", "r1", "report.html")), "<svg")
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(NodeServices.layer))))
})

/** Width, height and the number of pixels that are not near-white, from an 8-bit RGB/RGBA PNG
 *  (non-interlaced, as Chromium writes them). */
const pngStats = (png: Buffer): { width: number; height: number; nonWhite: number } => {
  assert.strictEqual(png.subarray(1, 4).toString("ascii"), "PNG")
  let offset = 8
  let width = 0
  let height = 0
  let colorType = 0
  const idat: Array<Buffer> = []
  while (offset < png.length) {
    const len = png.readUInt32BE(offset)
    const type = png.subarray(offset + 4, offset + 8).toString("ascii")
    const data = png.subarray(offset + 8, offset + 8 + len)
    if (type === "IHDR") {
      width = data.readUInt32BE(0)
      height = data.readUInt32BE(4)
      assert.strictEqual(data[8], 8, "8-bit samples")
      colorType = data[9]!
    } else if (type === "IDAT") idat.push(data)
    offset += 12 + len
  }
  const bpp = colorType === 6 ? 4 : 3
  const raw = inflateSync(Buffer.concat(idat))
  const stride = width * bpp
  let prev = new Uint8Array(stride)
  let nonWhite = 0
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1))
    const cur = new Uint8Array(stride)
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? cur[i - bpp]! : 0
      const b = prev[i]!
      const c = i >= bpp ? prev[i - bpp]! : 0
      const p = a + b - c
      const pa = Math.abs(p - a)
      const pb = Math.abs(p - b)
      const pc = Math.abs(p - c)
      const pred = filter === 1 ? a : filter === 2 ? b : filter === 3 ? (a + b) >> 1 : filter === 4 ? (pa <= pb && pa <= pc ? a : pb <= pc ? b : c) : 0
      cur[i] = (line[i]! + pred) & 255
    }
    for (let x = 0; x < width; x++) {
      if (cur[x * bpp]! < 245 || cur[x * bpp + 1]! < 245 || cur[x * bpp + 2]! < 245) nonWhite++
    }
    prev = cur
  }
  return { width, height, nonWhite }
}

/** A minimal RGB PNG (CRCs left zero: pngStats does not check them). */
const makePng = (width: number, height: number, pixel: (x: number, y: number) => readonly [number, number, number], filter: number) => {
  const rows: Array<number> = []
  for (let y = 0; y < height; y++) {
    rows.push(filter)
    const row: Array<number> = []
    for (let x = 0; x < width; x++) row.push(...pixel(x, y))
    // encode with the Sub filter (1) or None (0)
    row.forEach((v, i) => rows.push(filter === 1 ? (v - (i >= 3 ? row[i - 3]! : 0)) & 255 : v))
  }
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8)
    head.writeUInt32BE(data.length, 0)
    head.write(type, 4, "ascii")
    return Buffer.concat([head, data, Buffer.alloc(4)])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8
  ihdr[9] = 2
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.from(rows))), chunk("IEND", Buffer.alloc(0))])
}

describe("the PNG check of the screenshot tier", () => {
  it("counts exactly the pixels that are not near-white, whatever the row filter", () => {
    for (const filter of [0, 1]) {
      assert.deepStrictEqual(pngStats(makePng(7, 5, () => [255, 255, 255], filter)), { width: 7, height: 5, nonWhite: 0 })
      const dots = pngStats(makePng(7, 5, (x, y) => (x === y ? [31, 119, 180] : [255, 255, 255]), filter))
      assert.strictEqual(dots.nonWhite, 5)
    }
  })
})

describe("chromium screenshot (opt-in tier: needs /usr/bin/chromium)", () => {
  const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync)
  if (chromium === undefined) {
    console.log("chromium screenshot test skipped: /usr/bin/chromium not found (.ci/run installs Debian's chromium; install it with apt-get install chromium)")
  }
  it.skipIf(chromium === undefined)("report.html renders headless to a non-blank page", () => {
    if (chromium === undefined) return
    const dir = mkdtempSync(NodePath.join(tmpdir(), "arpo-shot-"))
    try {
      const htmlPath = NodePath.join(dir, "report.html")
      const pngPath = NodePath.join(dir, "report.png")
      writeFileSync(htmlPath, renderHtml(summary, { title: "demo/r1" }))
      execFileSync(chromium, [
        "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        `--user-data-dir=${NodePath.join(dir, "profile")}`, `--screenshot=${pngPath}`, "--window-size=1100,2400", `file://${htmlPath}`
      ], { timeout: 60_000, stdio: "ignore" })
      const stats = pngStats(readFileSync(pngPath))
      assert.strictEqual(stats.width, 1100)
      assert.strictEqual(stats.height, 2400)
      assert.isAbove(stats.nonWhite, 10_000)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 90_000)
})
