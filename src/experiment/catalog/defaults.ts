/**
 * The default configuration the built-in experiments share: the synthetic arithmetic task with the
 * calculator answering `<python>` calls, a tiny embedded model (~0.1M parameters) cold-started by SFT on
 * the task's demonstrations (20% deliberately imperfect), GRPO advantages with soft attribution and
 * the released ARPO loss, M = 8 trajectories per prompt. Sizes were chosen by measurement on a 2-core
 * CPU (docs/writing-an-experiment.md). It is data only.
 */
import type { RunConfigJson } from "../../run/config.ts"

export const baseConfig: RunConfigJson = {
  task: { name: "arithmetic", seed: 1, minDigits: 3, maxDigits: 4, operators: ["*"], companies: 300, imperfectShare: 0.2, reward: "arpo" },
  model: { vocab: 268, dModel: 64, layers: 2, heads: 4, mlpWidth: 128, context: 128, tiedHead: false, ropeTheta: 10000, normEps: 1e-5 },
  sft: { steps: 600, batchSize: 16, lr: 3e-3, microBatchRows: 16 },
  rl: {
    steps: 40,
    promptsPerStep: 8,
    promptPool: 100_000,
    lr: 2e-4,
    epochs: 1,
    miniBatches: 1,
    microBatchRows: 32,
    dynamicSampling: false,
    maxRefills: 2,
    async: 0
  },
  advantage: { estimator: { name: "grpo", eps: 1e-6 }, attribution: "soft", entropyAlpha: 0 },
  loss: { clipLow: 0.2, clipHigh: 0.2, dualClip: 3, balancedClip: false, klCoef: 0, klEstimator: "k3", aggregation: "token-mean", tisCap: 0 },
  // the settings of several samplers: each arm keeps those of the sampler it names (`rollout.name`)
  rollout: {
    name: "arpo",
    budget: 8,
    callLimit: 2,
    maxResponseTokens: 64,
    temperature: 1,
    topP: 1,
    initial: 4,
    alpha: 0.5,
    beta: 0.2,
    window: 8,
    branchFactor: 1,
    mode: "paper",
    // random-branch's constant branch probability
    probability: 0.5
  },
  // tags a task calls get the default tools (python: the calculator, search: BM25 over the task corpus)
  tools: { callFormat: "arpo-tags", tags: {} },
  eval: { every: 10, questions: 64, k: 4, maxResponseTokens: 64 },
  engine: { name: "embedded", maxSlots: 64 },
  trainer: { name: "embedded", workers: 1 },
  checkpointEvery: 5
}
