"""
File writing the workers share (trainer.py, hf_model.py, hf_gguf.py): atomic writes (a temp file beside the target,
fsync, rename, as src/io/atomic.ts does) and the safetensors header prefix. It imports nothing heavy (no torch), so
the trainer worker's torch-free ops can use it; it encodes no tensors itself.
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


def safetensors_head(header):
    """The 8-byte length and the JSON header, padded with spaces so the data starts 8-byte aligned."""
    js = json.dumps(header, separators=(",", ":"))
    js += " " * ((8 - ((8 + len(js.encode("utf-8"))) % 8)) % 8)
    head = js.encode("utf-8")
    return struct.pack("<Q", len(head)) + head
