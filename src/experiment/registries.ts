/**
 * One registry per extension point (DESIGN.md "Registries"): samplers, advantage estimators, tools,
 * engines, trainers and tasks. An entry is `{ name, config, layer }`: `config` a Schema.Struct whose
 * fields all have defaults (so `{}` is a valid config), `layer` what the run composes from a decoded
 * config. A run config's component section (`rollout`, `advantage.estimator`, `tools.tags.<tag>`,
 * `engine`, `trainer`, `task`) is the union of the registered configs tagged by `name`: `sectionUnion`
 * builds it and `decodeSection` decodes one section by its name, so an unknown key fails with that
 * component's own key list. Experiment files add entries by value (`ExperimentSpec.register`). This module
 * builds nothing by itself and knows no component outside the built-in entries below.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { derive, root } from "../core/random.ts"
import * as Advantage from "../core/advantage.ts"
import { Engine } from "../engine/Engine.ts"
import * as EmbeddedEngine from "../engine/embedded.ts"
import * as LlamaCpp from "../engine/llamaCpp.ts"
import * as LlamaServer from "../engine/llamaServer.ts"
import * as TorchEngine from "../engine/torch.ts"
import type { Events } from "../events/Events.ts"
import { writeCheckpoint } from "../model/checkpoint.ts"
import { initHost } from "../model/params.ts"
import { byteTokenizer } from "../model/tokenizer.ts"
import { defaultAdamW } from "../model/train.ts"
import { layerAepo } from "../rollout/aepo.ts"
import { layerArpo } from "../rollout/arpo.ts"
import { AepoConfig, ArpoConfig, GlobalConfig, RandomBranchConfig } from "../rollout/config.ts"
import { layerGlobal } from "../rollout/global.ts"
import { layerRandomBranch } from "../rollout/randomBranch.ts"
import type { Sampler } from "../rollout/Sampler.ts"
import { ConfigInvalid, type RunConfig, type Section, trainOptionsOf } from "../run/config.ts"
import { type AdvantageEstimator, fromEstimator } from "../run/estimator.ts"
import * as Arithmetic from "../tasks/arithmetic.ts"
import * as Arpo from "../tasks/arpo.ts"
import * as FlakyArithmetic from "../tasks/flakyArithmetic.ts"
import * as Multihop from "../tasks/multihop.ts"
import * as NoisySearch from "../tasks/noisySearch.ts"
import * as PointerChase from "../tasks/pointerChase.ts"
import type { TaskDefinition } from "../tasks/Task.ts"
import * as Calculator from "../tools/calculator.ts"
import * as Python from "../tools/python.ts"
import * as Search from "../tools/search.ts"
import type { Tool } from "../tools/Tool.ts"
import type { Toolbox } from "../tools/Toolbox.ts"
import * as EmbeddedTrainer from "../trainer/embedded.ts"
import * as HfPytorch from "../trainer/hfPytorch.ts"
import * as Pytorch from "../trainer/pytorch.ts"
import type { Policy } from "../model/policy.ts"
import { type InitialWeights, Trainer } from "../trainer/Trainer.ts"
import { workerPython } from "../trainer/workerSession.ts"

/** A Schema.Struct of settings, every field with a decoding default. */
export type ConfigSchema = Schema.Struct<Schema.Struct.Fields>

/** One registered component: its name, its settings Schema (with defaults), and what the run builds from them. */
export interface Entry<Built, Context> {
  readonly name: string
  readonly config: ConfigSchema
  readonly layer: (config: any, context: Context) => Built
}

/** An entry whose `layer` sees its config decoded by its own Schema (the type is checked where it is written). */
export const entry = <F extends Schema.Struct.Fields, Built, Context>(
  name: string,
  config: Schema.Struct<F>,
  layer: (config: Schema.Struct<F>["Type"], context: Context) => Built
): Entry<Built, Context> => ({ name, config: config as unknown as ConfigSchema, layer })

/** A sampler: the Sampler layer over the run's engine and toolbox. */
export type SamplerEntry = Entry<Layer.Layer<Sampler, unknown, Engine | Toolbox | Events>, { readonly run: RunConfig }>
/** An advantage estimator: per-trajectory advantages from rewards and groups. */
export type EstimatorEntry = Entry<Layer.Layer<AdvantageEstimator>, { readonly run: RunConfig }>
/** A tool answering one call tag of the task (`tag` is the name the model calls it by). */
export type ToolEntry = Entry<Tool, { readonly run: RunConfig; readonly task: TaskDefinition; readonly tag: string }>
/** An engine: it serves what the run's weight sync loads into it. */
export type EngineEntry = Entry<Layer.Layer<Engine, unknown, Events>, { readonly run: RunConfig }>
/** A trainer starting from the run's initial weights. */
export type TrainerEntry = Entry<Layer.Layer<Trainer, unknown, Events>, { readonly run: RunConfig; readonly initial: InitialWeights }>
/** A task: its prompts and reward. */
export type TaskEntry = Entry<Effect.Effect<TaskDefinition, unknown>, { readonly run: RunConfig }>

type Built<E> = E extends Entry<infer B, infer _C> ? B : never
type ContextOf<E> = E extends Entry<infer _B, infer C> ? C : never
const typed = <E extends Entry<any, any>>() =>
<F extends Schema.Struct.Fields>(name: string, config: Schema.Struct<F>, layer: (config: Schema.Struct<F>["Type"], context: ContextOf<E>) => Built<E>): E =>
  entry(name, config, layer) as unknown as E

/** A sampler entry: `sampler(name, ConfigSchema, (config, { run }) => Layer<Sampler>)`. */
export const sampler = typed<SamplerEntry>()
/** An advantage estimator entry: `estimator(name, ConfigSchema, (config) => Layer<AdvantageEstimator>)`. */
export const estimator = typed<EstimatorEntry>()
/** A tool entry: `tool(name, ConfigSchema, (config, { task, tag }) => Tool)`. */
export const tool = typed<ToolEntry>()
/** An engine entry: `engine(name, ConfigSchema, (config, { run }) => Layer<Engine>)`. */
export const engine = typed<EngineEntry>()
/** A trainer entry: `trainer(name, ConfigSchema, (config, { run, initial }) => Layer<Trainer>)`. */
export const trainer = typed<TrainerEntry>()
/** A task entry: `task(name, ConfigSchema, (config, { run }) => Effect<TaskDefinition>)`. */
export const task = typed<TaskEntry>()

export interface Registries {
  readonly sampler: ReadonlyArray<SamplerEntry>
  readonly estimator: ReadonlyArray<EstimatorEntry>
  readonly tool: ReadonlyArray<ToolEntry>
  readonly engine: ReadonlyArray<EngineEntry>
  readonly trainer: ReadonlyArray<TrainerEntry>
  readonly task: ReadonlyArray<TaskEntry>
}

export type Kind = keyof Registries

/** What an experiment file adds (by value); an entry with a built-in's name replaces it for that experiment. */
export type Registrations = { readonly [K in Kind]?: Registries[K] }

// ---------------------------------------------------------------------------------------------------------------------
// the built-in entries

const withDefault = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, value: S["Type"]) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed(value)))
const Int = (min: number) => Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(min)))
const Unit = Schema.Finite.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 })))
const Reward = Schema.Literals(["arpo", "exact", "math"])

/** N ≤ M for the samplers that start N global samples (AEPO only with its fixed split). */
const initialWithinBudget = Schema.makeFilter((c: { readonly initial: number; readonly budget: number; readonly initialSplit?: string }) =>
  c.initialSplit !== undefined && c.initialSplit !== "fixed" || c.initial <= c.budget
    ? undefined
    : `initial (N = ${c.initial}) exceeds budget (M = ${c.budget})`
)

/** The embedded engine, empty until the run's WeightSync loads the trainer's weights. */
const embeddedEngine = (maxSlots: number, threads = 1, kernels: "jax" | "native" = "jax"): Layer.Layer<Engine, unknown, Events> =>
  EmbeddedEngine.layerEmbedded(undefined, { maxSlots, threads, ...(kernels === "native" ? { kernels } : {}) })

/** The embedded engine of a run config (its `engine.maxSlots`, default 64, and `engine.threads`, default 1): the registered `embedded` engine's layer. */
export const embeddedEngineOf = (config: RunConfig): Layer.Layer<Engine, unknown, Events> =>
  embeddedEngine(
    typeof config.engine["maxSlots"] === "number" ? config.engine["maxSlots"] : 64,
    typeof config.engine["threads"] === "number" ? config.engine["threads"] : 1,
    config.engine["kernels"] === "native" ? "native" : "jax"
  )

/**
 * The embedded trainer of a run config from initial weights (or a model Policy its caller hands over): the registered
 * `embedded` trainer's layer (AdamW at `rl.lr`, no weight decay, the run's train options; `workers` gradient threads,
 * policy steps on packed trees with `treePacking`).
 */
export const embeddedTrainerOf = (
  config: RunConfig,
  initial: InitialWeights | Policy,
  options: { readonly workers?: number; readonly treePacking?: boolean; readonly kernels?: "jax" | "native" } = {}
): Layer.Layer<Trainer, never, Events> =>
  EmbeddedTrainer.layerEmbedded(initial, {
    adam: { ...defaultAdamW, lr: config.rl.lr, weightDecay: 0 },
    train: trainOptionsOf(config),
    ...(options.workers !== undefined && options.workers > 1 ? { workers: options.workers } : {}),
    ...(options.treePacking === true ? { treePacking: true } : {}),
    ...(options.kernels === "native" ? { kernels: "native" as const } : {})
  })

export const samplers: ReadonlyArray<SamplerEntry> = [
  entry("global", GlobalConfig, (c) => layerGlobal(c)),
  entry("arpo", ArpoConfig.pipe(Schema.check(initialWithinBudget)), (c) => layerArpo(c)),
  entry("aepo", AepoConfig.pipe(Schema.check(initialWithinBudget)), (c) => layerAepo(c)),
  entry("random-branch", RandomBranchConfig.pipe(Schema.check(initialWithinBudget)), (c) => layerRandomBranch(c))
]

const Eps = Schema.Struct({ eps: withDefault(Schema.Finite.pipe(Schema.check(Schema.isGreaterThan(0))), Advantage.GRPO_EPS) })
export const estimators: ReadonlyArray<EstimatorEntry> = [
  entry("grpo", Eps, (c) => fromEstimator("grpo", Advantage.grpo, { eps: c.eps })),
  entry("dr_grpo", Schema.Struct({}), () => fromEstimator("dr_grpo", Advantage.drGrpo)),
  entry("rloo", Schema.Struct({}), () => fromEstimator("rloo", Advantage.rloo)),
  entry("reinforce_plus_plus_baseline", Eps, (c) => fromEstimator("reinforce_plus_plus_baseline", Advantage.reinforcePlusPlusBaseline, { eps: c.eps }))
]

export const tools: ReadonlyArray<ToolEntry> = [
  // the safe calculator: enough for the synthetic tasks' integer expressions, no sandbox needed
  entry("calculator", Schema.Struct({}), (_c, { tag }) => Calculator.tool({ name: tag })),
  // python3 in the sandbox, from pre-started single-use sandboxes (docs/tools.md); what ARPO's data needs
  entry("python", Python.SandboxedPythonConfig, (c, { tag }) => Python.toolNow(c, tag)),
  // BM25 over the task's own corpus
  entry("search", Schema.Struct({ maxResults: withDefault(Int(1), 2) }), (c, { task, tag }) =>
    Search.tool([Search.corpusBackend(task.corpus)], { name: tag, maxResults: c.maxResults }))
]

export const engines: ReadonlyArray<EngineEntry> = [
  entry(
    "embedded",
    Schema.Struct({
      maxSlots: withDefault(Int(1), 64),
      /** sampling threads: the main thread plus threads − 1 sampler workers; the same tokens for the same keys (docs/embedded-model.md) */
      threads: withDefault(Int(1), 1),
      /** which model samples: jax-js's or the hand-written native one (docs/native-decode.md) */
      kernels: withDefault(Schema.Literals(["jax", "native"]), "jax")
    }),
    (c) => embeddedEngine(c.maxSlots, c.threads, c.kernels)
  ),
  entry(
    "llama-cpp",
    Schema.Struct({
      maxSlots: withDefault(Int(1), 8),
      threads: withDefault(Int(1), 1),
      kvCache: withDefault(Schema.Literals(["F32", "F16"]), "F32")
    }),
    (c, { run }) => LlamaCpp.layerLoadable({ sequences: c.maxSlots, threads: c.threads, kvCache: c.kvCache, contextSize: run.model.context })
  ),
  entry(
    "llama-server",
    Schema.Struct({ maxSlots: withDefault(Int(1), 8), threads: withDefault(Int(1), 1) }),
    (c, { run }) => LlamaServer.layerManaged({ context: run.model.context, server: { parallel: c.maxSlots, threads: c.threads } })
  ),
  // the torch engine (src/engine/torch.ts) in a PyTorch worker of its own, on the embedded model: it loads weights by
  // path, so pair it with a trainer that hands them over as files (`pytorch`); the embedded trainer's in-process
  // handle is refused at the first weight sync, naming both
  entry(
    "torch",
    Schema.Struct({
      /** the interpreter ("": ARPO_PYTHON, else Debian's /usr/bin/python3, else python3 on PATH) */
      python: withDefault(Schema.String, ""),
      device: withDefault(Schema.Literals(["cpu", "cuda", "auto"]), "cpu"),
      /** rows decoded together */
      maxBatch: withDefault(Int(1), 64)
    }),
    (c, { run }) => torchEngineOf(run, { python: c.python !== "" ? c.python : workerPython(), device: c.device, maxBatch: c.maxBatch })
  )
]

/**
 * The standalone torch engine on the run's embedded model. The worker starts on placeholder weights (the model
 * initialised from seed 0, written to a private file removed with the scope); the run's weight sync loads the
 * trainer's before the first rollout.
 */
const torchEngineOf = (
  run: RunConfig,
  options: { readonly python: string; readonly device: "cpu" | "cuda" | "auto"; readonly maxBatch: number }
): Layer.Layer<Engine, unknown, Events> =>
  Layer.effect(
    Engine,
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "arpo-torch-engine-"))),
        (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
      )
      const file = NodePath.join(dir, "initial.safetensors")
      yield* Effect.sync(() => writeCheckpoint(file, { config: run.model, policyVersion: 0, step: 0, params: initHost(run.model, derive(root(0), "model")) }))
      return yield* TorchEngine.makeStandalone({
        tokenizer: byteTokenizer,
        maxBatch: options.maxBatch,
        load: { format: "embedded", path: file, device: options.device },
        worker: { python: options.python }
      })
    })
  ).pipe(Layer.provide(NodeServices.layer))

export const trainers: ReadonlyArray<TrainerEntry> = [
  entry(
    "embedded",
    Schema.Struct({
      /** threads computing each policy step's gradients (the main thread plus workers − 1) */
      workers: withDefault(Int(1), 1),
      /** train policy steps on packed rollout trees (docs/tree-packing.md); equal up to float rounding, so off by default */
      treePacking: withDefault(Schema.Boolean, false),
      /** gradients by jax-js ("jax") or by the hand-written model of src/model/native/ (docs/native-trainer.md); equal up to float rounding */
      kernels: withDefault(Schema.Literals(["jax", "native"]), "jax")
    }),
    (c, { run, initial }) => embeddedTrainerOf(run, initial, c)
  ),
  entry(
    "pytorch",
    Schema.Struct({
      /** the interpreter ("": ARPO_PYTHON, else Debian's /usr/bin/python3, else python3 on PATH) */
      python: withDefault(Schema.String, ""),
      device: withDefault(Schema.Literals(["cpu", "cuda", "auto"]), "cpu")
    }),
    (c, { run, initial }) =>
      Pytorch.layerPytorch({
        initial,
        python: c.python !== "" ? c.python : workerPython(),
        device: c.device,
        adam: { ...defaultAdamW, lr: run.rl.lr, weightDecay: 0 },
        train: trainOptionsOf(run)
      }).pipe(Layer.provide(NodeServices.layer))
  ),
  // a Hugging Face checkpoint (Llama / Qwen2 / Qwen3) in the PyTorch worker (docs/hf-models.md): it starts from
  // `path`, not from the run's embedded initial weights, so pair it with an engine that uses the checkpoint's
  // tokenizer (the torch engine colocated, or llama.cpp on its GGUF)
  entry(
    "pytorch-hf",
    Schema.Struct({
      /** the checkpoint directory (config.json, model.safetensors or a sharded index, tokenizer files) */
      path: withDefault(Schema.String, ""),
      python: withDefault(Schema.String, ""),
      device: withDefault(Schema.Literals(["cpu", "cuda", "auto"]), "auto"),
      /** "auto": bfloat16 autocast on CUDA, float32 on CPU */
      dtype: withDefault(Schema.Literals(["auto", "float32", "bfloat16", "float16"]), "auto"),
      /** LoRA rank (0: full fine-tuning), alpha and wrapped modules */
      loraRank: withDefault(Int(0), 0),
      loraAlpha: withDefault(Schema.Finite, 16),
      loraTargets: withDefault(Schema.Array(Schema.String), ["q_proj", "k_proj", "v_proj", "o_proj"]),
      activationCheckpointing: withDefault(Schema.Boolean, false)
    }),
    (c, { run }) =>
      c.path === ""
        ? Layer.effect(Trainer, Effect.fail(new ConfigInvalid({ key: "trainer.path", message: "trainer.path: pytorch-hf needs a Hugging Face checkpoint directory" })))
        : HfPytorch.layerHf({
          hfModel: c.path,
          python: c.python !== "" ? c.python : workerPython(),
          device: c.device,
          ...(c.dtype !== "auto" ? { dtype: c.dtype } : {}),
          ...(c.loraRank > 0 ? { lora: { r: c.loraRank, alpha: c.loraAlpha, targetModules: c.loraTargets } } : {}),
          activationCheckpointing: c.activationCheckpointing,
          adam: { ...defaultAdamW, lr: run.rl.lr, weightDecay: 0 },
          train: trainOptionsOf(run)
        })
  )
]

/** The worker interpreter (ARPO_PYTHON, else Debian's /usr/bin/python3, else python3 on PATH). */
export { workerPython }

const seed = withDefault(Schema.Int, 1)
const imperfectShare = withDefault(Unit, 0.2)
const reward = withDefault(Reward, "arpo")
export const tasks: ReadonlyArray<TaskEntry> = [
  entry(
    "arithmetic",
    Schema.Struct({
      seed,
      /** operand digits, inclusive (minDigits ≤ maxDigits ≤ 7) */
      minDigits: withDefault(Int(1), 3),
      maxDigits: withDefault(Int(1), 4),
      operators: withDefault(Schema.Array(Schema.Literals(["*", "+", "-"])), ["*"]),
      /** share of deliberately imperfect SFT demonstrations (leaves room for RL) */
      imperfectShare,
      reward
    }).pipe(Schema.check(Schema.makeFilter((c) => (c.minDigits <= c.maxDigits && c.maxDigits <= 7 ? undefined : "digits must satisfy minDigits <= maxDigits <= 7")))),
    (c) => Arithmetic.fromConfig(c)
  ),
  entry(
    "multihop",
    Schema.Struct({ seed, companies: withDefault(Int(4), 300), imperfectShare, reward }),
    (c) => Multihop.fromConfig(c)
  ),
  entry(
    "flaky-arithmetic",
    Schema.Struct({ seed, failureRate: withDefault(Unit, 0.3), minDigits: withDefault(Int(1), 3), maxDigits: withDefault(Int(1), 4) }),
    (c) => FlakyArithmetic.fromConfig(c)
  ),
  entry(
    "noisy-search",
    Schema.Struct({
      seed,
      lookalikes: withDefault(Int(0), 2),
      missingRate: withDefault(Unit, 0.25),
      // optional, absent by default (so existing configs and cold-start cache keys stay as they were): src/tasks/noisySearch.ts
      lookalikeStyle: Schema.optionalKey(Schema.Literals(["letter", "first", "random"])),
      ranked: Schema.optionalKey(Schema.Union([Schema.Boolean, Schema.Literal("last")])),
      padMissing: Schema.optionalKey(Schema.Boolean),
      wrongShare: Schema.optionalKey(Unit),
      missWrongShare: Schema.optionalKey(Unit)
    }),
    (c) => NoisySearch.fromConfig(c)
  ),
  entry(
    "pointer-chase",
    Schema.Struct({
      seed,
      maxCandidates: withDefault(Int(1), 3),
      minCandidates: withDefault(Int(1), 1),
      ambiguity: withDefault(Schema.Literals(["any", "first"]), "any"),
      candidateOrder: withDefault(Schema.Literals(["shuffled", "colour"]), "shuffled"),
      names: withDefault(Int(20), 3000),
      nameLength: withDefault(Int(3), 5),
      namePrefix: withDefault(Schema.String, ""),
      minHops: withDefault(Int(1), 2),
      maxHops: withDefault(Int(1), 3)
    }),
    (c) => PointerChase.fromConfig(c)
  ),
  // ARPO's own data and prompt (src/tasks/arpo.ts); its sandboxed tools: Arpo.toolboxLocal (real-model uses them)
  entry("arpo", Arpo.ArpoTaskSettings, (c) => Arpo.definition(c))
]

export const builtinRegistries: Registries = { sampler: samplers, estimator: estimators, tool: tools, engine: engines, trainer: trainers, task: tasks }

/** The built-ins with an experiment's registrations added (a registration replaces a built-in of the same name). */
export const withRegistrations = (base: Registries, add: Registrations | undefined): Registries => {
  if (add === undefined) return base
  const merge = <E extends { readonly name: string }>(a: ReadonlyArray<E>, b: ReadonlyArray<E> | undefined): ReadonlyArray<E> =>
    b === undefined ? a : [...a.filter((x) => !b.some((y) => y.name === x.name)), ...b]
  return {
    sampler: merge(base.sampler, add.sampler),
    estimator: merge(base.estimator, add.estimator),
    tool: merge(base.tool, add.tool),
    engine: merge(base.engine, add.engine),
    trainer: merge(base.trainer, add.trainer),
    task: merge(base.task, add.task)
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// sections: the union tagged by name

/** Where each kind's section is in a run config (tools: one section per call tag under `tools.tags`). */
export const sectionPaths: { readonly [K in Exclude<Kind, "tool">]: ReadonlyArray<string> } = {
  task: ["task"],
  sampler: ["rollout"],
  estimator: ["advantage", "estimator"],
  engine: ["engine"],
  trainer: ["trainer"]
}

const kindLabel: Record<Kind, string> = { sampler: "sampler", estimator: "advantage estimator", tool: "tool", engine: "engine", trainer: "trainer", task: "task" }

/** The Schema of one entry's section: `{ name: <its name>, …its config }`. */
export const sectionSchema = (e: Entry<unknown, never>) => Schema.Struct({ name: Schema.Literal(e.name), ...e.config.fields })

/** The section of a kind as the union of its registered configs, tagged by `name`. */
export const sectionUnion = <K extends Kind>(registries: Registries, kind: K) =>
  Schema.Union((registries[kind] as ReadonlyArray<Entry<unknown, never>>).map(sectionSchema))

/** The keys one component's section accepts (besides `name`). */
export const keysOf = (e: { readonly config: ConfigSchema }): ReadonlyArray<string> => Object.keys(e.config.fields).sort()

/** The registered entry of a kind by name, or a ConfigInvalid naming what is registered. */
export const find = <K extends Kind>(registries: Registries, kind: K, name: unknown, key: string): Effect.Effect<Registries[K][number], ConfigInvalid> => {
  const list = registries[kind] as ReadonlyArray<Registries[K][number]>
  const found = list.find((e) => e.name === name)
  return found !== undefined
    ? Effect.succeed(found)
    : Effect.fail(
      new ConfigInvalid({
        key: `${key}.name`,
        message: `${key}.name: no ${kindLabel[kind]} named ${JSON.stringify(name)} is registered; registered: ${list.map((e) => e.name).join(", ")}`
      })
    )
}

/**
 * One section decoded by its component's Schema (defaults filled, unknown keys refused with the
 * component's key list) and encoded back: the JSON config.json records.
 */
export const decodeSection = <K extends Kind>(
  registries: Registries,
  kind: K,
  section: unknown,
  key: string,
  where: string
): Effect.Effect<{ readonly entry: Registries[K][number]; readonly json: Section }, ConfigInvalid> =>
  Effect.gen(function*() {
    const s = typeof section === "object" && section !== null && !Array.isArray(section) ? section as Record<string, unknown> : {}
    const found = yield* find(registries, kind, s["name"], key)
    const unknown = Object.keys(s).filter((k) => k !== "name" && !(k in found.config.fields))
    if (unknown.length > 0) {
      return yield* new ConfigInvalid({
        key: `${key}.${unknown[0]}`,
        message: `${where}: ${kindLabel[kind]} ${found.name} has no setting ${unknown.map((k) => `"${key}.${k}"`).join(", ")}; its keys: ${
          keysOf(found).join(", ") || "(none)"
        }`
      })
    }
    // the entry's own Schema (its fields and its checks across fields), then the name back in front
    const schema = found.config as unknown as Schema.Codec<unknown, unknown>
    const { name: _name, ...rest } = s
    const decoded = yield* Schema.decodeUnknownEffect(schema)(rest, { errors: "all" }).pipe(
      Effect.mapError((e) => new ConfigInvalid({ key, message: `${where}: ${kindLabel[kind]} ${found.name} (${key}): ${e.message}` }))
    )
    const encoded = yield* Schema.encodeUnknownEffect(schema)(decoded).pipe(
      Effect.mapError((e) => new ConfigInvalid({ key, message: `${where}: ${kindLabel[kind]} ${found.name} (${key}): ${e.message}` }))
    )
    const json = { name: found.name, ...(encoded as Record<string, unknown>) }
    return { entry: found, json: json as Section }
  })

/** A section's settings decoded by its entry (for building the component). */
export const settingsOf = (e: { readonly name: string; readonly config: ConfigSchema }, section: unknown): unknown => {
  const { name: _name, ...rest } = section as Record<string, unknown>
  return Schema.decodeUnknownSync(e.config as unknown as Schema.Codec<unknown, unknown>)(rest)
}
