/**
 * The rollout runner: drives Engine ⇄ Toolbox for a batch of token prompts in rounds (generate each running
 * trajectory to a tool stop, EOS or its budget; run the calls concurrently; append results as tool tokens;
 * ask the policy what to start next), recording one RolloutTree per prompt. Failures become recorded
 * outcomes; randomness is keyed and bookkeeping is in prompt/trajectory order, never completion order.
 * It does not decide when to branch (policies, `policy.ts`) and does not compute rewards.
 */
import { Cause, Effect, Exit } from "effect"
import { initialWindow, type WindowForm, windowFrom, windowTokens, windowValue } from "../core/deltaH.ts"
import { referenceWindowSum, windowEntropy } from "../core/entropy.ts"
import { derive, type Key } from "../core/random.ts"
import type { TokenId } from "../core/tokens.ts"
import { type Finish, type Node, type RolloutTree, type ToolCallRecord, trajectory } from "../core/tree.ts"
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
  /** the form of the probes' windows and ΔH (src/core/deltaH.ts; default "paper") */
  readonly deltaHWindow?: WindowForm
  /** "top10": also measure every segment's window as the released code does (top-10 truncated sums), for
   *  reference mode; the engine is asked for top-10 log-probs (default "exact": nothing extra) */
  readonly entropySource?: "exact" | "top10"
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
  /** the released code's top-10 window of that first segment (nats; entropySource "top10" only) */
  firstTop10: number | undefined
  /** tool results whose post-result window is not measured yet (oldest first) */
  readonly awaiting: Array<AwaitedProbe>
  done: boolean
  failed: boolean
}

/** A tool result whose post-result window (a probe) waits for the tokens after it. */
interface AwaitedProbe {
  /** the tool node (the branch point) */
  readonly node: number
  /** 1-based index of the call in the trajectory */
  readonly call: number
  readonly tool: string
  /** index in the trajectory's tokens (prompt included) of the first token after the result */
  readonly at: number
  /** the trajectory's measured segments when the result was appended */
  readonly segments: number
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
  readonly segmentTop10: number | undefined
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

const checkGeneration = (g: Generation, adapter: string, topLogprobs: boolean): Generation | EngineFailure =>
  topLogprobs && g.topLogprobs?.length !== g.tokens.length
    ? new EngineFailure({
      adapter,
      transient: false,
      message: `asked for top-10 log-probs (rollout.entropySource "top10"), the reply has ${g.topLogprobs?.length ?? "no"} rows for ${g.tokens.length} tokens`
    })
    : g.tokens.length === g.logprobs.length && g.tokens.length === g.entropies.length &&
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
 * The entropy window of one new segment: the window sum over its first k tokens (with its interval when the
 * engine gave per-token bounds). A trajectory's first segment sets its first window and, for a root, the
 * paper-form H_initial of the batch figures. Updates the trajectory's window fields and segment count;
 * returns whether H_initial was set here. The probes' windows (any form) are `probeOf`'s.
 */
const measureSegment = (
  t: Traj,
  reply: Generation,
  k: number
): { readonly window: number; readonly windowBounds: WindowBounds | undefined; readonly initial: boolean } => {
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
  t.segments++
  return { window, windowBounds, initial }
}

/** Roles and per-token entropies (and their bounds, when the engine gave them) along the path root → `leaf`. */
const pathEntropies = (state: PromptState, leaf: number) => {
  const tr = trajectory({ prompt: 0, nodes: state.nodes }, leaf)
  const bounded = tr.path.some((id) => state.nodes[id]!.entropyLower !== undefined)
  const side = (key: "entropyLower" | "entropyUpper") =>
    tr.nodeOf.map((id, i) => state.nodes[id]![key]?.[tr.offsetOf[i]!] ?? tr.entropies[i]!)
  return { roles: tr.roles, entropies: tr.entropies, bounds: bounded ? { lower: side("entropyLower"), upper: side("entropyUpper") } : undefined }
}

/**
 * The probe of an awaited result, measured on the trajectory's own path with src/core/deltaH.ts in the
 * configured form — "wait" while its window is incomplete, "drop" when the trajectory ended without the
 * window's first segment. paper and mean need the first segment after the result (decided when it ends);
 * continued needs k model tokens after the result, continuing across later segments (or the trajectory's end).
 */
const probeOf = (b: Batch, t: Traj, w: AwaitedProbe): Probe | "wait" | "drop" => {
  const form = b.settings.deltaHWindow ?? "paper"
  const k = b.settings.window
  const generated = t.segments > w.segments
  if (form !== "continued" && !generated) return t.done ? "drop" : "wait"
  const p = pathEntropies(b.states[t.prompt]!, t.leaf)
  const after = windowFrom(p.roles, p.entropies, w.at, k)
  if (form === "continued" && after.tokens.length < k && !t.done) return "wait"
  if (!generated) return "drop"
  const initial = initialWindow(p.roles, p.entropies, k)
  const valueOf = (xs: ReadonlyArray<number>, from: number | undefined) => {
    const win = from === undefined ? initialWindow(p.roles, xs, k) : windowFrom(p.roles, xs, from, k)
    return windowValue(win.tokens, win.firstSegment, k, form)
  }
  const hAfterTool = windowValue(after.tokens, after.firstSegment, k, form)
  const hInitial = windowValue(initial.tokens, initial.firstSegment, k, form)
  const bounds = p.bounds
  return {
    prompt: t.prompt,
    trajectory: t.id,
    node: w.node,
    call: w.call,
    tool: w.tool,
    hAfterTool,
    hInitial,
    deltaH: deltaH(hAfterTool, hInitial, b.vocabSize),
    ...(bounds !== undefined
      ? {
        hAfterToolBounds: { lower: valueOf(bounds.lower, w.at), upper: valueOf(bounds.upper, w.at) },
        hInitialBounds: { lower: valueOf(bounds.lower, undefined), upper: valueOf(bounds.upper, undefined) }
      }
      : {}),
    ...(form !== "paper"
      ? {
        form,
        windowTokens: windowTokens(after.tokens, after.firstSegment, k, form),
        initialTokens: windowTokens(initial.tokens, initial.firstSegment, k, form)
      }
      : {})
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// one batch: its state and the named steps of a round

/** Everything one `runRollout` call works on; the steps below read and update it. */
interface Batch {
  readonly env: RunnerEnv
  readonly settings: RunnerSettings
  readonly emitting: boolean
  readonly vocabSize: number
  readonly batchKey: Key
  readonly policyVersion: number
  readonly stopTokens: ReadonlyArray<TokenId>
  readonly stopStrings: ReadonlyArray<string>
  readonly prefixReuse: boolean
  /** entropySource "top10": ask for top-10 log-probs and measure the released code's windows */
  readonly top10: boolean
  /** requests per engine call */
  readonly chunk: number
  readonly startedAt: number
  readonly states: Array<PromptState>
  readonly stats: BatchStats
  /** `note` events of the round, emitted after the policy's decisions */
  readonly notes: Array<EventBody>
  /** widths (upper − lower, nats) of the H_initial and after-tool windows that had bounds */
  readonly initialWidths: Array<number>
  readonly probeWidths: Array<number>
}

const emptyStats = (sampler: string, prompts: number): BatchStats => ({
  sampler,
  prompts,
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
  toolCallsPerPrompt: Array.from({ length: prompts }, () => 0),
  engineMs: 0,
  toolMs: 0,
  wallMs: 0,
  rounds: 0
})

const newBatch = (
  env: RunnerEnv,
  settings: RunnerSettings,
  prompts: ReadonlyArray<ReadonlyArray<TokenId>>,
  options: { readonly step: number; readonly key: Key },
  policyVersion: number
): Batch => {
  const { engine, toolbox } = env
  const tok = engine.tokenizer
  const maxConcurrency = engine.capabilities.maxConcurrency
  return {
    env,
    settings,
    emitting: settings.emitEvents ?? true,
    vocabSize: tok.vocabSize,
    batchKey: derive(options.key, "step", options.step),
    policyVersion,
    stopTokens: toolbox.stopTags.map((t) => tok.special(t)).filter((t): t is TokenId => t !== undefined),
    stopStrings: toolbox.stopTags,
    prefixReuse: engine.capabilities.prefixReuse,
    top10: settings.entropySource === "top10",
    chunk: Math.max(1, Number.isFinite(maxConcurrency) ? maxConcurrency : prompts.length * settings.budget),
    startedAt: now(),
    states: prompts.map((p) => ({
      nodes: [{ parent: -1, kind: "prompt", tokens: p.slice(), logprobs: [], entropies: [] }],
      trajs: [],
      promptLength: p.length,
      computed: [false]
    })),
    stats: emptyStats(settings.sampler, prompts.length),
    notes: [],
    initialWidths: [],
    probeWidths: []
  }
}

const appendNode = (state: PromptState, node: Node): number => {
  state.nodes.push(node)
  state.computed.push(false)
  return state.nodes.length - 1
}

/** Where a new trajectory starts: right after a tool node, with its root's H_initial (absent: from the prompt). */
interface StartPoint {
  readonly node: number
  readonly rootWindow: number | undefined
  readonly rootBounds: WindowBounds | undefined
}

/** Start a trajectory of prompt `p` (nothing when the prompt's budget is used up). */
const startTrajectory = (b: Batch, p: number, from: StartPoint | undefined): void => {
  const state = b.states[p]!
  if (state.trajs.length >= b.settings.budget) return
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
    firstTop10: undefined,
    awaiting: [],
    done: false,
    failed: false
  })
  b.stats.trajectories++
}

/** End a trajectory at a tool node whose result used up the response budget (an empty "length" segment). */
const endForLength = (b: Batch, t: Traj): void => {
  t.leaf = appendNode(b.states[t.prompt]!, { parent: t.leaf, kind: "model", tokens: [], logprobs: [], entropies: [], finish: "length" })
  t.done = true
}

/** End a trajectory whose segment the engine could not generate: an empty "failed" node and a warning note. */
const markFailed = (b: Batch, t: Traj, key: Key, error: EngineError): void => {
  t.leaf = appendNode(b.states[t.prompt]!, {
    parent: t.leaf,
    kind: "model",
    tokens: [],
    logprobs: [],
    entropies: [],
    finish: "failed",
    key,
    policyVersion: b.policyVersion
  })
  t.done = true
  t.failed = true
  b.stats.failedTrajectories++
  b.notes.push({
    _tag: "note",
    level: "warn",
    message:
      `rollout ${b.settings.sampler}: prompt ${t.prompt} trajectory ${t.id} failed at segment ${t.segments} ` +
      `(engine: ${errorText(error)}); it is kept as finish "failed" and excluded from training`
  })
}

// --- engine: chunked, transient failures retried, a failing chunk retried request by request ---------------------------

const failureOf = (adapter: string, cause: Cause.Cause<EngineError>): EngineError => {
  const found = cause.reasons.find(Cause.isFailReason)
  if (found) return found.error
  return new EngineFailure({ adapter, transient: false, message: `engine defect: ${Cause.pretty(cause)}` })
}

const wrongCount = (adapter: string, got: number, want: number) =>
  new EngineFailure({ adapter, transient: false, message: `engine returned ${got} replies for ${want} requests` })

/** One engine call over `requests`; a reply per request, in order: a checked generation or the error of that request. */
const generateChunk = (b: Batch, requests: ReadonlyArray<GenerateRequest>): Effect.Effect<Array<Generation | EngineError>> => {
  const { engine } = b.env
  const retried = <A>(eff: Effect.Effect<A, EngineError>) =>
    eff.pipe(Effect.retry({ times: b.settings.engineRetries, while: (e: EngineError) => e._tag === "EngineFailure" && e.transient }))
  return Effect.gen(function*() {
    const whole = yield* Effect.exit(retried(engine.generate(requests)))
    if (Exit.isSuccess(whole) && whole.value.length === requests.length) {
      return whole.value.map((g) => checkGeneration(g, engine.name, b.top10))
    }
    if (requests.length === 1) {
      return [whole._tag === "Failure" ? failureOf(engine.name, whole.cause) : wrongCount(engine.name, whole.value.length, 1)]
    }
    // isolate: one request at a time, so only the sequences that really fail are marked failed
    return yield* Effect.forEach(requests, (r) =>
      Effect.exit(retried(engine.generate([r]))).pipe(
        Effect.map((e) =>
          Exit.isSuccess(e)
            ? e.value.length === 1 ? checkGeneration(e.value[0]!, engine.name, b.top10) : wrongCount(engine.name, e.value.length, 1)
            : failureOf(engine.name, e.cause)
        )
      ))
  })
}

/** Step 1 of a round: one segment for every running trajectory, keyed by (prompt, trajectory, segment). */
const generateSegments = (b: Batch, running: ReadonlyArray<Traj>) =>
  Effect.gen(function*() {
    const { settings } = b
    const keys = running.map((t) => derive(b.batchKey, "prompt", t.prompt, "traj", t.id, "segment", t.segments))
    const requests: Array<GenerateRequest> = running.map((t, i) => ({
      tokens: t.context.slice(),
      maxTokens: settings.maxResponseTokens - t.responseLength,
      temperature: settings.temperature,
      topP: settings.topP,
      stopTokens: b.stopTokens,
      stopStrings: b.stopStrings,
      key: keys[i]!,
      ...(b.top10 ? { topLogprobs: 10 } : {})
    }))
    const t0 = now()
    const replies: Array<Generation | EngineError> = []
    for (let i = 0; i < requests.length; i += b.chunk) {
      replies.push(...(yield* generateChunk(b, requests.slice(i, i + b.chunk))))
    }
    b.stats.engineMs += now() - t0
    return { keys, replies }
  })

// --- step 2: record segments -------------------------------------------------------------------------------------------

/** Prefix-reuse accounting: the context nodes the engine had not computed yet, plus the new tokens. */
const countCompute = (b: Batch, t: Traj, reply: Generation): void => {
  const state = b.states[t.prompt]!
  if (b.prefixReuse) {
    for (let id = t.leaf; id >= 0 && !state.computed[id]; id = state.nodes[id]!.parent) {
      state.computed[id] = true
      b.stats.tokensComputed += state.nodes[id]!.tokens.length
    }
  } else {
    b.stats.tokensComputed += t.context.length
  }
  b.stats.tokensComputed += reply.tokens.length
  b.stats.tokensGenerated += reply.tokens.length
}

/** How a segment ended, and the tool call to run when it ended on a parsable call within the limits. */
const endOfSegment = (b: Batch, t: Traj, reply: Generation, key: Key) => {
  const { settings, stats } = b
  const { toolbox, engine } = b.env
  let finish: Finish = "eos"
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
      const parsed = toolbox.parse(engine.tokenizer.decode(reply.tokens))
      if (parsed !== undefined && t.calls >= settings.callLimit) {
        stats.callLimitReached++
      } else if (parsed !== undefined && t.responseLength + reply.tokens.length < settings.maxResponseTokens) {
        // the call's key: tools whose results are random by design draw from it (keyed, replayable)
        call = "malformed" in parsed ? parsed : { ...parsed, key: derive(key, "tool") }
        toolCall = "malformed" in parsed ? { tool: parsed.tool, content: "" } : { tool: parsed.tool, content: parsed.content }
      }
    }
  }
  return { finish, call, toolCall }
}

/** Measure a segment's window; a root's first one is an H_initial of the batch figures. */
const measureInto = (b: Batch, t: Traj, reply: Generation) => {
  const measured = measureSegment(t, reply, b.settings.window)
  if (measured.initial) {
    b.stats.initialWindows.push(measured.window)
    if (measured.windowBounds !== undefined) b.initialWidths.push(measured.windowBounds.upper - measured.windowBounds.lower)
  }
  return measured
}

/**
 * After a round's segments: the awaited probes of the trajectories that ran whose windows are now complete,
 * in prompt/trajectory/call order, into `probes` and the batch figures; incomplete ones keep waiting.
 */
const collectProbes = (b: Batch, running: ReadonlyArray<Traj>, probes: Array<Probe>): void => {
  for (const t of running) {
    const still: Array<AwaitedProbe> = []
    for (const w of t.awaiting) {
      const probe = probeOf(b, t, w)
      if (probe === "wait") still.push(w)
      if (typeof probe !== "object") continue
      probes.push(probe)
      b.stats.probeWindows.push(probe.hAfterTool)
      b.stats.deltaHs.push(probe.deltaH)
      if (probe.hAfterToolBounds !== undefined) b.probeWidths.push(probe.hAfterToolBounds.upper - probe.hAfterToolBounds.lower)
    }
    t.awaiting.length = 0
    t.awaiting.push(...still)
  }
}

/** entropySource "top10": the released code's window of this segment (nats), kept as the trajectory's first when it is. */
const topTenWindow = (b: Batch, t: Traj, reply: Generation): number | undefined => {
  if (!b.top10 || reply.topLogprobs === undefined) return undefined
  const window = referenceWindowSum(reply.topLogprobs, b.settings.window)
  // measureSegment has counted this segment already
  if (t.segments === 1) t.firstTop10 = window
  return window
}

/**
 * Step 2 for one trajectory: record its reply (a failure ends it) as a model node, measure the windows,
 * and return the tool call to run (undefined when the trajectory ends here).
 */
const recordSegment = (b: Batch, t: Traj, reply: Generation | EngineError, key: Key): Pending | undefined => {
  if ("_tag" in reply) {
    // a context the model cannot extend is the end of the trajectory for length, not a failure
    if (reply._tag === "ContextOverflow") endForLength(b, t)
    else markFailed(b, t, key, reply)
    return undefined
  }
  const state = b.states[t.prompt]!
  countCompute(b, t, reply)
  const bounds = boundsOf(reply)
  const { window, windowBounds } = measureInto(b, t, reply)
  const top10 = topTenWindow(b, t, reply)
  const { finish, call, toolCall } = endOfSegment(b, t, reply, key)
  const node: Node = {
    parent: t.leaf,
    kind: "model",
    tokens: reply.tokens.slice(),
    logprobs: reply.logprobs.slice(),
    entropies: reply.entropies.slice(),
    ...(bounds !== undefined ? { entropyLower: bounds.lower, entropyUpper: bounds.upper } : {}),
    finish,
    key,
    policyVersion: b.policyVersion,
    ...(toolCall ? { toolCall } : {})
  }
  const id = appendNode(state, node)
  state.computed[id] = true
  t.leaf = id
  for (const x of reply.tokens) t.context.push(x)
  t.responseLength += reply.tokens.length
  if (call === undefined) {
    t.done = true
    return undefined
  }
  return { traj: t, segmentWindow: window, segmentBounds: windowBounds, segmentTop10: top10, call }
}

// --- step 3: tools -----------------------------------------------------------------------------------------------------

/** Run one call; hangs (past `toolTimeoutMs`) and crashes become results. */
const runTool = (b: Batch, call: ToolCallRequest | MalformedCall): Effect.Effect<ToolResult> => {
  const timeoutMs = b.settings.toolTimeoutMs
  return b.env.toolbox.run(call).pipe(
    Effect.timeoutOrElse({
      duration: timeoutMs,
      orElse: () =>
        Effect.succeed<ToolResult>({ tool: call.tool, output: timeoutText(call.tool, timeoutMs), outcome: "timeout", attempts: 1, toolMs: timeoutMs })
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
}

/** Append one call's result as a tool node; the trajectory goes on (its next segment probes the result) or ends for length. */
const appendResult = (b: Batch, q: Pending, r: ToolResult, toolSteps: Array<ToolStep>): void => {
  const { settings, stats } = b
  const { toolbox, engine } = b.env
  const t = q.traj
  stats.toolCalls++
  stats.toolCallsPerPrompt[t.prompt]!++
  if (r.outcome !== "ok") stats.toolFailures++
  const remaining = settings.maxResponseTokens - t.responseLength
  const tokens = engine.tokenizer.encode(toolbox.formatResult(r.output)).slice(0, remaining)
  t.leaf = appendNode(b.states[t.prompt]!, { parent: t.leaf, kind: "tool", tokens, logprobs: [], entropies: [] })
  t.calls++
  for (const x of tokens) t.context.push(x)
  t.responseLength += tokens.length
  if (t.responseLength >= settings.maxResponseTokens) return endForLength(b, t)
  t.awaiting.push({ node: t.leaf, call: t.calls, tool: q.call.tool, at: t.context.length, segments: t.segments })
  const firstBounds = t.firstWindow !== undefined ? t.firstBounds : q.segmentBounds
  const firstTop10 = t.firstTop10 ?? q.segmentTop10
  toolSteps.push({
    prompt: t.prompt,
    trajectory: t.id,
    node: t.leaf,
    call: t.calls,
    segmentWindow: q.segmentWindow,
    firstWindow: t.firstWindow ?? q.segmentWindow,
    ...(q.segmentBounds !== undefined ? { segmentBounds: q.segmentBounds } : {}),
    ...(firstBounds !== undefined ? { firstBounds } : {}),
    ...(q.segmentTop10 !== undefined && firstTop10 !== undefined ? { segmentTop10: q.segmentTop10, firstTop10 } : {})
  })
}

/** Step 3 of a round: run the calls concurrently; append the results in prompt/trajectory order. */
const runCalls = (b: Batch, pending: ReadonlyArray<Pending>, toolSteps: Array<ToolStep>) =>
  Effect.gen(function*() {
    const t1 = now()
    const results = yield* Effect.forEach(pending, (q) => runTool(b, q.call), { concurrency: b.settings.toolConcurrency })
    if (pending.length > 0) b.stats.toolMs += now() - t1
    pending.forEach((q, i) => appendResult(b, q, results[i]!, toolSteps))
  })

// --- step 4: the policy's plan -----------------------------------------------------------------------------------------

/** Apply one action, clipped to the prompt's budget; returns how many trajectories it started. */
const applyAction = (b: Batch, action: Action): number => {
  const state = b.states[action.prompt]
  if (!state) return 0
  const room = b.settings.budget - state.trajs.length
  if (action._tag === "Fresh") {
    const n = Math.max(0, Math.min(room, Math.floor(action.count)))
    for (let i = 0; i < n; i++) startTrajectory(b, action.prompt, undefined)
    return n
  }
  const from = state.trajs[action.from]
  const node = state.nodes[action.node]
  if (!from || !node || node.kind !== "tool") return 0
  const n = Math.max(0, Math.min(room, Math.floor(action.children)))
  for (let i = 0; i < n; i++) startTrajectory(b, action.prompt, { node: action.node, rootWindow: from.rootWindow, rootBounds: from.rootBounds })
  return n
}

/** Record each decision on its tool node (the tree keeps the BranchRecord) and count it. */
const recordDecisions = (b: Batch, decisions: ReadonlyArray<Decision>): void => {
  for (const d of decisions) {
    const state = b.states[d.prompt]
    const node = state?.nodes[d.node]
    if (!state || !node) continue
    state.nodes[d.node] = { ...node, branch: d.record }
    b.stats.branchConsidered++
    if (d.record.branched) b.stats.branchTaken++
  }
}

/** The `rollout.branch` event of a decision. */
const branchEvent = (d: Decision): EventBody => ({
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
  children: d.record.children,
  ...(d.record.deltaHWindow !== undefined ? { deltaHWindow: d.record.deltaHWindow } : {}),
  ...(d.record.windowTokens !== undefined ? { windowTokens: d.record.windowTokens } : {}),
  ...(d.record.initialTokens !== undefined ? { initialTokens: d.record.initialTokens } : {}),
  ...(d.record.entropySource !== undefined ? { entropySource: d.record.entropySource } : {})
})

/**
 * Step 4 of a round: show the policy what happened, apply its actions (clipped to the budget) in order,
 * record its decisions, and emit the round's notes and decisions. Returns how many trajectories started.
 */
const planRound = (b: Batch, policy: Policy, round: number, probes: ReadonlyArray<Probe>, toolSteps: ReadonlyArray<ToolStep>) =>
  Effect.gen(function*() {
    const view: RoundView = {
      round,
      key: b.batchKey,
      vocabSize: b.vocabSize,
      budget: b.settings.budget,
      probes,
      toolSteps,
      started: b.states.map((s) => s.trajs.length),
      active: b.states.map((s) => s.trajs.filter((t) => !t.done).length)
    }
    const plan = policy.afterRound(view)
    let created = 0
    for (const action of plan.actions) created += applyAction(b, action)
    recordDecisions(b, plan.decisions)
    if (b.emitting) {
      for (const n of b.notes) yield* b.env.events.emit(n)
      for (const d of plan.decisions) yield* b.env.events.emit(branchEvent(d))
    }
    b.notes.length = 0
    return created
  })

/** One round: generate, record, run the calls, then the policy's plan; returns trajectories that ran and started. */
const runRound = (b: Batch, policy: Policy, round: number) =>
  Effect.gen(function*() {
    const running: Array<Traj> = []
    for (const s of b.states) for (const t of s.trajs) if (!t.done) running.push(t)
    const probes: Array<Probe> = []
    const toolSteps: Array<ToolStep> = []
    if (running.length > 0) {
      b.stats.rounds++
      const { keys, replies } = yield* generateSegments(b, running)
      const pending: Array<Pending> = []
      running.forEach((t, i) => {
        const q = recordSegment(b, t, replies[i]!, keys[i]!)
        if (q !== undefined) pending.push(q)
      })
      yield* runCalls(b, pending, toolSteps)
      collectProbes(b, running, probes)
    }
    const created = yield* planRound(b, policy, round, probes, toolSteps)
    return { ran: running.length, created }
  })

/** The batch's result: trees, trajectories, figures, and its `rollout.batch` event. */
const finishBatch = (b: Batch) =>
  Effect.gen(function*() {
    const { stats, states } = b
    const trees: Array<RolloutTree> = states.map((s, p) => ({ prompt: p, nodes: s.nodes }))
    for (const s of states) for (const n of s.nodes) stats.uniqueTreeTokens += n.tokens.length
    stats.wallMs = now() - b.startedAt
    if (b.emitting) yield* b.env.events.emit(batchEventOf(b))
    const trajectories: Array<RunTrajectory> = []
    for (const s of states) {
      for (const t of s.trajs) trajectories.push({ prompt: t.prompt, id: t.id, leaf: t.leaf, tokens: t.context, failed: t.failed })
    }
    return { trees, trajectories, stats }
  })

/** `batchEvent`, plus (top-k engines only) how wide the entropy intervals behind H_initial and the decisions were. */
const batchEventOf = (b: Batch): EventBody => {
  const form = b.settings.deltaHWindow ?? "paper"
  const plain = batchEvent(b.stats)
  const batch = plain._tag === "rollout.batch"
    ? { ...plain, ...(form !== "paper" ? { deltaHWindow: form } : {}), ...(b.top10 ? { entropySource: "top10" as const } : {}) }
    : plain
  const { initialWidths, probeWidths } = b
  if (batch._tag !== "rollout.batch" || (initialWidths.length === 0 && probeWidths.length === 0)) return batch
  const entropy = b.env.engine.capabilities.entropy
  return {
    ...batch,
    ...(initialWidths.length > 0 ? { meanEntropyInitialWidth: mean(initialWidths) } : {}),
    ...(probeWidths.length > 0 ? { meanEntropyAfterToolWidth: mean(probeWidths) } : {}),
    ...(typeof entropy === "object" ? { entropyPoint: entropy.point ?? "mid" } : {})
  }
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
    const policyVersion = yield* env.engine.policyVersion
    const b = newBatch(env, settings, prompts, options, policyVersion)
    // initial global samples
    prompts.forEach((_, p) => {
      const n = Math.min(settings.budget, Math.max(0, Math.floor(policy.initial(p))))
      for (let i = 0; i < n; i++) startTrajectory(b, p, undefined)
    })
    for (let round = 0;; round++) {
      const { ran, created } = yield* runRound(b, policy, round)
      if (ran === 0 && created === 0) break
    }
    return yield* finishBatch(b)
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
  window: config.window,
  ...(config.deltaHWindow !== undefined ? { deltaHWindow: config.deltaHWindow } : {}),
  ...(config.entropySource !== undefined ? { entropySource: config.entropySource } : {})
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
