/*
 * Timing helpers shared by the C floors in tools/c_floor/: a monotonic clock in
 * microseconds and the comparison qsort needs for medians.
 */
#ifndef FLASHINFER_CY_C_FLOOR_TIMING_H_
#define FLASHINFER_CY_C_FLOOR_TIMING_H_

#include <time.h>

static inline double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static inline int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

#endif /* FLASHINFER_CY_C_FLOOR_TIMING_H_ */
