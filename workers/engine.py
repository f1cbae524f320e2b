"""The torch engine: batched token-in/token-out generation and scoring on the worker's model, served to
TypeScript (src/engine/torch.ts) through the worker's JSON-lines protocol (workers/trainer.py dispatches the
`engine_*` ops here). It decodes many sequences at once through hf_model's KV cache (left-padded rows with
explicit rope positions and a key mask), reports each new token's log-prob and exact full-vocabulary entropy,
and samples with the embedded engine's rule (src/model/sample.ts, in float64) from the request's key
(src/core/random.ts's uniform(key, i), ported bit for bit), so the same keys give the same tokens.
Prefix reuse: the KV of every finished row is kept (keyed by its tokens, found by chained block hashes); a
request that shares a prefix with a kept row (its own earlier context, or the parent a branch forks from)
starts from those keys/values and computes only the rest. Colocated with training: the model is the worker's
own (an hf_model.HfCausalLM, or a view of the embedded-layout model); the kept KV is dropped whenever the
weights change or a training op runs. It never tokenizes (TypeScript sends each token's text once, for stop
strings), never trains and never reads a tokenizer file.
"""
import math
import time

import torch

import hf_model as hf

# ----------------------------------------------------------------------------------------------------------------------
# Keyed uniforms: src/core/random.ts, word for word (every value an unsigned 32-bit pattern)

M32 = 0xFFFFFFFF


def _imul(a, b):
    return (a * b) & M32


def _fmix32(h):
    h &= M32
    h ^= h >> 16
    h = _imul(h, 0x85EBCA6B)
    h ^= h >> 13
    h = _imul(h, 0xC2B2AE35)
    h ^= h >> 16
    return h & M32


def _rotl(x, r):
    return ((x << r) | (x >> (32 - r))) & M32


def _absorb(a, b, w):
    k = _imul(w & M32, 0xCC9E2D51)
    k = _rotl(k, 15)
    k = _imul(k, 0x1B873593)
    a2 = (a ^ k) & M32
    a2 = _rotl(a2, 13)
    a2 = (_imul(a2, 5) + 0xE6546B64) & M32
    b2 = _fmix32((b + a2 + 0x9E3779B9) & M32)
    return _fmix32(a2 ^ b2), b2


def _absorb_number(a, b, n):
    a, b = _absorb(a, b, 1)
    a, b = _absorb(a, b, (n // 0x100000000) & M32)
    return _absorb(a, b, n & M32)


def key_word(k0, k1, i):
    a, b = _absorb_number((k0 ^ 0x5BD1E995) & M32, k1 & M32, i)
    return _fmix32(a ^ _imul(b, 0x27D4EB2F))


def uniform(k0, k1, i):
    """The i-th uniform number in [0, 1) of key (k0, k1), 53 random bits: exactly random.ts's uniform(key, i)."""
    hi = key_word(k0, k1, 2 * i) >> 5
    lo = key_word(k0, k1, 2 * i + 1) >> 6
    return (hi * 67108864 + lo) / 9007199254740992.0


# ----------------------------------------------------------------------------------------------------------------------
# Sampling: src/model/sample.ts's `choose` on rows of logits, in float64


def choose_rows(logits, temps, top_ps, us):
    """logits [B, V] (any float dtype) → (tokens [B], logprob [B], entropy [B]) as Python lists. The log-prob and
    entropy are of the temperature-1 distribution; the draw is inverse-CDF with u under temperature and top-p
    (the smallest most-likely set whose mass reaches top-p, ties by lower id), temperature 0 is greedy."""
    x = logits.double()
    lse = torch.logsumexp(x, -1, keepdim=True)
    lp = x - lse
    p = lp.exp()
    ent = (-(p * lp).sum(-1)).clamp_min(0.0)
    B, V = x.shape
    tokens = [0] * B
    plain = [b for b in range(B) if temps[b] == 1 and top_ps[b] >= 1]
    if plain:
        idx = torch.tensor(plain, dtype=torch.long, device=x.device)
        cum = p.index_select(0, idx).cumsum(-1)
        u = torch.tensor([us[b] for b in plain], dtype=torch.float64, device=x.device)[:, None]
        picked = torch.searchsorted(cum, u, right=True).squeeze(-1).tolist()
        for j, b in enumerate(plain):
            tokens[b] = picked[j] if picked[j] < V else _last_positive(p[b])
    for b in range(B):
        if temps[b] == 1 and top_ps[b] >= 1:
            continue
        if temps[b] <= 0:
            tokens[b] = int(torch.argmax(x[b]))
            continue
        q = p[b] if temps[b] == 1 else torch.softmax(x[b] / temps[b], -1)
        if top_ps[b] < 1:
            order = torch.sort(-q, stable=True).indices
            qs = q.index_select(0, order)
            cum = qs.cumsum(0)
            keep = 1 + int((cum[:-1] < top_ps[b]).sum())
            cum = cum[:keep]
            target = us[b] * float(cum[-1])
            j = int(torch.searchsorted(cum, torch.tensor([target], dtype=torch.float64, device=x.device), right=True))
            tokens[b] = int(order[j]) if j < keep else int(order[:keep][_last_positive(qs[:keep])])
        else:
            cum = q.cumsum(0)
            j = int(torch.searchsorted(cum, torch.tensor([us[b]], dtype=torch.float64, device=x.device), right=True))
            tokens[b] = j if j < V else _last_positive(q)
    chosen = torch.tensor(tokens, dtype=torch.long, device=x.device)
    logprob = lp.gather(1, chosen[:, None]).squeeze(1)
    return tokens, logprob.tolist(), ent.tolist()


def _last_positive(p):
    nz = torch.nonzero(p > 0).flatten()
    return int(nz[-1]) if nz.numel() > 0 else p.shape[0] - 1


# ----------------------------------------------------------------------------------------------------------------------
# The embedded layout (workers/trainer.py's Model) as an HfCausalLM view


def embedded_view(model, dtype=None):
    """An HfCausalLM (llama, no biases, heads = kv heads, rotate-half rope) holding copies of an embedded-layout
    model's weights (matrices [in, out] transposed to torch's [out, in])."""
    c = model.config
    raw = {"architectures": ["LlamaForCausalLM"], "vocab_size": c["vocab"], "hidden_size": c["dModel"],
           "intermediate_size": c["mlpWidth"], "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
           "num_key_value_heads": c["heads"], "rms_norm_eps": c["normEps"], "rope_theta": c["ropeTheta"],
           "tie_word_embeddings": bool(c["tiedHead"]), "max_position_embeddings": c["context"]}
    cfg = hf.HfConfig(raw, "embedded checkpoint")
    p = model.by_name
    dev = p["embed"].device
    dt = dtype or torch.float32
    view = hf.HfCausalLM(cfg, device=dev, dtype=dt)
    with torch.no_grad():
        named = dict(view.named_parameters())

        def put(name, x):
            named[name].copy_(x.detach().to(dt))

        put("model.embed_tokens.weight", p["embed"])
        for l in range(c["layers"]):
            e, h = f"layers.{l}.", f"model.layers.{l}."
            put(h + "input_layernorm.weight", p[e + "attnNorm"])
            put(h + "self_attn.q_proj.weight", p[e + "wq"].t())
            put(h + "self_attn.k_proj.weight", p[e + "wk"].t())
            put(h + "self_attn.v_proj.weight", p[e + "wv"].t())
            put(h + "self_attn.o_proj.weight", p[e + "wo"].t())
            put(h + "post_attention_layernorm.weight", p[e + "mlpNorm"])
            put(h + "mlp.gate_proj.weight", p[e + "wGate"].t())
            put(h + "mlp.up_proj.weight", p[e + "wUp"].t())
            put(h + "mlp.down_proj.weight", p[e + "wDown"].t())
        put("model.norm.weight", p["finalNorm"])
        if not c["tiedHead"]:
            put("lm_head.weight", p["head"].t())
    view.eval()
    return view


# ----------------------------------------------------------------------------------------------------------------------
# Kept KV: rows of finished generations, found by chained hashes of token blocks

BLOCK = 16


class Entry:
    __slots__ = ("tokens", "k", "v", "used")

    def __init__(self, tokens, k, v, used):
        self.tokens, self.k, self.v, self.used = tokens, k, v, used  # k, v: per layer [n_kv, L, D]

    @property
    def length(self):
        return len(self.tokens)


def block_hashes(tokens, upto):
    out = []
    h = 0
    for j in range(0, upto - upto % BLOCK, BLOCK):
        h = hash((h, tuple(tokens[j:j + BLOCK])))
        out.append(h)
    return out


class PrefixStore:
    """Keeps rows' KV up to `capacity` tokens (least recently used dropped first)."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.entries = []
        self.index = {}  # chained hash of the first j blocks -> entry
        self.tokens = 0
        self.clock = 0

    def clear(self):
        freed = self.tokens
        self.entries, self.index, self.tokens = [], {}, 0
        return freed

    def lookup(self, tokens):
        """(entry, n): the kept row sharing the longest prefix with `tokens`, capped at len(tokens) - 1 (the last
        token is always computed: its logits are needed), or (None, 0)."""
        limit = len(tokens) - 1
        if limit <= 0 or not self.entries:
            return None, 0
        best, n = None, 0
        hs = block_hashes(tokens, limit)
        for j in range(len(hs) - 1, -1, -1):
            e = self.index.get(hs[j])
            if e is not None and e.tokens[:(j + 1) * BLOCK] == tokens[:(j + 1) * BLOCK]:
                best, n = e, (j + 1) * BLOCK
                break
        if best is None:  # a short shared prefix (< one block): try the most recent entries
            for e in self.entries[-8:]:
                m = _common(e.tokens, tokens, limit)
                if m > n:
                    best, n = e, m
            if best is None:
                return None, 0
        n += _common(best.tokens[n:], tokens[n:], limit - n)
        self.clock += 1
        best.used = self.clock
        return best, n

    def insert(self, tokens, k, v):
        if len(tokens) < 1 or len(tokens) > self.capacity:
            return
        self.clock += 1
        e = Entry(tokens, k, v, self.clock)
        self.entries.append(e)
        self.tokens += len(tokens)
        for h in block_hashes(tokens, len(tokens)):
            self.index[h] = e
        while self.tokens > self.capacity and len(self.entries) > 1:
            old = min(self.entries, key=lambda x: x.used)
            self._drop(old)

    def _drop(self, e):
        self.entries.remove(e)
        self.tokens -= e.length
        for h in block_hashes(e.tokens, e.length):
            if self.index.get(h) is e:
                del self.index[h]


def _common(a, b, limit):
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# ----------------------------------------------------------------------------------------------------------------------
# The engine


class EngineError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind, self.message = kind, message


class Engine:
    def __init__(self, st, req):
        self.st = st
        self.pieces = req.get("pieces") or []
        self.eos = int(req["eos"])
        self.pad = int(req.get("pad", self.eos))
        self.max_batch = max(1, int(req.get("maxBatch", 64)))
        self.prefill_tokens = max(1, int(req.get("prefillTokens", 8192)))
        self.store = PrefixStore(int(req.get("cacheTokens", 1 << 20)))
        want = req.get("dtype", "auto")
        self.want_dtype = want
        self.own = None  # a model the engine loaded itself (no trainer model)
        self.view = None  # (source identity, weights generation) -> the HfCausalLM decoded with
        self.view_key = None
        self.generation = 0  # bumped whenever the weights may have changed (training ops, loads)
        self.context = None
        self.cast = None  # the policy's autocast when decoding with a LoRA policy's own module

    def ctx(self):
        return self.cast() if self.cast is not None else _NoCast()

    # -- the model -------------------------------------------------------------------------------------------

    def dtype_for(self, device):
        if self.want_dtype == "float32" or device.type != "cuda":
            return torch.float32
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "auto": torch.bfloat16}[self.want_dtype]

    def source(self):
        if self.own is not None:
            return self.own
        m = getattr(self.st, "model", None)
        if m is None:
            raise EngineError("protocol", "engine: no model (load one with engine_load, or init the trainer first)")
        return m

    def model(self):
        src = self.source()
        key = (id(src), self.generation)
        if self.view is not None and self.view_key == key:
            return self.view
        self.store.clear()
        inner = _hf_module(src)
        self.cast = None
        if inner is not None:
            dev = inner.head_weight().device
            dt = self.dtype_for(dev)
            if dt == inner.head_weight().dtype or getattr(src, "lora", None) is not None:
                # the trainer's own module (loading is a version bump); a LoRA policy runs under its autocast
                view = inner
                self.cast = getattr(src, "autocast", None)
            else:
                view = _cast_copy(inner, dt)  # a copy in the rollout dtype (float32 masters on CUDA)
        elif hasattr(src, "by_name") and hasattr(src, "config"):  # trainer.py's embedded-layout Model
            view = embedded_view(src, self.dtype_for(src.by_name["embed"].device))
        else:
            raise EngineError("protocol", f"engine: cannot decode with a model of type {type(src).__name__}")
        self.view, self.view_key = view, key
        self.context = int(view.config.max_position_embeddings)
        return view

    def weights_changed(self):
        self.generation += 1
        self.store.clear()

    def release(self):
        """Drops the kept KV, and a view that is a copy (not the trainer's module): memory for a training step."""
        freed = self.store.clear()
        if self.view is not None and self.view is not self.source_or_none():
            self.view, self.view_key = None, None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return freed

    def source_or_none(self):
        try:
            src = self.source()
        except EngineError:
            return None
        return _hf_module(src)

    # -- generation --------------------------------------------------------------------------------------------

    def check(self, tokens, V, what):
        if not isinstance(tokens, list) or len(tokens) == 0:
            raise EngineError("protocol", f"{what}: empty token list")
        for t in tokens:
            if not (isinstance(t, int) and 0 <= t < V):
                raise EngineError("protocol", f"{what}: token {t!r} is outside the vocabulary 0..{V - 1}")

    def generate(self, reqs):
        model = self.model()
        V = model.config.vocab_size
        for i, r in enumerate(reqs):
            self.check(r["tokens"], V, f"request {i}")
            if len(r["tokens"]) + 1 > self.context:
                raise EngineError("context", f"request {i}: {len(r['tokens'])} tokens leave no room in the context "
                                             f"of {self.context}")
        stats = {"computed": 0, "reused": 0, "newTokens": 0, "prefillMs": 0.0, "decodeMs": 0.0}
        out = [None] * len(reqs)
        order = sorted(range(len(reqs)), key=lambda i: -len(reqs[i]["tokens"]))  # similar lengths batch together
        with torch.no_grad():
            for c0 in range(0, len(order), self.max_batch):
                rows = order[c0:c0 + self.max_batch]
                for i, res in zip(rows, self.run_rows(model, [reqs[i] for i in rows], stats)):
                    out[i] = res
        return out, stats

    def run_rows(self, model, reqs, stats):
        t0 = time.time()
        dev = model.head_weight().device
        n = len(reqs)
        # 1. prefill: each row's uncomputed suffix on top of its kept prefix, in groups of bounded size
        kv = [None] * n
        last_logits = [None] * n
        # rows with the same context (the N initial samples of a prompt, the branches forked at one point) are
        # prefilled once: the others take the leader's keys, values and last logits
        leaders, lead_of = {}, [None] * n
        for i, r in enumerate(reqs):
            lead_of[i] = leaders.setdefault(tuple(r["tokens"]), i)
        todo = [i for i in range(n) if lead_of[i] == i]
        hits = [self.store.lookup(r["tokens"]) if lead_of[i] == i else None for i, r in enumerate(reqs)]
        g0 = 0
        while g0 < len(todo):
            g1, total = g0, 0
            while g1 < len(todo) and (g1 == g0 or total + len(reqs[todo[g1]]["tokens"]) <= self.prefill_tokens):
                total += len(reqs[todo[g1]]["tokens"])
                g1 += 1
            idx = todo[g0:g1]
            cache, mask, lens = self.assemble(model, [hits[i][0] for i in idx], [hits[i][1] for i in idx], dev)
            suffix = [reqs[i]["tokens"][hits[i][1]:] for i in idx]
            S = max(len(s) for s in suffix)
            ids = torch.full((len(idx), S), self.pad, dtype=torch.long)
            pos = torch.zeros((len(idx), S), dtype=torch.long)
            smask = torch.zeros((len(idx), S), dtype=torch.bool)
            for j, s in enumerate(suffix):
                ids[j, S - len(s):] = torch.tensor(s, dtype=torch.long)
                pos[j, S - len(s):] = torch.arange(hits[idx[j]][1], hits[idx[j]][1] + len(s))
                smask[j, S - len(s):] = True
                stats["computed"] += len(s)
                stats["reused"] += hits[idx[j]][1]
            key_mask = torch.cat([mask, smask.to(dev)], 1)
            with self.ctx():
                hidden = model(ids.to(dev), positions=pos.to(dev), cache=cache, key_mask=key_mask, return_hidden=True)
                logits = torch.nn.functional.linear(hidden[:, -1], model.head_weight()).float()
            for j, i in enumerate(idx):
                m = key_mask[j]
                kv[i] = ([lc.k[j][:, m] for lc in cache.layers], [lc.v[j][:, m] for lc in cache.layers])
                last_logits[i] = logits[j]
            del cache, hidden
            g0 = g1
        for i in range(n):
            if lead_of[i] != i:
                kv[i], last_logits[i] = kv[lead_of[i]], last_logits[lead_of[i]]
                stats["reused"] += len(reqs[i]["tokens"])
        t1 = time.time()
        stats["prefillMs"] += (t1 - t0) * 1000
        # 2. decode all rows together, one token per step
        results = self.decode(model, reqs, kv, torch.stack(last_logits), stats, dev)
        stats["decodeMs"] += (time.time() - t1) * 1000
        return results

    def assemble(self, model, entries, lengths, dev):
        """A left-padded KVCache of the given kept prefixes (entry e's first n positions) and its key mask."""
        cfg = model.config
        B = len(entries)
        P = max(lengths) if lengths else 0
        cache = model.new_cache()
        mask = torch.zeros((B, P), dtype=torch.bool, device=dev)
        if P == 0:
            return cache, mask, lengths
        dt = model.head_weight().dtype
        for li, lc in enumerate(cache.layers):
            k = torch.zeros((B, cfg.num_kv_heads, P, cfg.head_dim), dtype=dt, device=dev)
            v = torch.zeros_like(k)
            for b, (e, n) in enumerate(zip(entries, lengths)):
                if n > 0:
                    k[b, :, P - n:] = e.k[li][:, :n]
                    v[b, :, P - n:] = e.v[li][:, :n]
            lc.k, lc.v = k, v
        for b, n in enumerate(lengths):
            if n > 0:
                mask[b, P - n:] = True
        return cache, mask, lengths

    def decode(self, model, reqs, kv, logits, stats, dev):
        n = len(reqs)
        cfg = model.config
        lens = [len(r["tokens"]) for r in reqs]
        L = max(k[0][0].shape[1] for k in kv)
        dt = model.head_weight().dtype
        cache = model.new_cache()
        mask = torch.zeros((n, L), dtype=torch.bool, device=dev)
        for li, lc in enumerate(cache.layers):
            k = torch.zeros((n, cfg.num_kv_heads, L, cfg.head_dim), dtype=dt, device=dev)
            v = torch.zeros_like(k)
            for b in range(n):
                m = kv[b][0][li].shape[1]
                k[b, :, L - m:] = kv[b][0][li]
                v[b, :, L - m:] = kv[b][1][li]
            lc.k, lc.v = k, v
        for b in range(n):
            mask[b, L - kv[b][0][0].shape[1]:] = True
        del kv
        out = [{"tokens": [], "logprobs": [], "entropies": [], "finish": None} for _ in reqs]
        texts = [""] * n
        stop_sets = [set(r.get("stopTokens") or []) for r in reqs]
        stop_strings = [[s for s in (r.get("stopStrings") or []) if s] for r in reqs]
        keys = [(int(r["key"][0]) & M32, int(r["key"][1]) & M32) for r in reqs]
        temps = [float(r.get("temperature", 1.0)) for r in reqs]
        top_ps = [float(r.get("topP", 1.0)) for r in reqs]
        for b, r in enumerate(reqs):
            if int(r.get("maxTokens", 0)) <= 0:
                out[b]["finish"] = {"kind": "length"}
        alive = [b for b in range(n) if out[b]["finish"] is None]
        rows = list(range(n))  # batch row -> request
        while alive:
            pos_of = {b: j for j, b in enumerate(rows)}
            sel = torch.tensor([pos_of[b] for b in alive], dtype=torch.long, device=dev)
            if len(alive) < len(rows):  # compact: drop finished rows from the batch
                cache = cache.select(sel)
                mask = mask.index_select(0, sel)
                logits = logits.index_select(0, sel)
                rows = list(alive)
            us = [uniform(keys[b][0], keys[b][1], len(out[b]["tokens"])) for b in rows]
            toks, lps, ents = choose_rows(logits, [temps[b] for b in rows], [top_ps[b] for b in rows], us)
            next_alive = []
            for j, b in enumerate(rows):
                t = toks[j]
                o = out[b]
                o["tokens"].append(t)
                o["logprobs"].append(lps[j])
                o["entropies"].append(ents[j])
                stats["newTokens"] += 1
                if t in stop_sets[b]:
                    o["finish"] = {"kind": "stop", "token": t}
                elif t == self.eos:
                    o["finish"] = {"kind": "eos"}
                else:
                    hit = None
                    if stop_strings[b]:
                        piece = self.pieces[t] if t < len(self.pieces) else ""
                        texts[b] += piece
                        for s in stop_strings[b]:
                            if s in texts[b][-(len(piece) + len(s)):]:
                                hit = s
                                break
                        texts[b] = texts[b][-256:]
                    if hit is not None:
                        o["finish"] = {"kind": "stop", "text": hit}
                    elif len(o["tokens"]) >= int(reqs[b]["maxTokens"]) or lens[b] + len(o["tokens"]) >= self.context:
                        o["finish"] = {"kind": "length"}
                    else:
                        next_alive.append(b)
            # keep the finished rows' KV (context + all but the last sampled token)
            for j, b in enumerate(rows):
                if out[b]["finish"] is not None:
                    self.keep(reqs[b]["tokens"] + out[b]["tokens"][:-1], cache, mask, j)
            alive = next_alive
            if not alive:
                break
            # feed the sampled tokens of the rows still running
            pos_of = {b: j for j, b in enumerate(rows)}
            sel = torch.tensor([pos_of[b] for b in alive], dtype=torch.long, device=dev)
            if len(alive) < len(rows):
                cache = cache.select(sel)
                mask = mask.index_select(0, sel)
                rows = list(alive)
            ids = torch.tensor([[out[b]["tokens"][-1]] for b in rows], dtype=torch.long, device=dev)
            pos = torch.tensor([[lens[b] + len(out[b]["tokens"]) - 1] for b in rows], dtype=torch.long, device=dev)
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.bool, device=dev)], 1)
            with self.ctx():
                hidden = model(ids, positions=pos, cache=cache, key_mask=mask, return_hidden=True)
                logits = torch.nn.functional.linear(hidden[:, -1], model.head_weight()).float()
            stats["computed"] += len(rows)
        return out

    def keep(self, tokens, cache, mask, j):
        m = mask[j]
        if int(m.sum()) != len(tokens):
            return  # (cannot happen) never keep a row whose keys do not match its tokens
        self.store.insert(list(tokens), [lc.k[j][:, m].clone() for lc in cache.layers],
                          [lc.v[j][:, m].clone() for lc in cache.layers])

    # -- scoring -----------------------------------------------------------------------------------------------

    def score(self, seqs, rows=16):
        model = self.model()
        V = model.config.vocab_size
        dev = model.head_weight().device
        lps, ents = [], []
        for i, s in enumerate(seqs):
            self.check(s, V, f"sequence {i}")
            if len(s) > self.context:
                raise EngineError("context", f"sequence {i}: {len(s)} tokens exceed the context of {self.context}")
        with torch.no_grad():
            for g0 in range(0, len(seqs), rows):
                group = seqs[g0:g0 + rows]
                T = max(2, max(len(s) for s in group))
                ids = torch.full((len(group), T), self.pad, dtype=torch.long)
                for j, s in enumerate(group):
                    ids[j, :len(s)] = torch.tensor(s, dtype=torch.long)
                with self.ctx():
                    lp, en = hf.token_logprobs(model, ids.to(dev))
                for j, s in enumerate(group):
                    lps.append(lp[j, :len(s)].double().tolist() if len(s) > 1 else [0.0] * len(s))
                    ents.append(en[j, :len(s)].double().tolist() if len(s) > 1 else [0.0] * len(s))
        return lps, ents


def _hf_module(src):
    """The HfCausalLM of a model source: itself, or the `model` of hf_worker's HfPolicy (full or LoRA)."""
    if isinstance(src, hf.HfCausalLM):
        return src
    inner = getattr(src, "model", None)
    return inner if isinstance(inner, hf.HfCausalLM) else None


class _NoCast:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _cast_copy(src, dtype):
    """A copy of an HfCausalLM in another dtype (bfloat16 rollouts from float32 master weights on CUDA)."""
    cfg = src.config
    dev = src.head_weight().device
    view = hf.HfCausalLM(cfg, device=dev, dtype=dtype)
    with torch.no_grad():
        named = dict(view.named_parameters())
        for name, p in src.named_parameters():
            named[name].copy_(p.detach().to(dtype))
    view.inv_freq = src.inv_freq
    view.eval()
    return view


# ----------------------------------------------------------------------------------------------------------------------
# Worker ops (registered by workers/trainer.py)


def _engine(st, op):
    e = getattr(st, "engine", None)
    if e is None:
        raise EngineError("protocol", f"{op}: no engine (send engine_init first)")
    return e


def op_engine_init(st, req):
    """{eos, pad?, pieces (each token's text, for stop strings), maxBatch?, cacheTokens?, prefillTokens?, dtype?,
    load?: {format: "hf" | "embedded", path, device?}} → the model's figures."""
    st.engine = Engine(st, req)
    if req.get("load"):
        op_engine_load(st, req["load"])
    m = st.engine.model()
    dev = m.head_weight().device
    return {"vocab": m.config.vocab_size, "context": st.engine.context, "device": str(dev),
            "dtype": str(m.head_weight().dtype).replace("torch.", ""), "params": sum(p.numel() for p in m.parameters()),
            "torch": torch.__version__}


def op_engine_load(st, req):
    """Serve weights from a path: an HF checkpoint directory (format hf) or an embedded safetensors file."""
    e = _engine(st, "engine_load")
    fmt = req.get("format", "hf")
    path = req["path"]
    want = req.get("device", "auto")
    dev = torch.device("cuda" if want in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if fmt == "hf":
        try:
            model, _ = hf.load_pretrained(path, device=dev, dtype=torch.float32 if dev.type == "cpu" else e.dtype_for(dev))
        except hf.CheckpointError as err:
            raise EngineError("protocol", f"engine_load: {err.message}")
        model.eval()
        e.own = model
    elif fmt == "embedded":
        import __main__ as trainer  # the worker script (workers/trainer.py): its safetensors reader and Model
        if not hasattr(trainer, "Model"):
            import trainer
        tensors, meta = trainer.read_safetensors(path)
        config = __import__("json").loads(meta["config"])
        e.own = trainer.Model(config, [(n, x) for n, x in tensors if not n.startswith("optim.")], dev)
    else:
        raise EngineError("protocol", f"engine_load: format {fmt!r} is not one of hf, embedded")
    e.weights_changed()
    return {"format": fmt, "path": path}


def op_engine_generate(st, req):
    e = _engine(st, "engine_generate")
    results, stats = e.generate(req["requests"])
    return {"results": results, "stats": stats}


def op_engine_score(st, req):
    e = _engine(st, "engine_score")
    lps, ents = e.score(req["sequences"], int(req.get("microBatchRows", 16)))
    return {"logprobs": lps, "entropies": ents}


def op_engine_release(st, req):
    e = _engine(st, "engine_release")
    return {"freedTokens": e.release()}


def op_engine_uniforms(st, req):
    """uniform(key, i) for i in [0, n) (cross-checked against src/core/random.ts)."""
    k0, k1 = int(req["key"][0]), int(req["key"][1])
    return {"uniforms": [uniform(k0, k1, i) for i in range(int(req["n"]))]}


OPS = {"engine_init": op_engine_init, "engine_load": op_engine_load, "engine_generate": op_engine_generate,
       "engine_score": op_engine_score, "engine_release": op_engine_release, "engine_uniforms": op_engine_uniforms}
