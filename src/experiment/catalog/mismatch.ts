/**
 * The experiment `mismatch`: does a training/inference log-prob mismatch hurt ARPO here, and does truncated
 * importance sampling (TIS) repair it? Rollouts come from llama.cpp in process, which samples with the
 * embedded rule and the same keys, so the only difference between the arms is the precision of llama.cpp's
 * KV cache: F32 (mismatch ~1e-7, the control) or F16 (the default of most servers, ~1e-3), and F16 with
 * TIS (`loss.tisCap`). The embedded trainer recomputes π_old under TIS; the `train.step` events and the
 * report show the mismatch and the mean TIS weight per step. Needs scripts/llama-cpp.
 */
import { define, type ExperimentSpec } from "../define.ts"
import { flagshipProfiles } from "./arpoVsGrpo.ts"
import { baseConfig } from "./defaults.ts"

/**
 * llama.cpp in process (serving the GGUF the run loads) with the given KV-cache precision. (Quantized caches
 * need a head size divisible by 32; the embedded default has 16, so F16 is the lowest precision it can take.)
 */
const llamaCppWithKv = (kvCache: "F32" | "F16") => ({ engine: { name: "llama-cpp", maxSlots: baseConfig.engine["maxSlots"] as number, kvCache } })

export const mismatchSpec: ExperimentSpec = {
  name: "mismatch",
  description: "llama.cpp rollouts with an F32 vs F16 KV cache, and F16 with truncated importance sampling",
  config: baseConfig,
  profiles: flagshipProfiles,
  arms: [
    { name: "kv-f32", sampler: "arpo", set: llamaCppWithKv("F32") },
    { name: "kv-f16", sampler: "arpo", set: llamaCppWithKv("F16") },
    { name: "kv-f16-tis", sampler: "arpo", set: { ...llamaCppWithKv("F16"), loss: { tisCap: 2 } } }
  ]
}

export const mismatch = define(mismatchSpec)
