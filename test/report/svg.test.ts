// svg: plots are well-formed standalone SVG with the expected marks, and text is escaped.
import { assert, describe, it } from "@effect/vitest"
import { barChart, escapeXml, histogramPlot, linePlot, niceTicks } from "../../src/report/svg.ts"

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
