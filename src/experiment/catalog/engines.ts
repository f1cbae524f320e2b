/**
 * The experiment `engines`: the same ARPO run with its rollouts sampled by the embedded (jax-js) engine,
 * by llama.cpp in process (node-llama-cpp) and by a llama-server arpo launches, all on the embedded
 * trainer's weights. The arms differ only in their `engine` Layer: the llama.cpp engines load GGUF, so the
 * run syncs in that format (the trainer exports a GGUF after every step; llama.cpp reloads it, llama-server
 * restarts on it). llama.cpp samples the
 * full distribution with the embedded rule and the same keys, so its arm should follow the embedded one
 * closely; llama-server samples with its own seeded sampler, so its arm agrees within noise. An arm whose
 * engine is not installed fails at start with the engine's typed error (scripts/llama-cpp,
 * scripts/llama-server install them). It does not install anything itself.
 */
import * as LlamaCpp from "../../engine/llamaCpp.ts"
import * as LlamaServer from "../../engine/llamaServer.ts"
import type { RunConfig } from "../../run/config.ts"
import { define, type ExperimentSpec } from "../define.ts"
import { flagshipProfiles } from "./arpoVsGrpo.ts"
import { baseConfig } from "./defaults.ts"

/** llama.cpp in process, serving the GGUF the run loads, one sequence per engine slot. */
export const llamaCppEngineOf = (config: RunConfig) =>
  LlamaCpp.layerLoadable({ sequences: config.engine.maxSlots, contextSize: config.model.context })

/** A llama-server launched on the GGUF the run loads (restarted on each new one), one slot per engine slot. */
export const llamaServerEngineOf = LlamaServer.engineOf()

export const enginesSpec: ExperimentSpec = {
  name: "engines",
  description: "The same ARPO run sampled by the embedded engine, llama.cpp in process and a launched llama-server",
  config: baseConfig,
  profiles: flagshipProfiles,
  arms: [
    { name: "embedded", sampler: "arpo" },
    { name: "llama-cpp", sampler: "arpo", components: { engine: llamaCppEngineOf } },
    { name: "llama-server", sampler: "arpo", components: { engine: llamaServerEngineOf } }
  ]
}

export const engines = define(enginesSpec)
