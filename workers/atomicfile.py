"""
File writing the workers share (trainer.py, hf_model.py, hf_gguf.py): atomic writes (a temp file beside the target,
fsync, rename, as src/io/atomic.ts does) and safetensors files written that way. It imports nothing heavy (no torch),
so the trainer worker's torch-free ops can use it; it encodes no tensors itself (callers pass their bytes).
"""
import json
import os
import struct
import time


def write_atomic(path, chunks):
    """Writes the byte chunks to `path` atomically (the directory is created; a failed write leaves no temp file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}-{int(time.time() * 1000)}"
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_safetensors(path, entries, metadata):
    """A safetensors file, atomically. entries: (name, dtype name such as "F32", shape, raw little-endian bytes) in
    file order; metadata: the `__metadata__` dict (None: no `__metadata__` key)."""
    header = {} if metadata is None else {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    write_atomic(path, [safetensors_head(header), *blobs])


def safetensors_head(header):
    """The 8-byte length and the JSON header, padded with spaces so the data starts 8-byte aligned."""
    js = json.dumps(header, separators=(",", ":"))
    js += " " * ((8 - ((8 + len(js.encode("utf-8"))) % 8)) % 8)
    head = js.encode("utf-8")
    return struct.pack("<Q", len(head)) + head
