/**
 * A tiny embedded policy with a known entropy profile, for the integration tests and the benchmark:
 * a few SFT steps on demos where the root response is determined by the prompt (`<python>7*7</python>`,
 * low entropy) and the text right after the tool result is random letters (high entropy), so ΔH > 0
 * where ARPO measures it. Real tokenizer (tags are single tokens), real calculator tool.
 */
import { derive, intBelow, root, uniform } from "../../src/core/random.ts"
import { type TokenId, tokenIds } from "../../src/core/tokens.ts"
import type { ModelConfig } from "../../src/model/config.ts"
import { Policy } from "../../src/model/policy.ts"
import { ensureBackend } from "../../src/model/runtime.ts"
import { byteTokenizer, padId, vocabSize } from "../../src/model/tokenizer.ts"
import { Learner } from "../../src/model/train.ts"
import { formatResult } from "../../src/tools/protocol.ts"

export const tinyRolloutConfig: ModelConfig = {
  vocab: vocabSize,
  dModel: 48,
  layers: 1,
  heads: 4,
  mlpWidth: 96,
  context: 128,
  tiedHead: false,
  ropeTheta: 10000,
  normEps: 1e-5
}

export const promptText = (d: number): string => `Q${d}?`
export const promptTokens = (d: number): ReadonlyArray<TokenId> => byteTokenizer.encode(promptText(d))

/** One demonstration: prompt, call, result (as the Toolbox formats it), random letters, answer, EOS. */
export const demo = (d: number, key: ReturnType<typeof root>) => {
  const call = `<python>${d}*${d}</python>`
  const result = formatResult(String(d * d))
  let letters = ""
  for (let i = 0; i < 6; i++) letters += String.fromCharCode(97 + intBelow(uniform(key, i), 16))
  const tail = `${letters}<answer>${d * d}</answer>`
  const p = promptTokens(d)
  const c = byteTokenizer.encode(call)
  const r = byteTokenizer.encode(result)
  const t = [...byteTokenizer.encode(tail), byteTokenizer.eos]
  const tokens = [...p, ...c, ...r, ...t]
  const lossMask = [...p.map(() => 0), ...c.map(() => 1), ...r.map(() => 0), ...t.map(() => 1)]
  return { tokens, lossMask }
}

/** Train the tiny policy for `steps` SFT steps (deterministic: fixed keys). */
export const trainTinyPolicy = async (steps = 60, config: ModelConfig = tinyRolloutConfig): Promise<Policy> => {
  await ensureBackend()
  const policy = Policy.init(config, derive(root(5), "rollout-test-model"))
  const learner = new Learner(policy, { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
  for (let s = 0; s < steps; s++) {
    const batch = Array.from({ length: 16 }, (_, i) => demo(1 + ((s * 16 + i) % 9), derive(root(6), s, i)))
    learner.sftStep(batch, 16, padId)
  }
  return policy
}

export const prompts = (n: number): ReadonlyArray<ReadonlyArray<TokenId>> =>
  Array.from({ length: n }, (_, i) => tokenIds(promptTokens(1 + (i % 9))))
