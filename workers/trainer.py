#!/usr/bin/env python3
"""The PyTorch trainer worker: a child process driven by TypeScript (src/trainer/pytorch.ts) over stdio,
one JSON object a line each way (requests on stdin, replies on stdout, logs on stderr). It reproduces the
embedded jax-js model (src/model/forward.ts) and the core's policy loss (src/core/loss.ts) in plain PyTorch,
float32, on CUDA when available, and reads/writes checkpoints in the embedded safetensors layout. With
`init {hfModel: <dir>}` the policy is a Hugging Face Llama / Qwen2 / Qwen3 checkpoint instead (workers/hf_model.py,
workers/hf_worker.py: full or LoRA training, HF / peft / GGUF exports); the loss and the optimizer are the same.
It never tokenizes, samples or computes advantages: TypeScript owns token ids, masks and per-token advantages.
torch is imported lazily, so `ping`/`version` answer (and the protocol can be tested) without it.
"""
import json
import math
import os
import struct
import sys
import time
import traceback

import atomicfile

PROTOCOL = 1
DEBUG = os.environ.get("ARPO_WORKER_DEBUG") == "1"

torch = None  # imported by need_torch()
F = None
# Under torchrun (workers/distributed.py, issue 18) the process group's view: which micro-batches this rank computes
# (DIST.starts) and the all-reduce of gradients and sums (DIST.reduce). None in a single process.
DIST = None


def micro_batch_starts(n, rows):
    return range(0, n, rows) if DIST is None else DIST.starts(n, rows)


class WorkerError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def need_torch():
    global torch, F
    if torch is None:
        try:
            import torch as _torch
            import torch.nn.functional as _F
        except Exception as e:  # ImportError, or a broken install
            raise WorkerError("internal", f"PyTorch is not importable by {sys.executable}: {e}")
        torch, F = _torch, _F
    return torch


# ----------------------------------------------------------------------------------------------------------------------
# Safetensors (hand-written: Debian has no python3-safetensors). Same layout as src/model/checkpoint.ts.

def read_safetensors(path):
    t = need_torch()
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise WorkerError("internal", f"safetensors {path}: {len(data)} bytes is too short")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise WorkerError("internal", f"safetensors {path}: header of {n} bytes runs past the end")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = []
    for name, v in header.items():
        a, b = v["data_offsets"]
        dtype = {"F32": t.float32, "F64": t.float64}.get(v["dtype"])
        if dtype is None:
            raise WorkerError("internal", f"safetensors {path}: tensor {name} has unsupported dtype {v['dtype']}")
        buf = bytearray(data[base + a:base + b])
        x = t.frombuffer(buf, dtype=dtype) if b > a else t.zeros(0, dtype=dtype)
        tensors.append((name, x.reshape(v["shape"]).to(t.float32)))
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, float32 tensor). Atomic: temp file, fsync, rename (as writeAtomic)."""
    atomicfile.write_safetensors(path, [(name, "F32", x.shape, _tensor_bytes(x)) for name, x in tensors], metadata)


def _tensor_bytes(x):
    """Little-endian float32 bytes of a tensor (numpy, which torch ships with, or struct as a fallback)."""
    if sys.byteorder != "little":
        raise WorkerError("internal", "big-endian hosts are not supported")
    flat = x.detach().to("cpu", dtype=torch.float32).contiguous().reshape(-1)
    try:
        return flat.numpy().tobytes()
    except (ImportError, RuntimeError):
        return struct.pack(f"<{flat.numel()}f", *flat.tolist())


# ----------------------------------------------------------------------------------------------------------------------
# The model (mirrors src/model/params.ts names and src/model/forward.ts math; matrices are [in, out])

LAYER_KEYS = ["attnNorm", "wq", "wk", "wv", "wo", "mlpNorm", "wGate", "wUp", "wDown"]
CONFIG_KEYS = ["vocab", "dModel", "layers", "heads", "mlpWidth", "context", "tiedHead", "ropeTheta", "normEps"]


def param_specs(c):
    d, m = c["dModel"], c["mlpWidth"]
    out = [("embed", [c["vocab"], d])]
    for l in range(c["layers"]):
        p = f"layers.{l}."
        out += [(p + "attnNorm", [d]), (p + "wq", [d, d]), (p + "wk", [d, d]), (p + "wv", [d, d]), (p + "wo", [d, d]),
                (p + "mlpNorm", [d]), (p + "wGate", [d, m]), (p + "wUp", [d, m]), (p + "wDown", [m, d])]
    out.append(("finalNorm", [d]))
    if not c["tiedHead"]:
        out.append(("head", [d, c["vocab"]]))
    return out


def check_config(c):
    missing = [k for k in CONFIG_KEYS if k not in c]
    if missing:
        raise WorkerError("protocol", f"init: model config lacks {', '.join(missing)}")
    if c["dModel"] % c["heads"] != 0 or (c["dModel"] // c["heads"]) % 2 != 0:
        raise WorkerError("protocol", f"init: dModel {c['dModel']} / heads {c['heads']} must be an even integer")


class Model:
    def __init__(self, config, named, device):
        t = need_torch()
        self.config = config
        self.device = device
        specs = param_specs(config)
        given = dict(named)
        self.names = [n for n, _ in specs]
        self.params = []
        for name, shape in specs:
            if name not in given:
                raise WorkerError("protocol", f"weights lack tensor {name}{shape}")
            x = given[name]
            if list(x.shape) != shape:
                raise WorkerError("protocol", f"tensor {name} is {list(x.shape)}, expected {shape}")
            self.params.append(x.to(device=device, dtype=t.float32).clone().requires_grad_(True))
        self.by_name = dict(zip(self.names, self.params))
        h = config["dModel"] // config["heads"]
        half = h // 2
        # cos/sin in float64 on the host, as ropeHost does, then float32
        pos = t.arange(config["context"], dtype=t.float64)[:, None]
        i = t.arange(h, dtype=t.float64)[None, :] % half
        angle = pos * t.pow(t.tensor(float(config["ropeTheta"]), dtype=t.float64), -2.0 * i / h)
        self.cos = t.cos(angle).to(device=device, dtype=t.float32)
        self.sin = t.sin(angle).to(device=device, dtype=t.float32)

    def named(self):
        return list(zip(self.names, self.params))

    def _rms(self, x, g):
        ms = (x * x).mean(-1, keepdim=True)
        return x * torch.reciprocal(torch.sqrt(ms + self.config["normEps"])) * g

    def logits(self, tokens):
        """tokens [B,T] int64 → logits [B,T,V] (causal, full sequence)."""
        c = self.config
        p = self.by_name
        B, T = tokens.shape
        H = c["heads"]
        h = c["dModel"] // H
        cos = self.cos[:T]
        sin = self.sin[:T]
        causal = torch.ones(T, T, dtype=torch.bool, device=self.device).tril()

        def heads(x):
            return x.reshape(B, T, H, h).transpose(1, 2)

        def rope(x):
            x1, x2 = x[..., : h // 2], x[..., h // 2:]
            return x * cos + torch.cat([-x2, x1], -1) * sin

        x = p["embed"][tokens]
        for l in range(c["layers"]):
            q = f"layers.{l}."
            a = self._rms(x, p[q + "attnNorm"])
            qh = rope(heads(a @ p[q + "wq"]))
            kh = rope(heads(a @ p[q + "wk"]))
            vh = heads(a @ p[q + "wv"])
            scores = (qh @ kh.transpose(-1, -2)) * (1.0 / math.sqrt(h))
            probs = torch.softmax(torch.where(causal, scores, torch.full_like(scores, -1e9)), -1)
            att = (probs @ vh).transpose(1, 2).reshape(B, T, H * h)
            x = x + att @ p[q + "wo"]
            m = self._rms(x, p[q + "mlpNorm"])
            x = x + (F.silu(m @ p[q + "wGate"]) * (m @ p[q + "wUp"])) @ p[q + "wDown"]
        hN = self._rms(x, p["finalNorm"])
        return hN @ (p["embed"].t() if c["tiedHead"] else p["head"])

    def token_logprobs(self, tokens):
        """Entry t: log π(tokens[t] | tokens[<t]) and the entropy of that distribution; entry 0 is 0."""
        logits = self.logits(tokens)
        lsm = torch.log_softmax(logits[:, :-1], -1)
        logp = lsm.gather(-1, tokens[:, 1:, None]).squeeze(-1)
        ent = -(lsm.exp() * lsm).sum(-1)
        z = torch.zeros(tokens.shape[0], 1, dtype=logp.dtype, device=logp.device)
        return torch.cat([z, logp], 1), torch.cat([z, ent], 1)


# ----------------------------------------------------------------------------------------------------------------------
# The policy loss (mirrors src/model/loss.ts, itself checked against src/core/loss.ts)

AGGREGATIONS = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")

DEFAULT_LOSS = {"clipLow": 0.2, "clipHigh": 0.2, "dualClip": 3.0, "balancedClip": False, "klCoef": 0.0,
                "klEstimator": "k3", "aggregation": "token-mean"}


def batch_normalizer(seqs):
    tokens = sum(sum(s["lossMask"]) for s in seqs)
    longest = max([len(s["tokens"]) - s.get("responseStart", 0) for s in seqs] + [0])
    return {"tokens": tokens, "sequences": len(seqs), "maxResponseTokens": longest}


def aggregation_scale(mode, norm, seq_tokens):
    inv = (lambda d: 1.0 / d if d > 0 else 0.0)
    if mode == "token-mean":
        return inv(norm["tokens"])
    if mode == "seq-mean-token-sum":
        return inv(norm["sequences"])
    if mode == "seq-mean-token-mean":
        return inv(norm["sequences"]) / seq_tokens if seq_tokens > 0 else 0.0
    if mode == "seq-mean-token-sum-norm":
        return inv(norm["maxResponseTokens"])
    raise WorkerError("protocol", f"unknown aggregation {mode!r} (one of {', '.join(AGGREGATIONS)})")


def kl_term(est, logp, ref):
    if est == "k1":
        return logp - ref
    if est == "k2":
        return 0.5 * (logp - ref) ** 2
    if est == "k3":
        d = ref - logp
        k = torch.expm1(d) - d
        return torch.where(k.detach() > 10, torch.full_like(k, 10.0), k)
    raise WorkerError("protocol", f"unknown klEstimator {est!r}")


def policy_token_loss(cfg, logp, adv, old, ref):
    lo, hi = 1 - cfg["clipLow"], 1 + cfg["clipHigh"]
    ratio = torch.exp(logp - old)
    rsg = ratio.detach()
    upper = ratio * hi / rsg if cfg["balancedClip"] else torch.full_like(ratio, hi)
    clipped = torch.where(rsg > hi, upper, torch.where(rsg < lo, torch.full_like(ratio, lo), ratio))
    neg_a = -adv
    pg1 = neg_a * ratio
    pg2 = neg_a * clipped
    clip_active = pg2.detach() > pg1.detach()
    loss = torch.where(clip_active, pg2, pg1)
    if cfg.get("dualClip") is not None:
        c = float(cfg["dualClip"])
        if not c > 1:
            raise WorkerError("protocol", f"dual-clip constant {c} must be > 1")
        cap = neg_a * c
        active = (neg_a > 0) & (cap < loss.detach())
        loss = torch.where(active, cap, loss)
    if cfg["klCoef"] != 0:
        loss = loss + cfg["klCoef"] * kl_term(cfg["klEstimator"], logp, ref)
    return loss, clip_active


# ----------------------------------------------------------------------------------------------------------------------
# Packing: rows of one micro-batch padded to the longest (causal attention: padding never affects real positions)

def pack(seqs, device, pad, context):
    B = len(seqs)
    T = max(2, max(len(s["tokens"]) for s in seqs))
    if T > context:
        raise WorkerError("protocol", f"a sequence of {T} tokens exceeds the context {context}")
    tokens = torch.full((B, T), pad, dtype=torch.long)
    fields = {k: torch.zeros(B, T, dtype=torch.float32) for k in ("mask", "adv", "old", "ref")}
    for b, s in enumerate(seqs):
        n = len(s["tokens"])
        tokens[b, :n] = torch.tensor(s["tokens"], dtype=torch.long)
        mask = torch.tensor(s.get("lossMask", [0] * n), dtype=torch.float32)
        if len(mask) != n:
            raise WorkerError("protocol", f"a sequence has {n} tokens but {len(mask)} mask entries")
        fields["mask"][b, :n] = mask
        for key, name in (("adv", "advantages"), ("old", "oldLogprobs"), ("ref", "refLogprobs")):
            v = s.get(name)
            if v is not None:
                if len(v) != n:
                    raise WorkerError("protocol", f"a sequence has {n} tokens but {len(v)} {name}")
                # values under mask 0 are never read (may be anything): zero them
                fields[key][b, :n] = torch.tensor(v, dtype=torch.float32) * (mask == 1)
    return tokens.to(device), {k: v.to(device) for k, v in fields.items()}


def check_vocab(seqs, vocab):
    for i, s in enumerate(seqs):
        for tok in s["tokens"]:
            if not (isinstance(tok, int) and 0 <= tok < vocab):
                raise WorkerError("protocol", f"sequence {i}: token {tok!r} is outside the vocabulary 0..{vocab - 1}")


# ----------------------------------------------------------------------------------------------------------------------
# The worker state and its ops

class State:
    def __init__(self):
        self.model = None
        self.device = None
        self.adam = None
        self.m = None
        self.v = None
        self.step = 0
        self.policy_version = 0
        self.pad = 267
        self.kind = "embedded"  # or "hf"

    def need_model(self, op):
        if self.model is None:
            raise WorkerError("protocol", f"{op}: no model (send init first)")
        return self.model


DEFAULT_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weightDecay": 0.01, "maxGradNorm": 1.0}


def pick_device(req):
    want = req.get("device", "auto")
    if want == "cpu":
        return torch.device("cpu")
    if want in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if want == "cuda":
        raise WorkerError("cuda", "device cuda requested but torch.cuda.is_available() is false")
    return torch.device("cpu")


def op_init(st, req):
    need_torch()
    seed = int(req.get("seed", 0))
    torch.manual_seed(seed)
    if "threads" in req:
        torch.set_num_threads(int(req["threads"]))
    st.device = pick_device(req)
    st.adam = {**DEFAULT_ADAM, **(req.get("adam") or {})}
    if "hfModel" in req:
        return init_hf(st, req)
    st.kind = "embedded"
    st.pad = int(req.get("pad", st.pad))
    path = req.get("weights")
    if path is None:
        raise WorkerError("protocol", "init: needs weights (a safetensors path written by src/model/checkpoint.ts)")
    tensors, meta = read_safetensors(path)
    config = req.get("config")
    if config is None:
        if "config" not in meta:
            raise WorkerError("protocol", f"init: {path} carries no config and none was given")
        config = json.loads(meta["config"])
    check_config(config)
    st.model = Model(config, [(n, x) for n, x in tensors if not n.startswith("optim.")], st.device)
    st.policy_version = int(meta.get("policyVersion", 0))
    load_optimizer(st, tensors, int(meta.get("step", 0)))
    n_params = sum(p.numel() for p in st.model.params)
    return {"params": n_params, "device": str(st.device), "policyVersion": st.policy_version, "step": st.step,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def hf_modules():
    """workers/hf_model.py and hf_worker.py (beside this file), imported on first use (they need torch)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import hf_model
    import hf_worker
    return hf_model, hf_worker


def init_hf(st, req):
    """A Hugging Face checkpoint directory as the policy (full, or LoRA with `lora` / `loraAdapter`)."""
    _, hw = hf_modules()
    st.kind = "hf"
    st.model = hw.HfPolicy(req, st.device, lambda msg: WorkerError("protocol", msg))
    raw = st.model.ckpt.config.raw
    pad = req.get("pad", raw.get("pad_token_id"))
    if pad is None:
        eos = raw.get("eos_token_id")
        pad = (eos[0] if isinstance(eos, list) else eos) if eos is not None else 0
    st.pad = int(pad)
    st.policy_version = int(req.get("policyVersion", 0))
    st.m = [torch.zeros_like(p, dtype=torch.float32) for p in st.model.params]
    st.v = [torch.zeros_like(p, dtype=torch.float32) for p in st.model.params]
    st.step = 0
    return {"params": st.model.total_params, "device": str(st.device), "policyVersion": st.policy_version,
            "step": st.step, "torch": torch.__version__, "threads": torch.get_num_threads(), **st.model.info()}


def load_optimizer(st, tensors, step):
    named = dict(tensors)
    ms = [named.get("optim.m." + n) for n in st.model.names]
    vs = [named.get("optim.v." + n) for n in st.model.names]
    if all(x is not None for x in ms + vs):
        st.m = [x.to(st.device) for x in ms]
        st.v = [x.to(st.device) for x in vs]
        st.step = step
    else:
        st.m = [torch.zeros_like(p, requires_grad=False) for p in st.model.params]
        st.v = [torch.zeros_like(p, requires_grad=False) for p in st.model.params]
        st.step = 0


def op_logprobs(st, req):
    model = st.need_model("logprobs")
    seqs = [{"tokens": s} if isinstance(s, list) else {"tokens": s["tokens"]} for s in sequences_of(req, "logprobs")]
    check_vocab(seqs, model.config["vocab"])
    out_lp, out_ent = [], []
    rows = int(req.get("microBatchRows", 16))
    with torch.no_grad():
        for i0 in range(0, len(seqs), rows):
            group = seqs[i0:i0 + rows]
            tokens, _ = pack([{**s, "lossMask": [0] * len(s["tokens"])} for s in group], st.device, st.pad,
                             model.config["context"])
            lp, ent = model.token_logprobs(tokens)
            for b, s in enumerate(group):
                n = len(s["tokens"])
                out_lp.append(lp[b, :n].tolist() if n > 1 else [0.0] * n)
                out_ent.append(ent[b, :n].tolist() if n > 1 else [0.0] * n)
    return {"logprobs": out_lp, "entropies": out_ent}


def loss_and_grad(st, seqs, cfg, norm, rows, want_token_grads):
    """Σ over micro-batches of the loss (scaled by the global normalizer); gradients accumulate in .grad."""
    model = st.model
    check_vocab(seqs, model.config["vocab"])
    for p in model.params:
        p.grad = None
    total, tokens, clipped, ent_sum, mismatch, kl_sum, kl_tokens = 0.0, 0, 0, 0.0, 0.0, 0.0, 0
    token_grads = []
    for i0 in micro_batch_starts(len(seqs), rows):
        group = seqs[i0:i0 + rows]
        tok, f = pack(group, st.device, st.pad, model.config["context"])
        scale = torch.tensor([aggregation_scale(cfg["aggregation"], norm, sum(s["lossMask"])) * float(s.get("weight", 1))
                              for s in group], dtype=torch.float32, device=st.device)[:, None]
        has_ref = [s.get("refLogprobs") is not None for s in group]
        if cfg["klCoef"] != 0:
            for j, s in enumerate(group):
                if not has_ref[j] and sum(s["lossMask"]) > 0:
                    raise WorkerError("protocol", f"klCoef is {cfg['klCoef']} but sequence {i0 + j} has no refLogprobs")
        logp, ent = model.token_logprobs(tok)
        if want_token_grads:
            logp.retain_grad()
        loss, clip_active = policy_token_loss(cfg, logp, f["adv"], f["old"], f["ref"])
        w = f["mask"] * scale
        value = (loss * w).sum()
        value.backward()
        total += value.item()
        m = f["mask"] == 1
        tokens += int(m.sum().item())
        clipped += int((clip_active & m).sum().item())
        ent_sum += float(ent.detach()[m].sum().item())
        mismatch += float((f["old"] - logp.detach()).abs()[m].sum().item())
        ref_rows = torch.tensor(has_ref, device=st.device)[:, None] & m
        if ref_rows.any():
            k = kl_term(cfg["klEstimator"], logp.detach(), f["ref"]).clamp_min(0) if cfg["klEstimator"] == "k3" else \
                kl_term(cfg["klEstimator"], logp.detach(), f["ref"])
            kl_sum += float(k[ref_rows].sum().item())
            kl_tokens += int(ref_rows.sum().item())
        if want_token_grads:
            g = logp.grad
            for b, s in enumerate(group):
                token_grads.append(g[b, :len(s["tokens"])].tolist())
    if DIST is not None:
        total, tokens, clipped, ent_sum, mismatch, kl_sum, kl_tokens = DIST.reduce(
            st, [total, tokens, clipped, ent_sum, mismatch, kl_sum, kl_tokens])
    d = (lambda x, n: x / n if n > 0 else 0.0)
    stats = {"loss": total, "clipFraction": d(clipped, tokens), "kl": d(kl_sum, kl_tokens), "entropy": d(ent_sum, tokens),
             "tokens": tokens, "logprobMismatch": d(mismatch, tokens)}
    return stats, token_grads


SEQUENCE_FIELDS = ("lossMask", "advantages", "oldLogprobs", "refLogprobs")


def sequences_of(req, op):
    """The request's sequences: inline (`sequences`) or, for large batches, a safetensors file (`sequencesFile`)
    of float32 tensors: `tokens` [N] (ids, exact in float32 below 2^24), `lengths` [S], `responseStart` [S],
    `weight` [S], and per token [N] whichever of lossMask / advantages / oldLogprobs / refLogprobs the op needs
    (`hasRef` [S] says which sequences carry refLogprobs)."""
    path = req.get("sequencesFile")
    if path is None:
        return req.get("sequences")
    hm, _ = hf_modules()
    try:
        t, _ = hm.read_safetensors(path)
    except hm.CheckpointError as e:
        raise WorkerError("protocol", f"{op}: sequencesFile {e.message}")
    for k in ("tokens", "lengths"):
        if k not in t:
            raise WorkerError("protocol", f"{op}: sequencesFile {path} lacks tensor {k!r}")
    lengths = [int(x) for x in t["lengths"].tolist()]
    if sum(lengths) != t["tokens"].numel():
        raise WorkerError("protocol", f"{op}: sequencesFile {path}: lengths sum to {sum(lengths)} but tokens has "
                                      f"{t['tokens'].numel()} entries")
    tokens = t["tokens"].double()
    if not torch.equal(tokens, tokens.round()) or (tokens.numel() and tokens.min().item() < 0):
        raise WorkerError("protocol", f"{op}: sequencesFile {path}: tokens are not non-negative integers")
    tok = tokens.long().tolist()
    cols = {k: t[k].float().tolist() for k in SEQUENCE_FIELDS if k in t}
    has_ref = t["hasRef"].tolist() if "hasRef" in t else None
    out, at = [], 0
    for i, n in enumerate(lengths):
        s = {"tokens": tok[at:at + n]}
        for k, col in cols.items():
            if k != "refLogprobs" or (has_ref is None or has_ref[i]):
                s[k] = col[at:at + n]
        if "responseStart" in t:
            s["responseStart"] = int(t["responseStart"][i].item())
        if "weight" in t:
            s["weight"] = float(t["weight"][i].item())
        if "lossMask" in s:
            s["lossMask"] = [int(x) for x in s["lossMask"]]
        out.append(s)
        at += n
    return out


def loss_request(st, req, op):
    st.need_model(op)
    seqs = sequences_of(req, op)
    if not isinstance(seqs, list) or len(seqs) == 0:
        raise WorkerError("protocol", f"{op}: needs a non-empty list of sequences")
    for i, s in enumerate(seqs):
        for k in ("tokens", "lossMask", "advantages", "oldLogprobs"):
            if k not in s:
                raise WorkerError("protocol", f"{op}: sequence {i} lacks {k}")
    cfg = {**DEFAULT_LOSS, **(req.get("loss") or {})}
    norm = req.get("normalizer") or batch_normalizer(seqs)
    rows = max(1, int(req.get("microBatchRows", 16)))
    return seqs, cfg, norm, rows


def grad_norm_and_clip(st):
    """The global L2 norm of the gradient (float64 sums, one host sync)."""
    sq = [p.grad.double().pow(2).sum() for p in st.model.params if p.grad is not None]
    return math.sqrt(float(torch.stack(sq).sum().item())) if sq else 0.0


def adam_step(st, norm):
    if st.kind == "hf":
        return adam_step_foreach(st, norm)
    a = st.adam
    scale = a["maxGradNorm"] / (norm + 1e-6) if math.isfinite(a["maxGradNorm"]) and norm > a["maxGradNorm"] else 1.0
    st.step += 1
    bc1 = 1 - a["beta1"] ** st.step
    bc2 = 1 - a["beta2"] ** st.step
    with torch.no_grad():
        for i, p in enumerate(st.model.params):
            g = p.grad * scale if p.grad is not None else torch.zeros_like(p)
            st.m[i] = st.m[i] * a["beta1"] + g * (1 - a["beta1"])
            st.v[i] = st.v[i] * a["beta2"] + g * g * (1 - a["beta2"])
            update = (st.m[i] / bc1) / (torch.sqrt(st.v[i] / bc2) + a["eps"])
            decay = p * a["weightDecay"] if p.dim() >= 2 else torch.zeros_like(p)
            p.sub_((update + decay) * a["lr"])
            p.grad = None


def adam_step_foreach(st, norm):
    """The same AdamW as adam_step (decoupled decay on matrices only, global-norm clip), over all tensors at
    once with torch's _foreach kernels (few launches on CUDA); moments stay float32 even for bfloat16 weights."""
    a = st.adam
    scale = a["maxGradNorm"] / (norm + 1e-6) if math.isfinite(a["maxGradNorm"]) and norm > a["maxGradNorm"] else 1.0
    st.step += 1
    bc1 = 1 - a["beta1"] ** st.step
    bc2 = 1 - a["beta2"] ** st.step
    params = st.model.params
    with torch.no_grad():
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).float() for p in params]
        if scale != 1.0:
            torch._foreach_mul_(grads, scale)
        torch._foreach_mul_(st.m, a["beta1"])
        torch._foreach_add_(st.m, grads, alpha=1 - a["beta1"])
        torch._foreach_mul_(st.v, a["beta2"])
        torch._foreach_addcmul_(st.v, grads, grads, value=1 - a["beta2"])
        denom = torch._foreach_sqrt(torch._foreach_div(st.v, bc2))
        torch._foreach_add_(denom, a["eps"])
        update = torch._foreach_div(torch._foreach_div(st.m, bc1), denom)
        decay = [p for p in params if p.dim() >= 2]
        if decay and a["weightDecay"] != 0:
            torch._foreach_mul_(decay, 1 - a["lr"] * a["weightDecay"])
        if all(p.dtype == torch.float32 for p in params):
            torch._foreach_add_(params, update, alpha=-a["lr"])
        else:
            for p, u in zip(params, update):
                p.add_(u.to(p.dtype), alpha=-a["lr"])
        for p in params:
            p.grad = None


def op_loss(st, req):
    """The loss value and d loss / d logπ_new per token, and optionally the parameter gradient (no update)."""
    seqs, cfg, norm, rows = loss_request(st, req, "loss")
    stats, token_grads = loss_and_grad(st, seqs, cfg, norm, rows, True)
    out = {**stats, "gradNorm": grad_norm_and_clip(st), "tokenGrads": token_grads}
    if req.get("gradsPath"):
        write_safetensors(req["gradsPath"], [(n, p.grad if p.grad is not None else torch.zeros_like(p))
                                             for n, p in st.model.named()], {"format": "arpo-grads-v1"})
    for p in st.model.params:
        p.grad = None
    return out


def op_train_step(st, req):
    """One optimizer step (AdamW, global-norm clip) of the policy loss over the given mini-batch."""
    t0 = time.time()
    seqs, cfg, norm, rows = loss_request(st, req, "train_step")
    stats, _ = loss_and_grad(st, seqs, cfg, norm, rows, False)
    if DEBUG and req.get("debugDelayS"):
        time.sleep(float(req["debugDelayS"]))  # lets tests kill the worker mid-step
    gnorm = grad_norm_and_clip(st)
    if not math.isfinite(gnorm):
        raise WorkerError("internal", f"train_step: gradient norm is {gnorm}; no update was applied")
    adam_step(st, gnorm)
    if req.get("policyVersion") is not None:
        st.policy_version = int(req["policyVersion"])
    return {**stats, "gradNorm": gnorm, "trainMs": (time.time() - t0) * 1000, "step": st.step}


def op_sft_step(st, req):
    """One optimizer step of token-mean next-token cross-entropy over masked tokens."""
    t0 = time.time()
    model = st.need_model("sft_step")
    seqs = sequences_of(req, "sft_step")
    check_vocab(seqs, model.config["vocab"])
    total_tokens = sum(sum(s["lossMask"]) for s in seqs)
    rows = max(1, int(req.get("microBatchRows", 16)))
    for p in model.params:
        p.grad = None
    total = 0.0
    for i0 in micro_batch_starts(len(seqs), rows):
        tok, f = pack(seqs[i0:i0 + rows], st.device, st.pad, model.config["context"])
        logp, _ = model.token_logprobs(tok)
        value = -(logp * f["mask"]).sum() * (1.0 / total_tokens if total_tokens > 0 else 0.0)
        value.backward()
        total += value.item()
    if DIST is not None:
        (total,) = DIST.reduce(st, [total])
    gnorm = grad_norm_and_clip(st)
    adam_step(st, gnorm)
    if req.get("policyVersion") is not None:
        st.policy_version = int(req["policyVersion"])
    return {"loss": total, "tokens": total_tokens, "gradNorm": gnorm, "trainMs": (time.time() - t0) * 1000, "step": st.step}


def checkpoint_metadata(st):
    return {"format": "arpo-embedded-v1", "config": json.dumps(st.model.config, separators=(",", ":")),
            "policyVersion": str(st.policy_version), "step": str(st.step),
            "rotary": "half-split (rotate_half: dim i pairs with i + headDim/2)", "layout": "matrices are [in, out]"}


def op_save(st, req):
    """Weights + AdamW moments in the embedded checkpoint layout (readable by src/model/checkpoint.ts)."""
    model = st.need_model("save")
    if "policyVersion" in req:
        st.policy_version = int(req["policyVersion"])
    if st.kind == "hf":
        model.save(req["path"], st.m, st.v, {"policyVersion": st.policy_version, "step": st.step})
        return {"path": req["path"], "policyVersion": st.policy_version, "step": st.step}
    tensors = model.named()
    tensors += [("optim.m." + n, x) for n, x in zip(model.names, st.m)]
    tensors += [("optim.v." + n, x) for n, x in zip(model.names, st.v)]
    write_safetensors(req["path"], tensors, checkpoint_metadata(st))
    return {"path": req["path"], "policyVersion": st.policy_version, "step": st.step}


def op_export(st, req):
    """Weights only, in the embedded layout (what an engine loads)."""
    model = st.need_model("export")
    if "policyVersion" in req:
        st.policy_version = int(req["policyVersion"])
    if st.kind == "hf":
        fmt = req.get("format", "hf")
        t0 = time.time()
        try:
            out = model.export(req["path"], fmt, req.get("dtype"))
        except ValueError as e:
            raise WorkerError("protocol", str(e))
        return {"path": req["path"], "policyVersion": st.policy_version, "format": fmt,
                "exportMs": (time.time() - t0) * 1000, **out}
    if req.get("format", "embedded") != "embedded":
        raise WorkerError("protocol", f"export: format {req['format']!r} needs a Hugging Face model (init hfModel)")
    write_safetensors(req["path"], model.named(), checkpoint_metadata(st))
    return {"path": req["path"], "policyVersion": st.policy_version}


def op_load(st, req):
    model = st.need_model("load")
    if st.kind == "hf":
        state, m, v = model.load(req["path"], lambda msg: WorkerError("protocol", msg))
        st.policy_version = int(req.get("policyVersion", state.get("policyVersion", 0)))
        if m is not None:
            st.m, st.v, st.step = m, v, int(state.get("step", 0))
        else:
            st.m = [torch.zeros_like(p, dtype=torch.float32) for p in model.params]
            st.v = [torch.zeros_like(p, dtype=torch.float32) for p in model.params]
            st.step = 0
        return {"policyVersion": st.policy_version, "step": st.step}
    tensors, meta = read_safetensors(req["path"])
    cfg = json.loads(meta.get("config", "null"))
    if cfg != model.config:
        raise WorkerError("protocol", f"load: {req['path']} has model config {cfg}, the worker runs {model.config}")
    named = dict(tensors)
    with torch.no_grad():
        for n, p in model.named():
            p.copy_(named[n].to(p.device))
    st.policy_version = int(meta.get("policyVersion", 0))
    load_optimizer(st, tensors, int(meta.get("step", 0)))
    return {"policyVersion": st.policy_version, "step": st.step}


def op_version(st, req):
    out = {"protocol": PROTOCOL, "python": sys.version.split()[0], "pid": os.getpid()}
    try:
        need_torch()
        out["torch"] = torch.__version__
        out["cuda"] = bool(torch.cuda.is_available())
    except WorkerError as e:
        out["torch"] = None
        out["torchError"] = e.message
    return out


def op_debug(st, req):
    """Test hooks (only with ARPO_WORKER_DEBUG=1): sleep, exit, garbage output, a simulated OOM."""
    if not DEBUG:
        raise WorkerError("protocol", "debug ops need ARPO_WORKER_DEBUG=1")
    action = req.get("action")
    if action == "sleep":
        time.sleep(float(req.get("seconds", 1)))
        return {"slept": req.get("seconds", 1)}
    if action == "exit":
        sys.stderr.write(req.get("stderr", "") + "\n")
        sys.stderr.flush()
        os._exit(int(req.get("code", 3)))
    if action == "garbage":
        REPLIES.write("this is not json\n")
        REPLIES.flush()
        return {}
    if action == "print":
        print("a stray print goes to stderr")
        return {}
    if action == "oom":
        raise MemoryError("simulated out-of-memory")
    raise WorkerError("protocol", f"debug: unknown action {action!r}")


OPS = {"ping": lambda st, req: {"protocol": PROTOCOL, "pid": os.getpid()}, "version": op_version, "init": op_init,
       "logprobs": op_logprobs, "loss": op_loss, "train_step": op_train_step, "sft_step": op_sft_step, "save": op_save,
       "export": op_export, "load": op_load, "debug": op_debug}


# ---- the torch engine (workers/engine.py; issue 14, engineer realtask) -------------------------------------------------
# engine_* ops decode with this worker's model (colocated rollouts); engine.py is imported on the first such op, so
# ping/version still answer without torch. Ops that may change the weights first drop the engine's kept KV (memory
# for the step) and afterwards make it rebuild from the new weights.
ENGINE_OPS = ("engine_init", "engine_load", "engine_generate", "engine_score", "engine_release", "engine_uniforms")


def _engine_op(name):
    def run(st, req):
        need_torch()
        import engine
        try:
            return engine.OPS[name](st, req)
        except engine.EngineError as e:
            raise WorkerError("protocol", e.message)
    return run


def _releasing_engine(fn):
    def run(st, req):
        e = getattr(st, "engine", None)
        if e is not None:
            e.release()
        try:
            return fn(st, req)
        finally:
            if e is not None:
                e.weights_changed()
    return run


for _name in ("init", "train_step", "sft_step", "load"):
    if _name in OPS:
        OPS[_name] = _releasing_engine(OPS[_name])
for _name in ENGINE_OPS:
    OPS[_name] = _engine_op(_name)
# ---- end of the torch engine's ops --------------------------------------------------------------------------------------


def classify(e):
    if isinstance(e, WorkerError):
        return e.kind, e.message
    hm = sys.modules.get("hf_model")
    if hm is not None and isinstance(e, hm.CheckpointError):
        return "protocol", f"{e.code}: {e.message}"
    if isinstance(e, MemoryError):
        return "oom", f"out of memory: {e}"
    name = type(e).__name__
    text = str(e)
    if "OutOfMemoryError" in name or "out of memory" in text.lower():
        return "oom", f"{name}: {text}"
    if "CUDA" in text or "cuda" in name.lower():
        return "cuda", f"{name}: {text}"
    if isinstance(e, (KeyError, TypeError, ValueError)):
        return "protocol", f"{name}: {text}"
    return "internal", f"{name}: {text}"


REPLIES = sys.stdout  # replies only; main() points sys.stdout at stderr so a stray print cannot break the protocol


def reply(obj):
    REPLIES.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
    REPLIES.flush()


def main():
    sys.stdout = sys.stderr
    if DEBUG and os.environ.get("ARPO_WORKER_STARTUP_DELAY_S"):
        time.sleep(float(os.environ["ARPO_WORKER_STARTUP_DELAY_S"]))  # lets tests time out the handshake
    st = State()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        rid = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise WorkerError("protocol", "a request must be a JSON object")
            rid = req.get("id")
            op = req.get("op")
            if op == "shutdown":
                reply({"id": rid, "ok": True})
                return 0
            fn = OPS.get(op)
            if fn is None:
                raise WorkerError("protocol", f"unknown op {op!r} (one of {', '.join(sorted(OPS))}, shutdown)")
            t0 = time.time()
            out = fn(st, req)
            reply({"id": rid, "ok": True, "ms": (time.time() - t0) * 1000, **out})
        except json.JSONDecodeError as e:
            reply({"id": None, "ok": False, "error": {"kind": "protocol", "message": f"request is not JSON: {e}"}})
        except Exception as e:  # every failure becomes a typed reply; the worker keeps serving
            kind, message = classify(e)
            if not isinstance(e, WorkerError):
                traceback.print_exc(file=sys.stderr)
            if kind == "oom" and torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()
            reply({"id": rid, "ok": False, "error": {"kind": kind, "message": message}})
    return 0


if __name__ == "__main__":
    if os.environ.get("ARPO_TORCHRUN") == "1":  # one rank of a torchrun group (src/trainer/torchrun.ts)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import distributed
        sys.exit(distributed.main(sys.modules[__name__]))
    sys.exit(main())
