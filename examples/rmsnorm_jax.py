"""RMSNorm on JAX arrays through DLPack. JAX arrays are immutable, so ``out`` is left to the
library (a ``fc.DeviceArray``) and handed back to JAX with ``jax.dlpack.from_dlpack``, no
copy. JAX does not expose its CUDA stream, so the example orders work explicitly: inputs
are made ready before the call, and the call's stream is synchronized before JAX reads the
result. Needs a CUDA GPU, jax[cuda] and the ``norm`` kernel module.

    python examples/rmsnorm_jax.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from cuda.core import Device

import flashinfer_cy as fc
from _reference import check, rmsnorm_ref


def main() -> None:
    if not jax.devices("gpu"):
        raise SystemExit("this example needs a CUDA GPU visible to JAX")
    gpu = jax.devices("gpu")[0]
    tokens, hidden = 64, 4096
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x = jax.device_put(jax.random.normal(k1, (tokens, hidden), dtype=jnp.bfloat16), gpu)
    w = jax.device_put(jax.random.normal(k2, (hidden,), dtype=jnp.bfloat16), gpu)
    x.block_until_ready()
    w.block_until_ready()

    dev = Device(gpu.id)
    dev.set_current()
    stream = dev.create_stream()
    res = fc.rmsnorm(x, w, stream=stream)  # jax.Array is a DLPack producer: viewed, not copied
    stream.sync()                          # JAX will read on its own stream
    y = jax.dlpack.from_dlpack(res)

    want = rmsnorm_ref(np.asarray(x, dtype=np.float32), np.asarray(w, dtype=np.float32))
    check("rmsnorm bf16 (jax in, DeviceArray out)", np.asarray(y, dtype=np.float32), want)
    # The result stays valid as long as `y` (or `res`) lives: JAX holds the DeviceArray.
    z = jnp.sum(y.astype(jnp.float32))
    print("sum of the normalised rows:", float(z))


if __name__ == "__main__":
    main()
