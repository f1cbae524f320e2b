"""Hugging Face causal LMs (Llama, Qwen2, Qwen3) in plain PyTorch: the config reader, a safetensors reader and
writer, and the model, written so the math is visible (nanoGPT style). Parameter names are exactly the
checkpoint's (`model.layers.0.self_attn.q_proj.weight`, ...), so a state dict round-trips to a transformers
checkpoint. It needs only torch (1.13+); it does not tokenize, sample, train or speak the worker protocol
(workers/trainer.py does), and it refuses, by name, what it does not implement: other architectures, other
rope types, sliding windows, mixtures of experts.

Interface (kept stable for workers/engine.py):

    model, ckpt = load_pretrained(dir, device="cpu", dtype=torch.float32)   # HfCausalLM, Checkpoint
    logits = model(input_ids)                                     # [B, T] -> [B, T, V], causal
    cache = model.new_cache()                                     # empty KVCache
    logits = model(prompt_ids, cache=cache)                       # fills the cache
    logits = model(next_ids, cache=cache)                         # appends; positions continue at cache.length
    child = cache.select(torch.tensor([0, 0, 1]))                 # fork: rows of a cache (a branch copies its parent's)
    logits = model(ids, positions=pos, key_mask=mask, cache=c)    # left padding: explicit rope positions [B, T]
                                                                  # and which keys are real [B, cache.length + T]
    hidden = model(ids, return_hidden=True)                       # final-norm hidden states [B, T, hidden]
    logp, ent = token_logprobs(model, ids)                        # entry t: log p(ids[t] | ids[<t]), its entropy; entry 0 is 0

Errors are `CheckpointError(code, file, field, message)`; the message names the file and the field.
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

import atomicfile

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
ROPE_TYPES = ("default", "llama3")


class CheckpointError(Exception):
    """A checkpoint this module cannot read or refuses: `code` is one of unsupported-architecture,
    unsupported-config, bad-config, missing-file, missing-shard, missing-tensor, unexpected-tensor, tensor-shape,
    truncated, bad-header, unsupported-dtype; `file` and `field` say where."""

    def __init__(self, code, file, field, message):
        super().__init__(message)
        self.code, self.file, self.field, self.message = code, file, field, message


# ----------------------------------------------------------------------------------------------------------------------
# Config: transformers 4 (rope_theta, rope_scaling) and 5 (rope_parameters) forms


class HfConfig:
    """The fields the model needs, read from a config.json dict. `raw` keeps the file's dict for export."""

    def __init__(self, raw, file="config.json"):
        self.raw = raw
        self.file = file

        def need(key):
            if key not in raw or raw[key] is None:
                raise CheckpointError("bad-config", file, key, f"{file}: missing field {key!r}")
            return raw[key]

        archs = raw.get("architectures") or []
        known = [a for a in archs if a in ARCHITECTURES]
        if not known:
            name = archs[0] if archs else raw.get("model_type", "?")
            raise CheckpointError("unsupported-architecture", file, "architectures",
                                  f"{file}: architecture {name!r} is not supported "
                                  f"(supported: {', '.join(ARCHITECTURES)})")
        self.architecture = known[0]
        self.arch = ARCHITECTURES[self.architecture]
        self.vocab_size = int(need("vocab_size"))
        self.hidden_size = int(need("hidden_size"))
        self.intermediate_size = int(need("intermediate_size"))
        self.num_layers = int(need("num_hidden_layers"))
        self.num_heads = int(need("num_attention_heads"))
        self.num_kv_heads = int(raw.get("num_key_value_heads") or self.num_heads)
        self.head_dim = int(raw.get("head_dim") or self.hidden_size // self.num_heads)
        self.rms_norm_eps = float(raw.get("rms_norm_eps", 1e-6))
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", False))
        self.max_position_embeddings = int(raw.get("max_position_embeddings", 4096))
        if self.num_heads % self.num_kv_heads != 0:
            raise CheckpointError("bad-config", file, "num_key_value_heads",
                                  f"{file}: num_attention_heads {self.num_heads} is not a multiple of "
                                  f"num_key_value_heads {self.num_kv_heads}")
        if self.head_dim % 2 != 0:
            raise CheckpointError("bad-config", file, "head_dim", f"{file}: head_dim {self.head_dim} must be even")
        # biases: Qwen2 always has q/k/v biases; Llama has them on q/k/v/o when attention_bias
        if self.arch == "qwen2":
            self.qkv_bias, self.o_bias = True, False
        else:
            self.qkv_bias = self.o_bias = bool(raw.get("attention_bias", False))
        self.mlp_bias = bool(raw.get("mlp_bias", False))
        self.qk_norm = self.arch == "qwen3"
        self._refuse_unsupported()
        self.rope = self._rope()

    def _refuse(self, field, what):
        raise CheckpointError("unsupported-config", self.file, field, f"{self.file}: {field}: {what} is not supported")

    def _refuse_unsupported(self):
        raw = self.raw
        act = raw.get("hidden_act", "silu")
        if act != "silu":
            self._refuse("hidden_act", repr(act))
        if raw.get("use_sliding_window"):
            self._refuse("use_sliding_window", "sliding-window attention")
        if self.arch == "llama" and raw.get("sliding_window"):
            self._refuse("sliding_window", f"sliding-window attention ({raw['sliding_window']})")
        for lt in raw.get("layer_types") or []:
            if lt != "full_attention":
                self._refuse("layer_types", f"layer type {lt!r}")
        for key in ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size"):
            if raw.get(key):
                self._refuse(key, "a mixture of experts")
        if raw.get("pretraining_tp", 1) not in (1, None):
            self._refuse("pretraining_tp", str(raw["pretraining_tp"]))

    def _rope(self):
        """{type, theta, ...scaling fields} from either form; refuses unknown rope types by name."""
        raw = self.raw
        if raw.get("rope_parameters") is not None:
            field = "rope_parameters"
            p = dict(raw["rope_parameters"])
            if "rope_theta" not in p and "rope_type" not in p:  # per-layer-type rope (not these architectures)
                self._refuse(field, "per-layer-type rope parameters")
            theta = p.get("rope_theta", raw.get("rope_theta", 10000.0))
        else:
            field = "rope_scaling"
            p = dict(raw.get("rope_scaling") or {})
            theta = raw.get("rope_theta", 10000.0)
        rtype = p.get("rope_type", p.get("type", "default")) or "default"
        if rtype not in ROPE_TYPES:
            self._refuse(f"{field}.rope_type", f"rope type {rtype!r} (supported: {', '.join(ROPE_TYPES)})")
        prf = p.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0))
        if prf not in (None, 1, 1.0):
            self._refuse("partial_rotary_factor", str(prf))
        out = {"type": rtype, "theta": float(theta)}
        if rtype == "llama3":
            for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
                if k not in p:
                    raise CheckpointError("bad-config", self.file, f"{field}.{k}",
                                          f"{self.file}: llama3 rope needs {field}.{k}")
                out[k] = float(p[k])
        return out

    def param_shapes(self):
        """HF name -> shape of every parameter the model owns (tied head: no lm_head.weight)."""
        H, I, V, D = self.hidden_size, self.intermediate_size, self.vocab_size, self.head_dim
        q, kv = self.num_heads * D, self.num_kv_heads * D
        out = {"model.embed_tokens.weight": [V, H]}
        for l in range(self.num_layers):
            p = f"model.layers.{l}."
            out[p + "input_layernorm.weight"] = [H]
            out[p + "self_attn.q_proj.weight"] = [q, H]
            out[p + "self_attn.k_proj.weight"] = [kv, H]
            out[p + "self_attn.v_proj.weight"] = [kv, H]
            out[p + "self_attn.o_proj.weight"] = [H, q]
            if self.qkv_bias:
                out[p + "self_attn.q_proj.bias"] = [q]
                out[p + "self_attn.k_proj.bias"] = [kv]
                out[p + "self_attn.v_proj.bias"] = [kv]
            if self.o_bias:
                out[p + "self_attn.o_proj.bias"] = [H]
            if self.qk_norm:
                out[p + "self_attn.q_norm.weight"] = [D]
                out[p + "self_attn.k_norm.weight"] = [D]
            out[p + "post_attention_layernorm.weight"] = [H]
            out[p + "mlp.gate_proj.weight"] = [I, H]
            out[p + "mlp.up_proj.weight"] = [I, H]
            out[p + "mlp.down_proj.weight"] = [H, I]
            if self.mlp_bias:
                out[p + "mlp.gate_proj.bias"] = [I]
                out[p + "mlp.up_proj.bias"] = [I]
                out[p + "mlp.down_proj.bias"] = [H]
        out["model.norm.weight"] = [H]
        if not self.tie_word_embeddings:
            out["lm_head.weight"] = [V, H]
        return out


def read_config(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise CheckpointError("missing-file", path, "config.json", f"{path}: no such file")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError("bad-config", path, "config.json", f"{path}: not JSON ({e})")
    return HfConfig(raw, path)


# ----------------------------------------------------------------------------------------------------------------------
# Safetensors: 8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, raw data

DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2), "F64": (torch.float64, 8),
          "I64": (torch.int64, 8), "I32": (torch.int32, 4)}
DTYPE_NAMES = {v[0]: k for k, v in DTYPES.items()}


def read_safetensors_header(path):
    """(header dict without __metadata__, metadata, data start offset, file size); checks every tensor's bounds."""
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except FileNotFoundError:
        raise CheckpointError("missing-file", path, "", f"{path}: no such file")
    with f:
        if size < 8:
            raise CheckpointError("truncated", path, "header", f"{path}: truncated ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise CheckpointError("truncated", path, "header",
                                  f"{path}: truncated (header of {n} bytes, file of {size} bytes)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError("bad-header", path, "header", f"{path}: header is not JSON ({e})")
    meta = header.pop("__metadata__", None) or {}
    base = 8 + n
    for name, v in header.items():
        dt = DTYPES.get(v.get("dtype"))
        if dt is None:
            raise CheckpointError("unsupported-dtype", path, name,
                                  f"{path}: tensor {name} has dtype {v.get('dtype')!r} (supported: {', '.join(DTYPES)})")
        a, b = v["data_offsets"]
        if b - a != math.prod(v["shape"]) * dt[1]:
            raise CheckpointError("bad-header", path, name,
                                  f"{path}: tensor {name}: shape {v['shape']} {v['dtype']} needs "
                                  f"{math.prod(v['shape']) * dt[1]} bytes, offsets give {b - a}")
        if base + b > size:
            raise CheckpointError("truncated", path, name,
                                  f"{path}: truncated: tensor {name} ends at byte {base + b}, the file has {size}")
    return header, meta, base, size


def read_safetensors(path, names=None):
    """{name: tensor} in the file's dtypes (all tensors, or those in `names`), and the metadata."""
    header, meta, base, _ = read_safetensors_header(path)
    out = {}
    with open(path, "rb") as f:
        for name, v in header.items():
            if names is not None and name not in names:
                continue
            dtype, _ = DTYPES[v["dtype"]]
            a, b = v["data_offsets"]
            f.seek(base + a)
            buf = bytearray(f.read(b - a))
            x = torch.frombuffer(buf, dtype=dtype) if b > a else torch.zeros(0, dtype=dtype)
            out[name] = x.reshape(v["shape"])
    return out, meta


def tensor_bytes(x):
    """Little-endian bytes of a tensor in its own dtype (bfloat16 through an int16 view: numpy has no bfloat16)."""
    x = x.detach().to("cpu").contiguous().reshape(-1)
    if x.dtype == torch.bfloat16:
        x = x.view(torch.int16)
    return x.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor) written in each tensor's own dtype; atomic (temp file, fsync, rename)."""
    atomicfile.write_safetensors(path, [(name, DTYPE_NAMES[x.dtype], x.shape, tensor_bytes(x)) for name, x in tensors],
                                 {k: str(v) for k, v in metadata.items()} if metadata else None)


def checkpoint_files(directory):
    """{tensor name: file} of a checkpoint directory: model.safetensors or a sharded model.safetensors.index.json."""
    single = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index, "r", encoding="utf-8") as f:
                wm = json.load(f)["weight_map"]
        except (ValueError, KeyError) as e:
            raise CheckpointError("bad-header", index, "weight_map", f"{index}: no readable weight_map ({e})")
        for name, shard in wm.items():
            if not os.path.exists(os.path.join(directory, shard)):
                raise CheckpointError("missing-shard", index, shard,
                                      f"{index}: shard {shard} (holding {name}) is missing from {directory}")
        return {name: os.path.join(directory, shard) for name, shard in wm.items()}
    if os.path.exists(single):
        header, _, _, _ = read_safetensors_header(single)
        return {name: single for name in header}
    raise CheckpointError("missing-file", directory, "model.safetensors",
                          f"{directory}: neither model.safetensors nor model.safetensors.index.json")


# ----------------------------------------------------------------------------------------------------------------------
# The model


class RMSNorm(nn.Module):
    def __init__(self, dim, eps, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_inv_freq(cfg):
    """Rotary inverse frequencies [head_dim/2] (float32), with Llama 3's smooth frequency scaling when configured."""
    D = cfg.head_dim
    r = cfg.rope
    inv = 1.0 / (r["theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    if r["type"] == "llama3":
        factor, lo, hi = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
        old = r["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / lo, inv / factor, inv)  # long wavelengths: slowed by `factor`
        smooth = (old / wavelen - lo) / (hi - lo)
        mid = (1 - smooth) * scaled / factor + smooth * scaled  # between: interpolated
        is_mid = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        inv = torch.where(is_mid, mid, scaled)
    return inv


def rotate_half(x):
    """Dim i pairs with i + head_dim/2 (transformers' layout, not interleaved pairs)."""
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg, device=None, dtype=None):
        super().__init__()
        H, D = cfg.hidden_size, cfg.head_dim
        self.n_heads, self.n_kv, self.head_dim = cfg.num_heads, cfg.num_kv_heads, D
        kw = dict(device=device, dtype=dtype)
        self.q_proj = nn.Linear(H, self.n_heads * D, bias=cfg.qkv_bias, **kw)
        self.k_proj = nn.Linear(H, self.n_kv * D, bias=cfg.qkv_bias, **kw)
        self.v_proj = nn.Linear(H, self.n_kv * D, bias=cfg.qkv_bias, **kw)
        self.o_proj = nn.Linear(self.n_heads * D, H, bias=cfg.o_bias, **kw)
        if cfg.qk_norm:  # Qwen3: RMSNorm over each head's vector, before rope
            self.q_norm = RMSNorm(D, cfg.rms_norm_eps, **kw)
            self.k_norm = RMSNorm(D, cfg.rms_norm_eps, **kw)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x, cos, sin, mask, layer_cache):
        B, T, _ = x.shape
        D = self.head_dim
        q = self.q_proj(x).view(B, T, self.n_heads, D)
        k = self.k_proj(x).view(B, T, self.n_kv, D)
        v = self.v_proj(x).view(B, T, self.n_kv, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, D]
        q = (q * cos + rotate_half(q) * sin).to(v.dtype)  # under autocast cos/sin may be float32: stay in v's dtype
        k = (k * cos + rotate_half(k) * sin).to(v.dtype)
        if layer_cache is not None:
            k, v = layer_cache.append(k, v)  # all keys/values so far: [B, n_kv, S, D]
        rep = self.n_heads // self.n_kv  # grouped-query attention: query head h reads kv head h // rep
        if SDPA_GQA and q.is_cuda and rep > 1:  # torch >= 2.5: SDPA reads the shared kv heads without copies
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True)
            return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * D))
        if rep > 1:
            k = k[:, :, None].expand(B, self.n_kv, rep, k.shape[2], D).reshape(B, self.n_heads, k.shape[2], D)
            v = v[:, :, None].expand(B, self.n_kv, rep, v.shape[2], D).reshape(B, self.n_heads, v.shape[2], D)
        if SDPA and q.is_cuda:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        else:
            if mask is None:
                mask = causal_mask(T, k.shape[2], q.device)
            scores = (q @ k.transpose(-1, -2)) * (D ** -0.5)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            y = torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * D))


SDPA = hasattr(F, "scaled_dot_product_attention")
SDPA_GQA = SDPA and tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2] if x.isdigit()) >= (2, 5)


def causal_mask(T, S, device):
    """[T, S] bool: the query at new index i (absolute S - T + i) sees keys 0 .. S - T + i."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


class MLP(nn.Module):
    def __init__(self, cfg, device=None, dtype=None):
        super().__init__()
        H, I, b = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
        self.gate_proj = nn.Linear(H, I, bias=b, device=device, dtype=dtype)
        self.up_proj = nn.Linear(H, I, bias=b, device=device, dtype=dtype)
        self.down_proj = nn.Linear(I, H, bias=b, device=device, dtype=dtype)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # SwiGLU


class Block(nn.Module):
    def __init__(self, cfg, device=None, dtype=None):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, device=device, dtype=dtype)
        self.self_attn = Attention(cfg, device, dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, device=device, dtype=dtype)
        self.mlp = MLP(cfg, device, dtype)

    def forward(self, x, cos, sin, mask, layer_cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, layer_cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, cfg, device=None, dtype=None):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, device=device, dtype=dtype)
        self.layers = nn.ModuleList([Block(cfg, device, dtype) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, device=device, dtype=dtype)


class LayerCache:
    """One layer's past keys (after rope) and values, [B, n_kv, S, D]."""

    def __init__(self, k=None, v=None):
        self.k, self.v = k, v

    def append(self, k, v):
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v


class KVCache:
    """Past keys/values of every layer for a batch of rows. `length` is the number of cached positions (S);
    forward appends to it in place. `select(rows)` returns a new cache of those rows (a row index may repeat:
    that is how a branch forks its parent's cache); `truncate(S)` keeps the first S positions."""

    def __init__(self, num_layers):
        self.layers = [LayerCache() for _ in range(num_layers)]

    @property
    def length(self):
        k = self.layers[0].k
        return 0 if k is None else k.shape[2]

    @property
    def batch(self):
        k = self.layers[0].k
        return 0 if k is None else k.shape[0]

    def select(self, rows):
        out = KVCache(len(self.layers))
        for src, dst in zip(self.layers, out.layers):
            if src.k is not None:
                dst.k, dst.v = src.k.index_select(0, rows.to(src.k.device)), src.v.index_select(0, rows.to(src.v.device))
        return out

    def truncate(self, length):
        out = KVCache(len(self.layers))
        for src, dst in zip(self.layers, out.layers):
            if src.k is not None:
                dst.k, dst.v = src.k[:, :, :length], src.v[:, :, :length]
        return out


class HfCausalLM(nn.Module):
    """LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM. Tied head: logits use model.embed_tokens.weight."""

    def __init__(self, cfg, device=None, dtype=None):
        super().__init__()
        self.config = cfg
        self.model = Body(cfg, device, dtype)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False,
                                                                      device=device, dtype=dtype)
        self.register_buffer("inv_freq", rope_inv_freq(cfg).to(device if device != "meta" else "cpu"), persistent=False)
        self.gradient_checkpointing = False

    def head_weight(self):
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def new_cache(self):
        return KVCache(self.config.num_layers)

    def rope(self, positions, dtype):
        """cos, sin [B, 1, T, head_dim] for integer positions [B, T] (computed in float32, as transformers does)."""
        freqs = positions[:, :, None].float() * self.inv_freq.float()[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, input_ids, positions=None, cache=None, key_mask=None, return_hidden=False):
        """input_ids [B, T] → logits [B, T, V] (or final hidden states [B, T, hidden] with return_hidden).
        positions: [B, T] rope positions (default: past length + 0..T-1). cache: a KVCache, appended to.
        key_mask: [B, past + T] bool, False for keys that are padding (left-padded batches)."""
        B, T = input_ids.shape
        past = 0 if cache is None else cache.length
        device = input_ids.device
        if positions is None:
            positions = torch.arange(past, past + T, device=device)[None].expand(B, T)
        x = self.model.embed_tokens(input_ids)
        cos, sin = self.rope(positions, x.dtype)
        mask = None  # None: plain causal
        if key_mask is not None:
            mask = causal_mask(T, past + T, device)[None, None] & key_mask[:, None, None, :].bool()
        elif past > 0 and T > 1:
            mask = causal_mask(T, past + T, device)[None, None]
        elif past > 0:
            mask = torch.ones(1, 1, 1, past + 1, dtype=torch.bool, device=device)
        for i, layer in enumerate(self.model.layers):
            lc = None if cache is None else cache.layers[i]
            if self.gradient_checkpointing and self.training and lc is None and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, mask)
            else:
                x = layer(x, cos, sin, mask, lc)
        x = self.model.norm(x)
        if return_hidden:
            return x
        return F.linear(x, self.head_weight()) if self.lm_head is None else self.lm_head(x)


def checkpoint(fn, *args):
    try:
        from torch.utils.checkpoint import checkpoint as ck
        return ck(fn, *args, use_reentrant=False)
    except TypeError:  # very old torch
        from torch.utils.checkpoint import checkpoint as ck
        return ck(fn, *args)


# ----------------------------------------------------------------------------------------------------------------------
# Log-probs and entropies (the head in chunks of positions, so a 150k vocabulary never materializes [B, T, V] at once)


def _lp_ent(h, w, targets):
    logits = F.linear(h, w).float()
    lsm = torch.log_softmax(logits, dim=-1)
    logp = lsm.gather(-1, targets[..., None]).squeeze(-1)
    ent = -(lsm.exp() * lsm).sum(-1)
    return logp, ent


def token_logprobs(model, input_ids, positions=None, key_mask=None, chunk=4096):
    """Teacher-forced log p(input_ids[t] | input_ids[<t]) and the full-vocabulary entropy of that distribution
    (nats, float32), both [B, T] with entry 0 = 0. Gradients flow (the chunks are recomputed in backward)."""
    hidden = model(input_ids, positions=positions, key_mask=key_mask, return_hidden=True)
    h = hidden[:, :-1]
    targets = input_ids[:, 1:]
    w = model.head_weight()
    B, T1 = targets.shape
    rows = max(1, chunk // max(1, B))
    lps, ents = [], []
    for t0 in range(0, T1, rows):
        hs, ts = h[:, t0:t0 + rows], targets[:, t0:t0 + rows]
        if torch.is_grad_enabled() and hs.requires_grad and T1 > rows:
            lp, en = checkpoint(_lp_ent, hs, w, ts)
        else:
            lp, en = _lp_ent(hs, w, ts)
        lps.append(lp)
        ents.append(en)
    z = torch.zeros(B, 1, dtype=torch.float32, device=input_ids.device)
    return torch.cat([z] + lps, 1), torch.cat([z] + ents, 1)


@torch.no_grad()
def greedy(model, prompt, n):
    """n greedy tokens after `prompt` (a list of ids), decoded one at a time through the KV cache."""
    device = model.head_weight().device
    cache = model.new_cache()
    logits = model(torch.tensor([prompt], device=device), cache=cache)
    out = []
    for _ in range(n):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        logits = model(torch.tensor([[nxt]], device=device), cache=cache)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Loading and saving checkpoint directories


class Checkpoint:
    """Where a model came from: the directory, its config, and each tensor's dtype on disk (export keeps them)."""

    def __init__(self, directory, config, dtypes, sharded):
        self.directory, self.config, self.dtypes, self.sharded = directory, config, dtypes, sharded


IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def load_pretrained(directory, device="cpu", dtype=torch.float32, config_file="config.json"):
    """Reads a checkpoint directory into an HfCausalLM on `device` in `dtype` (float32 by default, whatever the
    dtype on disk). Every expected tensor must be present with its shape; unknown tensors are refused."""
    cfg = read_config(os.path.join(directory, config_file))
    files = checkpoint_files(directory)
    shapes = cfg.param_shapes()
    for name, shape in shapes.items():
        if name not in files:
            where = os.path.join(directory, "model.safetensors.index.json" if len(set(files.values())) > 1 or
                                 os.path.exists(os.path.join(directory, "model.safetensors.index.json"))
                                 else "model.safetensors")
            raise CheckpointError("missing-tensor", where, name, f"{where}: missing tensor {name} {shape} "
                                                                 f"(needed by {cfg.architecture})")
    for name in files:
        if name not in shapes and not name.endswith(IGNORED_SUFFIXES) and not (name == "lm_head.weight" and
                                                                               cfg.tie_word_embeddings):
            raise CheckpointError("unexpected-tensor", files[name], name,
                                  f"{files[name]}: tensor {name} is not part of {cfg.architecture} with this config")
    model = HfCausalLM(cfg, device="meta", dtype=dtype)
    model.to_empty(device=device)
    model.inv_freq = rope_inv_freq(cfg).to(device)
    params = dict(model.named_parameters())
    dtypes = {}
    by_file = {}
    for name in shapes:
        by_file.setdefault(files[name], []).append(name)
    for file, names in by_file.items():
        header, _, _, _ = read_safetensors_header(file)
        for name in names:
            if list(header[name]["shape"]) != shapes[name]:
                raise CheckpointError("tensor-shape", file, name, f"{file}: tensor {name} has shape "
                                                                  f"{header[name]['shape']}, {cfg.architecture} "
                                                                  f"needs {shapes[name]}")
        tensors, _ = read_safetensors(file, set(names))
        with torch.no_grad():
            for name in names:
                dtypes[name] = header[name]["dtype"]
                params[name].copy_(tensors[name].to(device=device, dtype=dtype))
        del tensors
    sharded = os.path.exists(os.path.join(directory, "model.safetensors.index.json"))
    return model, Checkpoint(directory, cfg, dtypes, sharded)


def init_random(model, std=0.02, seed=0):
    """Random weights (normal(0, std) matrices, unit norms, zero biases): for benchmarks of a model shape."""
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g, device=dev).mul_(std).to(p.dtype))
    return model


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json")


def save_pretrained(model, directory, source=None, dtype=None, max_shard_bytes=5 * 1024 ** 3):
    """Writes config.json + model.safetensors (or shards + index) with the model's parameter names, each tensor in
    `dtype` or else its dtype in `source` (a Checkpoint) or else float32, and copies the tokenizer files of the
    source directory. Returns the list of files written."""
    import shutil
    os.makedirs(directory, exist_ok=True)
    cfg = model.config
    names = cfg.param_shapes()
    params = dict(model.named_parameters())
    tensors = []
    for name in names:
        name_dtype = dtype or (DTYPES[source.dtypes[name]][0] if source is not None and name in source.dtypes
                               else torch.float32)
        tensors.append((name, params[name].detach().to("cpu", dtype=name_dtype)))
    raw = dict(cfg.raw)
    if dtype is not None:
        raw["torch_dtype" if "torch_dtype" in raw else "dtype"] = str(dtype).replace("torch.", "")
    written = []
    total = sum(t.numel() * t.element_size() for _, t in tensors)
    if total <= max_shard_bytes:
        write_safetensors(os.path.join(directory, "model.safetensors"), tensors, {"format": "pt"})
        written.append("model.safetensors")
    else:
        shards, cur, size = [], [], 0
        for n, t in tensors:
            b = t.numel() * t.element_size()
            if cur and size + b > max_shard_bytes:
                shards.append(cur)
                cur, size = [], 0
            cur.append((n, t))
            size += b
        shards.append(cur)
        wm = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(os.path.join(directory, fname), shard, {"format": "pt"})
            written.append(fname)
            for n, _ in shard:
                wm[n] = fname
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
        written.append("model.safetensors.index.json")
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(raw, f, indent=2)
    written.append("config.json")
    if source is not None:
        for fname in TOKENIZER_FILES:
            src = os.path.join(source.directory, fname)
            if os.path.exists(src) and os.path.abspath(src) != os.path.abspath(os.path.join(directory, fname)):
                shutil.copyfile(src, os.path.join(directory, fname))
                written.append(fname)
    return written
