/**
 * Research script: one ARPO run, three engines. The arms differ only in the `engine` Layer (an arm's
 * `components`): the embedded jax-js engine, llama.cpp in process (node-llama-cpp, GGUF reload as weight
 * sync) and a llama-server arpo launches on the policy's GGUF (restart as weight sync). Needs
 * `scripts/llama-cpp` and `scripts/llama-server` (or ARPO_LLAMA_SERVER); without them those arms fail at
 * start naming what is missing.
 *
 * Reproduce: `arpo run engines --profile quick` (seed 1, 8 RL steps after the flagship's cached quick cold
 * start). Measured results: docs/engines.md.
 */
import { engines } from "../src/experiment/catalog/engines.ts"

export default engines
