/**
 * Starting jax-js for the embedded model: the wasm backend, once per process (its `cpu` backend is an
 * interpreter, ~1000× slower). Every entry point that touches arrays awaits `ensureBackend()` first.
 * It does not choose threads (jax-js runs single-threaded in Node).
 */
import { defaultDevice, init } from "@jax-js/jax"

let started: Promise<void> | undefined

export const ensureBackend = (): Promise<void> => {
  started ??= init("wasm").then((devices) => {
    if (!devices.includes("wasm")) throw new Error("jax-js: the wasm backend did not start")
    defaultDevice("wasm")
  })
  return started
}
