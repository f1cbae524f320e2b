/**
 * Worker-thread entry of parallel sampling (started by samplerPool.ts, imported by nothing else): holds
 * a copy of the policy on its own jax-js heap and a Generator with its own KV and prefix caches, and
 * answers generation requests for its share of a call. It never trains: the main thread sends the
 * current weights whenever they changed since this worker's last request (which also drops its
 * prefix cache, as the Generator does on every weight change). With engine "native" it samples with the
 * native model's generator on the host copy of the weights (no jax-js in this thread).
 */
import { parentPort, workerData } from "node:worker_threads"
import type { ModelConfig } from "./config.ts"
import { Generator, type GeneratorOptions } from "./generate.ts"
import { NativeGenerator } from "./native/generator.ts"
import { type DTypeName, type HostTensor, specs, toDevice } from "./params.ts"
import { Policy } from "./policy.ts"
import { ensureBackend } from "./runtime.ts"
import type { SampleReply, SampleRequest, SamplerEngine } from "./samplerPool.ts"

const { config, dtype, options, engine } = workerData as { config: ModelConfig; dtype: DTypeName; options: GeneratorOptions; engine: SamplerEngine }
const port = parentPort!
let gen: Generator | undefined

/** the native generator reads its weights from this host copy whenever `generation` moves */
const source = { config, dtype, generation: -1, host: [] as ReadonlyArray<HostTensor>, toHost: () => source.host }
let native: NativeGenerator | undefined

const handleNative = (req: SampleRequest): SampleReply => {
  if (req.weights) {
    const names = specs(config)
    source.host = req.weights.map((data, i) => ({ name: names[i]!.name, shape: names[i]!.shape, data }))
    source.generation += 1
    native ??= new NativeGenerator(source, options)
  }
  if (native === undefined) throw new Error("sampler worker: a request came before any weights")
  const { results, stats } = native.generate(req.requests)
  return { id: req.id, ok: true, results, stats }
}

const handle = (req: SampleRequest): SampleReply => {
  if (engine === "native") return handleNative(req)
  if (req.weights) {
    const names = specs(config)
    const host = req.weights.map((data, i) => ({ name: names[i]!.name, shape: names[i]!.shape, data }))
    if (gen === undefined) gen = new Generator(Policy.fromHost(config, host, 0, dtype), options)
    else gen.policy.replace(toDevice(config, host, dtype))
  }
  if (gen === undefined) throw new Error("sampler worker: a request came before any weights")
  const { results, stats } = gen.generate(req.requests)
  return { id: req.id, ok: true, results, stats }
}

if (engine !== "native") await ensureBackend()
port.on("message", (req: SampleRequest) => {
  let reply: SampleReply
  try {
    reply = handle(req)
  } catch (e) {
    reply = { id: req.id, ok: false, message: e instanceof Error ? e.message : String(e) }
  }
  port.postMessage(reply)
})
