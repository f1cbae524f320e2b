import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { root } from "../../src/core/random.ts"
import { decodeSafetensors, encodeSafetensors, readCheckpoint, writeCheckpoint } from "../../src/model/checkpoint.ts"
import { tinyConfig } from "../../src/model/config.ts"
import { initHost } from "../../src/model/params.ts"

describe("checkpoints", () => {
  it("safetensors bytes round-trip F32 and F64 tensors and metadata, with 8-byte aligned data", () => {
    const tensors = [
      { name: "a", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      { name: "b", shape: [1], data: new Float64Array([Math.PI]) }
    ]
    const bytes = encodeSafetensors(tensors, { note: "x" })
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true))
    expect((8 + headerLength) % 8).toBe(0)
    const back = decodeSafetensors(bytes)
    expect(back.metadata).toEqual({ note: "x" })
    expect(back.tensors).toEqual(tensors)
  })

  it("writes atomically (no temp file left) and reads back weights, optimizer state, config and version", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arpo-ckpt-"))
    try {
      const file = path.join(dir, "sub", "model.safetensors")
      const params = initHost(tinyConfig, root(1))
      const m = params.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(0.5) }))
      writeCheckpoint(file, { config: tinyConfig, policyVersion: 7, step: 3, params, optimizer: { m, v: m } })
      writeCheckpoint(file, { config: tinyConfig, policyVersion: 8, step: 4, params, optimizer: { m, v: m } })
      expect(fs.readdirSync(path.dirname(file))).toEqual(["model.safetensors"])
      const ck = readCheckpoint(file)
      expect(ck.config).toEqual(tinyConfig)
      expect([ck.policyVersion, ck.step]).toEqual([8, 4])
      expect(ck.params.map((t) => t.name)).toEqual(params.map((t) => t.name))
      expect(ck.params[3]!.data).toEqual(params[3]!.data)
      expect(ck.optimizer!.v[0]!.data[0]).toBe(0.5)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
