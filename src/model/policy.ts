/**
 * The live policy shared in-process by the embedded engine and the embedded trainer: the config, the
 * current weights on the jax-js device, and the policy version (bumped on every weight update, so the
 * engine knows to drop its prefix cache). It does not train or sample.
 */
import { derive, type Key, root } from "../core/random.ts"
import type { ModelConfig } from "./config.ts"
import { type DTypeName, disposeParams, type HostTensor, initHost, type Params, toDevice, toHost } from "./params.ts"

export class Policy {
  private current: Params
  private ver: number

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

  /** Installs new weights (taking ownership), disposes the old ones, and sets the version. */
  replace(params: Params, version: number = this.ver + 1): void {
    const old = this.current
    this.current = params
    this.ver = version
    disposeParams(old)
  }

  toHost(): ReadonlyArray<HostTensor> {
    return toHost(this.config, this.current)
  }
}
