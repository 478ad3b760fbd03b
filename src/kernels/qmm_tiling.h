// How a block of output rows is cut into register tiles, shared by the SIMD kernels (internal to kernels/):
// one activation row -> 4 (or 2) weight rows per tile; two -> 2×2; more -> each weight row against 4 activation rows.
// ISA-neutral on purpose (no intrinsics): each kernel file instantiates it with its own tile runner.
#pragma once

#include "kernels/qmm_kernel.h"

namespace k2::kernels {

// Runner must provide `template <int RW, int RM> void run_tile(int n, int i)` for the shapes used below;
// DECODE_ROWS (4 or 2) is the number of weight rows per tile for one activation row.
template <int DECODE_ROWS = 4, class Runner>
void run_tiles(const QmmBlock& b, Runner& runner) {
  if (b.n_rows == 1) {
    int n = b.n0;
    for (; n + DECODE_ROWS <= b.n1; n += DECODE_ROWS) runner.template run_tile<DECODE_ROWS, 1>(n, 0);
    for (; n < b.n1; ++n) runner.template run_tile<1, 1>(n, 0);
    return;
  }
  if (b.n_rows == 2) {
    int n = b.n0;
    for (; n + 2 <= b.n1; n += 2) runner.template run_tile<2, 2>(n, 0);
    for (; n < b.n1; ++n) runner.template run_tile<1, 2>(n, 0);
    return;
  }
  // Several activation rows: each weight row is unpacked once per 4 of them and stays in L1.
  for (int n = b.n0; n < b.n1; ++n) {
    int i = 0;
    for (; i + 4 <= b.n_rows; i += 4) runner.template run_tile<1, 4>(n, i);
    switch (b.n_rows - i) {
      case 3: runner.template run_tile<1, 3>(n, i); break;
      case 2: runner.template run_tile<1, 2>(n, i); break;
      case 1: runner.template run_tile<1, 1>(n, i); break;
      default: break;
    }
  }
}

// Runs Runner<BITS> for the block's width (2/3/4/5/6/8); any other width goes to the reference kernel.
template <template <int> class Runner>
void run_for_bits(const QmmBlock& block) {
  switch (block.w->bits) {
    case 2: Runner<2>(block).run(); return;
    case 3: Runner<3>(block).run(); return;
    case 4: Runner<4>(block).run(); return;
    case 5: Runner<5>(block).run(); return;
    case 6: Runner<6>(block).run(); return;
    case 8: Runner<8>(block).run(); return;
    default: qmm_block_scalar(block); return;
  }
}

}  // namespace k2::kernels
