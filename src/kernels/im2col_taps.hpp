// Internal to the per-ISA im2col packs (im2col_avx2.cpp, im2col_avx512.cpp): a kernel tap's
// offsets, walked row by row without divisions, and the index range their int32 lanes need.
#pragma once

#include <cstdint>

#include "kernels/im2col.hpp"

namespace cnnkit {
namespace im2col_detail {

// A kernel tap (one row r of col): its input plane's offset from x, and ih = oh*SH + dh,
// iw = ow*SW + dw. Rows past the operand's end are not valid and read as 0.
struct Tap {
  int64_t plane;
  int64_t dh, dw;
  bool valid;
};

// The taps of rows r0, r0 + 1, ... in order: one division to start, none per row (a pack
// call builds its whole tap table, and divisions would cost as much as the copying).
class TapWalker {
 public:
  TapWalker(const Im2colShape& g, int64_t r0)
      : g_(g), c_(r0 / (g.KH * g.KW)), kh_(r0 % (g.KH * g.KW) / g.KW), kw_(r0 % g.KW) {}
  Tap next(bool valid) {
    const Tap t{c_ * g_.H * g_.W, kh_ * g_.DH - g_.PT, kw_ * g_.DW - g_.PL, valid};
    if (++kw_ == g_.KW) {
      kw_ = 0;
      if (++kh_ == g_.KH) kh_ = 0, ++c_;
    }
    return t;
  }

 private:
  const Im2colShape& g_;
  int64_t c_, kh_, kw_;
};

// The int32 lane arithmetic of the packs needs every index of the image in range.
inline bool fits_int32(const Im2colShape& g) {
  const int64_t lim = int64_t{1} << 29;
  return g.H * g.W < lim && g.OH * g.SH + g.PT < lim && g.OW * g.SW + g.PL < lim &&
         g.KH * g.DH < lim && g.KW * g.DW < lim;
}

constexpr int64_t kTapChunk = 256;  // taps whose table sits on the stack at once

}  // namespace im2col_detail
}  // namespace cnnkit
