/**
 * The policy's weights: their names and shapes (one fixed order, used by checkpoints), keyed
 * deterministic initialization, and conversion between host tensors (typed arrays) and jax-js arrays.
 * Matrices are stored [in, out] (x @ W); a GGUF/HF export transposes them. It does not run the model.
 */
import { numpy as np } from "@jax-js/jax"
import { derive, type Key, normal } from "../core/random.ts"
import { type ModelConfig } from "./config.ts"

export type LayerParams = {
  attnNorm: np.Array
  wq: np.Array
  wk: np.Array
  wv: np.Array
  wo: np.Array
  mlpNorm: np.Array
  wGate: np.Array
  wUp: np.Array
  wDown: np.Array
}

/** A jax-js pytree. `head` is empty when the head is tied to `embed`. */
export type Params = {
  embed: np.Array
  layers: Array<LayerParams>
  finalNorm: np.Array
  head: Array<np.Array>
}

export type DTypeName = "float32" | "float64"

/** A named tensor on the host. */
export interface HostTensor {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array | Float64Array
}

interface Spec {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  /** "ones" for norm gains; otherwise the standard deviation of a normal init */
  readonly init: "ones" | number
}

const layerKeys = ["attnNorm", "wq", "wk", "wv", "wo", "mlpNorm", "wGate", "wUp", "wDown"] as const

/** Every tensor in checkpoint order. */
export const specs = (c: ModelConfig): ReadonlyArray<Spec> => {
  const d = c.dModel
  const m = c.mlpWidth
  const resid = 1 / Math.sqrt(2 * c.layers) // GPT-2 style scaling of residual projections
  const out: Array<Spec> = [{ name: "embed", shape: [c.vocab, d], init: 0.05 }]
  for (let l = 0; l < c.layers; l++) {
    const p = `layers.${l}.`
    out.push(
      { name: p + "attnNorm", shape: [d], init: "ones" },
      { name: p + "wq", shape: [d, d], init: 1 / Math.sqrt(d) },
      { name: p + "wk", shape: [d, d], init: 1 / Math.sqrt(d) },
      { name: p + "wv", shape: [d, d], init: 1 / Math.sqrt(d) },
      { name: p + "wo", shape: [d, d], init: resid / Math.sqrt(d) },
      { name: p + "mlpNorm", shape: [d], init: "ones" },
      { name: p + "wGate", shape: [d, m], init: 1 / Math.sqrt(d) },
      { name: p + "wUp", shape: [d, m], init: 1 / Math.sqrt(d) },
      { name: p + "wDown", shape: [m, d], init: resid / Math.sqrt(m) }
    )
  }
  out.push({ name: "finalNorm", shape: [d], init: "ones" })
  if (!c.tiedHead) out.push({ name: "head", shape: [d, c.vocab], init: 1 / Math.sqrt(d) })
  return out
}

const size = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

/**
 * Normals for initialization: a splitmix32 sequence seeded by the tensor's key (a pure function of
 * the key and the index, like the core's streams, but ~50× cheaper per draw for 10⁶ weights),
 * through Box–Muller. The first draw also mixes in the core's `normal(key, 0)`, tying it to that API.
 */
const fillNormal = (data: Float32Array, key: Key, std: number): void => {
  let state = (key.k0 ^ Math.imul(key.k1, 0x9e3779b1) ^ Math.round(normal(key, 0) * 1e6)) >>> 0
  const next = () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad)
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97)
    return ((z ^ (z >>> 15)) >>> 0) / 4294967296
  }
  for (let i = 0; i < data.length; i++) {
    const u1 = next()
    const u2 = next()
    data[i] = Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2) * std
  }
}

/** Deterministic initial weights: tensor `name` is drawn from the key derive(key, "init", name). */
export const initHost = (c: ModelConfig, key: Key): ReadonlyArray<HostTensor> =>
  specs(c).map((s) => {
    const data = new Float32Array(size(s.shape))
    if (s.init === "ones") data.fill(1)
    else fillNormal(data, derive(key, "init", s.name), s.init)
    return { name: s.name, shape: s.shape, data }
  })

/** Flat leaves in checkpoint order (borrowed: no refcount change). */
export const leaves = (p: Params): Array<np.Array> => {
  const out: Array<np.Array> = [p.embed]
  for (const l of p.layers) for (const k of layerKeys) out.push(l[k])
  out.push(p.finalNorm, ...p.head)
  return out
}

/** Rebuilds the pytree from leaves in checkpoint order (takes ownership of the leaves). */
export const fromLeaves = (c: ModelConfig, xs: ReadonlyArray<np.Array>): Params => {
  let i = 0
  const next = () => xs[i++]!
  const embed = next()
  const layers: Array<LayerParams> = []
  for (let l = 0; l < c.layers; l++) {
    const layer = {} as LayerParams
    for (const k of layerKeys) layer[k] = next()
    layers.push(layer)
  }
  const finalNorm = next()
  const head = c.tiedHead ? [] : [next()]
  return { embed, layers, finalNorm, head }
}

/** Uploads host tensors (checked against the config's shapes). */
export const toDevice = (c: ModelConfig, host: ReadonlyArray<HostTensor>, dtype: DTypeName = "float32"): Params => {
  const ss = specs(c)
  if (host.length !== ss.length) throw new RangeError(`params: expected ${ss.length} tensors, got ${host.length}`)
  const arrays = ss.map((s, i) => {
    const h = host[i]!
    if (h.name !== s.name || h.shape.join(",") !== s.shape.join(",")) {
      throw new RangeError(`params: tensor ${i} is ${h.name}[${h.shape}], expected ${s.name}[${s.shape}]`)
    }
    const data = dtype === "float64" ? Float64Array.from(h.data) : Float32Array.from(h.data)
    return np.array(data, { shape: [...s.shape], dtype: dtype === "float64" ? np.float64 : np.float32 })
  })
  return fromLeaves(c, arrays)
}

/** Downloads the weights (does not consume them). */
export const toHost = (c: ModelConfig, p: Params): ReadonlyArray<HostTensor> => {
  const ss = specs(c)
  return leaves(p).map((a, i) => {
    const raw = a.ref.dataSync()
    const data = raw instanceof Float64Array ? Float64Array.from(raw) : Float32Array.from(raw as ArrayLike<number>)
    return { name: ss[i]!.name, shape: ss[i]!.shape, data }
  })
}

/** Adds one to every leaf's refcount (a borrowed copy for a consuming call). */
export const refParams = (p: Params): Params => ({
  embed: p.embed.ref,
  layers: p.layers.map((l) => {
    const o = {} as LayerParams
    for (const k of layerKeys) o[k] = l[k].ref
    return o
  }),
  finalNorm: p.finalNorm.ref,
  head: p.head.map((h) => h.ref)
})

export const disposeParams = (p: Params): void => {
  for (const a of leaves(p)) a.dispose()
}
