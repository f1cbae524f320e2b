/**
 * The PolicyWeights value: what a trainer hands over after a step and an engine loads (DESIGN.md "Weights
 * are an explicit step"). A version, a format (`embedded` jax-js layout, Hugging Face `hf` / `hf-lora`,
 * `gguf`) and where the weights are: an in-process handle (colocated engine and trainer: loading is a
 * version bump) or a path on disk. Also the format negotiation between an engine and a trainer and its
 * typed error. Data only: it reads, writes and converts nothing.
 */
import { Schema } from "effect"

export const WeightsFormat = Schema.Literals(["embedded", "hf", "hf-lora", "gguf"])
export type WeightsFormat = typeof WeightsFormat.Type

/** Where the weights are: an in-process handle (its meaning is the format's) or a file/directory path. */
export type WeightsLocation =
  | { readonly _tag: "handle"; readonly handle: unknown }
  | { readonly _tag: "path"; readonly path: string }

export interface PolicyWeights {
  /** the policy version these weights are (a trainer bumps it once per `train` / `sft` call) */
  readonly version: number
  readonly format: WeightsFormat
  readonly location: WeightsLocation
  /** the size of the weights in bytes, when the producer knows it (tensor bytes of a handle, file size of a path) */
  readonly bytes?: number
}

/** Weights held in this process (the handle's type is the format's business). */
export const handleWeights = (version: number, format: WeightsFormat, handle: unknown, bytes?: number): PolicyWeights => ({
  version,
  format,
  location: { _tag: "handle", handle },
  ...(bytes === undefined ? {} : { bytes })
})

/** Weights on disk. */
export const pathWeights = (version: number, format: WeightsFormat, path: string, bytes?: number): PolicyWeights => ({
  version,
  format,
  location: { _tag: "path", path },
  ...(bytes === undefined ? {} : { bytes })
})

/** A short description for messages: `gguf v3 at runs/x/weights.gguf`, `embedded v0 (in-process)`. */
export const describeWeights = (w: PolicyWeights): string =>
  `${w.format} v${w.version}${w.location._tag === "path" ? ` at ${w.location.path}` : " (in-process)"}`

/** An engine cannot load any format its trainer can produce (or was handed one it does not accept). */
export class WeightsFormatUnsupported extends Schema.TaggedError<WeightsFormatUnsupported>()("WeightsFormatUnsupported", {
  engine: Schema.String,
  accepts: Schema.Array(Schema.String),
  trainer: Schema.String,
  produces: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `engine ${this.engine} loads ${this.accepts.length === 0 ? "no weights" : this.accepts.join(" | ")} but trainer ${this.trainer} produces ${
      this.produces.join(" | ")
    }: no format in common`
  }
}

/**
 * The format a run syncs in: the first format the engine accepts that the trainer can produce (engines
 * list their cheapest first, e.g. an in-process handle before a file), or undefined when there is none.
 */
export const syncFormat = (accepts: ReadonlyArray<WeightsFormat>, produces: ReadonlyArray<WeightsFormat>): WeightsFormat | undefined =>
  accepts.find((f) => produces.includes(f))
