"""Host-side validation of attention arguments: plan arrays (indptr, page tables, lengths),
head counts, scalars. Pure Python + numpy, so every bad input is reported (TypeError /
ValueError naming the argument) before a kernel module is loaded or CUDA is touched.
"""

from __future__ import annotations

import math

import numpy as np

from flashinfer_cy._core.tensor import check_native_order
from flashinfer_cy.kernels.attention_uri import FP8_KV, HEAD_DIMS, SUPPORTED_DTYPES

LAYOUTS = {"NHD": 0, "HND": 1}
DECODE_GROUP_SIZES = (1, 2, 3, 4, 8)   # DISPATCH_GQA_GROUP_SIZE of the CUDA-core decode kernels
_INT32_MAX = 2**31 - 1
_DTYPE_ALIASES = {"float16": "float16", "half": "float16", "f16": "float16", "fp16": "float16",
                  "bfloat16": "bfloat16", "bf16": "bfloat16"}
_FP8_ALIASES = {"float8_e4m3fn": FP8_KV, "e4m3": FP8_KV, "float8_e4m3": FP8_KV}


def _spelled(dtype, name: str) -> str:
    """A dtype's bare lower-case name: from a string, a numpy dtype or a torch dtype
    (numpy's '>f2' is named float16 too: refused, as TensorDesc refuses it)."""
    check_native_order(dtype, name)
    raw = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or str(dtype)
    return raw.lower().rpartition(".")[2]  # "torch.bfloat16" -> "bfloat16"


def dtype_name(dtype, name: str) -> str:
    """'float16' / 'bfloat16' from a string, numpy dtype or torch dtype (by name)."""
    key = _DTYPE_ALIASES.get(_spelled(dtype, name))
    if key is None:
        raise TypeError(f"{name}: expected one of {SUPPORTED_DTYPES}, got {dtype!r}")
    return key


def kv_dtype_name(kv_data_type, q_dtype: str) -> str:
    """The KV cache's dtype: ``q_dtype`` when None, else q's own dtype or float8_e4m3fn
    (FlashInfer's FA2 kernels read an e4m3 cache with 16-bit q; no scale is applied)."""
    if kv_data_type is None:
        return q_dtype
    name = _spelled(kv_data_type, "kv_data_type")
    kv = _DTYPE_ALIASES.get(name) or _FP8_ALIASES.get(name)
    if kv is None or (kv != q_dtype and kv != FP8_KV):
        raise TypeError(f"kv_data_type: expected q_data_type ({q_dtype}) or {FP8_KV}, got "
                        f"{kv_data_type!r}")
    return kv


def layout_code(kv_layout) -> int:
    if kv_layout not in LAYOUTS:
        raise ValueError(f"kv_layout: expected 'NHD' or 'HND', got {kv_layout!r}")
    return LAYOUTS[kv_layout]


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if value <= 0 or value > _INT32_MAX:
        raise ValueError(f"{name}: expected an int in [1, 2**31), got {value}")
    return int(value)


def check_head_dim(head_dim) -> int:
    head_dim = positive_int(head_dim, "head_dim")
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim: FlashInfer's prebuilt attention kernels exist for head dims "
                         f"{HEAD_DIMS}, got {head_dim}")
    return head_dim


def check_heads(num_qo_heads, num_kv_heads, *, decode: bool) -> tuple[int, int]:
    num_qo_heads = positive_int(num_qo_heads, "num_qo_heads")
    num_kv_heads = positive_int(num_kv_heads, "num_kv_heads")
    if num_qo_heads % num_kv_heads:
        raise ValueError(f"num_qo_heads ({num_qo_heads}) must be a multiple of num_kv_heads "
                         f"({num_kv_heads})")
    group = num_qo_heads // num_kv_heads
    if decode and group not in DECODE_GROUP_SIZES:
        raise ValueError(f"decode kernels support GQA group sizes {DECODE_GROUP_SIZES} "
                         f"(num_qo_heads / num_kv_heads), got {num_qo_heads}/{num_kv_heads} = {group}")
    return num_qo_heads, num_kv_heads


def _float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def scalars(window_left, logits_soft_cap, sm_scale, rope_scale, rope_theta, head_dim: int):
    """Validated ``(window_left, logits_soft_cap, sm_scale, rope_scale, rope_theta)``, with
    the defaults filled in (the kernels take the rope values as reciprocals, doc P5)."""
    if isinstance(window_left, bool) or not isinstance(window_left, (int, np.integer)):
        raise TypeError(f"window_left: expected an int, got {window_left!r}")
    if window_left < -1 or window_left > _INT32_MAX:
        raise ValueError(f"window_left: expected -1 (no window) or a size >= 0, got {window_left}")
    cap = 0.0 if logits_soft_cap is None else _float(logits_soft_cap, "logits_soft_cap")
    if cap < 0:
        raise ValueError(f"logits_soft_cap: expected >= 0 (0 disables it), got {cap}")
    scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else _float(sm_scale, "sm_scale")
    if scale <= 0:
        raise ValueError(f"sm_scale: expected > 0, got {scale}")
    rope_scale = 1.0 if rope_scale is None else _float(rope_scale, "rope_scale")
    rope_theta = 1e4 if rope_theta is None else _float(rope_theta, "rope_theta")
    if rope_scale <= 0 or rope_theta <= 0:
        raise ValueError(f"rope_scale and rope_theta must be > 0, got {rope_scale}, {rope_theta}")
    return int(window_left), cap, scale, rope_scale, rope_theta


def plan_config(q_data_type, kv_data_type, num_qo_heads, num_kv_heads, head_dim, window_left,
                 logits_soft_cap, sm_scale, rope_scale, rope_theta, *, decode: bool):
    """What every plan() validates: ``(dtype, kv_dtype, num_qo_heads, num_kv_heads,
    head_dim, scalars)`` with scalars as :func:`scalars` returns them. Not memoized here:
    each wrapper keeps its last validated configuration (batch_attention._PlanConfig)."""
    dtype = dtype_name(q_data_type, "q_data_type")
    kv_dtype = kv_dtype_name(kv_data_type, dtype)
    hq, hkv = check_heads(num_qo_heads, num_kv_heads, decode=decode)
    hd = check_head_dim(head_dim)
    sc = scalars(window_left, logits_soft_cap, sm_scale, rope_scale, rope_theta, hd)
    return dtype, kv_dtype, hq, hkv, hd, sc



def mla_plan_config(q_data_type, kv_data_type, num_heads, head_dim_ckv, head_dim_kpe,
                    page_size, causal, sm_scale):
    """What BatchMLAPagedAttention.plan() validates of its scalars: ``(dtype, num_heads,
    head_dim_ckv, head_dim_kpe, page_size, causal, sm_scale)``. MLA modules take one dtype
    for q, the cache and the output; the head dims must be whole 16-byte vectors (the
    kernels load them so); sm_scale has no default (it depends on the head dim before
    absorption, which the kernel never sees)."""
    dtype = dtype_name(q_data_type, "q_data_type")
    if kv_data_type is not None and _DTYPE_ALIASES.get(_spelled(kv_data_type, "kv_data_type")) != dtype:
        raise TypeError(f"kv_data_type: MLA modules read a cache of q's dtype ({dtype}), got "
                        f"{kv_data_type!r}")
    heads = positive_int(num_heads, "num_heads")
    dims = []
    for value, name in ((head_dim_ckv, "head_dim_ckv"), (head_dim_kpe, "head_dim_kpe")):
        value = positive_int(value, name)
        if value % 8:
            raise ValueError(f"{name}: expected a multiple of 8 (16-byte vectors), got {value}")
        dims.append(value)
    page = positive_int(page_size, "page_size")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal: expected True or False, got {causal!r}")
    if sm_scale is None:
        raise TypeError("sm_scale: expected a float (MLA has no default: use 1/sqrt of the "
                        "head dim before absorption, e.g. 1/sqrt(128 + 64) for DeepSeek)")
    scale = _float(sm_scale, "sm_scale")
    if scale <= 0:
        raise ValueError(f"sm_scale: expected > 0, got {scale}")
    return dtype, heads, dims[0], dims[1], page, bool(causal), scale


def is_device_array(x) -> bool:
    """True for arrays that live on a GPU (DLPack device other than CPU / CUDA-host)."""
    dev = getattr(type(x), "__dlpack_device__", None)
    if dev is not None:
        try:
            return int(x.__dlpack_device__()[0]) not in (1, 3)
        except Exception:  # noqa: BLE001 - not a real producer: let numpy judge
            return False
    return hasattr(x, "__cuda_array_interface__")


_I32 = np.dtype(np.int32)


def host_index_array(x, name: str) -> np.ndarray:
    """A 1-D C-contiguous int32 numpy array from a host array-like (numpy, list, CPU
    tensor). Device arrays are refused: plan() reads these on the CPU and must never copy
    from the device (that would synchronize)."""
    if type(x) is np.ndarray and x.dtype == _I32 and x.ndim == 1 and x.flags.c_contiguous:
        return x  # the common case, checked without a copy
    if x is None:
        raise TypeError(f"{name}: expected a host integer array, got None")
    if is_device_array(x):
        raise TypeError(f"{name}: plan() takes host (CPU) arrays, got a device array "
                        f"{type(x).__name__}; keep a host copy of your indptr/lengths")
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype != _I32:
        if arr.size and (arr.min() < -_INT32_MAX - 1 or arr.max() > _INT32_MAX):
            raise ValueError(f"{name}: values must fit in int32")
        arr = arr.astype(np.int32)
    return np.ascontiguousarray(arr)
