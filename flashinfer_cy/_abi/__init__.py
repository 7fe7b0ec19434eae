"""Layer 1: C declarations only (``.pxd``), taken from the real headers that the
apache-tvm-ffi wheel ships (``tvm/ffi/c_api.h``, ``tvm/ffi/extra/c_env_api.h``,
``dlpack/dlpack.h``). Nothing here runs; nothing here copies a struct layout."""
