// cnnkit._core: the only file that includes pybind11. Each binding validates its arrays
// (dtype -> TypeError; rank, shape, channel agreement -> ValueError naming expected and actual
// shapes), converts them to float32 C-contiguous (zero-copy when they already are), allocates
// the outputs, releases the GIL and calls one op. Sizes are validated by the op's shape
// function (conv2d_shape, pool2d_shape ...), whose ShapeError pybind11 turns into ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "kernels/gemm.hpp"
#include "kernels/simd.hpp"
#include "ops/activation.hpp"
#include "ops/conv1d.hpp"
#include "ops/conv2d.hpp"
#include "ops/linear.hpp"
#include "ops/pool.hpp"
#include "ops/softmax_xent.hpp"
#include "parallel.hpp"

#ifndef CNNKIT_VERSION
#define CNNKIT_VERSION "0.0.0+dev"
#endif

namespace py = pybind11;
using namespace cnnkit;

namespace {

using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using LArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Shape = std::vector<py::ssize_t>;

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Any array-like of real numbers -> float32 C-contiguous (a copy only when needed).
FArray as_float(py::handle obj, const std::string& op, const char* name) {
  if (obj.is_none()) throw py::type_error(op + ": " + name + " must be an array, got None");
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(op + ": " + name + " must be an array of real numbers");
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    throw py::type_error(op + ": " + name + " must hold real numbers, got dtype " +
                         std::string(py::str(a.dtype())));
  return FArray::ensure(a);
}

void expect_ndim(const py::array& a, int ndim, const std::string& op, const char* name,
                 const char* layout) {
  if (a.ndim() != ndim)
    throw py::value_error(op + ": expected " + name + " with " + std::to_string(ndim) +
                          " dimensions " + layout + ", got shape " + shape_str(a));
}

void expect_shape(const py::array& a, const Shape& want, const std::string& op,
                  const char* name) {
  bool same = a.ndim() == static_cast<py::ssize_t>(want.size());
  for (size_t d = 0; same && d < want.size(); ++d) same = a.shape(d) == want[d];
  if (!same) {
    std::string w = "(";
    for (size_t d = 0; d < want.size(); ++d) w += (d ? ", " : "") + std::to_string(want[d]);
    w += want.size() == 1 ? ",)" : ")";
    throw py::value_error(op + ": expected " + name + " of shape " + w + ", got shape " +
                          shape_str(a));
  }
}

std::optional<FArray> optional_float(py::handle obj, const std::string& op, const char* name) {
  if (obj.is_none()) return std::nullopt;
  return as_float(obj, op, name);
}

// Class labels: integers in [0, K), or floats holding such integers; shape (N,).
LArray as_labels(py::handle obj, int64_t N, int64_t K, const std::string& op) {
  if (obj.is_none()) throw py::type_error(op + ": labels must be an array, got None");
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(op + ": labels must be an array of integers");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u' && kind != 'f')
    throw py::type_error(op + ": labels must hold integers, got dtype " +
                         std::string(py::str(a.dtype())));
  if (kind == 'f') {
    auto f = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
    const double* p = f.data();
    for (py::ssize_t i = 0; i < f.size(); ++i)
      if (!std::isfinite(p[i]) || p[i] != std::floor(p[i]))
        throw py::value_error(op + ": labels must be integers, got " +
                              std::string(py::str(py::float_(p[i]))) + " at index " +
                              std::to_string(i));
  }
  expect_shape(a, {N}, op, "labels");
  LArray l = LArray::ensure(a);
  const int64_t* p = l.data();
  for (int64_t i = 0; i < N; ++i)
    if (p[i] < 0 || p[i] >= K)
      throw py::value_error(op + ": labels must be in [0, " + std::to_string(K) + "), got " +
                            std::to_string(p[i]) + " at index " + std::to_string(i));
  return l;
}

FArray empty(const Shape& shape) { return FArray(shape); }

// One Workspace per calling thread, reused across functional calls.
Workspace& thread_workspace() {
  thread_local Workspace ws;
  return ws;
}

using I2 = std::array<int64_t, 2>;
using I4 = std::array<int64_t, 4>;  // (top, bottom, left, right)

// ---------------------------------------------------------------------------------------------
// conv2d / conv1d

// x [N, C, H, W] against w [OC, C, KH, KW]; the op name is in every message.
Conv2dShape conv2d_checked(const FArray& x, const FArray& w, const std::string& op, I2 stride,
                           I4 pad, I2 dilation) {
  expect_ndim(x, 4, op, "input", "(N, C, H, W)");
  expect_ndim(w, 4, op, "weight", "(out_channels, in_channels, KH, KW)");
  if (w.shape(1) != x.shape(1))
    throw py::value_error(op + ": input of shape " + shape_str(x) + " has " +
                          std::to_string(x.shape(1)) + " channels but weight of shape " +
                          shape_str(w) + " expects " + std::to_string(w.shape(1)));
  return conv2d_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), w.shape(2),
                      w.shape(3), stride[0], stride[1], pad[0], pad[1], pad[2], pad[3],
                      dilation[0], dilation[1]);
}

Conv2dShape conv1d_checked(const FArray& x, const FArray& w, int64_t stride, I2 pad,
                           int64_t dilation) {
  const std::string op = "conv1d";
  expect_ndim(x, 3, op, "input", "(N, C, L)");
  expect_ndim(w, 3, op, "weight", "(out_channels, in_channels, K)");
  if (w.shape(1) != x.shape(1))
    throw py::value_error(op + ": input of shape " + shape_str(x) + " has " +
                          std::to_string(x.shape(1)) + " channels but weight of shape " +
                          shape_str(w) + " expects " + std::to_string(w.shape(1)));
  return conv1d_shape(x.shape(0), x.shape(1), x.shape(2), w.shape(0), w.shape(2), stride,
                      pad[0], pad[1], dilation);
}

Shape conv_out_shape(const Conv2dShape& s, bool one_d) {
  return one_d ? Shape{s.N, s.OC, s.OW} : Shape{s.N, s.OC, s.OH, s.OW};
}

FArray conv_forward(const FArray& x, const FArray& w, py::handle bias, const Conv2dShape& s,
                    bool one_d, const std::string& op, bool ref) {
  std::optional<FArray> b = optional_float(bias, op, "bias");
  if (b) expect_shape(*b, {s.OC}, op, "bias");
  FArray y = empty(conv_out_shape(s, one_d));
  {
    py::gil_scoped_release nogil;
    const float* bp = b ? b->data() : nullptr;
    if (ref)
      conv2d_forward__ref(y.mutable_data(), x.data(), w.data(), bp, s);
    else
      conv2d_forward(y.mutable_data(), x.data(), w.data(), bp, s, thread_workspace());
  }
  return y;
}

py::tuple conv_backward(py::handle grad_output, const FArray& x, const FArray& w,
                        const Conv2dShape& s, bool one_d, bool need_dx, bool need_dw,
                        bool need_db, const std::string& op, bool ref) {
  FArray dy = as_float(grad_output, op, "grad_output");
  expect_shape(dy, conv_out_shape(s, one_d), op, "grad_output");
  std::optional<FArray> dx, dw, db;
  if (need_dx) dx = FArray(Shape(x.shape(), x.shape() + x.ndim()));
  if (need_dw) dw = FArray(Shape(w.shape(), w.shape() + w.ndim()));
  if (need_db) db = FArray(Shape{s.OC});
  {
    py::gil_scoped_release nogil;
    float* dxp = dx ? dx->mutable_data() : nullptr;
    float* dwp = dw ? dw->mutable_data() : nullptr;
    float* dbp = db ? db->mutable_data() : nullptr;
    if (ref)
      conv2d_backward__ref(dxp, dwp, dbp, dy.data(), x.data(), w.data(), s);
    else
      conv2d_backward(dxp, dwp, dbp, dy.data(), x.data(), w.data(), s, thread_workspace());
  }
  auto opt = [](std::optional<FArray>& a) -> py::object {
    return a ? py::object(std::move(*a)) : py::object(py::none());
  };
  return py::make_tuple(opt(dx), opt(dw), opt(db));
}

// ---------------------------------------------------------------------------------------------
// pooling

Pool2dShape pool2d_checked(const FArray& x, const std::string& op, I2 kernel, I2 stride, I4 pad) {
  expect_ndim(x, 4, op, "input", "(N, C, H, W)");
  return pool2d_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), kernel[0], kernel[1],
                      stride[0], stride[1], pad[0], pad[1], pad[2], pad[3]);
}

Pool2dShape pool1d_checked(const FArray& x, const std::string& op, int64_t kernel,
                           int64_t stride, I2 pad) {
  expect_ndim(x, 3, op, "input", "(N, C, L)");
  return pool1d_shape(x.shape(0), x.shape(1), x.shape(2), kernel, stride, pad[0], pad[1]);
}

Shape pool_out_shape(const Pool2dShape& s, bool one_d) {
  return one_d ? Shape{s.N, s.C, s.OW} : Shape{s.N, s.C, s.OH, s.OW};
}

// input_shape given by the caller of a backward function: a tuple of ints of the right rank.
FArray zeros_like_input(const std::vector<int64_t>& input_shape, size_t ndim,
                        const std::string& op) {
  if (input_shape.size() != ndim)
    throw py::value_error(op + ": input_shape must have " + std::to_string(ndim) +
                          " entries, got " + std::to_string(input_shape.size()));
  return FArray(Shape(input_shape.begin(), input_shape.end()));
}

Pool2dShape pool_shape_from(const std::vector<int64_t>& in, bool one_d, const std::string& op,
                            I2 kernel, I2 stride, I4 pad) {
  if (in.size() != (one_d ? 3u : 4u))
    throw py::value_error(op + ": input_shape must have " + std::to_string(one_d ? 3 : 4) +
                          " entries, got " + std::to_string(in.size()));
  return one_d ? pool1d_shape(in[0], in[1], in[2], kernel[1], stride[1], pad[2], pad[3])
               : pool2d_shape(in[0], in[1], in[2], in[3], kernel[0], kernel[1], stride[0],
                              stride[1], pad[0], pad[1], pad[2], pad[3]);
}

py::tuple max_pool_forward(const FArray& x, const Pool2dShape& s, bool one_d) {
  FArray y = empty(pool_out_shape(s, one_d));
  Shape oshape = pool_out_shape(s, one_d);
  py::array_t<int64_t> idx(oshape);
  {
    py::gil_scoped_release nogil;
    max_pool2d_forward(y.mutable_data(), idx.mutable_data(), x.data(), s);
  }
  return py::make_tuple(y, idx);
}

FArray max_pool_backward(py::handle grad_output, py::handle indices,
                         const std::vector<int64_t>& input_shape, const Pool2dShape& s,
                         bool one_d, const std::string& op) {
  FArray dy = as_float(grad_output, op, "grad_output");
  expect_shape(dy, pool_out_shape(s, one_d), op, "grad_output");
  py::array ia = py::array::ensure(indices);
  if (!ia || (ia.dtype().kind() != 'i' && ia.dtype().kind() != 'u'))
    throw py::type_error(op + ": indices must be an integer array from the forward pass");
  expect_shape(ia, pool_out_shape(s, one_d), op, "indices");
  LArray idx = LArray::ensure(ia);
  const int64_t plane = s.H * s.W;
  const int64_t* ip = idx.data();
  for (py::ssize_t i = 0; i < idx.size(); ++i)
    if (ip[i] < 0 || ip[i] >= plane)
      throw py::value_error(op + ": indices must be in [0, " + std::to_string(plane) +
                            ") (a position in the input plane), got " + std::to_string(ip[i]));
  FArray dx = zeros_like_input(input_shape, one_d ? 3 : 4, op);
  {
    py::gil_scoped_release nogil;
    max_pool2d_backward(dx.mutable_data(), dy.data(), idx.data(), s);
  }
  return dx;
}

FArray avg_pool_forward(const FArray& x, const Pool2dShape& s, bool one_d,
                        bool count_include_pad) {
  FArray y = empty(pool_out_shape(s, one_d));
  {
    py::gil_scoped_release nogil;
    avg_pool2d_forward(y.mutable_data(), x.data(), s, count_include_pad);
  }
  return y;
}

FArray avg_pool_backward(py::handle grad_output, const std::vector<int64_t>& input_shape,
                         const Pool2dShape& s, bool one_d, bool count_include_pad,
                         const std::string& op) {
  FArray dy = as_float(grad_output, op, "grad_output");
  expect_shape(dy, pool_out_shape(s, one_d), op, "grad_output");
  FArray dx = zeros_like_input(input_shape, one_d ? 3 : 4, op);
  {
    py::gil_scoped_release nogil;
    avg_pool2d_backward(dx.mutable_data(), dy.data(), s, count_include_pad);
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// elementwise

using Unary = void (*)(float*, const float*, int64_t);
using UnaryBackward = void (*)(float*, const float*, const float*, int64_t);

FArray unary(py::handle x_obj, Unary f, const std::string& op) {
  FArray x = as_float(x_obj, op, "input");
  FArray y = empty(Shape(x.shape(), x.shape() + x.ndim()));
  {
    py::gil_scoped_release nogil;
    f(y.mutable_data(), x.data(), x.size());
  }
  return y;
}

FArray unary_backward(py::handle dy_obj, py::handle y_obj, UnaryBackward f,
                      const std::string& op) {
  FArray y = as_float(y_obj, op, "output");
  FArray dy = as_float(dy_obj, op, "grad_output");
  expect_shape(dy, Shape(y.shape(), y.shape() + y.ndim()), op, "grad_output");
  FArray dx = empty(Shape(y.shape(), y.shape() + y.ndim()));
  {
    py::gil_scoped_release nogil;
    f(dx.mutable_data(), dy.data(), y.data(), y.size());
  }
  return dx;
}

// Rows and columns of an array seen as [rows, last axis].
std::pair<int64_t, int64_t> rows_cols(const FArray& a, const std::string& op, const char* name) {
  if (a.ndim() < 1)
    throw py::value_error(op + ": expected " + name + " with at least 1 dimension, got shape ()");
  const int64_t cols = a.shape(a.ndim() - 1);
  return {cols ? a.size() / cols : 0, cols};
}

// ---------------------------------------------------------------------------------------------
// GEMM, exposed for the tier tests and benchmarks: C = alpha * op(A) op(B) + beta * C.

FArray gemm_py(py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b, float alpha,
               float beta, py::handle c_obj, std::optional<std::string> tier) {
  const std::string op = "gemm";
  FArray a = as_float(a_obj, op, "a"), b = as_float(b_obj, op, "b");
  expect_ndim(a, 2, op, "a", "(rows, cols)");
  expect_ndim(b, 2, op, "b", "(rows, cols)");
  const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
  const int64_t KB = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
  if (K != KB)
    throw py::value_error("gemm: inner sizes differ: op(a) is (" + std::to_string(M) + ", " +
                          std::to_string(K) + ") and op(b) is (" + std::to_string(KB) + ", " +
                          std::to_string(N) + ")");
  FArray c = empty({M, N});
  if (!c_obj.is_none()) {
    FArray c_in = as_float(c_obj, op, "c");
    expect_shape(c_in, {M, N}, op, "c");
    std::copy(c_in.data(), c_in.data() + c_in.size(), c.mutable_data());
  } else if (beta != 0.0f) {
    throw py::value_error("gemm: beta != 0 needs c");
  }
  const SimdTier t = tier ? parse_simd_tier(*tier) : active_simd_tier();
  if (!simd_tier_supported(t))
    throw py::value_error("gemm: SIMD tier " + *tier + " is not supported on this CPU or build");
  {
    py::gil_scoped_release nogil;
    gemm(t, M, N, K, alpha, gemm_a(a.data(), a.shape(1), trans_a),
         gemm_b(b.data(), b.shape(1), trans_b), beta, c.mutable_data(), N);
  }
  return c;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "cnnkit's compiled core (private: use cnnkit and cnnkit.functional)";
  m.attr("__version__") = CNNKIT_VERSION;

  // --- configuration -----------------------------------------------------------------------
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  m.def("openmp_enabled", &openmp_enabled);
  m.def("simd_tier", [] { return std::string(simd_tier_name(active_simd_tier())); });
  m.def("simd_tier_note", [] { return simd_tier_note(); });
  m.def("simd_tiers_supported", [] {
    std::vector<std::string> out;
    for (SimdTier t : {SimdTier::ref, SimdTier::portable, SimdTier::avx2, SimdTier::avx512})
      if (simd_tier_supported(t)) out.push_back(simd_tier_name(t));
    return out;
  });

  // --- conv --------------------------------------------------------------------------------
  m.def(
      "conv2d_forward",
      [](py::handle x_obj, py::handle w_obj, py::handle bias, I2 stride, I4 pad, I2 dilation,
         bool ref) {
        FArray x = as_float(x_obj, "conv2d", "input"), w = as_float(w_obj, "conv2d", "weight");
        Conv2dShape s = conv2d_checked(x, w, "conv2d", stride, pad, dilation);
        return conv_forward(x, w, bias, s, false, "conv2d", ref);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("ref") = false);
  m.def(
      "conv2d_backward",
      [](py::handle dy, py::handle x_obj, py::handle w_obj, I2 stride, I4 pad, I2 dilation,
         bool need_dx, bool need_dw, bool need_db, bool ref) {
        FArray x = as_float(x_obj, "conv2d_backward", "input");
        FArray w = as_float(w_obj, "conv2d_backward", "weight");
        Conv2dShape s = conv2d_checked(x, w, "conv2d_backward", stride, pad, dilation);
        return conv_backward(dy, x, w, s, false, need_dx, need_dw, need_db, "conv2d_backward",
                             ref);
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("need_dx"), py::arg("need_dw"),
      py::arg("need_db"), py::arg("ref") = false);
  m.def(
      "conv1d_forward",
      [](py::handle x_obj, py::handle w_obj, py::handle bias, int64_t stride, I2 pad,
         int64_t dilation, bool ref) {
        FArray x = as_float(x_obj, "conv1d", "input"), w = as_float(w_obj, "conv1d", "weight");
        Conv2dShape s = conv1d_checked(x, w, stride, pad, dilation);
        return conv_forward(x, w, bias, s, true, "conv1d", ref);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("ref") = false);
  m.def(
      "conv1d_backward",
      [](py::handle dy, py::handle x_obj, py::handle w_obj, int64_t stride, I2 pad,
         int64_t dilation, bool need_dx, bool need_dw, bool need_db, bool ref) {
        FArray x = as_float(x_obj, "conv1d_backward", "input");
        FArray w = as_float(w_obj, "conv1d_backward", "weight");
        Conv2dShape s = conv1d_checked(x, w, stride, pad, dilation);
        return conv_backward(dy, x, w, s, true, need_dx, need_dw, need_db, "conv1d_backward",
                             ref);
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("need_dx"), py::arg("need_dw"),
      py::arg("need_db"), py::arg("ref") = false);

  // --- pooling: 2-D takes (kh, kw), (sh, sw), (top, bottom, left, right); 1-D takes k, s,
  // (left, right) ---------------------------------------------------------------------------
  m.def(
      "max_pool2d_forward",
      [](py::handle x_obj, I2 kernel, I2 stride, I4 pad) {
        FArray x = as_float(x_obj, "max_pool2d", "input");
        return max_pool_forward(x, pool2d_checked(x, "max_pool2d", kernel, stride, pad), false);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"));
  m.def(
      "max_pool1d_forward",
      [](py::handle x_obj, int64_t kernel, int64_t stride, I2 pad) {
        FArray x = as_float(x_obj, "max_pool1d", "input");
        return max_pool_forward(x, pool1d_checked(x, "max_pool1d", kernel, stride, pad), true);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"));
  m.def(
      "max_pool2d_backward",
      [](py::handle dy, py::handle idx, std::vector<int64_t> in, I2 kernel, I2 stride, I4 pad) {
        Pool2dShape s = pool_shape_from(in, false, "max_pool2d_backward", kernel, stride, pad);
        return max_pool_backward(dy, idx, in, s, false, "max_pool2d_backward");
      },
      py::arg("grad_output"), py::arg("indices"), py::arg("input_shape"), py::arg("kernel_size"),
      py::arg("stride"), py::arg("padding"));
  m.def(
      "max_pool1d_backward",
      [](py::handle dy, py::handle idx, std::vector<int64_t> in, int64_t kernel, int64_t stride,
         I2 pad) {
        Pool2dShape s = pool_shape_from(in, true, "max_pool1d_backward", {1, kernel},
                                        {1, stride}, {0, 0, pad[0], pad[1]});
        return max_pool_backward(dy, idx, in, s, true, "max_pool1d_backward");
      },
      py::arg("grad_output"), py::arg("indices"), py::arg("input_shape"), py::arg("kernel_size"),
      py::arg("stride"), py::arg("padding"));
  m.def(
      "avg_pool2d_forward",
      [](py::handle x_obj, I2 kernel, I2 stride, I4 pad, bool cip) {
        FArray x = as_float(x_obj, "avg_pool2d", "input");
        return avg_pool_forward(x, pool2d_checked(x, "avg_pool2d", kernel, stride, pad), false,
                                cip);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("count_include_pad"));
  m.def(
      "avg_pool1d_forward",
      [](py::handle x_obj, int64_t kernel, int64_t stride, I2 pad, bool cip) {
        FArray x = as_float(x_obj, "avg_pool1d", "input");
        return avg_pool_forward(x, pool1d_checked(x, "avg_pool1d", kernel, stride, pad), true,
                                cip);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("count_include_pad"));
  m.def(
      "avg_pool2d_backward",
      [](py::handle dy, std::vector<int64_t> in, I2 kernel, I2 stride, I4 pad, bool cip) {
        Pool2dShape s = pool_shape_from(in, false, "avg_pool2d_backward", kernel, stride, pad);
        return avg_pool_backward(dy, in, s, false, cip, "avg_pool2d_backward");
      },
      py::arg("grad_output"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"), py::arg("count_include_pad"));
  m.def(
      "avg_pool1d_backward",
      [](py::handle dy, std::vector<int64_t> in, int64_t kernel, int64_t stride, I2 pad,
         bool cip) {
        Pool2dShape s = pool_shape_from(in, true, "avg_pool1d_backward", {1, kernel},
                                        {1, stride}, {0, 0, pad[0], pad[1]});
        return avg_pool_backward(dy, in, s, true, cip, "avg_pool1d_backward");
      },
      py::arg("grad_output"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"), py::arg("count_include_pad"));
  m.def(
      "global_avg_pool2d_forward",
      [](py::handle x_obj) {
        FArray x = as_float(x_obj, "global_avg_pool2d", "input");
        expect_ndim(x, 4, "global_avg_pool2d", "input", "(N, C, H, W)");
        if (x.shape(2) < 1 || x.shape(3) < 1)
          throw py::value_error("global_avg_pool2d: input of shape " + shape_str(x) +
                                " has an empty plane");
        FArray y = empty({x.shape(0), x.shape(1)});
        {
          py::gil_scoped_release nogil;
          global_avg_pool2d_forward(y.mutable_data(), x.data(), x.shape(0) * x.shape(1),
                                    x.shape(2) * x.shape(3));
        }
        return y;
      },
      py::arg("x"));
  m.def(
      "global_avg_pool2d_backward",
      [](py::handle dy_obj, std::vector<int64_t> in) {
        const std::string op = "global_avg_pool2d_backward";
        FArray dx = zeros_like_input(in, 4, op);
        if (in[2] < 1 || in[3] < 1) throw py::value_error(op + ": input_shape has an empty plane");
        FArray dy = as_float(dy_obj, op, "grad_output");
        expect_shape(dy, {in[0], in[1]}, op, "grad_output");
        {
          py::gil_scoped_release nogil;
          global_avg_pool2d_backward(dx.mutable_data(), dy.data(), in[0] * in[1], in[2] * in[3]);
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("input_shape"));

  // --- linear: x (*, IN) ---------------------------------------------------------------------
  m.def(
      "linear_forward",
      [](py::handle x_obj, py::handle w_obj, py::handle bias) {
        const std::string op = "linear";
        FArray x = as_float(x_obj, op, "input"), w = as_float(w_obj, op, "weight");
        expect_ndim(w, 2, op, "weight", "(out_features, in_features)");
        if (x.ndim() < 1 || x.shape(x.ndim() - 1) != w.shape(1))
          throw py::value_error(op + ": input of shape " + shape_str(x) + " must end in " +
                                std::to_string(w.shape(1)) + " features to match weight of shape " +
                                shape_str(w));
        std::optional<FArray> b = optional_float(bias, op, "bias");
        if (b) expect_shape(*b, {w.shape(0)}, op, "bias");
        Shape ys(x.shape(), x.shape() + x.ndim());
        ys.back() = w.shape(0);
        FArray y = empty(ys);
        const int64_t IN = w.shape(1), OUT = w.shape(0), N = IN ? x.size() / IN : 0;
        {
          py::gil_scoped_release nogil;
          linear_forward(y.mutable_data(), x.data(), w.data(), b ? b->data() : nullptr, N, IN,
                         OUT);
        }
        return y;
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"));
  m.def(
      "linear_backward",
      [](py::handle dy_obj, py::handle x_obj, py::handle w_obj, bool need_dx, bool need_dw,
         bool need_db) {
        const std::string op = "linear_backward";
        FArray x = as_float(x_obj, op, "input"), w = as_float(w_obj, op, "weight");
        expect_ndim(w, 2, op, "weight", "(out_features, in_features)");
        if (x.ndim() < 1 || x.shape(x.ndim() - 1) != w.shape(1))
          throw py::value_error(op + ": input of shape " + shape_str(x) + " must end in " +
                                std::to_string(w.shape(1)) + " features to match weight of shape " +
                                shape_str(w));
        Shape ys(x.shape(), x.shape() + x.ndim());
        ys.back() = w.shape(0);
        FArray dy = as_float(dy_obj, op, "grad_output");
        expect_shape(dy, ys, op, "grad_output");
        const int64_t IN = w.shape(1), OUT = w.shape(0), N = IN ? x.size() / IN : 0;
        std::optional<FArray> dx, dw, db;
        if (need_dx) dx = FArray(Shape(x.shape(), x.shape() + x.ndim()));
        if (need_dw) dw = FArray(Shape{OUT, IN});
        if (need_db) db = FArray(Shape{OUT});
        {
          py::gil_scoped_release nogil;
          linear_backward(dx ? dx->mutable_data() : nullptr, dw ? dw->mutable_data() : nullptr,
                          db ? db->mutable_data() : nullptr, dy.data(), x.data(), w.data(), N,
                          IN, OUT);
        }
        auto opt = [](std::optional<FArray>& a) -> py::object {
          return a ? py::object(std::move(*a)) : py::object(py::none());
        };
        return py::make_tuple(opt(dx), opt(dw), opt(db));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("need_dx"),
      py::arg("need_dw"), py::arg("need_db"));

  // --- activations ---------------------------------------------------------------------------
  m.def("relu_forward", [](py::handle x) { return unary(x, relu_forward, "relu"); }, py::arg("x"));
  m.def("sigmoid_forward", [](py::handle x) { return unary(x, sigmoid_forward, "sigmoid"); },
        py::arg("x"));
  m.def("tanh_forward", [](py::handle x) { return unary(x, tanh_forward, "tanh"); }, py::arg("x"));
  m.def("relu_backward",
        [](py::handle dy, py::handle y) { return unary_backward(dy, y, relu_backward, "relu_backward"); },
        py::arg("grad_output"), py::arg("y"));
  m.def("sigmoid_backward",
        [](py::handle dy, py::handle y) {
          return unary_backward(dy, y, sigmoid_backward, "sigmoid_backward");
        },
        py::arg("grad_output"), py::arg("y"));
  m.def("tanh_backward",
        [](py::handle dy, py::handle y) { return unary_backward(dy, y, tanh_backward, "tanh_backward"); },
        py::arg("grad_output"), py::arg("y"));

  // --- softmax and cross-entropy over the last axis ------------------------------------------
  m.def(
      "softmax_forward",
      [](py::handle x_obj) {
        FArray x = as_float(x_obj, "softmax", "input");
        auto [rows, cols] = rows_cols(x, "softmax", "input");
        FArray y = empty(Shape(x.shape(), x.shape() + x.ndim()));
        {
          py::gil_scoped_release nogil;
          softmax_forward(y.mutable_data(), x.data(), rows, cols);
        }
        return y;
      },
      py::arg("x"));
  m.def(
      "softmax_backward",
      [](py::handle dy_obj, py::handle y_obj) {
        const std::string op = "softmax_backward";
        FArray y = as_float(y_obj, op, "output");
        FArray dy = as_float(dy_obj, op, "grad_output");
        Shape shape(y.shape(), y.shape() + y.ndim());
        expect_shape(dy, shape, op, "grad_output");
        auto [rows, cols] = rows_cols(y, op, "output");
        FArray dx = empty(shape);
        {
          py::gil_scoped_release nogil;
          softmax_backward(dx.mutable_data(), dy.data(), y.data(), rows, cols);
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("y"));
  m.def(
      "softmax_xent_forward",
      [](py::handle logits_obj, py::handle labels_obj) {
        const std::string op = "cross_entropy";
        FArray x = as_float(logits_obj, op, "logits");
        expect_ndim(x, 2, op, "logits", "(N, num_classes)");
        const int64_t N = x.shape(0), K = x.shape(1);
        if (K < 1) throw py::value_error(op + ": logits of shape " + shape_str(x) + " have no classes");
        LArray labels = as_labels(labels_obj, N, K, op);
        FArray probs = empty({N, K});
        double loss;
        {
          py::gil_scoped_release nogil;
          loss = softmax_xent_forward(probs.mutable_data(), x.data(), labels.data(), N, K);
        }
        return py::make_tuple(loss, probs);
      },
      py::arg("logits"), py::arg("labels"));
  m.def(
      "softmax_xent_backward",
      [](py::handle probs_obj, py::handle labels_obj, float dloss) {
        const std::string op = "cross_entropy_backward";
        FArray p = as_float(probs_obj, op, "probs");
        expect_ndim(p, 2, op, "probs", "(N, num_classes)");
        const int64_t N = p.shape(0), K = p.shape(1);
        LArray labels = as_labels(labels_obj, N, K, op);
        FArray dx = empty({N, K});
        {
          py::gil_scoped_release nogil;
          softmax_xent_backward(dx.mutable_data(), p.data(), labels.data(), N, K, dloss);
        }
        return dx;
      },
      py::arg("probs"), py::arg("labels"), py::arg("grad") = 1.0f);

  // --- kernels, for tests and benchmarks ------------------------------------------------------
  m.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("c") = py::none(), py::arg("tier") = py::none());
}
