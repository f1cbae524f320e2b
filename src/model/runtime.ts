/**
 * Starting jax-js for the embedded model: the wasm backend, once per process (its `cpu` backend is an
 * interpreter, ~1000× slower), with compiled kernels kept instantiated across passes (see below). Every
 * entry point that touches arrays awaits `ensureBackend()` first. It does not choose threads (jax-js
 * runs single-threaded in a Node thread; src/model/parallel.ts and samplerPool.ts use worker threads).
 */
import { defaultDevice, init } from "@jax-js/jax"

/**
 * jax-js 0.1.25's wasm backend compiles each kernel once (a `WebAssembly.Module`, cached by kernel
 * hash) but creates a new `WebAssembly.Instance` of it on every dispatch: ~60 instantiations per decode
 * step, ~90 ms per sampling pass on the tiny model. Its kernels import only `env.memory` and keep no
 * state of their own (no globals, no tables), so an instance for a (module, memory) pair can serve every
 * later dispatch. This wraps the `WebAssembly.Instance` constructor to return the cached instance for
 * exactly that import shape and instantiates everything else as before. Installed by `ensureBackend`;
 * `setKernelInstanceCache(false)` restores the original (the benchmark compares both).
 */
// the project's TypeScript lib has no WebAssembly declarations: the few used here
type WasmModule = object
type WasmInstance = object
type WasmCtor = new (module: WasmModule, imports?: object) => WasmInstance
const wasm = (globalThis as unknown as { WebAssembly: { Instance: WasmCtor; Memory: new (...a: Array<unknown>) => object } }).WebAssembly
const Original = wasm.Instance
const instances = new WeakMap<WasmModule, { memory: object; instance: WasmInstance }>()

const onlyMemory = (imports: unknown): object | undefined => {
  if (typeof imports !== "object" || imports === null) return undefined
  const keys = Object.keys(imports)
  if (keys.length !== 1 || keys[0] !== "env") return undefined
  const env = (imports as { env: unknown }).env
  if (typeof env !== "object" || env === null) return undefined
  const envKeys = Object.keys(env)
  const memory = (env as { memory?: unknown }).memory
  return envKeys.length === 1 && memory instanceof wasm.Memory ? memory : undefined
}

function CachedInstance(this: unknown, module: WasmModule, imports?: object): WasmInstance {
  if (new.target === undefined) throw new TypeError("WebAssembly.Instance must be called with new")
  const memory = onlyMemory(imports)
  if (memory === undefined) return new Original(module, imports)
  const hit = instances.get(module)
  if (hit !== undefined && hit.memory === memory) return hit.instance
  const instance = new Original(module, imports)
  instances.set(module, { memory, instance })
  return instance
}
CachedInstance.prototype = Original.prototype

/** Turns the kernel-instance cache on (the default after `ensureBackend`) or off. */
export const setKernelInstanceCache = (enabled: boolean): void => {
  wasm.Instance = (enabled ? CachedInstance : Original) as WasmCtor
}

let started: Promise<void> | undefined

export const ensureBackend = (): Promise<void> => {
  started ??= init("wasm").then((devices) => {
    if (!devices.includes("wasm")) throw new Error("jax-js: the wasm backend did not start")
    defaultDevice("wasm")
    setKernelInstanceCache(true)
  })
  return started
}
