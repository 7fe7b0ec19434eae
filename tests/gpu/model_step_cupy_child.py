"""Child process of tests/gpu/test_model_step.py: the CuPy (float16) back-end with torch made
unimportable. argv: model dir, prompts .npz, output .npz."""

import sys

sys.modules["torch"] = None  # type: ignore[assignment]  # before anything can import it

import numpy as np  # noqa: E402


def main() -> None:
    model_dir, prompts_path, out_path = sys.argv[1:4]
    try:
        import torch  # noqa: F401
        torch_import_failed = False
    except ImportError:
        torch_import_failed = True

    from array_backends import CupyBackend
    from test_model_step import run_model

    with np.load(prompts_path) as f:
        prompts = [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]
    prefill, results, tokens, prefills_equal = run_model(CupyBackend("float16"), model_dir,
                                                         prompts)
    np.savez(out_path, prefill=prefill, tokens=tokens, prefills_equal=prefills_equal,
             torch_import_failed=torch_import_failed, **results)


if __name__ == "__main__":
    main()
