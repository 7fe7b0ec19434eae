"""Layer 2: the call core (Cython). ``runtime`` loads libtvm_ffi and kernel modules and
calls exports with the GIL released; ``tensor`` turns framework tensors into DLTensors
without copying; ``stream`` resolves stream objects; ``binding`` is the table-driven
kernel entry every family module uses; ``array`` is the library-owned device array."""
