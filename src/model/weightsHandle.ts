/**
 * The in-process handle of `embedded` PolicyWeights (src/core/weights.ts): the model config, dtype and the
 * jax-js arrays of one version of the weights. A handle is borrowed: it stays valid until its producer's
 * next weight update, so a consumer that keeps the weights takes its own references (`refParams`) while
 * loading. It does not train, sample or copy anything.
 */
import { handleWeights, type PolicyWeights } from "../core/weights.ts"
import type { ModelConfig } from "./config.ts"
import { type DTypeName, type Params, specs } from "./params.ts"

export interface EmbeddedHandle {
  readonly config: ModelConfig
  readonly dtype: DTypeName
  readonly params: Params
}

/** Bytes of the weights of `config` in `dtype` (what a load of a handle makes available to the engine). */
export const weightBytes = (config: ModelConfig, dtype: DTypeName): number =>
  specs(config).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0) * (dtype === "float64" ? 8 : 4)

/** `embedded` weights held in this process. */
export const embeddedWeights = (version: number, handle: EmbeddedHandle): PolicyWeights =>
  handleWeights(version, "embedded", handle, weightBytes(handle.config, handle.dtype))

/** The handle of `embedded` weights, or undefined when they are not an in-process embedded handle. */
export const embeddedHandle = (w: PolicyWeights): EmbeddedHandle | undefined => {
  if (w.format !== "embedded" || w.location._tag !== "handle") return undefined
  const h = w.location.handle as Partial<EmbeddedHandle> | null
  return h !== null && typeof h === "object" && h.config !== undefined && h.params !== undefined && h.dtype !== undefined ? h as EmbeddedHandle : undefined
}
