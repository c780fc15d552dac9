"""Reading and writing safetensors files with the standard library, numpy and torch only
(Debian 12 packages no `safetensors`): the header is JSON, the data little-endian, each
tensor at the offsets the header gives (https://github.com/huggingface/safetensors format).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import torch

_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}
_FROM = {v: k for k, v in _DTYPES.items()}


def save(tensors: dict[str, torch.Tensor], path: str,
         metadata: dict[str, str] | None = None) -> None:
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype not in _DTYPES:
            raise ValueError(f"{name}: dtype {t.dtype} is not supported")
        # bf16 has no numpy dtype: its bytes through an int16 view.
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load(path: str) -> dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = _FROM[entry["dtype"]]
        np_dtype = {torch.bfloat16: np.int16, torch.float32: np.float32,
                    torch.float16: np.float16, torch.int64: np.int64, torch.int32: np.int32,
                    torch.uint8: np.uint8}[dtype]
        array = np.frombuffer(data[begin:end], np_dtype).copy()
        t = torch.from_numpy(array)
        if dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(entry["shape"])
    return out
