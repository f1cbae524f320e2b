/**
 * Research script: does the training/inference log-prob mismatch matter here, and does truncated importance
 * sampling repair it? ARPO rollouts from llama.cpp in process with an F32 KV cache (control), an F16 KV cache,
 * and an F16 KV cache with TIS (`loss.tisCap = 2`). llama.cpp samples with the embedded rule and the same keys,
 * so the KV precision is the only difference. Needs scripts/llama-cpp.
 *
 * Reproduce: `arpo run mismatch --profile quick`. Measured results: docs/engines.md.
 */
import { mismatch } from "../src/experiment/catalog/mismatch.ts"

export default mismatch
