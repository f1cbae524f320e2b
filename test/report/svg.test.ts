// svg: plots are well-formed standalone SVG with the expected marks, and text is escaped.
import { assert, describe, it } from "@effect/vitest"
import { barChart, escapeXml, fitAxis, histogramPlot, linePlot, niceTicks, treePlot } from "../../src/report/svg.ts"

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length

describe("svg", () => {
  it("niceTicks gives round, increasing ticks inside the range", () => {
    assert.deepStrictEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1].map((x) => x))
    const t = niceTicks(3, 97, 5)
    assert.deepStrictEqual(t, [20, 40, 60, 80])
    assert.deepStrictEqual(niceTicks(2, 2), [2])
  })

  it("a line plot draws one polyline and one band per banded series", () => {
    const svg = linePlot({
      title: "acc <a&b>",
      xLabel: "step",
      yLabel: "accuracy",
      series: [
        { name: "arpo", points: [0, 1, 2].map((x) => ({ x, y: x / 10, lo: x / 10 - 0.05, hi: x / 10 + 0.05 })) },
        { name: "grpo", points: [0, 1, 2].map((x) => ({ x, y: x / 20 })) }
      ]
    })
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
    assert.match(svg, /<\/svg>$/)
    assert.strictEqual(count(svg, /<polyline class="line"/g), 2)
    assert.strictEqual(count(svg, /<polygon class="band"/g), 1)
    assert.include(svg, "acc &lt;a&amp;b&gt;")
    assert.notInclude(svg, "NaN")
  })

  it("bar charts and histograms draw a rect per value; empty data says so", () => {
    const bars = barChart({ title: "t", yLabel: "s", groups: ["a", "b"], series: [{ name: "x", values: [1, 2], lo: [0.5, 1.5], hi: [1.5, 2.5] }, { name: "y", values: [3, 4] }] })
    assert.strictEqual(count(bars, /<rect class="bar"/g), 4)
    const stacked = barChart({ title: "t", yLabel: "s", stacked: true, groups: ["a"], series: [{ name: "x", values: [1] }, { name: "y", values: [2] }] })
    assert.strictEqual(count(stacked, /<rect class="bar"/g), 2)
    const hist = histogramPlot({ title: "h", xLabel: "ΔH", edges: [0, 1, 2, 3], series: [{ name: "arpo", counts: [1, 0, 5] }] })
    assert.strictEqual(count(hist, /<rect class="bin"/g), 2)
    assert.include(linePlot({ title: "e", xLabel: "x", yLabel: "y", series: [] }), "no data")
    assert.strictEqual(escapeXml(`"<&>"`), "&quot;&lt;&amp;&gt;&quot;")
  })
})

describe("axes and rollout trees", () => {
  it("fits the y axis to the data inside the metric's range", () => {
    const [lo, hi] = fitAxis([0.41, 0.43, 0.47], { lo: 0, hi: 1 })
    assert.isAtMost(lo, 0.41)
    assert.isAtLeast(hi, 0.47)
    assert.isAbove(lo, 0.3)
    assert.isBelow(hi, 0.6)
    assert.deepStrictEqual(fitAxis([0, 1, 0.99], { lo: 0, hi: 1 }), [0, 1])
    const [flatLo, flatHi] = fitAxis([0.001, 0.001])
    assert.isBelow(flatLo, 0.001)
    assert.isAbove(flatHi, 0.001)
  })

  it("draws per-seed thin lines under the mean", () => {
    const svg = linePlot({
      title: "t",
      xLabel: "step",
      yLabel: "y",
      series: [{ name: "a", points: [{ x: 0, y: 0.5 }, { x: 1, y: 0.6 }], seeds: [[{ x: 0, y: 0.4 }, { x: 1, y: 0.5 }], [{ x: 0, y: 0.6 }, { x: 1, y: 0.7 }]] }]
    })
    assert.strictEqual(count(svg, /<polyline class="seed"/g), 2)
    assert.isBelow(svg.indexOf('class="seed"'), svg.indexOf('class="line"'))
  })

  it("a rollout tree has a segment per non-root node and a labelled circle per branch decision", () => {
    const svg = treePlot({
      title: "arpo tree",
      nodes: [
        { parent: -1, kind: "prompt", tokens: 10 },
        { parent: 0, kind: "model", tokens: 5 },
        { parent: 1, kind: "tool", tokens: 3, branch: { deltaH: 0.21, branched: true, children: 1 } },
        { parent: 2, kind: "model", tokens: 4 },
        { parent: 2, kind: "model", tokens: 6 }
      ]
    })
    assert.strictEqual(count(svg, /<line class="segment"/g), 4)
    assert.strictEqual(count(svg, /<circle class="branch"/g), 1)
    assert.include(svg, "ΔH +0.21")
    assert.notInclude(svg, "NaN")
  })
})
