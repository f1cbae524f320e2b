/**
 * Worker-thread entry of data-parallel training (started by parallel.ts, imported by nothing else):
 * holds a copy of the policy on its own heap (jax-js's, or a native learner's wasm heap with kernels
 * "native") and answers gradient requests for its share of a step's micro-batches with the value, the
 * gradient leaves and the per-token aux on the host. It never updates weights itself: the main thread
 * sends the current weights whenever they changed.
 */
import { parentPort, workerData } from "node:worker_threads"
import type { ModelConfig } from "./config.ts"
import { NativeLearner } from "./native/learner.ts"
import type { GradKernels, GradReply, GradRequest } from "./parallel.ts"
import { disposeParams, type DTypeName, leaves, specs, toDevice } from "./params.ts"
import { Policy } from "./policy.ts"
import { ensureBackend } from "./runtime.ts"
import { Learner } from "./train.ts"

const { config, dtype, kernels } = workerData as { config: ModelConfig; dtype: DTypeName; kernels: GradKernels }
const port = parentPort!
let learner: Learner | undefined
let native: NativeLearner | undefined

const copy = (d: ArrayLike<number>): Float32Array | Float64Array =>
  d instanceof Float64Array ? Float64Array.from(d) : Float32Array.from(d)

const handleNative = (req: GradRequest): GradReply => {
  if (req.weights) {
    const names = specs(config)
    const host = req.weights.map((data, i) => ({ name: names[i]!.name, shape: names[i]!.shape, data }))
    // the learner reads the policy's weights when its generation moved
    if (native === undefined) native = new NativeLearner(Policy.fromHost(config, host, 0, dtype))
    else native.policy.replace(toDevice(config, host, dtype))
  }
  if (native === undefined) throw new Error("grad worker: a request came before any weights")
  const r = native.valueAndGrad(req.objective, req.mbs)
  // views of the learner's heap are copied out (a wasm memory's buffer cannot be transferred)
  const own = (a: Float32Array) => (a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : Float32Array.from(a))
  return { id: req.id, ok: true, value: r.value, grad: r.grad.map((g) => Float32Array.from(g)), logp: r.logp.map(own), entropy: r.entropy.map(own), clipActive: r.clipActive.map(own) }
}

const handle = (req: GradRequest): GradReply => {
  if (kernels === "native") return handleNative(req)
  if (req.weights) {
    const names = specs(config)
    const host = req.weights.map((data, i) => ({ name: names[i]!.name, shape: names[i]!.shape, data }))
    if (learner === undefined) learner = new Learner(Policy.fromHost(config, host, 0, dtype))
    else learner.policy.replace(toDevice(config, host, dtype))
  }
  if (learner === undefined) throw new Error("grad worker: a request came before any weights")
  const r = learner.valueAndGrad(req.objective, req.mbs)
  const grad = leaves(r.grad).map((a) => copy(a.ref.dataSync() as Float32Array))
  disposeParams(r.grad)
  return { id: req.id, ok: true, value: r.value, grad, logp: r.logp.map(copy), entropy: r.entropy.map(copy), clipActive: r.clipActive.map(copy) }
}

await ensureBackend()
port.on("message", (req: GradRequest) => {
  let reply: GradReply
  try {
    reply = handle(req)
  } catch (e) {
    reply = { id: req.id, ok: false, message: e instanceof Error ? e.message : String(e) }
  }
  port.postMessage(reply, reply.ok ? [...reply.grad, ...reply.logp, ...reply.entropy, ...reply.clipActive].map((a) => a.buffer as ArrayBuffer) : [])
})
