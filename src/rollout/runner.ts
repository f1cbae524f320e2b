/**
 * The rollout runner: drives Engine ⇄ Toolbox for a batch of token prompts in rounds (generate each running
 * trajectory to a tool stop, EOS or its budget; run the calls concurrently; append results as tool tokens;
 * ask the policy what to start next), recording one RolloutTree per prompt. Failures become recorded
 * outcomes; randomness is keyed and bookkeeping is in prompt/trajectory order, never completion order.
 * It does not decide when to branch (policies, `policy.ts`) and does not compute rewards.
 */
import { Cause, Effect, Exit } from "effect"
import { windowEntropy } from "../core/entropy.ts"
import { derive, type Key } from "../core/random.ts"
import type { TokenId } from "../core/tokens.ts"
import type { Finish, Node, RolloutTree, ToolCallRecord } from "../core/tree.ts"
import type { EngineError, GenerateRequest, Generation } from "../engine/Engine.ts"
import { Engine, EngineFailure } from "../engine/Engine.ts"
import type { EventBody } from "../events/Event.ts"
import { Events } from "../events/Events.ts"
import type { MalformedCall, ToolCallRequest, ToolResult } from "../tools/Toolbox.ts"
import { Toolbox } from "../tools/Toolbox.ts"
import { failureText, timeoutText } from "../tools/protocol.ts"
import { type BatchStats, batchEvent } from "./metrics.ts"
import type { Action, Decision, Policy, Probe, RoundView, ToolStep, WindowBounds } from "./policy.ts"
import { deltaH } from "./policy.ts"

/** The services a runner drives (resolved when a Sampler layer is built). */
export interface RunnerEnv {
  readonly engine: Engine["Service"]
  readonly toolbox: Toolbox["Service"]
  readonly events: Events["Service"]
}

/** Acquire the runner's services from the context (in a layer constructor). */
export const runnerEnv: Effect.Effect<RunnerEnv, never, Engine | Toolbox | Events> = Effect.gen(function*() {
  return { engine: yield* Engine, toolbox: yield* Toolbox, events: yield* Events }
})

export interface RunnerSettings {
  readonly sampler: string
  readonly budget: number
  readonly callLimit: number
  readonly maxResponseTokens: number
  readonly temperature: number
  readonly topP: number
  readonly toolConcurrency: number
  readonly toolTimeoutMs: number
  readonly engineRetries: number
  /** k: the entropy window (H_initial, probes, segment windows) */
  readonly window: number
  /** emit `rollout.batch` / `rollout.branch` / `note` events (off for internal probe rollouts) */
  readonly emitEvents?: boolean
}

/** One trajectory as the runner built it (its tokens are kept independently of the tree, for laws). */
export interface RunTrajectory {
  readonly prompt: number
  readonly id: number
  readonly leaf: number
  readonly tokens: ReadonlyArray<TokenId>
  readonly failed: boolean
}

export interface RunResult {
  readonly trees: ReadonlyArray<RolloutTree>
  readonly trajectories: ReadonlyArray<RunTrajectory>
  readonly stats: BatchStats
}

// ---------------------------------------------------------------------------------------------------------------------
// internal state

interface Traj {
  readonly prompt: number
  readonly id: number
  leaf: number
  context: Array<TokenId>
  responseLength: number
  calls: number
  segments: number
  /** H_initial (nats): the root response's window, inherited by branches */
  rootWindow: number | undefined
  /** the interval of `rootWindow` (top-k engines only), inherited with it */
  rootBounds: WindowBounds | undefined
  /** window of the first segment this trajectory generated itself */
  firstWindow: number | undefined
  firstBounds: WindowBounds | undefined
  /** the tool node whose post-result window the next segment measures */
  probeOf: number | undefined
  /** the tool that answered at `probeOf` */
  probeTool: string
  done: boolean
  failed: boolean
}

interface PromptState {
  readonly nodes: Array<Node>
  readonly trajs: Array<Traj>
  readonly promptLength: number
  /** node ids whose tokens the engine has computed (for the prefix-reuse count) */
  readonly computed: Array<boolean>
}

interface Pending {
  readonly traj: Traj
  readonly segmentWindow: number
  readonly segmentBounds: WindowBounds | undefined
  readonly call: ToolCallRequest | MalformedCall
}

const now = (): number => performance.now()

const errorText = (e: EngineError): string =>
  e._tag === "EngineFailure"
    ? `${e.adapter}: ${e.message}`
    : `${e.adapter}: context of ${e.tokens} tokens exceeds the limit ${e.limit}`

/** Tokens, response length and tool calls on the path from the root to `node`. */
const pathState = (state: PromptState, node: number) => {
  const path: Array<number> = []
  for (let i = node; i >= 0; i = state.nodes[i]!.parent) path.push(i)
  path.reverse()
  const tokens: Array<TokenId> = []
  let calls = 0
  for (const id of path) {
    const n = state.nodes[id]!
    for (const t of n.tokens) tokens.push(t)
    if (n.toolCall) calls++
  }
  return { tokens, responseLength: tokens.length - state.promptLength, calls }
}

const checkGeneration = (g: Generation, adapter: string): Generation | EngineFailure =>
  g.tokens.length === g.logprobs.length && g.tokens.length === g.entropies.length &&
    (g.entropyBounds === undefined || g.entropyBounds.length === g.tokens.length)
    ? g
    : new EngineFailure({
      adapter,
      transient: false,
      message: `reply has ${g.tokens.length} tokens, ${g.logprobs.length} logprobs, ${g.entropies.length} entropies` +
        (g.entropyBounds === undefined ? "" : ` and ${g.entropyBounds.length} entropy bounds`)
    })

/** A reply's per-token entropy bounds as the two arrays a tree node stores (none for exact engines). */
const boundsOf = (g: Generation): { readonly lower: Array<number>; readonly upper: Array<number> } | undefined =>
  g.entropyBounds === undefined
    ? undefined
    : { lower: g.entropyBounds.map((b) => b.lower), upper: g.entropyBounds.map((b) => b.upper) }

const mean = (xs: ReadonlyArray<number>): number => xs.reduce((a, b) => a + b, 0) / xs.length

/**
 * The entropy windows of one new segment (DESIGN.md "Entropy and ΔH"), the one place the ΔH window is
 * defined: the window sum over the segment's first k tokens (with its interval when the engine gave
 * per-token bounds). A trajectory's first segment sets its first window and, for a root, H_initial; a
 * segment right after a tool result is that result's probe, ΔH = (H_t − H_initial) / ln V. Updates the
 * trajectory's window fields and segment count; returns whether H_initial was set here and the probe.
 */
const measureSegment = (
  t: Traj,
  reply: Generation,
  k: number,
  vocabSize: number
): { readonly window: number; readonly windowBounds: WindowBounds | undefined; readonly initial: boolean; readonly probe: Probe | undefined } => {
  const bounds = boundsOf(reply)
  const measured = windowEntropy(reply.entropies, k, bounds)
  const window = measured.point
  const windowBounds: WindowBounds | undefined = bounds === undefined ? undefined : { lower: measured.lower, upper: measured.upper }
  let initial = false
  if (t.segments === 0) {
    t.firstWindow = window
    t.firstBounds = windowBounds
    if (t.rootWindow === undefined) {
      t.rootWindow = window
      t.rootBounds = windowBounds
      initial = true
    }
  }
  let probe: Probe | undefined
  if (t.probeOf !== undefined && t.rootWindow !== undefined) {
    probe = {
      prompt: t.prompt,
      trajectory: t.id,
      node: t.probeOf,
      call: t.calls,
      tool: t.probeTool,
      hAfterTool: window,
      hInitial: t.rootWindow,
      deltaH: deltaH(window, t.rootWindow, vocabSize),
      ...(windowBounds !== undefined ? { hAfterToolBounds: windowBounds } : {}),
      ...(t.rootBounds !== undefined ? { hInitialBounds: t.rootBounds } : {})
    }
  }
  t.probeOf = undefined
  t.segments++
  return { window, windowBounds, initial, probe }
}

/**
 * Run a batch of prompts under `policy`. Never fails: engine failures after retries mark the trajectories
 * concerned "failed"; tool failures, hangs (past `toolTimeoutMs`) and crashes become result text.
 */
export const runRollout = (
  env: RunnerEnv,
  settings: RunnerSettings,
  policy: Policy,
  prompts: ReadonlyArray<ReadonlyArray<TokenId>>,
  options: { readonly step: number; readonly key: Key }
): Effect.Effect<RunResult> =>
  Effect.gen(function*() {
    const { engine, toolbox, events } = env
    const emitting = settings.emitEvents ?? true
    const tok = engine.tokenizer
    const vocabSize = tok.vocabSize
    const batchKey = derive(options.key, "step", options.step)
    const policyVersion = yield* engine.policyVersion
    const stopTokens = toolbox.stopTags.map((t) => tok.special(t)).filter((t): t is TokenId => t !== undefined)
    const stopStrings = toolbox.stopTags
    const prefixReuse = engine.capabilities.prefixReuse
    const chunk = Math.max(1, Number.isFinite(engine.capabilities.maxConcurrency) ? engine.capabilities.maxConcurrency : prompts.length * settings.budget)
    const startedAt = now()

    const states: Array<PromptState> = prompts.map((p) => ({
      nodes: [{ parent: -1, kind: "prompt", tokens: p.slice(), logprobs: [], entropies: [] }],
      trajs: [],
      promptLength: p.length,
      computed: [false]
    }))
    const stats: BatchStats = {
      sampler: settings.sampler,
      prompts: prompts.length,
      trajectories: 0,
      failedTrajectories: 0,
      tokensGenerated: 0,
      tokensComputed: 0,
      uniqueTreeTokens: 0,
      branchConsidered: 0,
      branchTaken: 0,
      toolCalls: 0,
      toolFailures: 0,
      callLimitReached: 0,
      initialWindows: [],
      probeWindows: [],
      deltaHs: [],
      toolCallsPerPrompt: prompts.map(() => 0),
      engineMs: 0,
      toolMs: 0,
      wallMs: 0,
      rounds: 0
    }

    const appendNode = (state: PromptState, node: Node): number => {
      state.nodes.push(node)
      state.computed.push(false)
      return state.nodes.length - 1
    }

    const start = (
      p: number,
      from: { readonly node: number; readonly rootWindow: number | undefined; readonly rootBounds: WindowBounds | undefined } | undefined
    ) => {
      const state = states[p]!
      if (state.trajs.length >= settings.budget) return
      const at = from ? pathState(state, from.node) : { tokens: state.nodes[0]!.tokens.slice(), responseLength: 0, calls: 0 }
      state.trajs.push({
        prompt: p,
        id: state.trajs.length,
        leaf: from ? from.node : 0,
        context: at.tokens,
        responseLength: at.responseLength,
        calls: at.calls,
        segments: 0,
        rootWindow: from?.rootWindow,
        rootBounds: from?.rootBounds,
        firstWindow: undefined,
        firstBounds: undefined,
        probeOf: undefined,
        probeTool: "",
        done: false,
        failed: false
      })
      stats.trajectories++
    }

    /** End a trajectory at a tool node whose result used up the response budget (an empty "length" segment). */
    const endForLength = (t: Traj) => {
      const state = states[t.prompt]!
      t.leaf = appendNode(state, { parent: t.leaf, kind: "model", tokens: [], logprobs: [], entropies: [], finish: "length" })
      t.done = true
    }

    const notes: Array<EventBody> = []
    /** widths (upper − lower, nats) of the H_initial and after-tool windows that had bounds */
    const initialWidths: Array<number> = []
    const probeWidths: Array<number> = []

    const markFailed = (t: Traj, key: Key, error: EngineError) => {
      const state = states[t.prompt]!
      t.leaf = appendNode(state, {
        parent: t.leaf,
        kind: "model",
        tokens: [],
        logprobs: [],
        entropies: [],
        finish: "failed",
        key,
        policyVersion
      })
      t.done = true
      t.failed = true
      stats.failedTrajectories++
      notes.push({
        _tag: "note",
        level: "warn",
        message:
          `rollout ${settings.sampler}: prompt ${t.prompt} trajectory ${t.id} failed at segment ${t.segments} ` +
          `(engine: ${errorText(error)}); it is kept as finish "failed" and excluded from training`
      })
    }

    // --- engine: chunked, transient failures retried, a failing chunk retried request by request --------------------
    const retried = <A>(eff: Effect.Effect<A, EngineError>) =>
      eff.pipe(Effect.retry({ times: settings.engineRetries, while: (e: EngineError) => e._tag === "EngineFailure" && e.transient }))

    const generateChunk = (requests: ReadonlyArray<GenerateRequest>) =>
      Effect.gen(function*() {
        const whole = yield* Effect.exit(retried(engine.generate(requests)))
        if (Exit.isSuccess(whole) && whole.value.length === requests.length) {
          return whole.value.map((g) => checkGeneration(g, engine.name))
        }
        if (requests.length === 1) {
          return [whole._tag === "Failure" ? failureOf(whole.cause) : wrongCount(whole.value.length, 1)]
        }
        // isolate: one request at a time, so only the sequences that really fail are marked failed
        return yield* Effect.forEach(requests, (r) =>
          Effect.exit(retried(engine.generate([r]))).pipe(
            Effect.map((e) =>
              Exit.isSuccess(e)
                ? e.value.length === 1 ? checkGeneration(e.value[0]!, engine.name) : wrongCount(e.value.length, 1)
                : failureOf(e.cause)
            )
          ))
      })

    const failureOf = (cause: Cause.Cause<EngineError>): EngineError => {
      const found = cause.reasons.find(Cause.isFailReason)
      if (found) return found.error
      return new EngineFailure({ adapter: engine.name, transient: false, message: `engine defect: ${Cause.pretty(cause)}` })
    }
    const wrongCount = (got: number, want: number) =>
      new EngineFailure({ adapter: engine.name, transient: false, message: `engine returned ${got} replies for ${want} requests` })

    // --- tools: bounded concurrency, results in request order; hangs and crashes become results ----------------------
    const runTool = (call: ToolCallRequest | MalformedCall): Effect.Effect<ToolResult> =>
      toolbox.run(call).pipe(
        Effect.timeoutOrElse({
          duration: settings.toolTimeoutMs,
          orElse: () =>
            Effect.succeed<ToolResult>({
              tool: call.tool,
              output: timeoutText(call.tool, settings.toolTimeoutMs),
              outcome: "timeout",
              attempts: 1,
              toolMs: settings.toolTimeoutMs
            })
        }),
        Effect.catchCause((cause) =>
          Effect.succeed<ToolResult>({
            tool: call.tool,
            output: failureText(call.tool, String(Cause.squash(cause))),
            outcome: "error",
            attempts: 1,
            toolMs: 0
          })
        )
      )

    // --- initial global samples ---------------------------------------------------------------------------------------
    prompts.forEach((_, p) => {
      const n = Math.min(settings.budget, Math.max(0, Math.floor(policy.initial(p))))
      for (let i = 0; i < n; i++) start(p, undefined)
    })

    for (let round = 0;; round++) {
      const running: Array<Traj> = []
      for (const s of states) for (const t of s.trajs) if (!t.done) running.push(t)
      const probes: Array<Probe> = []
      const toolSteps: Array<ToolStep> = []

      if (running.length > 0) {
        stats.rounds++
        // 1. generate one segment for every running trajectory
        const keys = running.map((t) => derive(batchKey, "prompt", t.prompt, "traj", t.id, "segment", t.segments))
        const requests: Array<GenerateRequest> = running.map((t, i) => ({
          tokens: t.context.slice(),
          maxTokens: settings.maxResponseTokens - t.responseLength,
          temperature: settings.temperature,
          topP: settings.topP,
          stopTokens,
          stopStrings,
          key: keys[i]!
        }))
        const t0 = now()
        const replies: Array<Generation | EngineError> = []
        for (let i = 0; i < requests.length; i += chunk) {
          replies.push(...(yield* generateChunk(requests.slice(i, i + chunk))))
        }
        stats.engineMs += now() - t0

        // 2. record segments (prompt/trajectory order) and collect tool calls
        const pending: Array<Pending> = []
        running.forEach((t, i) => {
          const reply = replies[i]!
          const key = keys[i]!
          const state = states[t.prompt]!
          if ("_tag" in reply) {
            // a context the model cannot extend is the end of the trajectory for length, not a failure
            if (reply._tag === "ContextOverflow") endForLength(t)
            else markFailed(t, key, reply)
            return
          }
          // prefix-reuse accounting: the context nodes the engine had not computed yet, plus the new tokens
          if (prefixReuse) {
            for (let id = t.leaf; id >= 0 && !state.computed[id]; id = state.nodes[id]!.parent) {
              state.computed[id] = true
              stats.tokensComputed += state.nodes[id]!.tokens.length
            }
          } else {
            stats.tokensComputed += t.context.length
          }
          stats.tokensComputed += reply.tokens.length
          stats.tokensGenerated += reply.tokens.length

          const bounds = boundsOf(reply)
          const { window, windowBounds, initial, probe } = measureSegment(t, reply, settings.window, vocabSize)
          if (initial) {
            stats.initialWindows.push(window)
            if (windowBounds !== undefined) initialWidths.push(windowBounds.upper - windowBounds.lower)
          }
          if (probe !== undefined) {
            probes.push(probe)
            stats.probeWindows.push(window)
            stats.deltaHs.push(probe.deltaH)
            if (windowBounds !== undefined) probeWidths.push(windowBounds.upper - windowBounds.lower)
          }

          let finish: Finish
          let call: ToolCallRequest | MalformedCall | undefined
          let toolCall: ToolCallRecord | undefined
          switch (reply.finish._tag) {
            case "eos":
              finish = "eos"
              break
            case "length":
              finish = "length"
              break
            case "stop": {
              finish = "stop"
              const parsed = toolbox.parse(tok.decode(reply.tokens))
              if (parsed !== undefined && t.calls >= settings.callLimit) {
                stats.callLimitReached++
              } else if (parsed !== undefined && t.responseLength + reply.tokens.length < settings.maxResponseTokens) {
                // the call's key: tools whose results are random by design draw from it (keyed, replayable)
                call = "malformed" in parsed ? parsed : { ...parsed, key: derive(key, "tool") }
                toolCall = "malformed" in parsed ? { tool: parsed.tool, content: "" } : { tool: parsed.tool, content: parsed.content }
              }
            }
          }
          const node: Node = {
            parent: t.leaf,
            kind: "model",
            tokens: reply.tokens.slice(),
            logprobs: reply.logprobs.slice(),
            entropies: reply.entropies.slice(),
            ...(bounds !== undefined ? { entropyLower: bounds.lower, entropyUpper: bounds.upper } : {}),
            finish,
            key,
            policyVersion,
            ...(toolCall ? { toolCall } : {})
          }
          const id = appendNode(state, node)
          state.computed[id] = true
          t.leaf = id
          for (const x of reply.tokens) t.context.push(x)
          t.responseLength += reply.tokens.length
          if (call === undefined) {
            t.done = true
            return
          }
          pending.push({ traj: t, segmentWindow: window, segmentBounds: windowBounds, call })
        })

        // 3. run the calls concurrently; append results in prompt/trajectory order
        const t1 = now()
        const results = yield* Effect.forEach(pending, (q) => runTool(q.call), { concurrency: settings.toolConcurrency })
        if (pending.length > 0) stats.toolMs += now() - t1
        pending.forEach((q, i) => {
          const r = results[i]!
          const t = q.traj
          const state = states[t.prompt]!
          stats.toolCalls++
          stats.toolCallsPerPrompt[t.prompt]!++
          if (r.outcome !== "ok") stats.toolFailures++
          const remaining = settings.maxResponseTokens - t.responseLength
          const tokens = tok.encode(toolbox.formatResult(r.output)).slice(0, remaining)
          const id = appendNode(state, { parent: t.leaf, kind: "tool", tokens, logprobs: [], entropies: [] })
          t.leaf = id
          t.calls++
          for (const x of tokens) t.context.push(x)
          t.responseLength += tokens.length
          if (t.responseLength >= settings.maxResponseTokens) {
            endForLength(t)
            return
          }
          t.probeOf = id
          t.probeTool = q.call.tool
          const firstBounds = t.firstWindow !== undefined ? t.firstBounds : q.segmentBounds
          toolSteps.push({
            prompt: t.prompt,
            trajectory: t.id,
            node: id,
            call: t.calls,
            segmentWindow: q.segmentWindow,
            firstWindow: t.firstWindow ?? q.segmentWindow,
            ...(q.segmentBounds !== undefined ? { segmentBounds: q.segmentBounds } : {}),
            ...(firstBounds !== undefined ? { firstBounds } : {})
          })
        })
      }

      // 4. ask the policy; apply its actions (clipped to the budget) in order
      const view: RoundView = {
        round,
        key: batchKey,
        vocabSize,
        budget: settings.budget,
        probes,
        toolSteps,
        started: states.map((s) => s.trajs.length),
        active: states.map((s) => s.trajs.filter((t) => !t.done).length)
      }
      const plan = policy.afterRound(view)
      let created = 0
      for (const action of plan.actions) created += apply(action)
      recordDecisions(plan.decisions)

      if (emitting) {
        for (const n of notes) yield* events.emit(n)
        for (const d of plan.decisions) {
          yield* events.emit({
            _tag: "rollout.branch",
            prompt: d.prompt,
            node: String(d.node),
            hInitial: d.record.hInitial,
            hAfterTool: d.record.hAfterTool,
            ...(d.record.hAfterToolLower !== undefined ? { hAfterToolLower: d.record.hAfterToolLower } : {}),
            ...(d.record.hAfterToolUpper !== undefined ? { hAfterToolUpper: d.record.hAfterToolUpper } : {}),
            ...(d.record.hInitialLower !== undefined ? { hInitialLower: d.record.hInitialLower } : {}),
            ...(d.record.hInitialUpper !== undefined ? { hInitialUpper: d.record.hInitialUpper } : {}),
            deltaH: d.record.deltaH,
            probability: d.record.probability,
            u: d.record.u,
            branched: d.record.branched,
            trajectory: d.trajectory,
            call: d.call,
            children: d.record.children
          })
        }
      }
      notes.length = 0
      if (running.length === 0 && created === 0) break
    }

    function apply(action: Action): number {
      const state = states[action.prompt]
      if (!state) return 0
      const room = settings.budget - state.trajs.length
      if (action._tag === "Fresh") {
        const n = Math.max(0, Math.min(room, Math.floor(action.count)))
        for (let i = 0; i < n; i++) start(action.prompt, undefined)
        return n
      }
      const from = state.trajs[action.from]
      const node = state.nodes[action.node]
      if (!from || !node || node.kind !== "tool") return 0
      const n = Math.max(0, Math.min(room, Math.floor(action.children)))
      for (let i = 0; i < n; i++) start(action.prompt, { node: action.node, rootWindow: from.rootWindow, rootBounds: from.rootBounds })
      return n
    }

    function recordDecisions(decisions: ReadonlyArray<Decision>) {
      for (const d of decisions) {
        const state = states[d.prompt]
        const node = state?.nodes[d.node]
        if (!state || !node) continue
        state.nodes[d.node] = { ...node, branch: d.record }
        stats.branchConsidered++
        if (d.record.branched) stats.branchTaken++
      }
    }

    const trees: Array<RolloutTree> = states.map((s, p) => ({ prompt: p, nodes: s.nodes }))
    for (const s of states) for (const n of s.nodes) stats.uniqueTreeTokens += n.tokens.length
    stats.wallMs = now() - startedAt
    if (emitting) {
      const batch = batchEvent(stats)
      // top-k engines only: how wide the entropy intervals behind H_initial and the decisions were
      yield* events.emit(
        batch._tag === "rollout.batch" && (initialWidths.length > 0 || probeWidths.length > 0)
          ? {
            ...batch,
            ...(initialWidths.length > 0 ? { meanEntropyInitialWidth: mean(initialWidths) } : {}),
            ...(probeWidths.length > 0 ? { meanEntropyAfterToolWidth: mean(probeWidths) } : {}),
            ...(typeof engine.capabilities.entropy === "object" ? { entropyPoint: engine.capabilities.entropy.point ?? "mid" } : {})
          }
          : batch
      )
    }
    const trajectories: Array<RunTrajectory> = []
    for (const s of states) {
      for (const t of s.trajs) {
        trajectories.push({ prompt: t.prompt, id: t.id, leaf: t.leaf, tokens: t.context, failed: t.failed })
      }
    }
    return { trees, trajectories, stats }
  })

/** Runner settings from a decoded sampler config (the runner fields plus the window k). */
export const settingsOf = (
  sampler: string,
  config: Omit<RunnerSettings, "sampler" | "emitEvents">
): RunnerSettings => ({
  sampler,
  budget: config.budget,
  callLimit: config.callLimit,
  maxResponseTokens: config.maxResponseTokens,
  temperature: config.temperature,
  topP: config.topP,
  toolConcurrency: config.toolConcurrency,
  toolTimeoutMs: config.toolTimeoutMs,
  engineRetries: config.engineRetries,
  window: config.window
})

/**
 * A Sampler implementation from a policy factory: the whole of a custom sampler is a `Policy`
 * (see docs/samplers.md). The factory is called once per batch, so a policy may keep per-batch state.
 */
export const fromPolicy = (
  env: RunnerEnv,
  settings: RunnerSettings,
  makePolicy: () => Policy
) => ({
  name: settings.sampler,
  budget: settings.budget,
  sample: (prompts: ReadonlyArray<ReadonlyArray<TokenId>>, options: { readonly step: number; readonly key: Key }) =>
    runRollout(env, settings, makePolicy(), prompts, options).pipe(Effect.map((r) => r.trees))
})
