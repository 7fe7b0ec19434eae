"""Argument checking of the sampling family, on a machine without a GPU, and the Philox
seed/offset rule.

Tensors are ``TensorDesc`` descriptors of fake CUDA pointers: validation reads only their
shapes, dtypes, strides, devices and addresses. Every bad input must raise the named error
before any kernel module is loaded or CUDA is touched (``no_cuda`` turns either into a
``TouchedCuda`` failure); every good input must get that far. The generator's offset must
advance exactly as flashinfer-python 0.6.3's ``get_seed_and_offset`` does, per function."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import flashinfer_cy as fc
from cuda_guard import TouchedCuda, no_cuda, raises, reaches_cuda
from producers import ReadOnly
from flashinfer_cy._core import runtime
from flashinfer_cy.kernels import sampling, sampling_rng

PTR = 0x7F0000000000  # 256-byte aligned, never dereferenced
B, V = 4, 1000         # gcd(4, 1000) = 4: 16-byte vectors


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    no_cuda(monkeypatch)
    sampling._forget_releases()
    yield
    sampling._forget_releases()


class StubModule:
    """A kernel module of FlashInfer ``version`` as far as choosing a table line goes: its
    functions are never reached (TouchedCuda), so a call that passes the checks, picks its
    line and draws its seeds stops at the first CUDA allocation or the kernel."""

    path, version_from = "<stub>", "test"

    def __init__(self, version):
        self.flashinfer_version = version

    def function(self, symbol):
        raise TouchedCuda(f"reached {symbol} of the stub module")


@pytest.fixture
def module_release(monkeypatch):
    """``module_release("0.7.4")``: the sampling module is of that release."""
    def use(version):
        monkeypatch.setattr(runtime, "load_module", lambda uri: StubModule(version))
        sampling._forget_releases()
    return use


def T(shape, dtype="float32", strides=None, offset=0, device=0, device_type="cuda"):
    return fc.TensorDesc(PTR + offset, shape, dtype, strides=strides, device=device,
                         device_type=device_type)


P = T((B, V))
SEEDS = dict(seed=1, offset=0)


# ----------------------------------------------------------------------------- valid calls

VALID = {
    "softmax": lambda: fc.softmax(P),
    "softmax-temp-tensor": lambda: fc.softmax(P, T((B,)), False, out=T((B, V))),
    "softmax-workspace": lambda: fc.softmax(P, 0.7, workspace_buffer=T((1 << 20,), "uint8")),
    "from-probs": lambda: fc.sampling_from_probs(P, **SEEDS),
    "from-probs-out": lambda: fc.sampling_from_probs(P, out=T((B,), "int32"), **SEEDS),
    "from-probs-idx64": lambda: fc.sampling_from_probs(P, T((9,), "int64"),
                                                       out=T((9,), "int64"), **SEEDS),
    "from-logits": lambda: fc.sampling_from_logits(P, T((2,), "int32")),
    "top-p": lambda: fc.top_p_sampling_from_probs(P, 1.0, **SEEDS),
    "top-p-tensor": lambda: fc.top_p_sampling_from_probs(P, T((B,)), T((9,), "int32"),
                                                         **SEEDS),
    "top-k": lambda: fc.top_k_sampling_from_probs(P, 50, deterministic=False, **SEEDS),
    "top-k-huge": lambda: fc.top_k_sampling_from_probs(P, 2**31 - 1, **SEEDS),
    "top-k-tensor": lambda: fc.top_k_sampling_from_probs(P, T((B,), "int32"), **SEEDS),
    "top-k-tensor-i64": lambda: fc.top_k_sampling_from_probs(
        P, T((B,), "int64"), T((B,), "int64"), **SEEDS),
    "min-p": lambda: fc.min_p_sampling_from_probs(P, 0.0, **SEEDS),
    "min-p-tensor": lambda: fc.min_p_sampling_from_probs(P, T((B,)), T((3,), "int32"),
                                                         **SEEDS),
    "top-k-top-p": lambda: fc.top_k_top_p_sampling_from_probs(P, 5, 0.9, **SEEDS),
    "top-k-top-p-joint": lambda: fc.top_k_top_p_sampling_from_probs(
        P, T((B,), "int32"), T((B,)), filter_apply_order="joint", **SEEDS),
    "top-k-top-p-logits": lambda: fc.top_k_top_p_sampling_from_logits(P, 5, 0.9, **SEEDS),
    "top-k-top-p-logits-joint": lambda: fc.top_k_top_p_sampling_from_logits(
        P, 5, 0.9, filter_apply_order="joint", **SEEDS),
    "top-p-renorm": lambda: fc.top_p_renorm_probs(P, 0.5),
    "top-k-renorm-bf16": lambda: fc.top_k_renorm_probs(T((B, V), "bfloat16"), 3),
    "top-k-renorm-rows": lambda: fc.top_k_renorm_probs(
        P, T((B,), "int32"), out=T((B, V)), row_states_buffer=T((1 << 20,), "uint8")),
    "mask-f16": lambda: fc.top_k_mask_logits(T((B, V), "float16"), 3),
    "chain": lambda: fc.chain_speculative_sampling(T((B, 3, V)), T((B, 3), "int32"),
                                                   T((B, 4, V)), **SEEDS),
    "chain-out": lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V)), T((B,), "int32"), T((B,), "int32"),
        out=T((B, 4), "int32"), **SEEDS),
    "odd-vocab": lambda: fc.sampling_from_probs(T((B, 1001), offset=4), **SEEDS),
    "vocab-151936": lambda: fc.top_p_sampling_from_probs(T((257, 151936)), 0.5, **SEEDS),
    "row-view": lambda: fc.sampling_from_probs(T((1, V), strides=(5 * V, 1)), **SEEDS),
    "u64-seed": lambda: fc.sampling_from_probs(P, seed=2**64 - 1, offset=2**63),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_arguments_reach_the_kernel(name):
    reaches_cuda(VALID[name])


# ----------------------------------------------------------------------------- bad calls

def probs_cases():
    """(function taking probs first, extra positional args) pairs sharing the probs rules."""
    return [(fc.sampling_from_probs, ()), (fc.top_p_sampling_from_probs, (0.5,)),
            (fc.top_k_sampling_from_probs, (5,)), (fc.min_p_sampling_from_probs, (0.1,)),
            (fc.top_k_top_p_sampling_from_probs, (5, 0.5)), (fc.top_p_renorm_probs, (0.5,)),
            (fc.sampling_from_logits, ()), (fc.softmax, ())]


PROBS_BAD = [
    (T((B, V), "float16"), TypeError, "expected dtype float32, got float16"),
    (T((B, V), device_type="cpu"), ValueError, "expected a CUDA tensor"),
    (T((B, V, 1)), ValueError, "expected 2 dimensions"),
    (T((B, V), strides=(V + 4, 1)), ValueError, "contiguous"),
    (T((V, B), strides=(1, V)), ValueError, "contiguous"),
    (T((B, 0)), ValueError, "vocabulary .* must be > 0"),
    (T((B, V), offset=4), ValueError, "aligned to 16 bytes for vocab size 1000"),
    (T((B, 1002), offset=4), ValueError, "aligned to 8 bytes for vocab size 1002"),
    (T((1 << 17, 1 << 15)), ValueError, "32-bit offsets"),
    (None, TypeError, "(probs|logits): "),
]


@pytest.mark.parametrize("bad, exc, words", PROBS_BAD,
                         ids=["f16", "cpu", "3d", "row-gap", "transposed", "empty-vocab",
                              "misaligned", "misaligned-8", "2**32", "none"])
@pytest.mark.parametrize("case", range(8))
def test_probs_and_logits_are_checked(case, bad, exc, words):
    fn, extra = probs_cases()[case]
    raises(lambda: fn(bad, *extra, **({} if fn in (fc.softmax, fc.top_p_renorm_probs)
                                       else SEEDS)), exc, words)


def sample(fn=fc.top_p_sampling_from_probs, *args, **kw):
    return lambda: fn(*args, **(SEEDS | kw))


BAD = {
    # per-request parameters
    "top_p-0": (sample(fc.top_p_sampling_from_probs, P, 0.0), ValueError, r"top_p: .*\(0, 1\]"),
    "top_p-above-1": (sample(fc.top_p_sampling_from_probs, P, 1.5), ValueError, "top_p"),
    "top_p-nan": (sample(fc.top_p_sampling_from_probs, P, float("nan")), ValueError, "top_p"),
    "top_p-none": (sample(fc.top_p_sampling_from_probs, P, None), TypeError, "top_p"),
    "top_p-bool": (sample(fc.top_p_sampling_from_probs, P, True), TypeError, "top_p"),
    "top_p-str": (sample(fc.top_p_sampling_from_probs, P, "0.5"), TypeError, "top_p"),
    "top_p-f64": (sample(fc.top_p_sampling_from_probs, P, T((B,), "float64")), TypeError,
                  "top_p: expected dtype float32"),
    "top_p-len": (sample(fc.top_p_sampling_from_probs, P, T((B + 1,))), ValueError,
                  "top_p: expected size 4"),
    "top_p-2d": (sample(fc.top_p_sampling_from_probs, P, T((B, 1))), ValueError,
                 "top_p: expected 1 dimensions"),
    "top_p-0d": (sample(fc.top_p_sampling_from_probs, P, T(())), ValueError,
                 "top_p: expected 1 dimensions"),
    "top_p-strided": (sample(fc.top_p_sampling_from_probs, P, T((B,), strides=(2,))),
                      ValueError, "top_p: expected a contiguous"),
    "top_p-device": (sample(fc.top_p_sampling_from_probs, P, T((B,), device=1)), ValueError,
                     "top_p: expected a tensor on cuda:0"),
    "top_p-host": (sample(fc.top_p_sampling_from_probs, P, T((B,), device_type="cpu")),
                   ValueError, "top_p: expected a tensor on cuda:0"),
    "top_k-0": (sample(fc.top_k_sampling_from_probs, P, 0), ValueError, "top_k: expected 1 <="),
    "top_k-negative": (sample(fc.top_k_sampling_from_probs, P, -3), ValueError, "top_k"),
    "top_k-2**31": (sample(fc.top_k_sampling_from_probs, P, 2**31), ValueError, "2\\*\\*31"),
    "top_k-float": (sample(fc.top_k_sampling_from_probs, P, 5.0), TypeError,
                    "top_k: expected an int"),
    "top_k-i64": (sample(fc.top_k_sampling_from_probs, P, T((B,), "int64")), TypeError,
                  "top_k: expected dtype int32"),
    "top_k-i32-with-i64-indices": (
        sample(fc.top_k_sampling_from_probs, P, T((B,), "int32"), T((B,), "int64")),
        TypeError, "top_k: expected dtype int64"),
    "top_k-float-tensor": (sample(fc.top_k_sampling_from_probs, P, T((B,))), TypeError,
                           "top_k: expected dtype int32"),
    "top_k-more-outputs-than-rows": (
        sample(fc.top_k_sampling_from_probs, P, T((B,), "int32"), T((B + 1,), "int32")),
        ValueError, "top_k: the kernel reads top_k\\[i\\] for output i"),
    "min_p-more-outputs-than-rows": (
        sample(fc.min_p_sampling_from_probs, P, T((B,)), T((B + 1,), "int32")),
        ValueError, "min_p: the kernel reads"),
    "min_p-negative": (sample(fc.min_p_sampling_from_probs, P, -0.1), ValueError, "min_p"),
    "min_p-above-1": (sample(fc.min_p_sampling_from_probs, P, 1.01), ValueError, "min_p"),
    "min_p-inf": (sample(fc.min_p_sampling_from_probs, P, float("inf")), ValueError, "min_p"),
    "renorm-top_k-i64": (lambda: fc.top_k_renorm_probs(P, T((B,), "int64")), TypeError,
                         "top_k: expected dtype int32"),
    "renorm-top_k-0": (lambda: fc.top_k_renorm_probs(P, 0), ValueError, "top_k"),
    "mask-top_k-float": (lambda: fc.top_k_mask_logits(P, 2.5), TypeError, "top_k"),
    "joint-top_k-i32-with-i64-indices": (
        sample(fc.top_k_top_p_sampling_from_probs, P, T((B,), "int32"), 0.5,
               T((2,), "int64"), "joint"), TypeError, "top_k: expected dtype int64"),
    "composed-top_k-f16-probs": (
        sample(fc.top_k_top_p_sampling_from_probs, T((B, V), "float16"), 5, 0.5),
        TypeError, "probs: expected dtype float32"),
    "composed-top_p-bad": (sample(fc.top_k_top_p_sampling_from_probs, P, 5, 0.0), ValueError,
                           "top_p"),
    "composed-logits-top_p-bad": (sample(fc.top_k_top_p_sampling_from_logits, P, 5, 2.0),
                                  ValueError, "top_p"),
    "composed-order": (sample(fc.top_k_top_p_sampling_from_probs, P, 5, 0.5, None, "both"),
                       ValueError, "filter_apply_order"),
    "composed-order-type": (sample(fc.top_k_top_p_sampling_from_probs, P, 5, 0.5, None, 1),
                            TypeError, "filter_apply_order"),
    "composed-out": (sample(fc.top_k_top_p_sampling_from_logits, P, 5, 0.5,
                            out=T((B,), "int64")), TypeError, "out: expected dtype int32"),
    "temperature-0": (lambda: fc.softmax(P, 0.0), ValueError, "temperature: expected a finite"),
    "temperature-negative": (lambda: fc.softmax(P, -1), ValueError, "temperature"),
    "temperature-inf": (lambda: fc.softmax(P, float("inf")), ValueError, "temperature"),
    "temperature-len": (lambda: fc.softmax(P, T((B - 1,))), ValueError, "temperature"),
    "temperature-bf16": (lambda: fc.softmax(P, T((B,), "bfloat16")), TypeError, "temperature"),
    # indices
    "indices-i8": (sample(fc.sampling_from_probs, P, T((B,), "int8")), TypeError,
                    "indices: expected dtype int32 or int64"),
    "indices-2d": (sample(fc.sampling_from_probs, P, T((B, 1), "int32")), ValueError,
                   "indices: expected 1 dimensions"),
    "indices-strided": (sample(fc.sampling_from_probs, P, T((B,), "int32", strides=(2,))),
                        ValueError, "indices: expected a contiguous"),
    "indices-host": (sample(fc.sampling_from_probs, P, T((B,), "int32", device_type="cpu")),
                     ValueError, "indices: expected a tensor on cuda:0"),
    "indices-into-nothing": (sample(fc.sampling_from_probs, T((0, V)), T((2,), "int32")),
                             ValueError, "has none"),
    # outputs
    "out-i64": (sample(fc.sampling_from_probs, P, out=T((B,), "int64")), TypeError,
                "out: expected dtype int32, got int64"),
    "out-i32-with-i64-indices": (sample(fc.sampling_from_probs, P, T((3,), "int64"),
                                        out=T((3,), "int32")), TypeError,
                                 "out: expected dtype int64 \\(the dtype of indices"),
    "out-len": (sample(fc.sampling_from_probs, P, out=T((B + 1,), "int32")), ValueError,
                "out: expected size 4"),
    "out-len-indices": (sample(fc.sampling_from_probs, P, T((7,), "int32"),
                               out=T((B,), "int32")), ValueError, "out: expected size 7"),
    "out-read-only": (sample(fc.sampling_from_probs, P, out=ReadOnly(T((B,), "int32"))),
                      ValueError, "out: the kernel writes"),
    "out-other-device": (sample(fc.sampling_from_probs, P, out=T((B,), "int32", device=1)),
                         ValueError, "out: expected a tensor on cuda:0"),
    "softmax-out-f16": (lambda: fc.softmax(P, out=T((B, V), "float16")), TypeError, "out"),
    "softmax-out-shape": (lambda: fc.softmax(P, out=T((B, V + 4))), ValueError, "out"),
    "softmax-out-misaligned": (lambda: fc.softmax(P, out=T((B, V), offset=4)), ValueError,
                               "out: data pointer"),
    "renorm-out-dtype": (lambda: fc.top_k_renorm_probs(T((B, V), "float16"), 3,
                                                       out=T((B, V), "bfloat16")),
                         TypeError, "out"),
    "renorm-out-read-only": (lambda: fc.top_p_renorm_probs(P, 0.5, out=ReadOnly(T((B, V)))),
                             ValueError, "out: the kernel writes"),
    # scratch buffers
    "workspace-dtype": (lambda: fc.softmax(P, workspace_buffer=T((1024,), "int32")), TypeError,
                        "workspace_buffer: expected dtype uint8"),
    "workspace-small": (lambda: fc.softmax(T((2, 32000)), workspace_buffer=T((16,), "uint8")),
                        ValueError, "workspace_buffer: expected at least 64 bytes"),
    "row-states-small": (lambda: fc.top_k_mask_logits(P, 3, row_states_buffer=T((1024,),
                                                                                  "uint8")),
                         ValueError, "row_states_buffer: expected at least 1048576 bytes"),
    "row-states-misaligned": (lambda: fc.top_k_mask_logits(
        P, 3, row_states_buffer=T((1 << 20,), "uint8", offset=3)), ValueError, "aligned"),
    # bools
    "deterministic-str": (sample(fc.sampling_from_probs, P, deterministic="yes"), TypeError,
                          "deterministic: expected True or False"),
    "deterministic-none": (sample(fc.top_k_top_p_sampling_from_probs, P, 5, 0.5,
                                  deterministic=None), TypeError, "deterministic"),
    "chain-deterministic": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V)), deterministic=2, **SEEDS), TypeError,
        "deterministic"),
    "check_nan": (sample(fc.sampling_from_probs, P, check_nan=True), ValueError,
                  "check_nan: True would read"),
    "check_nan-str": (sample(fc.sampling_from_probs, P, check_nan="no"), TypeError,
                      "check_nan"),
    "enable_pdl": (lambda: fc.softmax(P, enable_pdl="on"), TypeError, "enable_pdl"),
    # seeds
    "seed-negative": (sample(fc.sampling_from_probs, P, seed=-1), ValueError,
                      "seed: expected 0 <= seed < 2\\*\\*64"),
    "offset-2**64": (sample(fc.sampling_from_probs, P, offset=2**64), ValueError, "offset"),
    "seed-float": (sample(fc.sampling_from_probs, P, seed=1.0), TypeError,
                   "seed: expected an int"),
    "seed-bool": (sample(fc.sampling_from_probs, P, seed=True), TypeError, "seed"),
    "seed-alone": (lambda: fc.sampling_from_probs(P, seed=3), ValueError,
                   "offset: seed and offset go together"),
    "offset-alone": (lambda: fc.sampling_from_probs(P, offset=3), ValueError, "seed: seed and"),
    "generator-wrong": (lambda: fc.sampling_from_probs(P, generator=42), TypeError,
                        "generator: expected a SamplingGenerator"),
    # chain speculative sampling
    "chain-target-shape": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 3, V)), **SEEDS), ValueError,
        "target_probs: expected size 4"),
    "chain-target-vocab": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V + 4)), **SEEDS), ValueError,
        "target_probs: expected size 1000"),
    "chain-ids-i64": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int64"), T((B, 4, V)), **SEEDS), TypeError,
        "draft_token_ids: expected dtype int32"),
    "chain-ids-shape": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 2), "int32"), T((B, 4, V)), **SEEDS), ValueError,
        "draft_token_ids: expected size 3"),
    "chain-counter-i64": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V)), T((B,), "int64"), **SEEDS), TypeError,
        "maybe_output_accepted_token_num: expected dtype int32"),
    "chain-counter-len": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V)), None, T((B + 1,), "int32"), **SEEDS),
        ValueError, "maybe_output_emitted_draft_token_num: expected size 4"),
    "chain-out-shape": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V)), out=T((B, 3), "int32"), **SEEDS),
        ValueError, "out: expected size 4"),
    "chain-f16": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V), "float16"), T((B, 3), "int32"), T((B, 4, V)), **SEEDS), TypeError,
        "draft_probs: expected dtype float32"),
    "chain-target-device": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V), device=1), **SEEDS), ValueError,
        "target_probs: expected a tensor on cuda:0"),
    "stream": (sample(fc.sampling_from_probs, P, stream="s"), TypeError, "stream"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_raise_before_cuda(name):
    call, exc, words = BAD[name]
    raises(call, exc, words)


def test_generator_untouched_by_a_refused_call():
    g = fc.SamplingGenerator(5, 8)
    raises(lambda: fc.top_p_sampling_from_probs(P, 0.0, generator=g), ValueError, "top_p")
    raises(lambda: fc.sampling_from_probs(P, generator=g, stream="s"), TypeError, "stream")
    assert (g.seed, g.offset) == (5, 8)


# ----------------------------------------------------------------------------- generator

def upstream_offset_after(offset: int, increment: int) -> int:
    """flashinfer-python 0.6.3 get_seed_and_offset, written independently: the offset
    grows by the increment rounded up to the next multiple of 4."""
    return offset + -(-increment // 4) * 4


def increments(b, v, n, release="0.6.3"):
    """Per function, what upstream passes to get_seed_and_offset (sampling.py of that
    release: 0.7.4 reserves n + 2 draws per chain request, 0.6.3 n + 1)."""
    return {
        "sampling_from_probs": b, "min_p_sampling_from_probs": b,
        "sampling_from_logits": b * v,
        "top_p_sampling_from_probs": b * 32, "top_k_sampling_from_probs": b * 32,
        "top_k_top_p_sampling_from_probs": b * 32, "top_k_top_p_sampling_from_logits": b * 32,
        "chain_speculative_sampling": b * (n + (2 if release == "0.7.4" else 1)),
    }


def call(name, b, v, n, generator, indices=None):
    probs = T((b, v))
    extra = {"top_p_sampling_from_probs": (0.5,), "top_k_sampling_from_probs": (3,),
             "min_p_sampling_from_probs": (0.1,), "top_k_top_p_sampling_from_probs": (3, 0.5),
             "top_k_top_p_sampling_from_logits": (3, 0.5)}.get(name, ())
    if name == "chain_speculative_sampling":
        return lambda: fc.chain_speculative_sampling(T((b, n, v)), T((b, n), "int32"),
                                                     T((b, n + 1, v)), generator=generator)
    return lambda: getattr(fc, name)(probs, *extra, indices, generator=generator)


RELEASES = ["0.6.3", "0.7.4"]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("name", sorted(increments(1, 1, 1)))
@pytest.mark.parametrize("b, v, n", [(1, 5, 1), (3, 1000, 2), (7, 33, 4)])
def test_generator_advances_as_upstream(name, b, v, n, release, module_release):
    module_release(release)
    g = fc.SamplingGenerator(123, 4)
    for _ in range(3):
        before = g.offset
        reaches_cuda(call(name, b, v, n, g))
        assert g.seed == 123
        assert g.offset == upstream_offset_after(before, increments(b, v, n, release)[name])


@pytest.mark.parametrize("name", ["sampling_from_probs", "sampling_from_logits",
                                  "top_k_sampling_from_probs"])
def test_generator_counts_outputs_with_indices(name, module_release):
    """batch = len(indices), not the number of rows (upstream's rule)."""
    module_release("0.6.3")
    g = fc.SamplingGenerator(1)
    reaches_cuda(call(name, 4, 40, 1, g, T((9,), "int32")))
    assert g.offset == upstream_offset_after(0, increments(9, 40, 1)[name])


@pytest.mark.parametrize("release", RELEASES)
def test_explicit_seed_leaves_the_generator_alone(release, module_release):
    module_release(release)
    g = fc.SamplingGenerator(9, 12)
    reaches_cuda(lambda: fc.sampling_from_probs(P, generator=g, seed=1, offset=2))
    assert (g.seed, g.offset) == (9, 12)


def test_drawn_offset_follows_the_release():
    """0.6.3's get_seed_and_offset hands the kernel the advanced offset, 0.7.4's the one
    before (both leave the generator advanced)."""
    g = fc.SamplingGenerator(3, 8)
    assert g.draw(5) == (3, 16) and g.offset == 16
    assert g.draw(5, old_offset=True) == (3, 16) and g.offset == 24
    t = TorchLikeGenerator(3, 8)
    assert sampling_rng.seed_and_offset(5, t, None, None, True) == (3, 8)
    assert t.state.view(np.int64)[1] == 16
    assert sampling_rng.seed_and_offset(5, t, None, None) == (3, 24)


class TorchLikeGenerator:
    """What flashinfer-python hands get_seed_and_offset: get_state() is a 16-byte uint8 CPU
    tensor (a numpy array here) holding int64 seed and offset; set_state() takes it back."""

    def __init__(self, seed, offset):
        self.state = np.array([seed, offset], np.int64).view(np.uint8)
        self.sets = 0

    def get_state(self):
        return self.state.copy()

    def set_state(self, state):
        self.state = np.asarray(state).copy()
        self.sets += 1


def test_torch_like_generator_is_advanced_in_its_state(module_release):
    module_release("0.6.3")
    g = TorchLikeGenerator(-5, 40)  # a seed >= 2**63 reads back as a negative int64
    seed, offset = sampling_rng.seed_and_offset(10, g, None, None)
    # upstream hands the kernel the advanced offset (its `offset` is a view of the state)
    assert (seed, offset) == (2**64 - 5, upstream_offset_after(40, 10))
    assert list(g.state.view(np.int64)) == [-5, upstream_offset_after(40, 10)] and g.sets == 1
    reaches_cuda(lambda: fc.top_p_sampling_from_probs(P, 0.5, generator=g))
    assert g.state.view(np.int64)[1] == upstream_offset_after(52, B * 32)


def test_torch_like_generator_of_the_wrong_kind_is_refused(module_release):
    module_release("0.6.3")
    class CpuGenerator(TorchLikeGenerator):  # mt19937's 5056-byte state
        def get_state(self):
            return np.zeros(5056, np.uint8)

    class Copying(TorchLikeGenerator):  # an array-like whose numpy view is a copy
        def get_state(self):
            return list(self.state)

    raises(lambda: fc.sampling_from_probs(P, generator=CpuGenerator(1, 0)), TypeError,
           "16-byte uint8 state")
    raises(lambda: sampling_rng.seed_and_offset(4, Copying(1, 0), None, None), TypeError,
           "16-byte|shares its memory")


def test_sampling_generator_rules():
    g = fc.SamplingGenerator(2**64 - 1, 2**64 - 4)
    assert g.draw(1) == (2**64 - 1, 0) and g.offset == 0  # advanced first; wraps mod 2**64
    assert g.manual_seed(7) is g and (g.seed, g.offset) == (7, 0)
    for bad, exc in ((-1, ValueError), (2**64, ValueError), (1.5, TypeError),
                     (False, TypeError), ("1", TypeError)):
        with pytest.raises(exc, match="seed"):
            fc.SamplingGenerator(bad)
    assert isinstance(sampling_rng.default_generator(), fc.SamplingGenerator)
    assert sampling_rng.default_generator() is sampling_rng.default_generator()


def test_default_generator_is_used_without_seed_or_generator(module_release):
    module_release("0.6.3")
    g = sampling_rng.default_generator()
    before = g.offset
    reaches_cuda(lambda: fc.sampling_from_logits(P))
    assert g.offset == upstream_offset_after(before, B * V) % 2**64


def test_uint64_travels_as_its_int64_pattern():
    assert sampling_rng.as_int64_slot(2**64 - 1) == -1
    assert sampling_rng.as_int64_slot(2**63) == -2**63
    assert sampling_rng.as_int64_slot(2**63 - 1) == 2**63 - 1


# ----------------------------------------------------------------------------- ABI tables

_CSRC = Path("/tmp/fi063/x/flashinfer/data/csrc")
_KINDS = {"TensorView": "T", "Optional<TensorView>": "T?", "double": "F", "bool": "B",
          "int64_t": "I", "uint64_t": "I"}
BINDINGS = [sampling.SOFTMAX, sampling.SAMPLING_FROM_PROBS, sampling.SAMPLING_FROM_LOGITS,
            sampling.TOP_P_SAMPLING_FROM_PROBS, sampling.TOP_K_SAMPLING_FROM_PROBS,
            sampling.MIN_P_SAMPLING_FROM_PROBS, sampling.TOP_K_TOP_P_SAMPLING_FROM_PROBS,
            sampling.TOP_P_RENORM_PROBS, sampling.TOP_K_RENORM_PROBS,
            sampling.TOP_K_MASK_LOGITS, sampling.CHAIN_SPECULATIVE_SAMPLING]


@pytest.mark.skipif(not (_CSRC / "flashinfer_sampling_binding.cu").is_file(),
                    reason="flashinfer-python 0.6.3 sources not unpacked at /tmp/fi063")
def test_abi_tables_match_the_binding_source():
    """Names, order and kinds of every export, from the declarations in
    csrc/flashinfer_sampling_binding.cu; and every export has a table line."""
    src = (_CSRC / "flashinfer_sampling_binding.cu").read_text()
    decls = dict(re.findall(r"void\s+(\w+)\s*\(([^;{]*?)\)\s*;", src, re.S))
    exported = re.findall(r"TVM_FFI_DLL_EXPORT_TYPED_FUNC\((\w+),", src)
    assert sorted(b.symbol for b in BINDINGS) == sorted(exported) == sorted(decls)
    for b in BINDINGS:
        params = [p.strip().rsplit(None, 1) for p in decls[b.symbol].split(",")]
        want = [f"{name}:{_KINDS[' '.join(ty.split())]}" for ty, name in params]
        got = [item.rstrip("!") for item in b.signature.split()]
        assert got == want, b.symbol
        assert b.uri == "sampling"


def test_abi_tables_mark_what_the_kernels_write():
    writes = {b.symbol: b.writes for b in BINDINGS}
    assert writes["softmax"] == ("workspace_buffer", "output")
    assert writes["top_k_renorm_probs"] == ("renorm_probs", "row_states_buffer")
    assert writes["chain_speculative_sampling"] == (
        "output_token_ids", "output_accepted_token_num", "output_emitted_draft_token_num")
    for name in ("sampling_from_probs", "top_k_top_p_sampling_from_probs"):
        assert writes[name] == ("output",)


# ----------------------------------------------------------------------------- 0.7.x args
# valid= / return_valid= and device seed/offset tensors: checked before any module load
# (no_cuda), and refused on a 0.6.3 module once its release is known, naming 0.7.x.

SEED_T, OFF_T = T((1,), "int64"), T((B,), "int64", offset=64)  # (TensorDesc has no uint64)
LATER_BAD = {
    "valid-dtype": (lambda: fc.sampling_from_probs(P, valid=T((B,), "uint8")), TypeError,
                    "valid: expected dtype bool"),
    "valid-shape": (lambda: fc.top_p_sampling_from_probs(P, 0.5, valid=T((B + 1,), "bool")),
                    ValueError, "valid: .*dimension 0"),
    "valid-device": (lambda: fc.top_k_sampling_from_probs(P, 3, valid=T((B,), "bool",
                                                                       device=1)),
                     ValueError, "valid: expected a tensor on cuda:0"),
    "valid-host": (lambda: fc.min_p_sampling_from_probs(
        P, 0.1, valid=T((B,), "bool", device_type="cpu")), ValueError, "valid: .*CUDA"),
    "valid-readonly": (lambda: fc.sampling_from_probs(P, valid=ReadOnly(T((B,), "bool"))),
                       ValueError, "valid: the kernel writes this tensor"),
    "return-valid-str": (lambda: fc.sampling_from_probs(P, return_valid="yes"), TypeError,
                         "return_valid"),
    "seed-dtype": (lambda: fc.sampling_from_probs(P, seed=T((1,), "int32"), offset=OFF_T),
                   TypeError, "seed: expected a device tensor of dtype int64 or uint64"),
    "offset-len": (lambda: fc.sampling_from_logits(P, seed=SEED_T, offset=T((B + 1,), "int64")),
                   ValueError, "offset: expected length 1 .* or 4"),
    "seed-2d": (lambda: fc.top_p_sampling_from_probs(P, 0.5, seed=T((1, 1), "int64"),
                                                     offset=OFF_T), ValueError,
                "seed: expected 1 dimensions"),
    "seed-device": (lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V)), seed=T((1,), "int64", device=1),
        offset=OFF_T), ValueError, "seed: expected a tensor on cuda:0"),
    "seed-host": (lambda: fc.sampling_from_probs(
        P, seed=T((1,), "int64", device_type="cpu"), offset=OFF_T), ValueError, "seed: .*CUDA"),
    "seed-mixed": (lambda: fc.sampling_from_probs(P, seed=1, offset=OFF_T), TypeError,
                   "seed, offset: both ints or both device tensors"),
    "offset-alone": (lambda: fc.sampling_from_probs(P, offset=OFF_T), ValueError,
                     "seed: seed and offset go together"),
    "renorm-det-str": (lambda: fc.top_p_renorm_probs(P, 0.5, "no"), TypeError,
                       "is_deterministic"),
}


@pytest.mark.parametrize("name", sorted(LATER_BAD))
def test_later_release_arguments_are_checked_before_cuda(name):
    call, exc, words = LATER_BAD[name]
    raises(call, exc, words)


LATER_OK = {
    "valid": lambda: fc.sampling_from_probs(P, valid=T((B,), "bool"), seed=1, offset=2),
    "return-valid": lambda: fc.top_k_sampling_from_probs(P, 3, return_valid=True),
    "seed-tensors": lambda: fc.top_p_sampling_from_probs(P, 0.5, seed=SEED_T, offset=OFF_T),
    "seed-tensors-logits": lambda: fc.sampling_from_logits(P, seed=OFF_T, offset=SEED_T),
    "seed-tensors-joint": lambda: fc.top_k_top_p_sampling_from_probs(
        P, 3, 0.5, filter_apply_order="joint", seed=SEED_T, offset=OFF_T,
        valid=T((B,), "bool")),
    "seed-tensors-chain": lambda: fc.chain_speculative_sampling(
        T((B, 3, V)), T((B, 3), "int32"), T((B, 4, V)), seed=SEED_T, offset=OFF_T),
}


@pytest.mark.parametrize("name", sorted(LATER_OK))
def test_later_release_arguments_pass_the_checks(name):
    reaches_cuda(LATER_OK[name])


@pytest.mark.parametrize("name", sorted(LATER_OK))
def test_later_release_arguments_are_refused_on_0_6_3(name, module_release):
    module_release("0.6.3")
    raises(LATER_OK[name], ValueError, r"flashinfer 0\.7\.x.*this \w+ module is flashinfer 0\.6\.3")


@pytest.mark.parametrize("name", sorted(LATER_OK))
def test_later_release_arguments_are_taken_on_0_7_4(name, module_release):
    module_release("0.7.4")
    reaches_cuda(LATER_OK[name])


def test_seed_tensors_leave_the_generator_alone(module_release):
    module_release("0.7.4")
    g = fc.SamplingGenerator(9, 12)
    reaches_cuda(lambda: fc.sampling_from_probs(P, generator=g, seed=SEED_T, offset=OFF_T))
    assert (g.seed, g.offset) == (9, 12)
