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
import { linePlot, plotArea } from "../../src/report/svg.ts"
import { renderMarkdown } from "../../src/report/markdown.ts"
import { writeReports } from "../../src/report/report.ts"
import { summarize } from "../../src/report/summarize.ts"
import { readRecords } from "../../src/report/tensorboard.ts"
import { RunStore } from "../../src/io/RunStore.ts"
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

/** The RGB pixels of an 8-bit RGB/RGBA PNG (non-interlaced, as Chromium writes them). */
const pngPixels = (png: Buffer): { width: number; height: number; rgb: (x: number, y: number) => readonly [number, number, number] } => {
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
  const out = new Uint8Array(height * stride)
  let prev = new Uint8Array(stride)
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1))
    const cur = out.subarray(y * stride, (y + 1) * stride)
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
    prev = cur
  }
  return { width, height, rgb: (x, y) => [out[y * stride + x * bpp]!, out[y * stride + x * bpp + 1]!, out[y * stride + x * bpp + 2]!] }
}

/** Width, height and the number of pixels that are not near-white. */
const pngStats = (png: Buffer): { width: number; height: number; nonWhite: number } => {
  const { width, height, rgb } = pngPixels(png)
  let nonWhite = 0
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = rgb(x, y)
      if (r < 245 || g < 245 || b < 245) nonWhite++
    }
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

  it.skipIf(chromium === undefined)("every line plot of the report keeps its data inside its axes (and a plot whose data leaves them is caught)", () => {
    if (chromium === undefined) return
    // the report's line plots at their natural size, then a control plot with a fixed axis its data leaves
    const html = renderHtml(summarize(synthetic({
      arms: [
        { name: "grpo", finalAccuracy: 0.95, toolCallsPerTrajectory: 2.4, branchRate: 0 },
        { name: "arpo", finalAccuracy: 1, toolCallsPerTrajectory: 1.2, branchRate: 0.5 }
      ],
      seeds: [1, 2, 3],
      steps: 30,
      noise: 0.08,
      evalEvery: 5,
      questions: 40
    })), { title: "demo/r1" })
    const lineSvgs = (html.match(/<svg [^]*?<\/svg>/g) ?? []).filter((svg) => svg.includes('class="line"') || svg.includes('class="seed"'))
    assert.isAtLeast(lineSvgs.length, 10)
    const control = linePlot({
      title: "control: data above its fixed axis",
      xLabel: "step",
      yLabel: "y",
      yDomain: [0, 0.5],
      series: [{ name: "a", points: [0, 1, 2, 3].map((x) => ({ x, y: x / 4 })) }]
    })
    const svgs = [...lineSvgs, control]
    const sizes = svgs.map((svg) => {
      const m = /width="(\d+)" height="(\d+)"/.exec(svg)!
      return { width: Number(m[1]), height: Number(m[2]) }
    })
    const width = Math.max(...sizes.map((s) => s.width))
    const height = sizes.reduce((a, s) => a + s.height, 0)
    const dir = mkdtempSync(NodePath.join(tmpdir(), "arpo-axes-"))
    try {
      const page = NodePath.join(dir, "plots.html")
      const pngPath = NodePath.join(dir, "plots.png")
      writeFileSync(page, `<!DOCTYPE html><html><head><style>body{margin:0;background:#fff}svg{display:block}</style></head><body>${svgs.join("")}</body></html>`)
      execFileSync(chromium, [
        "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        `--user-data-dir=${NodePath.join(dir, "profile")}`, `--screenshot=${pngPath}`, `--window-size=${width},${height}`, `file://${page}`
      ], { timeout: 60_000, stdio: "ignore" })
      const png = pngPixels(readFileSync(pngPath))
      assert.strictEqual(png.width, width)
      // a saturated pixel (a data mark) outside the plot area, left of the legend column, is data that left its axes
      const outside = sizes.map((size, i) => {
        const top0 = sizes.slice(0, i).reduce((a, s) => a + s.height, 0)
        const area = plotArea(size.width, size.height)
        let count = 0
        let inside = 0
        for (let y = 0; y < size.height && top0 + y < png.height; y++) {
          for (let x = 0; x < area.right - 2; x++) {
            const [r, g, b] = png.rgb(x, top0 + y)
            if (Math.max(r, g, b) - Math.min(r, g, b) < 80) continue
            const inArea = x >= area.left - 2 && y >= area.top - 2 && y <= area.bottom + 2
            if (inArea) inside++
            else count++
          }
        }
        return { title: /aria-label="([^"]*)"/.exec(svgs[i]!)![1], outside: count, inside }
      })
      const report = outside.slice(0, -1)
      for (const p of report) {
        assert.strictEqual(p.outside, 0, `${p.title}: ${p.outside} data pixels outside its axes`)
        assert.isAbove(p.inside, 50, `${p.title}: its data is drawn`)
      }
      assert.isAbove(outside[outside.length - 1]!.outside, 50, "the control plot's data above its axis is detected")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
