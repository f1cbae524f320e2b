// TensorBoard export: the TFRecord framing and Event protos checked against a file written by
// TensorBoard's own writer (test/report/fixtures/golden.tfevents, a copy of ../shared/data/tfevents/golden.tfevents),
// and our files read back through an independent protobuf decoder (@bufbuild/protobuf's wire reader).
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire"
import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import * as NodePath from "node:path"
import { metricRows, metricsCsv } from "../../src/report/metrics.ts"
import { crc32c, frameRecord, readRecords, scalarEvent, tensorboardFiles, TfRecordCorrupt } from "../../src/report/tensorboard.ts"
import { synthetic } from "./synthetic.ts"

const golden = NodePath.join(import.meta.dirname, "fixtures/golden.tfevents")

interface Decoded {
  wallTime?: number
  step: number
  fileVersion?: string
  writer?: string
  values: Array<{ tag: string; value: number }>
}

/** Event → { wall_time (1, double), step (2, int64), file_version (3), summary (5), source_metadata (10) } */
const decodeEvent = (bytes: Uint8Array): Decoded => {
  const r = new BinaryReader(bytes)
  const out: Decoded = { step: 0, values: [] }
  while (r.pos < r.len) {
    const [field, wire] = r.tag()
    if (field === 1 && wire === WireType.Bit64) out.wallTime = r.double()
    else if (field === 2 && wire === WireType.Varint) out.step = Number(r.int64())
    else if (field === 3 && wire === WireType.LengthDelimited) out.fileVersion = r.string()
    else if (field === 10 && wire === WireType.LengthDelimited) {
      const m = new BinaryReader(r.bytes())
      while (m.pos < m.len) {
        const [f, w] = m.tag()
        if (f === 1) out.writer = m.string()
        else m.skip(w)
      }
    } else if (field === 5 && wire === WireType.LengthDelimited) {
      const summary = new BinaryReader(r.bytes())
      while (summary.pos < summary.len) {
        const [f, w] = summary.tag()
        if (f !== 1) {
          summary.skip(w)
          continue
        }
        const v = new BinaryReader(summary.bytes())
        let tag = ""
        let value = Number.NaN
        while (v.pos < v.len) {
          const [vf, vw] = v.tag()
          if (vf === 1) tag = v.string()
          else if (vf === 2 && vw === WireType.Bit32) value = v.float()
          else v.skip(vw)
        }
        out.values.push({ tag, value })
      }
    } else r.skip(wire)
  }
  return out
}

describe("TFRecord framing and Event protos", () => {
  it("CRC-32C of the standard check string is 0xE3069283", () => {
    assert.strictEqual(crc32c(new TextEncoder().encode("123456789")), 0xe3069283)
  })

  it("reads TensorBoard's own file back to its known scalars", () => {
    const records = readRecords(readFileSync(golden))
    assert.strictEqual(records.length, 11)
    const first = decodeEvent(records[0]!)
    assert.strictEqual(first.fileVersion, "brain.Event:2")
    const scalars = records.slice(1).map(decodeEvent)
    const expected = [0, 1, 2, 3, 4].flatMap((k) => [
      { step: k, wallTime: 1700000000 + k, tag: "reward/mean", value: Math.fround(0.5 + k / 10) },
      { step: k, wallTime: 1700000000 + k, tag: "loss", value: Math.fround(1 / (k + 1)) }
    ])
    assert.deepStrictEqual(scalars.map((e) => ({ step: e.step, wallTime: e.wallTime!, tag: e.values[0]!.tag, value: e.values[0]!.value })), expected)
  })

  it("writes records 2–11 of TensorBoard's file byte for byte", () => {
    const bytes = readFileSync(golden)
    const records = readRecords(bytes)
    let at = 12 + records[0]!.length + 4
    for (let k = 0; k < 5; k++) {
      for (const [tag, value] of [["reward/mean", 0.5 + k / 10], ["loss", 1 / (k + 1)]] as const) {
        const ours = frameRecord(scalarEvent(1700000000 + k, k, tag, value))
        assert.deepStrictEqual(Buffer.from(ours).toString("hex"), bytes.subarray(at, at + ours.length).toString("hex"), `step ${k} ${tag}`)
        at += ours.length
      }
    }
    assert.strictEqual(at, bytes.length)
  })

  it("refuses a file with a flipped byte or a cut end, saying where", () => {
    const bytes = new Uint8Array(readFileSync(golden))
    bytes[100] = bytes[100]! ^ 1
    assert.throws(() => readRecords(bytes), TfRecordCorrupt)
    assert.throws(() => readRecords(readFileSync(golden).subarray(0, 200)), /truncated/)
  })
})

describe("a run's metrics as TensorBoard files and metrics.csv", () => {
  const events = synthetic({
    arms: [
      { name: "grpo", finalAccuracy: 0.4, toolCallsPerTrajectory: 2, branchRate: 0 },
      { name: "arpo", finalAccuracy: 0.7, toolCallsPerTrajectory: 1, branchRate: 0.5 }
    ],
    seeds: [1, 2],
    steps: 6,
    noise: 0.02,
    evalEvery: 3
  })
  const rows = metricRows(events)

  it("has one row per (arm, seed, step, metric)", () => {
    const keys = rows.map((r) => `${r.arm}|${r.seed}|${r.step}|${r.metric}`)
    assert.strictEqual(new Set(keys).size, keys.length)
    const acc = rows.filter((r) => r.metric === "reward/accuracy")
    assert.strictEqual(acc.length, 2 * 2 * 6)
    assert.include(rows.map((r) => r.metric), "eval/test/pass@4")
    assert.include(rows.map((r) => r.metric), "train/kl")
  })

  it("writes one event file per arm and seed whose scalars read back to the rows (float32)", () => {
    const files = tensorboardFiles(rows, 1750000000)
    assert.deepStrictEqual(files.map((f) => f.path).sort(), [
      "tb/arpo-seed1/events.out.tfevents.1750000000.arpo",
      "tb/arpo-seed2/events.out.tfevents.1750000000.arpo",
      "tb/grpo-seed1/events.out.tfevents.1750000000.arpo",
      "tb/grpo-seed2/events.out.tfevents.1750000000.arpo"
    ])
    for (const f of files) {
      const [arm, seed] = f.path.split("/")[1]!.split("-seed")
      const decoded = readRecords(f.bytes).map(decodeEvent)
      assert.strictEqual(decoded[0]!.fileVersion, "brain.Event:2")
      assert.strictEqual(decoded[0]!.writer, "arpo")
      const want = rows.filter((r) => r.arm === arm && r.seed === Number(seed))
      assert.strictEqual(decoded.length - 1, want.length)
      decoded.slice(1).forEach((e, i) => {
        assert.strictEqual(e.step, want[i]!.step)
        assert.strictEqual(e.values[0]!.tag, want[i]!.metric)
        assert.strictEqual(e.values[0]!.value, Math.fround(want[i]!.value))
        assert.strictEqual(e.wallTime, 1750000000)
      })
    }
  })

  it("metrics.csv has a header and one line per row, values round-tripping exactly", () => {
    const csv = metricsCsv(rows)
    const lines = csv.trimEnd().split("\n")
    assert.strictEqual(lines[0], "arm,seed,step,metric,value")
    assert.strictEqual(lines.length, rows.length + 1)
    const [arm, seed, step, metric, value] = lines[1]!.split(",")
    assert.deepStrictEqual({ arm, seed: Number(seed), step: Number(step), metric, value: Number(value) }, { ...rows[0]! })
    assert.strictEqual(metricsCsv([{ arm: 'a,"b"', seed: 1, step: 0, metric: "m", value: 0.1 }]), 'arm,seed,step,metric,value\n"a,""b""",1,0,m,0.1\n')
  })
})
