"""tools/extract_abi.py (and its readers tools/cxx_decls.py, tools/jit_sources.py) on small
made-up FlashInfer trees: the declaration forms the binding sources use, generated
attention parameters, generator branches, and the committed ABI files' shape."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import cxx_decls  # noqa: E402
import extract_abi  # noqa: E402
import jit_sources  # noqa: E402

from flashinfer_cy import abi  # noqa: E402

CXX = textwrap.dedent("""\
    #include "tvm_ffi_utils.h"
    #define DISPATCH(x) [&]() { \\
      return x; \\
    }()
    namespace tvm_ext {
    /* a comment
       spanning lines */
    static inline tvm::ffi::Array<int64_t> plan(const TensorView& a, int64_t n = 4,
                                                 bool flag ADDITIONAL_FUNC_PARAMS);
    }
    struct Runner {
      static void launch(ffi::Optional<ffi::Tensor> maybe_x, double scale);
    };
    void helper() { plan(x, 3); }   // a call, not a declaration
    template <typename T>
    void tmpl(TensorView out, DLDataType dt) {}
    TVM_FFI_DLL_EXPORT_TYPED_FUNC(plan, tvm_ext::plan);
    TVM_FFI_DLL_EXPORT_TYPED_FUNC(launch, &Runner::launch);
    TVM_FFI_DLL_EXPORT_TYPED_FUNC(tmpl, tmpl);
    """)


def test_declarations_of_every_form():
    text = cxx_decls.strip_comments(CXX)
    assert text.count("\n") == CXX.count("\n")  # line numbers survive
    exports = cxx_decls.find_exports(text)
    assert [(e, f) for e, f, _ in exports] == [("plan", "tvm_ext::plan"),
                                               ("launch", "Runner::launch"), ("tmpl", "tmpl")]
    (plan,) = cxx_decls.find_declarations(text, "tvm_ext::plan")
    assert (plan.returns, plan.line, plan.has_generated) == ("Array<int64_t>", 8, True)
    assert plan.params == [("TensorView", "a"), ("int64_t", "n"), ("bool", "flag")]
    (launch,) = cxx_decls.find_declarations(text, "Runner::launch")
    assert launch.params == [("Optional<Tensor>", "maybe_x"), ("double", "scale")]
    (tmpl,) = cxx_decls.find_declarations(text, "tmpl")
    assert (tmpl.returns, tmpl.params) == ("void", [("TensorView", "out"), ("DLDataType", "dt")])


GEN = textwrap.dedent("""\
    def gen_thing_module(backend, dtype_q):
        fp8_enabled = dtype_q in [torch.float8_e4m3fn]
        if backend == "fa2":
            names = ["maybe_mask"]
            scalars, dtypes = ["sm_scale"], ["double"]
        else:
            if not fp8_enabled:
                names = ["maybe_scale_v"]
            else:
                names = ["maybe_scale_q"]
            scalars = ["sm_scale"]
            dtypes = ["double"]
        return _customize(backend, names, dtypes, scalars, dtypes, surface="full")

    def _customize(backend, additional_tensor_names, additional_tensor_dtypes,
                   additional_scalar_names, additional_scalar_dtypes, surface="paged"):
        files = ["a.cu", "a_binding.cu"] if surface == "full" else ["p.cu"]
        if backend == "fa3":
            files = ["sm90.cu", "sm90_binding.cu"]
        for f in files:
            copy(jit_env.FLASHINFER_CSRC_DIR / f)
        return gen_jit_spec(uri, [gen_dir / f"generated_{backend}.cu"])
    """)


@pytest.mark.parametrize("backend,sources,tensors", [
    ("fa2", ["a.cu", "a_binding.cu"], ["maybe_mask"]),
    ("fa3", ["sm90.cu", "sm90_binding.cu"], ["maybe_scale_v"]),
])
def test_generator_branches_follow_the_arguments(backend, sources, tensors):
    facts = jit_sources.generator_facts(GEN, "gen_thing_module", {"backend": backend},
                                        {"fp8_enabled": False})
    assert facts["sources"] == sources
    assert facts["extras"]["additional_tensor_names"] == tensors


def test_unpinned_branches_are_refused():
    """Without fp8_enabled pinned the fa3 branch could be either: say so, never guess."""
    with pytest.raises(ValueError, match="cannot tell"):
        jit_sources.generator_facts(GEN, "gen_thing_module", {"backend": "fa3"}, {})


def _tree(tmp_path: Path) -> Path:
    base = tmp_path / "flashinfer"
    files = {
        "_build_meta.py": '__version__ = "9.9.9"\n',
        "jit/norm.py": 'def gen_norm_module():\n'
                       '    return gen_jit_spec("norm", [d / "norm.cu", d / "norm_binding.cu"])\n',
        "data/csrc/norm.cu": "void rmsnorm(TensorView out, double eps) { }\n",
        "data/csrc/norm_binding.cu": "void rmsnorm(TensorView out, double eps);\n"
                                     "TVM_FFI_DLL_EXPORT_TYPED_FUNC(rmsnorm, rmsnorm);\n",
        "data/csrc/other_binding.cu": "void rmsnorm(int x);\n"
                                      "TVM_FFI_DLL_EXPORT_TYPED_FUNC(rmsnorm, rmsnorm);\n",
    }
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    return tmp_path


def test_extract_a_tree(tmp_path):
    """Only the module's own sources count (another file exporting the same name is
    another module), and the declaration is the one the exporting file sees."""
    data = extract_abi.extract(extract_abi.Tree(_tree(tmp_path)))
    assert data["flashinfer"] == "9.9.9"
    assert list(data["modules"]) == ["norm"]
    norm = data["modules"]["norm"]
    assert norm["sources"] == ["norm.cu", "norm_binding.cu"]
    assert norm["exports"] == {"rmsnorm": {"returns": "void", "decl": "norm_binding.cu:1",
                                           "params": [["TensorView", "out"], ["double", "eps"]]}}
    back = json.loads(extract_abi.dumps(data))
    assert back == data


def test_committed_files_are_what_the_test_reads():
    assert abi.versions()[0] == "0.6.3"
    for v in abi.versions():
        data = abi.load(v)
        assert data["flashinfer"] == v and data["tool"] == "tools/extract_abi.py"
        assert extract_abi.dumps(data) == (abi._DIR / f"flashinfer-{v}.json").read_text()
        for key, m in data["modules"].items():
            assert m["exports"], key
            for name, e in m["exports"].items():
                assert e["decl"].rsplit(":", 1)[1].isdigit(), (key, name)
                assert all(len(p) == 2 for p in e["params"]), (key, name)
    assert abi.module_key("batch_prefill_with_kv_cache_dtype_q_f16_x_sm90") == "batch_prefill/fa3"
    assert abi.module_key("norm") == "norm"


RUNNER = textwrap.dedent("""\
    class Other : public tvm::ffi::ModuleObj {
      Optional<Function> GetFunction(const String& name) final {
        if (name == "decoy") { return Function::FromTyped([](int64_t z) {}); }
        return Function(nullptr);
      }
    };
    class Runner : public tvm::ffi::ModuleObj {
     public:
      const char* kind() const final { return "runner"; }
      Optional<Function> GetFunction(const tvm::ffi::String& name) final {
        if (name == "count") {
          return Function::FromTyped([this]() -> int64_t { return n_; });
        } else if (name == "run") {
          return Function::FromTyped(
              [this](TensorView out, Optional<Array<Tensor>> scales,  // a comment
                     int64_t k) { run(out, scales, k); });
        } else if (name == "tactics") {
          return Function::FromTyped([this](int64_t stage) -> Array<int64_t> { return {}; });
        } else {
          return Function(nullptr);
        }
      }
    };
""")


def test_served_methods_of_a_module_object():
    text = cxx_decls.strip_comments(RUNNER)
    got = cxx_decls.find_served_methods(text, "Runner", "r.cu")
    assert [(d.name, d.returns, d.params, d.line) for d in got] == [
        ("count", "int64_t", [], 12),
        ("run", "void", [("TensorView", "out"), ("Optional<Array<Tensor>>", "scales"),
                         ("int64_t", "k")], 15),
        ("tactics", "Array<int64_t>", [("int64_t", "stage")], 18)]
    # a branch this reader cannot follow is an error, never a silently missing method
    odd = text.replace('return Function::FromTyped([this](int64_t stage)',
                       'return MakeTyped([this](int64_t stage)')
    with pytest.raises(ValueError, match="serves .*'tactics'"):
        cxx_decls.find_served_methods(odd, "Runner", "r.cu")
    with pytest.raises(ValueError, match="no class Missing"):
        cxx_decls.find_served_methods(text, "Missing", "r.cu")


def test_committed_runner_methods():
    """fused_moe_90's init returns the runner; its methods are extracted per release."""
    for version in ("0.6.3", "0.7.4"):
        m = abi.load(version)["modules"]["fused_moe_90"]
        assert m["exports"]["init"]["returns"] == "Module"
        methods = m["methods"]["init"]
        assert {"run_moe", "run_moe_min_latency", "get_tactic_num", "run_gemm_profile",
                "get_gemm1_tactic_count", "get_gemm2_tactic_count"} <= set(methods)
        assert methods["get_tactic_num"] == {
            "returns": "int64_t", "params": [], "decl": methods["get_tactic_num"]["decl"]}
    assert "get_workspace_size" in abi.load("0.7.4")["modules"]["fused_moe_90"]["methods"]["init"]
