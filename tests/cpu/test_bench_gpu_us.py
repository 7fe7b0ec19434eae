"""tools/bench_norm.gpu_us against a simulated GPU (a fake ``torch`` whose stream is a clock):
an asynchronous call gets its kernel time, and a call that synchronizes ends with a bounded
spin and one warning instead of lengthening the spin without end (an H100 run of
bench_attention.py did that on flashinfer-python's plan rows: spins of 79 ms, 0.9 s, 10 s,
112 s, then the benchmark's timeout)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bench_norm  # noqa: E402


class SimulatedGpu:
    """A stream whose work is a queue of durations; host time is a clock the calls advance.
    ``_sleep(cycles)`` queues a spin of cycles/1000 µs (1000 cycles per µs)."""

    def __init__(self):
        self.host_us = 0.0
        self.gpu_free_at = 0.0  # host time at which the queued work ends
        self.spins: list[float] = []
        outer = self

        class Event:
            def __init__(self, enable_timing=False):
                self.at = None

            def record(self):
                self.at = max(outer.gpu_free_at, outer.host_us)

            def synchronize(self):
                outer.host_us = max(outer.host_us, self.at)

            def elapsed_time(self, other):  # ms
                return (other.at - self.at) / 1e3

        class Cuda:
            pass

        cuda = Cuda()
        cuda.Event = Event
        cuda._sleep = self.sleep
        cuda.synchronize = self.synchronize
        self.torch = type("torch", (), {"cuda": cuda})

    def sleep(self, cycles):
        self.spins.append(cycles / 1000)
        self.enqueue(cycles / 1000)

    def enqueue(self, gpu_us, host_us=1.0):
        self.host_us += host_us
        self.gpu_free_at = max(self.gpu_free_at, self.host_us) + gpu_us

    def synchronize(self):
        self.host_us = max(self.host_us, self.gpu_free_at)


@pytest.fixture
def gpu(monkeypatch):
    sim = SimulatedGpu()
    monkeypatch.setattr(bench_norm, "_SPIN_CYCLES_PER_US", [1000.0])
    monkeypatch.setattr(bench_norm.time, "perf_counter", lambda: sim.host_us / 1e6)
    return sim


def test_async_call_gets_its_kernel_time(gpu, capsys):
    # 3 µs of host per call, 7 µs of kernel: launch-rate timing would say 7 only if the
    # spin hides the enqueueing; without the spin the first kernel starts late.
    got = bench_norm.gpu_us(gpu.torch, lambda: gpu.enqueue(7.0, host_us=3.0), reps=5, burst=20)
    assert got == pytest.approx(7.0)
    assert "warning" not in capsys.readouterr().err
    assert max(gpu.spins) < 1000  # sized from the burst's enqueue time (60 µs), not grown


def test_host_bound_call_gets_its_kernel_time_too(gpu, capsys):
    # 9 µs of host per call, 2 µs of kernel: behind the spin the kernels run back to back.
    got = bench_norm.gpu_us(gpu.torch, lambda: gpu.enqueue(2.0, host_us=9.0), reps=5, burst=20)
    assert got == pytest.approx(2.0)
    assert "warning" not in capsys.readouterr().err


def test_synchronizing_call_stops_with_a_bounded_spin(gpu, capsys):
    def plan_that_syncs():
        gpu.synchronize()  # waits for the spin, like a copy from pageable memory
        gpu.enqueue(5.0, host_us=20.0)

    got = bench_norm.gpu_us(gpu.torch, plan_that_syncs, reps=5, burst=10)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "synchronizes" in err
    assert len(gpu.spins) == 1 and gpu.spins[0] < 1000  # one spin, sized from ~250 µs
    assert got == pytest.approx(25.0)  # host-bound: 20 µs host + 5 µs kernel per call
