"""GGUF v3 export of a Hugging Face Llama / Qwen2 / Qwen3 model for llama.cpp, written by hand (no gguf-py): tensors
named as llama.cpp's convert_hf_to_gguf.py names them (F32, or F16 for matrices), Llama's q/k rows permuted from
transformers' half-split rotary pairs to llama.cpp's adjacent pairs (Qwen2/Qwen3 use llama.cpp's NEOX rope: no
permutation), llama3 rope scaling as a `rope_freqs` tensor, and the checkpoint's own byte-level BPE vocabulary
(tokenizer.json: tokens, merges, special tokens) and chat template. It does not quantize and does not read GGUF.
"""
import json
import os
import struct

import torch

import atomicfile
import hf_model as H

ALIGN = 32
U32, I32, F32, BOOL, STRING, ARRAY, U64 = 4, 5, 6, 7, 8, 9, 10
GGML_F32, GGML_F16 = 0, 1
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5
GGUF_ARCH = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
PRE_TOKENIZER = {"llama": "llama-bpe", "qwen2": "qwen2", "qwen3": "qwen2"}


def permute_rope_rows(w, n_heads):
    """convert_hf_to_gguf's LlamaModel.permute: within each head, output rows (i, i + D/2) become (2i, 2i + 1)."""
    out, inp = w.shape[0], w.shape[1:]
    D = out // n_heads
    return w.reshape(n_heads, 2, D // 2, *inp).transpose(1, 2).reshape(out, *inp)


def rope_freq_factors(cfg):
    """llama3 scaling as llama.cpp wants it: per frequency, the factor the default frequency is divided by."""
    default = H.rope_inv_freq(_with_rope(cfg, {"type": "default", "theta": cfg.rope["theta"]}))
    return default / H.rope_inv_freq(cfg)


def _with_rope(cfg, rope):
    import copy
    c = copy.copy(cfg)
    c.rope = rope
    return c


def gguf_tensors(cfg, state, matrix_type=GGML_F32):
    """[(name, ggml type, tensor as float32/float16 numpy-able torch tensor in HF's [out, in] layout)]."""
    arch = cfg.arch
    mt = torch.float16 if matrix_type == GGML_F16 else torch.float32
    out = []

    def add(name, x, matrix=False):
        x = x.detach().float().cpu()
        out.append((name, matrix_type if matrix and x.dim() >= 2 else GGML_F32, x.to(mt) if matrix else x))

    add("token_embd.weight", state["model.embed_tokens.weight"], True)
    for l in range(cfg.num_layers):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        q, k = state[p + "self_attn.q_proj.weight"], state[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = permute_rope_rows(q, cfg.num_heads), permute_rope_rows(k, cfg.num_kv_heads)
        add(b + "attn_norm.weight", state[p + "input_layernorm.weight"])
        add(b + "attn_q.weight", q, True)
        add(b + "attn_k.weight", k, True)
        add(b + "attn_v.weight", state[p + "self_attn.v_proj.weight"], True)
        add(b + "attn_output.weight", state[p + "self_attn.o_proj.weight"], True)
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("o_proj", "attn_output")):
            bias = state.get(p + f"self_attn.{hf}.bias")
            if bias is not None:
                if arch == "llama" and hf in ("q_proj", "k_proj"):
                    bias = permute_rope_rows(bias, cfg.num_heads if hf == "q_proj" else cfg.num_kv_heads)
                add(b + gg + ".bias", bias)
        if cfg.qk_norm:
            add(b + "attn_q_norm.weight", state[p + "self_attn.q_norm.weight"])
            add(b + "attn_k_norm.weight", state[p + "self_attn.k_norm.weight"])
        add(b + "ffn_norm.weight", state[p + "post_attention_layernorm.weight"])
        add(b + "ffn_gate.weight", state[p + "mlp.gate_proj.weight"], True)
        add(b + "ffn_up.weight", state[p + "mlp.up_proj.weight"], True)
        add(b + "ffn_down.weight", state[p + "mlp.down_proj.weight"], True)
        if cfg.mlp_bias:
            raise H.CheckpointError("unsupported-config", cfg.file, "mlp_bias", "gguf export: mlp_bias is not supported")
    add("output_norm.weight", state["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        add("output.weight", state["lm_head.weight"], True)
    if cfg.rope["type"] == "llama3":
        add("rope_freqs.weight", rope_freq_factors(cfg))
    return out


def vocabulary(directory, vocab_size):
    """(tokens, token types, merges) of a byte-level BPE tokenizer.json, padded to vocab_size with unused slots."""
    path = os.path.join(directory, "tokenizer.json")
    try:
        with open(path, encoding="utf-8") as f:
            tok = json.load(f)
    except FileNotFoundError:
        raise H.CheckpointError("missing-file", path, "tokenizer.json", f"gguf export: {path}: no such file")
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise H.CheckpointError("unsupported-config", path, "model.type",
                                f"gguf export: {path}: tokenizer model {model.get('type')!r} (byte-level BPE only)")
    by_id = {i: t for t, i in model["vocab"].items()}
    types = {}
    for a in tok.get("added_tokens") or []:
        by_id[a["id"]] = a["content"]
        types[a["id"]] = TOKEN_CONTROL if a.get("special") else TOKEN_USER_DEFINED
    n = max(vocab_size, max(by_id) + 1)
    tokens, ttypes = [], []
    for i in range(n):
        if i in by_id:
            tokens.append(by_id[i])
            ttypes.append(types.get(i, TOKEN_NORMAL))
        else:
            tokens.append(f"[PAD{i}]")
            ttypes.append(TOKEN_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    return tokens, ttypes, merges


def metadata(ckpt, tokens, ttypes, merges, file_type):
    cfg = ckpt.config
    arch = GGUF_ARCH[cfg.arch]
    d = ckpt.directory
    tcfg = {}
    if os.path.exists(os.path.join(d, "tokenizer_config.json")):
        with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
            tcfg = json.load(f)
    gen = {}
    if os.path.exists(os.path.join(d, "generation_config.json")):
        with open(os.path.join(d, "generation_config.json"), encoding="utf-8") as f:
            gen = json.load(f)
    raw = cfg.raw

    def first(x):
        return x[0] if isinstance(x, list) else x

    kv = [("general.architecture", STRING, arch), ("general.name", STRING, os.path.basename(os.path.abspath(d))),
          ("general.file_type", U32, file_type), ("general.alignment", U32, ALIGN),
          (f"{arch}.context_length", U32, cfg.max_position_embeddings),
          (f"{arch}.embedding_length", U32, cfg.hidden_size), (f"{arch}.block_count", U32, cfg.num_layers),
          (f"{arch}.feed_forward_length", U32, cfg.intermediate_size),
          (f"{arch}.attention.head_count", U32, cfg.num_heads),
          (f"{arch}.attention.head_count_kv", U32, cfg.num_kv_heads),
          (f"{arch}.attention.key_length", U32, cfg.head_dim), (f"{arch}.attention.value_length", U32, cfg.head_dim),
          (f"{arch}.rope.dimension_count", U32, cfg.head_dim), (f"{arch}.rope.freq_base", F32, cfg.rope["theta"]),
          (f"{arch}.attention.layer_norm_rms_epsilon", F32, cfg.rms_norm_eps),
          (f"{arch}.vocab_size", U32, len(tokens)),
          ("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, PRE_TOKENIZER[cfg.arch]),
          ("tokenizer.ggml.tokens", (ARRAY, STRING), tokens), ("tokenizer.ggml.token_type", (ARRAY, I32), ttypes),
          ("tokenizer.ggml.merges", (ARRAY, STRING), merges)]
    eos = first(gen.get("eos_token_id", raw.get("eos_token_id")))
    bos = first(gen.get("bos_token_id", raw.get("bos_token_id")))
    pad = first(gen.get("pad_token_id", raw.get("pad_token_id")))
    if eos is not None:
        kv.append(("tokenizer.ggml.eos_token_id", U32, int(eos)))
    if bos is not None:
        kv.append(("tokenizer.ggml.bos_token_id", U32, int(bos)))
    if pad is not None:
        kv.append(("tokenizer.ggml.padding_token_id", U32, int(pad)))
    for key in ("add_bos_token", "add_eos_token"):  # absent: llama.cpp's default for the pre-tokenizer applies
        if isinstance(tcfg.get(key), bool):
            kv.append((f"tokenizer.ggml.{key}", BOOL, tcfg[key]))
    template = tcfg.get("chat_template")
    if template is None and os.path.exists(os.path.join(d, "chat_template.jinja")):
        with open(os.path.join(d, "chat_template.jinja"), encoding="utf-8") as f:
            template = f.read()
    if isinstance(template, str):
        kv.append(("tokenizer.chat_template", STRING, template))
    return kv


def _pad(n):
    return (ALIGN - n % ALIGN) % ALIGN


def encode(kv, tensors):
    """GGUF v3 bytes: magic, version, counts, metadata, tensor infos, padding, tensor data (each aligned)."""
    parts = []

    def s(x):
        b = x.encode("utf-8")
        parts.append(struct.pack("<Q", len(b)) + b)

    def value(t, v):
        if isinstance(t, tuple):
            parts.append(struct.pack("<IIQ", ARRAY, t[1], len(v)))
            for x in v:
                scalar(t[1], x)
        else:
            parts.append(struct.pack("<I", t))
            scalar(t, v)

    def scalar(t, v):
        if t == STRING:
            s(v)
        elif t == U32:
            parts.append(struct.pack("<I", v))
        elif t == I32:
            parts.append(struct.pack("<i", v))
        elif t == F32:
            parts.append(struct.pack("<f", v))
        elif t == BOOL:
            parts.append(struct.pack("<B", 1 if v else 0))
        else:
            raise ValueError(t)

    parts.append(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for k, t, v in kv:
        s(k)
        value(t, v)
    blobs, offset = [], 0
    for name, gtype, x in tensors:
        raw = H.tensor_bytes(x.contiguous())
        s(name)
        ne = list(reversed(x.shape))  # ggml: ne[0] is the fastest-varying (the input dimension)
        parts.append(struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne))
        parts.append(struct.pack("<IQ", gtype, offset))
        blobs.append(raw)
        offset += len(raw) + _pad(len(raw))
    head = b"".join(parts)
    return head, blobs


def write_gguf(path, ckpt, state, matrix_type=GGML_F32):
    """Writes the model (`state`: HF name -> tensor, e.g. with LoRA merged) as GGUF at `path`, atomically."""
    cfg = ckpt.config
    if cfg.arch not in GGUF_ARCH:
        raise H.CheckpointError("unsupported-architecture", cfg.file, "architectures",
                                f"gguf export: {cfg.architecture} is not supported")
    tokens, ttypes, merges = vocabulary(ckpt.directory, cfg.vocab_size)
    tensors = gguf_tensors(cfg, state, matrix_type)
    head, blobs = encode(metadata(ckpt, tokens, ttypes, merges, 0 if matrix_type == GGML_F32 else 1), tensors)
    chunks = [head, b"\0" * _pad(len(head))]
    for raw in blobs:
        chunks += [raw, b"\0" * _pad(len(raw))]
    atomicfile.write_atomic(path, chunks)
