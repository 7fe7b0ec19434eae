/* Callgrind client requests for tools/host_overhead_instr.py (through ctypes): start
 * collecting after the imports, zero the counters before a measured loop and dump them,
 * named, after it. Outside valgrind each is a few no-op instructions. */
#include <valgrind/callgrind.h>

void fcy_cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void fcy_cg_zero(void) { CALLGRIND_ZERO_STATS; }
void fcy_cg_dump(const char* name) { CALLGRIND_DUMP_STATS_AT(name); }
