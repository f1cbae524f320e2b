/**
 * TensorBoard event files: the TFRecord framing (u64 length, masked CRC32C of the length, the record,
 * masked CRC32C of the record) around `Event` protos (TensorFlow's event.proto / summary.proto, the
 * fields a scalar needs), encoded with protobufjs. `tensorboardFiles` turns a run's metric rows into
 * one file per (arm, seed): a `file_version` event, then one `simple_value` scalar per metric per
 * step. Also a TFRecord reader (framing and CRCs checked) for tests and tools. It does not write files
 * (report.ts does) nor decode protos on reading (callers bring their decoder).
 */
import { Schema } from "effect"
import protobuf from "protobufjs"
import type { MetricRow } from "./metrics.ts"

// ---- CRC32C (Castagnoli), as TFRecord frames use it -------------------------------------------------

const crcTable = (() => {
  const t = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[i] = c >>> 0
  }
  return t
})()

/** CRC-32C of `bytes` (reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF). */
export const crc32c = (bytes: Uint8Array): number => {
  let c = 0xffffffff
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** TFRecord's masked CRC: rotate right by 15 and add 0xa282ead8 (mod 2^32). */
export const maskedCrc32c = (bytes: Uint8Array): number => {
  const c = crc32c(bytes)
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0
}

/** One TFRecord frame around `data`. */
export const frameRecord = (data: Uint8Array): Uint8Array => {
  const out = new Uint8Array(12 + data.length + 4)
  const view = new DataView(out.buffer)
  view.setBigUint64(0, BigInt(data.length), true)
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true)
  out.set(data, 12)
  view.setUint32(12 + data.length, maskedCrc32c(data), true)
  return out
}

/** A TFRecord file is not well framed: which record, at which byte, and what is wrong. */
export class TfRecordCorrupt extends Schema.TaggedError<TfRecordCorrupt>()("TfRecordCorrupt", {
  message: Schema.String
}) {}

/** The records of a TFRecord file; throws TfRecordCorrupt on a bad length, CRC or truncation. */
export const readRecords = (bytes: Uint8Array): ReadonlyArray<Uint8Array> => {
  const out: Array<Uint8Array> = []
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  while (at < bytes.length) {
    if (at + 12 > bytes.length) throw new TfRecordCorrupt({ message: `record ${out.length} at byte ${at}: truncated header` })
    const length = Number(view.getBigUint64(at, true))
    if (view.getUint32(at + 8, true) !== maskedCrc32c(bytes.subarray(at, at + 8))) {
      throw new TfRecordCorrupt({ message: `record ${out.length} at byte ${at}: length CRC mismatch` })
    }
    if (at + 12 + length + 4 > bytes.length) throw new TfRecordCorrupt({ message: `record ${out.length} at byte ${at}: truncated data (${length} bytes announced)` })
    const data = bytes.subarray(at + 12, at + 12 + length)
    if (view.getUint32(at + 12 + length, true) !== maskedCrc32c(data)) throw new TfRecordCorrupt({ message: `record ${out.length} at byte ${at}: data CRC mismatch` })
    out.push(data)
    at += 12 + length + 4
  }
  return out
}

// ---- the protos ------------------------------------------------------------------------------------

/** The fields of tensorflow/core/util/event.proto and framework/summary.proto that scalars use (same numbers). */
export const eventProto = `
syntax = "proto3";
package tensorboard;
message SourceMetadata { string writer = 1; }
message Summary {
  message Value {
    string tag = 1;
    oneof value { float simple_value = 2; }
  }
  repeated Value value = 1;
}
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what {
    string file_version = 3;
    Summary summary = 5;
  }
  SourceMetadata source_metadata = 10;
}
`

const EventType = protobuf.parse(eventProto, { keepCase: true }).root.lookupType("tensorboard.Event")

/** A scalar event: `{ wall_time, step, summary: { value: [{ tag, simple_value }] } }`. */
export const scalarEvent = (wallTime: number, step: number, tag: string, value: number): Uint8Array => {
  const message: Record<string, unknown> = { summary: { value: [{ tag, simple_value: value }] } }
  // proto3: a field at its default is not written (as TensorBoard's own writer does)
  if (wallTime !== 0) message["wall_time"] = wallTime
  if (step !== 0) message["step"] = step
  return EventType.encode(EventType.fromObject(message)).finish()
}

/** The first event of every file: `file_version: "brain.Event:2"` and who wrote it. */
export const fileVersionEvent = (wallTime: number): Uint8Array =>
  EventType.encode(EventType.fromObject({ wall_time: wallTime, file_version: "brain.Event:2", source_metadata: { writer: "arpo" } })).finish()

export interface TensorboardFile {
  /** relative to the run directory: `tb/<arm>-seed<k>/events.out.tfevents.<seconds>.arpo` */
  readonly path: string
  readonly bytes: Uint8Array
  readonly scalars: number
}

/** A directory-safe arm name (letters, digits, `._-`; others become `_`). */
export const safeName = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, "_")

/** The event files of a run's rows, one per (arm, seed), every scalar stamped with `wallTime` (seconds). */
export const tensorboardFiles = (rows: ReadonlyArray<MetricRow>, wallTime: number): ReadonlyArray<TensorboardFile> => {
  const groups = new Map<string, Array<MetricRow>>()
  for (const r of rows) {
    const dir = `${safeName(r.arm)}-seed${r.seed}`
    const list = groups.get(dir) ?? []
    list.push(r)
    groups.set(dir, list)
  }
  return [...groups.entries()].map(([dir, list]) => {
    const records = [frameRecord(fileVersionEvent(wallTime)), ...list.map((r) => frameRecord(scalarEvent(wallTime, r.step, r.metric, r.value)))]
    const bytes = new Uint8Array(records.reduce((a, r) => a + r.length, 0))
    let at = 0
    for (const r of records) {
      bytes.set(r, at)
      at += r.length
    }
    return { path: `tb/${dir}/events.out.tfevents.${Math.floor(wallTime)}.arpo`, bytes, scalars: list.length }
  })
}
