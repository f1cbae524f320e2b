/**
 * The live policy shared in-process by the embedded engine and the embedded trainer: the config, the
 * current weights on the jax-js device, and the policy version, and a generation counter bumped on every
 * weight replacement (so the engine knows to drop its prefix cache). It does not train or sample.
 */
import { derive, type Key, root } from "../core/random.ts"
import type { ModelConfig } from "./config.ts"
import { type DTypeName, disposeParams, type HostTensor, initHost, type Params, toDevice, toHost } from "./params.ts"

export class Policy {
  private current: Params
  private ver: number
  private gen = 0

  readonly config: ModelConfig
  readonly dtype: DTypeName

  constructor(config: ModelConfig, params: Params, version = 0, dtype: DTypeName = "float32") {
    this.config = config
    this.dtype = dtype
    this.current = params
    this.ver = version
  }

  /** Fresh weights from a key (deterministic). */
  static init(config: ModelConfig, key: Key = derive(root(0), "model"), dtype: DTypeName = "float32"): Policy {
    return new Policy(config, toDevice(config, initHost(config, key), dtype), 0, dtype)
  }

  static fromHost(config: ModelConfig, host: ReadonlyArray<HostTensor>, version = 0, dtype: DTypeName = "float32"): Policy {
    return new Policy(config, toDevice(config, host, dtype), version, dtype)
  }

  /** The current weights (borrowed: callers take `.ref`s, never dispose). */
  get params(): Params {
    return this.current
  }

  get version(): number {
    return this.ver
  }

  /** Counts weight replacements (every optimizer step), so caches keyed to the weights can tell. */
  get generation(): number {
    return this.gen
  }

  /** Installs new weights (taking ownership) and disposes the old ones; the version is set separately. */
  replace(params: Params): void {
    const old = this.current
    this.current = params
    this.gen += 1
    disposeParams(old)
  }

  /** Sets the policy version (the trainer bumps it once per `train` call; WeightSync may set it). */
  setVersion(version: number): void {
    this.ver = version
  }

  toHost(): ReadonlyArray<HostTensor> {
    return toHost(this.config, this.current)
  }
}
