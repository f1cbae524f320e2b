/**
 * arpo's public API, as namespaces: `import { Advantage, Sampler, Engine } from "arpo"`: the pure core
 * (tokens, trees, randomness, entropy, branching, advantages, attribution, losses, rewards, weights), the
 * service contracts and their adapters' layers (events, engine, trainer, tools, tasks, samplers), the run
 * (config, weight sync, evaluation, the run directory, reports), and experiments with their registries.
 * Internals (the loop's steps, the cold start, worker plumbing, the CLI's registry) are not exported; the
 * list of names is test/architecture/public-api.txt, checked by test/architecture/folders.test.ts.
 */

// ── pure core ───────────────────────────────────────────────────────────────
export * as Tokens from "./core/tokens.ts"
export * as Random from "./core/random.ts"
export * as RolloutTree from "./core/tree.ts"
export * as TrainBatch from "./core/batch.ts"
export * as Entropy from "./core/entropy.ts"
export * as Branching from "./core/branching.ts"
export * as Advantage from "./core/advantage.ts"
export * as Attribution from "./core/attribution.ts"
export * as Pack from "./core/pack.ts"
export * as Loss from "./core/loss.ts"
export * as Reward from "./core/reward.ts"
export * as F1 from "./core/f1.ts"
export * as MathEquivalence from "./core/mathEquivalence.ts"
export * as Answer from "./core/answer.ts"
export * as Tis from "./core/tis.ts"
export * as PassAtK from "./core/passAtK.ts"

// ── services and layers ─────────────────────────────────────────────────────
export * as Events from "./events/Events.ts"
export * as Event from "./events/Event.ts"
export * as Engine from "./engine/Engine.ts"
export * as EmbeddedEngine from "./engine/embedded.ts"
export * as HttpEngine from "./engine/http.ts"
export * as LlamaCppEngine from "./engine/llamaCpp.ts"
export * as LlamaServer from "./engine/llamaServer.ts"
export * as HfTokenizer from "./engine/hfTokenizer.ts"
export * as ModelConfig from "./model/config.ts"
export * as Tokenizer from "./model/tokenizer.ts"
export * as Policy from "./model/policy.ts"
export * as Weights from "./core/weights.ts"
export * as WeightSync from "./run/weightSync.ts"
export * as Checkpoint from "./model/checkpoint.ts"
export * as Gguf from "./model/gguf.ts"
export * as Trainer from "./trainer/Trainer.ts"
export * as EmbeddedTrainer from "./trainer/embedded.ts"
export * as PytorchTrainer from "./trainer/pytorch.ts"
export * as Toolbox from "./tools/Toolbox.ts"
export * as ToolProtocol from "./tools/protocol.ts"
export * as CallFormat from "./tools/callFormat.ts"
export * as Tool from "./tools/Tool.ts"
export * as Sandbox from "./tools/sandbox.ts"
export * as Python from "./tools/python.ts"
export * as Search from "./tools/search.ts"
export * as Calculator from "./tools/calculator.ts"
export * as Task from "./tasks/Task.ts"
export * as Arithmetic from "./tasks/arithmetic.ts"
export * as Multihop from "./tasks/multihop.ts"
export * as Mixture from "./tasks/mixture.ts"
export * as Benchmarks from "./tasks/benchmarks.ts"
export * as Parquet from "./tasks/parquet.ts"
export * as SystemPrompt from "./tasks/systemPrompt.ts"
export * as Sampler from "./rollout/index.ts"

// ── the run ─────────────────────────────────────────────────────────────────
export * as RunConfig from "./run/config.ts"
export * as AdvantageEstimator from "./run/estimator.ts"
export * as Evaluate from "./run/evaluate.ts"
export * as EngineChoice from "./experiment/engineChoice.ts"
export * as RunStore from "./io/RunStore.ts"
export * as Report from "./report/report.ts"
export * as Summary from "./report/summarize.ts"

// ── experiments (compose everything above; write reports) ──────────────────
export * as Experiment from "./experiment/define.ts"
export * as Registry from "./experiment/registries.ts"
export * as Components from "./experiment/resolve.ts"
export * as Defaults from "./experiment/catalog/defaults.ts"
