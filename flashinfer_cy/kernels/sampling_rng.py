"""Philox seed and offset for the sampling kernels, as flashinfer-python derives them.

Every sampling kernel of 0.6.3 takes ``philox_seed`` and ``philox_offset`` as host scalars
and starts each output row's Philox stream at (seed, subsequence = row, offset). Upstream
(``flashinfer.sampling.get_seed_and_offset``) reads the (seed, offset) state of a CUDA
``torch.Generator``, advances the offset by ``(increment + 3) // 4 * 4``, where
``increment`` is per function (see ``INCREMENT`` below and the functions' docstrings), sets
the state back and hands the kernel the *advanced* offset: ``seed, offset =
state.view(torch.int64)`` unpacks into views of the state, so ``offset += ...`` moves the
offset it then returns (seen on an H100: handing the kernel the old offset drew other ids). :class:`SamplingGenerator` does exactly that without torch,
so a sequence of calls with one ``SamplingGenerator(seed, offset)`` draws what the same
sequence of flashinfer-python calls draws with a torch generator in state (seed, offset).
Any object with torch.Generator's ``get_state()`` / ``set_state()`` (a CUDA generator's
16-byte state) is advanced the same way, duck-typed: torch is never imported.

flashinfer-python 0.7.x reserves the same range but hands the kernel the offset *before*
the reservation (its get_seed_and_offset unpacks ``map(int, state.view(torch.int64))``,
copies, and returns ``seed, offset`` after setting ``offset + step`` back): pass
``old_offset=True`` for a module of that release (the sampling family does, by the loaded
module's release), so one generator state draws what that release's flashinfer-python
draws.

Pure Python: no CUDA, nothing but the host-side counter.
"""

from __future__ import annotations

import operator
import threading

U64 = 1 << 64
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def philox_advance(increment: int) -> int:
    """How far one call moves the generator's offset: its increment rounded up to a multiple
    of 4 (one Philox draw yields four 32-bit numbers), as upstream's get_seed_and_offset."""
    return (increment + 3) // 4 * 4


def as_u64(value, name: str) -> int:
    """An explicit seed or offset: an int with 0 <= value < 2**64 (TypeError / ValueError
    naming it). The kernels take uint64_t; the value travels as its 64-bit pattern."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an int, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}") \
            from None
    if not 0 <= v < U64:
        raise ValueError(f"{name}: expected 0 <= {name} < 2**64, got {v}")
    return v


def as_int64_slot(v: int) -> int:
    """The int64 TVM-FFI slot carrying uint64 ``v`` (the export static_casts it back)."""
    return v - U64 if v > INT64_MAX else v


class SamplingGenerator:
    """A host-side Philox (seed, offset) counter for the sampling functions.

    ``SamplingGenerator(seed, offset=0)``: each sampling call that takes it uses the current
    (seed, offset) and advances ``offset`` by :func:`philox_advance` of the call's increment,
    exactly as flashinfer-python advances a CUDA ``torch.Generator``. Thread-safe (one lock
    per generator). The offset wraps modulo 2**64.
    """

    __slots__ = ("_seed", "_offset", "_lock")

    def __init__(self, seed: int, offset: int = 0):
        self._seed = as_u64(seed, "seed")
        self._offset = as_u64(offset, "offset")
        self._lock = threading.Lock()

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def offset(self) -> int:
        return self._offset

    def manual_seed(self, seed: int) -> "SamplingGenerator":
        """Restart at (seed, 0), like ``torch.Generator.manual_seed``."""
        s = as_u64(seed, "seed")
        with self._lock:
            self._seed, self._offset = s, 0
        return self

    def set_offset(self, offset: int) -> None:
        o = as_u64(offset, "offset")
        with self._lock:
            self._offset = o

    def draw(self, increment: int, old_offset: bool = False) -> tuple[int, int]:
        """The (seed, offset) for one call: the offset is advanced by the call's range; the
        call gets the advanced value (flashinfer-python 0.6.3) or, with ``old_offset``,
        the value before (0.7.x)."""
        step = philox_advance(increment)
        with self._lock:
            before = self._offset
            self._offset = (before + step) % U64
            return self._seed, before if old_offset else self._offset

    def __repr__(self) -> str:
        return f"SamplingGenerator(seed={self._seed}, offset={self._offset})"


_default: SamplingGenerator | None = None
_default_lock = threading.Lock()


def default_generator() -> SamplingGenerator:
    """The process-wide generator used when a call passes neither ``seed``/``offset`` nor
    ``generator``: one for all devices, seeded at random on first use (reseed it with
    ``default_generator().manual_seed(s)`` for reproducible runs)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                import secrets  # on first use: importing the package stays light

                _default = SamplingGenerator(secrets.randbits(63))
    return _default


def _state_words(state, what: str):
    import numpy as np  # only for torch-like generators: importing the package stays light

    words = np.asarray(state)
    if words.dtype != np.uint8 or words.size != 16 or not words.flags.c_contiguous:
        raise TypeError(f"generator: get_state() must return the 16-byte uint8 state of a "
                        f"CUDA (Philox) generator, {what} {words.dtype} with {words.size} "
                        f"items")
    return words.view(np.int64)


def _draw_torch_like(generator, increment: int, old_offset: bool) -> tuple[int, int]:
    """Upstream's get_seed_and_offset on a torch.Generator-like object: state viewed as
    int64 (seed, offset); the offset advanced in that state and set back."""
    state = generator.get_state()
    words = _state_words(state, "got")
    seed, offset = int(words[0]), int(words[1])
    new = offset + philox_advance(increment)
    if new > INT64_MAX:
        raise ValueError(f"generator: its offset {offset} would pass 2**63 - 1")
    words[1] = new
    if int(_state_words(state, "then")[1]) != new:
        raise TypeError("generator: get_state() must return an array-like whose numpy view "
                        "shares its memory (as a CPU torch.Tensor's does), so the advanced "
                        "offset reaches set_state()")
    generator.set_state(state)
    # 0.6.3 hands the kernel the advanced offset, 0.7.x the one before (module docstring)
    return seed % U64, (offset if old_offset else new) % U64


def seed_and_offset(increment: int, generator, seed, offset,
                    old_offset: bool = False) -> tuple[int, int]:
    """(philox_seed, philox_offset) for one call, each 0 <= v < 2**64. ``old_offset``: a
    drawn offset is the generator's before this call's reservation (flashinfer 0.7.x), not
    after it (0.6.3).

    ``seed`` and ``offset`` given: used as they are, nothing advanced (as upstream, which
    then leaves any generator alone). One without the other is refused (upstream would
    ignore it silently). Otherwise drawn from ``generator`` (a SamplingGenerator or a
    torch.Generator-like object) or from :func:`default_generator`."""
    if seed is not None or offset is not None:
        if seed is None or offset is None:
            missing = "offset" if offset is None else "seed"
            raise ValueError(f"{missing}: seed and offset go together; pass both, or "
                             f"neither to draw them from the generator")
        return as_u64(seed, "seed"), as_u64(offset, "offset")
    if generator is None:
        return default_generator().draw(increment, old_offset)
    if isinstance(generator, SamplingGenerator):
        return generator.draw(increment, old_offset)
    check_generator(generator)
    return _draw_torch_like(generator, increment, old_offset)


def check_generator(generator) -> None:
    """TypeError unless ``generator`` is None, a SamplingGenerator or torch.Generator-like
    (``get_state()`` / ``set_state()``)."""
    if generator is None or isinstance(generator, SamplingGenerator):
        return
    if not (callable(getattr(generator, "get_state", None))
            and callable(getattr(generator, "set_state", None))):
        raise TypeError(f"generator: expected a SamplingGenerator or an object with "
                        f"torch.Generator's get_state()/set_state(), got "
                        f"{type(generator).__name__}")
