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
import { define, type ExperimentSpec } from "../define.ts"
import { flagshipProfiles } from "./arpoVsGrpo.ts"
import { baseConfig } from "./defaults.ts"

export const enginesSpec: ExperimentSpec = {
  name: "engines",
  description: "The same ARPO run sampled by the embedded engine, llama.cpp in process and a launched llama-server",
  config: baseConfig,
  profiles: flagshipProfiles,
  arms: [
    { name: "embedded", sampler: "arpo" },
    // one sequence (slot) per embedded engine slot, as the embedded arm decodes
    { name: "llama-cpp", sampler: "arpo", set: { engine: { name: "llama-cpp", maxSlots: baseConfig.engine["maxSlots"] as number } } },
    { name: "llama-server", sampler: "arpo", set: { engine: { name: "llama-server", maxSlots: baseConfig.engine["maxSlots"] as number } } }
  ]
}

export const engines = define(enginesSpec)
