/**
 * Configuration of the embedded llama-style policy (decoder-only: RMSNorm, rotary positions, SwiGLU
 * MLP, tied or untied head), as a Schema so a run's config file is checked before any weight exists.
 * It also names the two reference sizes (`tinyConfig`, ~0.5M parameters, and `smallConfig`, ~4×).
 * It does not hold weights (see params.ts) nor decide the tokenizer (see tokenizer.ts).
 */
import { Schema } from "effect"

const Positive = Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0)))

export const ModelConfig = Schema.Struct({
  /** vocabulary size (the embedded tokenizer has 268: 256 bytes + 10 tags + EOS + PAD) */
  vocab: Positive,
  dModel: Positive,
  layers: Positive,
  heads: Positive,
  /** hidden width of the SwiGLU MLP (gate and up projections) */
  mlpWidth: Positive,
  /** maximum sequence length (KV cache size); a multiple of 16 */
  context: Positive,
  /** share the output head with the token embedding */
  tiedHead: Schema.Boolean,
  /** rotary base θ: frequency i of a head is θ^(−2i/headDim) */
  ropeTheta: Schema.Finite,
  normEps: Schema.Finite
})
export type ModelConfig = typeof ModelConfig.Type

/** Typed failure for a config the model cannot be built from. */
export class InvalidModelConfig extends Schema.TaggedError<InvalidModelConfig>()("InvalidModelConfig", {
  message: Schema.String
}) {}

/** ~0.5M parameters: trains a synthetic task in minutes on one core. */
export const tinyConfig: ModelConfig = {
  vocab: 268,
  dModel: 128,
  layers: 2,
  heads: 4,
  mlpWidth: 384,
  context: 256,
  tiedHead: false,
  ropeTheta: 10000,
  normEps: 1e-5
}

/** ~4× the tiny model (wider and deeper), for the benchmark's second size. */
export const smallConfig: ModelConfig = {
  ...tinyConfig,
  dModel: 192,
  layers: 4,
  heads: 6,
  mlpWidth: 512
}

export const headDim = (c: ModelConfig): number => c.dModel / c.heads

/** Checks what the Schema cannot: divisibility of the head size, even rotary pairs, context multiple of 16. */
export const validateConfig = (c: ModelConfig): InvalidModelConfig | undefined => {
  const bad = (message: string) => new InvalidModelConfig({ message: `model config: ${message}` })
  if (c.dModel % c.heads !== 0) return bad(`dModel ${c.dModel} is not divisible by heads ${c.heads}`)
  if (headDim(c) % 2 !== 0) return bad(`head size ${headDim(c)} is odd (rotary pairs need it even)`)
  if (c.context % 16 !== 0) return bad(`context ${c.context} is not a multiple of 16`)
  if (!(c.normEps > 0)) return bad(`normEps ${c.normEps} must be positive`)
  if (!(c.ropeTheta > 1)) return bad(`ropeTheta ${c.ropeTheta} must be > 1`)
  return undefined
}

/** Number of trainable parameters. */
export const parameterCount = (c: ModelConfig): number => {
  const d = c.dModel
  const perLayer = 2 * d + 4 * d * d + 3 * d * c.mlpWidth
  return c.vocab * d + c.layers * perLayer + d + (c.tiedHead ? 0 : d * c.vocab)
}
