/**
 * Checkpoints of the embedded policy in the safetensors layout (8-byte little-endian header length,
 * a JSON header of name → {dtype, shape, data_offsets}, then the raw little-endian tensors), written
 * atomically (temp file in the same directory, fsync, rename). Weights are named as in params.ts;
 * AdamW moments are `optim.m.<name>` / `optim.v.<name>`; the config, step and policy version go in
 * `__metadata__`. It does not know about Effect or the Trainer service.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Schema } from "effect"
import { ModelConfig } from "./config.ts"
import type { HostTensor } from "./params.ts"

export interface CheckpointData {
  readonly config: ModelConfig
  readonly policyVersion: number
  /** optimizer steps taken */
  readonly step: number
  readonly params: ReadonlyArray<HostTensor>
  readonly optimizer?: { readonly m: ReadonlyArray<HostTensor>; readonly v: ReadonlyArray<HostTensor> }
}

const dtypeOf = (d: Float32Array | Float64Array) => (d instanceof Float64Array ? "F64" : "F32")

/** Serializes tensors and string metadata to safetensors bytes. */
export const encodeSafetensors = (tensors: ReadonlyArray<HostTensor>, metadata: Record<string, string>): Uint8Array => {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const t of tensors) {
    const bytes = t.data.byteLength
    header[t.name] = { dtype: dtypeOf(t.data), shape: [...t.shape], data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  let json = JSON.stringify(header)
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8) // align the data to 8 bytes
  const headBytes = new TextEncoder().encode(json)
  const out = new Uint8Array(8 + headBytes.length + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(headBytes.length), true)
  out.set(headBytes, 8)
  let at = 8 + headBytes.length
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at)
    at += t.data.byteLength
  }
  return out
}

/** Parses safetensors bytes (F32 and F64 tensors) in header order. */
export const decodeSafetensors = (bytes: Uint8Array): { tensors: Array<HostTensor>; metadata: Record<string, string> } => {
  if (bytes.length < 8) throw new RangeError(`safetensors: ${bytes.length} bytes is too short`)
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true))
  if (8 + n > bytes.length) throw new RangeError(`safetensors: header of ${n} bytes runs past the end`)
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>
  const base = 8 + n
  const metadata = (header["__metadata__"] ?? {}) as Record<string, string>
  const tensors: Array<HostTensor> = []
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") continue
    const { dtype, shape, data_offsets } = v as { dtype: string; shape: Array<number>; data_offsets: [number, number] }
    const [a, b] = data_offsets
    const copy = bytes.slice(base + a, base + b)
    const data = dtype === "F64"
      ? new Float64Array(copy.buffer, 0, (b - a) / 8)
      : dtype === "F32"
      ? new Float32Array(copy.buffer, 0, (b - a) / 4)
      : undefined
    if (data === undefined) throw new RangeError(`safetensors: tensor ${name} has unsupported dtype ${dtype}`)
    tensors.push({ name, shape, data })
  }
  return { tensors, metadata }
}

/** Writes `bytes` to `file` atomically: a temp file next to it, fsync, then rename over it. */
export const writeAtomic = (file: string, bytes: Uint8Array): void => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`
  const fd = fs.openSync(tmp, "w")
  try {
    fs.writeSync(fd, bytes)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  try {
    fs.renameSync(tmp, file)
  } catch (e) {
    fs.rmSync(tmp, { force: true })
    throw e
  }
}

export const writeCheckpoint = (file: string, ck: CheckpointData): void => {
  const tensors: Array<HostTensor> = [...ck.params]
  if (ck.optimizer) {
    for (const t of ck.optimizer.m) tensors.push({ ...t, name: `optim.m.${t.name}` })
    for (const t of ck.optimizer.v) tensors.push({ ...t, name: `optim.v.${t.name}` })
  }
  const metadata = {
    format: "arpo-embedded-v1",
    config: JSON.stringify(ck.config),
    policyVersion: String(ck.policyVersion),
    step: String(ck.step),
    rotary: "half-split (rotate_half: dim i pairs with i + headDim/2)",
    layout: "matrices are [in, out]"
  }
  writeAtomic(file, encodeSafetensors(tensors, metadata))
}

export const readCheckpoint = (file: string): CheckpointData => {
  const { tensors, metadata } = decodeSafetensors(new Uint8Array(fs.readFileSync(file)))
  if (metadata["format"] !== "arpo-embedded-v1") throw new RangeError(`checkpoint ${file}: not an arpo embedded checkpoint`)
  const config = Schema.decodeUnknownSync(ModelConfig)(JSON.parse(metadata["config"] ?? "null"))
  const params = tensors.filter((t) => !t.name.startsWith("optim."))
  const m = tensors.filter((t) => t.name.startsWith("optim.m.")).map((t) => ({ ...t, name: t.name.slice(8) }))
  const v = tensors.filter((t) => t.name.startsWith("optim.v.")).map((t) => ({ ...t, name: t.name.slice(8) }))
  const base = { config, policyVersion: Number(metadata["policyVersion"] ?? 0), step: Number(metadata["step"] ?? 0), params }
  return m.length > 0 ? { ...base, optimizer: { m, v } } : base
}
