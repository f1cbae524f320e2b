/**
 * The folder layout's one rule (DESIGN.md "Layout"): no folder-level import cycle in src/. Every import and
 * re-export between folders counts, type-only ones included (`import type` still couples the folders).
 * Also src/index.ts's exported names against the committed list test/architecture/public-api.txt, so a
 * change to the public surface is deliberate (update the list in the same commit).
 */
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const here = NodePath.dirname(fileURLToPath(import.meta.url))
const src = NodePath.resolve(here, "../../src")

const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = NodePath.join(dir, e.name)
    return e.isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : []
  })

const folderOf = (file: string): string => {
  const parts = NodePath.relative(src, file).split(NodePath.sep)
  return parts.length === 1 ? "" : parts[0]!
}

/** folder → folders it imports from (files at src/ itself, i.e. index.ts, are the top and left out). */
export const folderGraph = (): Map<string, Map<string, Array<string>>> => {
  const graph = new Map<string, Map<string, Array<string>>>()
  for (const file of sources(src)) {
    const from = folderOf(file)
    if (from === "") continue
    const text = fs.readFileSync(file, "utf8")
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+["'](\.{1,2}\/[^"']+)["']/g)) {
      const to = folderOf(NodePath.resolve(NodePath.dirname(file), m[1]!))
      if (to === from || to === "") continue
      const edges = graph.get(from) ?? new Map<string, Array<string>>()
      edges.set(to, [...(edges.get(to) ?? []), NodePath.relative(src, file)])
      graph.set(from, edges)
    }
  }
  return graph
}

/** The strongly connected components with more than one folder (Tarjan). */
const cycles = (graph: Map<string, Map<string, Array<string>>>): Array<Array<string>> => {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const out: Array<Array<string>> = []
  const visit = (v: string) => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const scc: Array<string> = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        scc.push(w)
      } while (w !== v)
      if (scc.length > 1) out.push(scc.sort())
    }
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return out
}

describe("folders", () => {
  it("no folder-level import cycle in src/ (type-only imports included)", () => {
    const graph = folderGraph()
    const found = cycles(graph)
    const explain = found.map((scc) =>
      scc.flatMap((a) => scc.flatMap((b) => (graph.get(a)?.get(b) ?? []).slice(0, 2).map((f) => `${a} → ${b} (${f})`))).join("; ")
    )
    expect(explain).toEqual([])
    // the detector sees real edges (a graph without them would pass vacuously)
    expect(graph.get("engine")?.has("core")).toBe(true)
  })

  it("every folder imports only from its own tier or below (DESIGN.md: core, events ← model, tools, tasks ← engine, trainer ← rollout ← run ← io, report ← experiment ← cli)", () => {
    const tiers: ReadonlyArray<ReadonlyArray<string>> = [
      ["core", "events"],
      ["model", "tools", "tasks"],
      ["engine", "trainer"],
      ["rollout"],
      ["run"],
      ["io", "report"],
      ["experiment"],
      ["cli"]
    ]
    const tier = (folder: string) => tiers.findIndex((t) => t.includes(folder))
    const graph = folderGraph()
    const upward = [...graph].flatMap(([from, edges]) =>
      [...edges].filter(([to]) => tier(to) > tier(from) || tier(from) < 0 || tier(to) < 0).map(([to, files]) => `${from} → ${to} (${files.slice(0, 2).join(", ")})`)
    )
    expect(upward).toEqual([])
    // every folder of src/ has a tier, and the rule sees real edges
    expect(graph.get("run")?.has("trainer")).toBe(true)
  })

  it("core imports nothing outside core (it is pure: no services, no I/O)", () => {
    expect([...(folderGraph().get("core")?.keys() ?? [])]).toEqual([])
  })

  it("src/index.ts exports exactly the committed public API (test/architecture/public-api.txt)", async () => {
    const api = Object.keys(await import("../../src/index.ts")).sort()
    const committed = fs.readFileSync(NodePath.join(here, "public-api.txt"), "utf8").split("\n").filter((l) => l !== "" && !l.startsWith("#"))
    expect(api).toEqual(committed)
  })
})
