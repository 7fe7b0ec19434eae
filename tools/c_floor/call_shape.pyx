# cython: language_level=3
"""Stand-ins with the decode wrapper's call shapes and nothing behind them, compiled by the
same Cython: what the Python call itself costs (tools/probe_call_shape.py)."""


cdef class NoOp:
    def run(self, q, paged_kv_cache, *, out=None, lse=None, return_lse=False,
            enable_pdl=None, plan=None, stream=None):
        """BatchDecodeWithPagedKVCache.run's signature; returns ``out`` as it does."""
        return out

    def launch(self):
        """PreparedRun.launch's."""
        return None
