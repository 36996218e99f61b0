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
#include <tuple>
#include <vector>

#include "common.hpp"
#include "kernels/gemm.hpp"
#include "kernels/simd.hpp"
#include "ops/activation.hpp"
#include "ops/adaptive_pool.hpp"
#include "ops/batchnorm.hpp"
#include "ops/conv1d.hpp"
#include "ops/conv2d.hpp"
#include "ops/dropout.hpp"
#include "ops/linear.hpp"
#include "ops/locally_connected.hpp"
#include "ops/merge.hpp"
#include "ops/loss.hpp"
#include "ops/lp_pool.hpp"
#include "ops/optim.hpp"
#include "ops/pad.hpp"
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

// Any array-like of real numbers as a NumPy array in its own dtype and layout: no float32
// copy yet, so a binding checks shapes first and a bad call never copies a huge (say, a
// broadcast, zero-stride) input before rejecting it.
py::array real_array(py::handle obj, const std::string& op, const char* name) {
  if (obj.is_none()) throw py::type_error(op + ": " + name + " must be an array, got None");
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(op + ": " + name + " must be an array of real numbers");
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    throw py::type_error(op + ": " + name + " must hold real numbers, got dtype " +
                         std::string(py::str(a.dtype())));
  return a;
}

// a as float32 C-contiguous (itself when it already is). The constructor, unlike ensure(),
// keeps NumPy's error when the copy cannot be made (MemoryError naming the size); ensure()
// would return a null array that the op then dereferences.
template <class T>
py::array_t<T, py::array::c_style | py::array::forcecast> converted(const py::array& a) {
  return py::array_t<T, py::array::c_style | py::array::forcecast>(
      py::reinterpret_borrow<py::object>(a));
}

FArray to_float(const py::array& a) { return converted<float>(a); }

// Any array-like of real numbers -> float32 C-contiguous (a copy only when needed).
FArray as_float(py::handle obj, const std::string& op, const char* name) {
  return to_float(real_array(obj, op, name));
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

// as_float for an array whose shape must be `want`, checked before any conversion.
FArray as_float_shaped(py::handle obj, const Shape& want, const std::string& op,
                       const char* name) {
  py::array a = real_array(obj, op, name);
  expect_shape(a, want, op, name);
  return to_float(a);
}

// Two arrays of one shape, as float32: `first` gives the shape and `second` must have it. Both
// are checked before either is converted, so a mismatched huge view is never copied.
std::pair<FArray, FArray> same_shape_pair(py::handle first, const char* first_name,
                                          py::handle second, const char* second_name,
                                          const std::string& op) {
  py::array fa = real_array(first, op, first_name);
  FArray sa = as_float_shaped(second, Shape(fa.shape(), fa.shape() + fa.ndim()), op, second_name);
  return {to_float(fa), std::move(sa)};
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
  expect_shape(a, {N}, op, "labels");
  // Values out of [0, K) are reported as given, before the int64 cast (which would turn
  // 1e20 or a uint64 2**64 - 1 into a misleading negative number).
  auto out_of_range = [&](const std::string& value, py::ssize_t i) {
    return py::value_error(op + ": labels must be in [0, " + std::to_string(K) + "), got " +
                           value + " at index " + std::to_string(i));
  };
  if (kind == 'f') {
    auto f = converted<double>(a);
    const double* p = f.data();
    for (py::ssize_t i = 0; i < f.size(); ++i) {
      if (!std::isfinite(p[i]) || p[i] != std::floor(p[i]))
        throw py::value_error(op + ": labels must be integers, got " +
                              std::string(py::str(py::float_(p[i]))) + " at index " +
                              std::to_string(i));
      if (p[i] < 0 || p[i] >= static_cast<double>(K))
        throw out_of_range(std::string(py::str(py::float_(p[i]))), i);
    }
  } else if (kind == 'u') {
    auto u = converted<uint64_t>(a);
    for (py::ssize_t i = 0; i < u.size(); ++i)
      if (u.data()[i] >= static_cast<uint64_t>(K)) throw out_of_range(std::to_string(u.data()[i]), i);
  }
  LArray l = converted<int64_t>(a);
  const int64_t* p = l.data();
  for (int64_t i = 0; i < N; ++i)
    if (p[i] < 0 || p[i] >= K)
      throw py::value_error(op + ": labels must be in [0, " + std::to_string(K) + "), got " +
                            std::to_string(p[i]) + " at index " + std::to_string(i));
  return l;
}

FArray empty(const Shape& shape) { return FArray(shape); }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t d = 0; d < shape.size(); ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// A shape given as numbers (input_shape of a backward function, a padded size): sizes >= 0
// whose element count fits int64, else a ValueError naming it -- before anything allocates
// or a size computation wraps around.
// negative_ok: a negative size is left for the op's shape function to report (a padded size
// made negative by bad padding, which it names better).
void expect_countable(const std::vector<int64_t>& shape, const std::string& op, const char* name,
                      bool negative_ok = false) {
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0 && negative_ok) return;
    if (d < 0)
      throw py::value_error(op + ": " + name + " must have sizes >= 0, got " + shape_str(shape));
  }
  int64_t bytes;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(count, d, &count) ||
        __builtin_mul_overflow(count, int64_t{sizeof(float)}, &bytes))
      throw py::value_error(op + ": " + name + " " + shape_str(shape) +
                            " has more elements than a 64-bit byte count holds");
}

bool overlaps(const py::array& a, const py::array& b) {
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// The array an op writes: a fresh one, or the caller's `out`, which must be a writable,
// C-contiguous array of exactly the output's dtype and shape (never converted: a result
// written into a converted copy would be silently lost) that does not overlap the inputs
// (elementwise ops may pass an input itself, may_alias, to work in place).
template <class T>
py::array_t<T, py::array::c_style> output(py::handle out, const Shape& shape,
                                          const std::string& op, const char* name,
                                          std::initializer_list<const py::array*> inputs = {},
                                          bool may_alias = false) {
  using Out = py::array_t<T, py::array::c_style>;
  if (out.is_none()) return Out(shape);
  if (!py::isinstance<py::array>(out))
    throw py::type_error(op + ": " + name + " must be a numpy array, got " +
                         Py_TYPE(out.ptr())->tp_name);
  auto a = py::reinterpret_borrow<py::array>(out);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(op + ": " + name + " must have dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(op + ": " + name + " must be a writable C-contiguous array");
  expect_shape(a, shape, op, name);
  for (const py::array* in : inputs) {
    const bool same = a.data() == in->data() && a.nbytes() == in->nbytes();
    if (overlaps(a, *in) && !(may_alias && same))
      throw py::value_error(op + ": " + name + " overlaps an input array");
  }
  return py::reinterpret_borrow<Out>(a);
}

// Optional outputs of a backward pass: out is None or a sequence of `count` entries, each an
// array or None.
py::object out_item(py::handle out, size_t i, size_t count, const std::string& op) {
  if (out.is_none()) return py::none();
  if (!py::isinstance<py::sequence>(out) || py::len(out) != count)
    throw py::type_error(op + ": out must be None or a sequence of " + std::to_string(count) +
                         " arrays or None");
  return py::reinterpret_borrow<py::sequence>(out)[i];
}

py::object opt(std::optional<FArray>& a) {
  return a ? py::object(std::move(*a)) : py::object(py::none());
}

// The caller's Workspace (a layer keeps one across steps), else one per calling thread.
Workspace& workspace_of(py::handle ws) {
  thread_local Workspace per_thread;
  if (ws.is_none()) return per_thread;
  if (!py::isinstance<Workspace>(ws))
    throw py::type_error("workspace must be a cnnkit._core.Workspace or None");
  return ws.cast<Workspace&>();
}

using I2 = std::array<int64_t, 2>;
using I4 = std::array<int64_t, 4>;  // (top, bottom, left, right)

// ---------------------------------------------------------------------------------------------
// conv2d / conv1d

// The weight's in_channels axis holds C / groups channels; the message names the weight shape
// the input calls for. When groups is itself bad (< 1, or not dividing C and OC) the shape
// function reports that instead.
void expect_weight_channels(const py::array& x, const py::array& w, int64_t groups,
                            const std::string& op) {
  const int64_t C = x.shape(1), OC = w.shape(0);
  if (groups < 1 || C % groups != 0 || OC % groups != 0 || w.shape(1) * groups == C) return;
  std::string expected = "(" + std::to_string(OC) + ", " + std::to_string(C / groups);
  for (py::ssize_t i = 2; i < w.ndim(); ++i) expected += ", " + std::to_string(w.shape(i));
  expected += ")";
  throw py::value_error(op + ": input of shape " + shape_str(x) + " has " + std::to_string(C) +
                        " channels but weight of shape " + shape_str(w) + " expects " +
                        std::to_string(w.shape(1) * groups) +
                        (groups > 1 ? " (" + std::to_string(w.shape(1)) + " per group, groups = " +
                                          std::to_string(groups) + ")"
                                    : std::string()) +
                        "; expected weight shape " + expected);
}

// One spatial dimension of a convolution or pooling: the padded input (size + both pads) and
// the dilated kernel (dilation * (kernel - 1) + 1) must be computable in int64. Sizes that
// would wrap around are rejected here, named, before a shape function computes with them.
void expect_sizes_fit(int64_t size, int64_t pad_a, int64_t pad_b, int64_t kernel,
                      int64_t dilation, const std::string& op, const char* axis) {
  int64_t t;
  const bool wraps = __builtin_add_overflow(size, pad_a, &t) || __builtin_add_overflow(t, pad_b, &t) ||
                     __builtin_sub_overflow(kernel, 1, &t) || __builtin_mul_overflow(t, dilation, &t) ||
                     __builtin_add_overflow(t, 1, &t);
  if (wraps)
    throw py::value_error(op + ": the " + axis + " sizes overflow 64 bits: input " +
                          std::to_string(size) + ", padding (" + std::to_string(pad_a) + ", " +
                          std::to_string(pad_b) + "), kernel " + std::to_string(kernel) +
                          ", dilation " + std::to_string(dilation));
}

// x [N, C, H, W] against w [OC, C/groups, KH, KW]; the op name is in every message.
Conv2dShape conv2d_checked(const py::array& x, const py::array& w, const std::string& op, I2 stride,
                           I4 pad, I2 dilation, int64_t groups) {
  expect_ndim(x, 4, op, "input", "(N, C, H, W)");
  expect_ndim(w, 4, op, "weight", "(out_channels, in_channels / groups, KH, KW)");
  expect_weight_channels(x, w, groups, op);
  expect_sizes_fit(x.shape(2), pad[0], pad[1], w.shape(2), dilation[0], op, "height");
  expect_sizes_fit(x.shape(3), pad[2], pad[3], w.shape(3), dilation[1], op, "width");
  // the kernels address the padded plane: its element count must fit as well
  expect_countable({x.shape(1), x.shape(2) + pad[0] + pad[1], x.shape(3) + pad[2] + pad[3]}, op,
                   "padded input (C, H, W)", true);
  return conv2d_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), w.shape(2),
                      w.shape(3), stride[0], stride[1], pad[0], pad[1], pad[2], pad[3],
                      dilation[0], dilation[1], groups);
}

Conv2dShape conv1d_checked(const py::array& x, const py::array& w, int64_t stride, I2 pad,
                           int64_t dilation, int64_t groups) {
  const std::string op = "conv1d";
  expect_ndim(x, 3, op, "input", "(N, C, L)");
  expect_ndim(w, 3, op, "weight", "(out_channels, in_channels / groups, K)");
  expect_weight_channels(x, w, groups, op);
  expect_sizes_fit(x.shape(2), pad[0], pad[1], w.shape(2), dilation, op, "length");
  expect_countable({x.shape(1), x.shape(2) + pad[0] + pad[1]}, op, "padded input (C, L)", true);
  return conv1d_shape(x.shape(0), x.shape(1), x.shape(2), w.shape(0), w.shape(2), stride,
                      pad[0], pad[1], dilation, groups);
}

Shape conv_out_shape(const Conv2dShape& s, bool one_d) {
  return one_d ? Shape{s.N, s.OC, s.OW} : Shape{s.N, s.OC, s.OH, s.OW};
}

FArray conv_forward(const FArray& x, const FArray& w, py::handle bias, const Conv2dShape& s,
                    bool one_d, const std::string& op, bool ref, py::handle out, py::handle ws) {
  std::optional<FArray> b;
  if (!bias.is_none()) b = as_float_shaped(bias, {s.OC}, op, "bias");
  FArray y = output<float>(out, conv_out_shape(s, one_d), op, "out", {&x, &w});
  Workspace& workspace = workspace_of(ws);
  {
    py::gil_scoped_release nogil;
    const float* bp = b ? b->data() : nullptr;
    if (ref)
      conv2d_forward__ref(y.mutable_data(), x.data(), w.data(), bp, s);
    else
      conv2d_forward(y.mutable_data(), x.data(), w.data(), bp, s, workspace);
  }
  return y;
}

// The gradients asked for, each into out[i] when given: (dx, dw, db).
py::tuple conv_backward(py::handle grad_output, const FArray& x, const FArray& w,
                        const Conv2dShape& s, bool one_d, bool need_dx, bool need_dw,
                        bool need_db, const std::string& op, bool ref, py::handle out,
                        py::handle ws) {
  FArray dy = as_float_shaped(grad_output, conv_out_shape(s, one_d), op, "grad_output");
  std::optional<FArray> dx, dw, db;
  if (need_dx)
    dx = output<float>(out_item(out, 0, 3, op), Shape(x.shape(), x.shape() + x.ndim()), op,
                       "out[0] (grad_input)", {&x, &w, &dy});
  if (need_dw)
    dw = output<float>(out_item(out, 1, 3, op), Shape(w.shape(), w.shape() + w.ndim()), op,
                       "out[1] (grad_weight)", {&x, &w, &dy});
  if (need_db)
    db = output<float>(out_item(out, 2, 3, op), Shape{s.OC}, op, "out[2] (grad_bias)",
                       {&x, &w, &dy});
  Workspace& workspace = workspace_of(ws);
  {
    py::gil_scoped_release nogil;
    float* dxp = dx ? dx->mutable_data() : nullptr;
    float* dwp = dw ? dw->mutable_data() : nullptr;
    float* dbp = db ? db->mutable_data() : nullptr;
    if (ref)
      conv2d_backward__ref(dxp, dwp, dbp, dy.data(), x.data(), w.data(), s);
    else
      conv2d_backward(dxp, dwp, dbp, dy.data(), x.data(), w.data(), s, workspace);
  }
  return py::make_tuple(opt(dx), opt(dw), opt(db));
}

// ---------------------------------------------------------------------------------------------
// pooling

Pool2dShape pool2d_checked(const py::array& x, const std::string& op, I2 kernel, I2 stride, I4 pad) {
  expect_ndim(x, 4, op, "input", "(N, C, H, W)");
  expect_sizes_fit(x.shape(2), pad[0], pad[1], kernel[0], 1, op, "height");
  expect_sizes_fit(x.shape(3), pad[2], pad[3], kernel[1], 1, op, "width");
  expect_countable({x.shape(2) + pad[0] + pad[1], x.shape(3) + pad[2] + pad[3]}, op,
                   "padded input (H, W)", true);
  return pool2d_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), kernel[0], kernel[1],
                      stride[0], stride[1], pad[0], pad[1], pad[2], pad[3]);
}

Pool2dShape pool1d_checked(const py::array& x, const std::string& op, int64_t kernel,
                           int64_t stride, I2 pad) {
  expect_ndim(x, 3, op, "input", "(N, C, L)");
  expect_sizes_fit(x.shape(2), pad[0], pad[1], kernel, 1, op, "length");
  return pool1d_shape(x.shape(0), x.shape(1), x.shape(2), kernel, stride, pad[0], pad[1]);
}

Shape pool_out_shape(const Pool2dShape& s, bool one_d) {
  return one_d ? Shape{s.N, s.C, s.OW} : Shape{s.N, s.C, s.OH, s.OW};
}

// The input gradient of a backward function given input_shape (a tuple of ints of the
// right rank), fresh or into out.
FArray input_grad(py::handle out, const std::vector<int64_t>& input_shape, size_t ndim,
                  const std::string& op, std::initializer_list<const py::array*> inputs) {
  if (input_shape.size() != ndim)
    throw py::value_error(op + ": input_shape must have " + std::to_string(ndim) +
                          " entries, got " + std::to_string(input_shape.size()));
  expect_countable(input_shape, op, "input_shape");
  return output<float>(out, Shape(input_shape.begin(), input_shape.end()), op, "out", inputs);
}

Pool2dShape pool_shape_from(const std::vector<int64_t>& in, bool one_d, const std::string& op,
                            I2 kernel, I2 stride, I4 pad) {
  if (in.size() != (one_d ? 3u : 4u))
    throw py::value_error(op + ": input_shape must have " + std::to_string(one_d ? 3 : 4) +
                          " entries, got " + std::to_string(in.size()));
  expect_countable(in, op, "input_shape", true);  // before the shape function multiplies sizes
  if (!one_d) expect_sizes_fit(in[2], pad[0], pad[1], kernel[0], 1, op, "height");
  expect_sizes_fit(in.back(), pad[2], pad[3], kernel[1], 1, op, one_d ? "length" : "width");
  return one_d ? pool1d_shape(in[0], in[1], in[2], kernel[1], stride[1], pad[2], pad[3])
               : pool2d_shape(in[0], in[1], in[2], in[3], kernel[0], kernel[1], stride[0],
                              stride[1], pad[0], pad[1], pad[2], pad[3]);
}

// The SIMD tier a pooling binding runs: the active one, ref when ref=True, else the one named
// by tier= (for the tier tests), which must be supported here.
SimdTier pool_tier(bool ref, const std::optional<std::string>& tier, const std::string& op) {
  if (ref) return SimdTier::ref;
  if (!tier) return active_simd_tier();
  const SimdTier t = parse_simd_tier(*tier);
  if (!simd_tier_supported(t))
    throw py::value_error(op + ": SIMD tier " + *tier + " is not supported on this CPU or build");
  return t;
}

// out: None or (y, indices).
// relu: of relu(x) (max_pool2d_relu_forward).
py::tuple max_pool_forward(const FArray& x, const Pool2dShape& s, bool one_d, SimdTier tier,
                           py::handle out, const std::string& op, bool relu = false) {
  const Shape oshape = pool_out_shape(s, one_d);
  FArray y = output<float>(out_item(out, 0, 2, op), oshape, op, "out[0]", {&x});
  auto idx = output<int64_t>(out_item(out, 1, 2, op), oshape, op, "out[1] (indices)", {&x});
  {
    py::gil_scoped_release nogil;
    if (relu)
      max_pool2d_relu_forward(tier, y.mutable_data(), idx.mutable_data(), x.data(), s);
    else
      max_pool2d_forward(tier, y.mutable_data(), idx.mutable_data(), x.data(), s);
  }
  return py::make_tuple(y, idx);
}

// y: None, or the pooled output of max_pool2d_relu_forward (max_pool2d_relu_backward).
FArray max_pool_backward(py::handle grad_output, py::handle indices,
                         const std::vector<int64_t>& input_shape, const Pool2dShape& s,
                         bool one_d, const std::string& op, py::handle out, SimdTier tier,
                         py::handle y_obj = py::none()) {
  FArray dy = as_float_shaped(grad_output, pool_out_shape(s, one_d), op, "grad_output");
  py::array ia = py::array::ensure(indices);
  if (!ia || (ia.dtype().kind() != 'i' && ia.dtype().kind() != 'u'))
    throw py::type_error(op + ": indices must be an integer array from the forward pass");
  expect_shape(ia, pool_out_shape(s, one_d), op, "indices");
  LArray idx = converted<int64_t>(ia);
  std::optional<FArray> y;
  if (!y_obj.is_none()) {
    y = as_float_shaped(y_obj, pool_out_shape(s, one_d), op, "y");
  }
  FArray dx = y ? input_grad(out, input_shape, one_d ? 3 : 4, op, {&dy, &idx, &*y})
                : input_grad(out, input_shape, one_d ? 3 : 4, op, {&dy, &idx});
  int64_t bad;
  {
    py::gil_scoped_release nogil;
    bad = y ? max_pool2d_relu_backward_checked(tier, dx.mutable_data(), dy.data(), idx.data(),
                                               y->data(), s)
            : max_pool2d_backward_checked(tier, dx.mutable_data(), dy.data(), idx.data(), s);
  }
  // dx is left partly written: a fresh one is dropped, out= holds no result (as after any
  // failed op)
  if (bad >= 0)
    throw py::value_error(op + ": indices must be in [0, " + std::to_string(s.H * s.W) +
                          ") (a position in the input plane), got " +
                          std::to_string(idx.data()[bad]));
  return dx;
}

FArray avg_pool_forward(const FArray& x, const Pool2dShape& s, bool one_d,
                        bool count_include_pad, SimdTier tier, py::handle out,
                        const std::string& op) {
  FArray y = output<float>(out, pool_out_shape(s, one_d), op, "out", {&x});
  {
    py::gil_scoped_release nogil;
    avg_pool2d_forward(tier, y.mutable_data(), x.data(), s, count_include_pad);
  }
  return y;
}

FArray avg_pool_backward(py::handle grad_output, const std::vector<int64_t>& input_shape,
                         const Pool2dShape& s, bool one_d, bool count_include_pad,
                         const std::string& op, py::handle out, SimdTier tier) {
  FArray dy = as_float_shaped(grad_output, pool_out_shape(s, one_d), op, "grad_output");
  FArray dx = input_grad(out, input_shape, one_d ? 3 : 4, op, {&dy});
  {
    py::gil_scoped_release nogil;
    avg_pool2d_backward(tier, dx.mutable_data(), dy.data(), s, count_include_pad);
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// elementwise

using Unary = void (*)(float*, const float*, int64_t);
using UnaryBackward = void (*)(float*, const float*, const float*, int64_t);

// out may be x itself (in place).
FArray unary(py::handle x_obj, Unary f, const std::string& op, py::handle out) {
  FArray x = as_float(x_obj, op, "input");
  FArray y = output<float>(out, Shape(x.shape(), x.shape() + x.ndim()), op, "out", {&x}, true);
  {
    py::gil_scoped_release nogil;
    f(y.mutable_data(), x.data(), x.size());
  }
  return y;
}

// out may be grad_output or y itself (in place).
FArray unary_backward(py::handle dy_obj, py::handle y_obj, UnaryBackward f,
                      const std::string& op, py::handle out) {
  auto [y, dy] = same_shape_pair(y_obj, "output", dy_obj, "grad_output", op);
  FArray dx = output<float>(out, Shape(y.shape(), y.shape() + y.ndim()), op, "out", {&dy, &y},
                            true);
  {
    py::gil_scoped_release nogil;
    f(dx.mutable_data(), dy.data(), y.data(), y.size());
  }
  return dx;
}

// Input (*, IN) and weight (OUT, IN) of a linear layer, checked before either is converted;
// returns the output's shape (*, OUT).
Shape linear_checked(const py::array& xa, const py::array& wa, const std::string& op) {
  expect_ndim(wa, 2, op, "weight", "(out_features, in_features)");
  if (xa.ndim() < 1 || xa.shape(xa.ndim() - 1) != wa.shape(1))
    throw py::value_error(op + ": input of shape " + shape_str(xa) + " must end in " +
                          std::to_string(wa.shape(1)) + " features to match weight of shape " +
                          shape_str(wa));
  Shape ys(xa.shape(), xa.shape() + xa.ndim());
  ys.back() = wa.shape(0);
  return ys;
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

// ---------------------------------------------------------------------------------------------
// optimizers and losses (optim.hpp, loss.hpp, soft-label cross-entropy)

using InPlace = py::array_t<float, py::array::c_style>;

// An array an optimizer updates in place (a parameter or its state): a writable float32
// C-contiguous numpy array of exactly `shape`, as output() checks, but never None and never
// freshly allocated; it must not overlap `others`.
InPlace in_place(py::handle obj, const Shape& shape, const std::string& op, const char* name,
                 std::initializer_list<const py::array*> others) {
  if (obj.is_none()) throw py::type_error(op + ": " + name + " must be a numpy array, got None");
  return output<float>(obj, shape, op, name, others);
}

// The shape of a parameter, for checking its gradient before the parameter itself.
Shape param_shape(py::handle param, const std::string& op) {
  if (!py::isinstance<py::array>(param))
    throw py::type_error(op + ": param must be a numpy array, got " +
                         Py_TYPE(param.ptr())->tp_name);
  auto a = py::reinterpret_borrow<py::array>(param);
  return Shape(a.shape(), a.shape() + a.ndim());
}

// The batched optimizer steps (sgd_step_many, adam_step_many) take lists of tensors and only
// the arrays the per-tensor steps would accept without converting anything: each a float32
// C-contiguous numpy array of its parameter's shape (writable for the parameter and its
// state), none overlapping another of its parameter's. plain_tensors checks one list.
bool plain_tensors(py::handle list, size_t count, bool writable, std::vector<py::array>& out) {
  if (!py::isinstance<py::list>(list) || py::len(list) != count) return false;
  out.clear();
  for (py::handle obj : py::reinterpret_borrow<py::list>(list)) {
    if (!py::isinstance<py::array>(obj)) return false;
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<float>()) || !(a.flags() & py::array::c_style) ||
        (writable && !a.writeable()))
      return false;
    out.push_back(a);
  }
  return true;
}

float* floats(py::array& a) { return static_cast<float*>(a.mutable_data()); }
const float* const_floats(const py::array& a) { return static_cast<const float*>(a.data()); }

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) != b.shape(d)) return false;
  return true;
}

// Tensor i of every list has the shape of shapes[i] (a tuple) and no two overlap.
bool tensors_fit(py::handle shapes, const std::vector<std::vector<py::array>*>& lists) {
  if (!py::isinstance<py::list>(shapes)) return false;
  auto sl = py::reinterpret_borrow<py::list>(shapes);
  const size_t count = lists[0]->size();
  if (sl.size() != count) return false;
  for (size_t i = 0; i < count; ++i) {
    const py::array& p = (*lists[0])[i];
    if (!py::isinstance<py::tuple>(sl[i])) return false;
    auto shape = py::reinterpret_borrow<py::tuple>(sl[i]);
    if (static_cast<py::ssize_t>(shape.size()) != p.ndim()) return false;
    for (py::ssize_t d = 0; d < p.ndim(); ++d)
      if (!py::isinstance<py::int_>(shape[d]) || shape[d].cast<py::ssize_t>() != p.shape(d))
        return false;
    for (size_t a = 0; a < lists.size(); ++a) {
      if (!same_shape((*lists[a])[i], p)) return false;
      for (size_t b = 0; b < a; ++b)
        if (overlaps((*lists[a])[i], (*lists[b])[i])) return false;
    }
  }
  return true;
}

// Predictions and targets of an elementwise loss: any shape, the same for both.
std::pair<FArray, FArray> loss_inputs(py::handle x_obj, py::handle t_obj, const std::string& op) {
  return same_shape_pair(x_obj, "input", t_obj, "target", op);
}

// Logits (N, K) and class-probability targets (N, K) of the soft-label cross-entropy.
std::pair<FArray, FArray> soft_xent_inputs(py::handle x_obj, py::handle t_obj,
                                           const std::string& op, const char* x_name) {
  py::array xa = real_array(x_obj, op, x_name);
  expect_ndim(xa, 2, op, x_name, "(N, num_classes)");
  if (xa.shape(1) < 1)
    throw py::value_error(op + ": " + x_name + " of shape " + shape_str(xa) + " have no classes");
  FArray t = as_float_shaped(t_obj, {xa.shape(0), xa.shape(1)}, op, "target (class probabilities)");
  return {to_float(xa), std::move(t)};
}

// === batch norm, locally connected, Lp and adaptive pooling, padding =======================
// (helpers; the bindings are the block of the same name at the end of the module)

// (N, C, values per channel plane) of a batch-norm input of shape (N, C, *).
std::array<int64_t, 3> batch_norm_dims(const py::array& x, const std::string& op) {
  if (x.ndim() < 2)
    throw py::value_error(op + ": expected input with at least 2 dimensions (N, C, ...), got shape " +
                          shape_str(x));
  int64_t hw = 1;
  for (py::ssize_t d = 2; d < x.ndim(); ++d) hw *= x.shape(d);
  return {x.shape(0), x.shape(1), hw};
}

// A per-channel vector (C,) of a batch-norm call, or nullopt for None.
std::optional<FArray> channel_vector(py::handle obj, int64_t C, const std::string& op,
                                     const char* name) {
  std::optional<FArray> a = optional_float(obj, op, name);
  if (a) expect_shape(*a, {C}, op, name);
  return a;
}

void expect_finite(double v, const std::string& op, const char* name, bool positive) {
  if (!std::isfinite(v) || (positive ? v <= 0.0 : v < 0.0))
    throw py::value_error(op + ": " + name + " must be a finite number " +
                          (positive ? "> 0" : ">= 0") + ", got " + std::to_string(v));
}

// x [N, C, H, W] against a locally connected weight [OH, OW, OC, C, KH, KW] and a bias of
// (OC,) or, position_bias, (OC, OH, OW); the weight's output positions must be the ones the
// input, stride and padding give.
LocallyConnected2dShape lc_checked(const py::array& x, const py::array& w, const std::string& op,
                                   I2 stride, I4 pad, bool position_bias) {
  expect_ndim(x, 4, op, "input", "(N, C, H, W)");
  expect_ndim(w, 6, op, "weight", "(OH, OW, out_channels, in_channels, KH, KW)");
  if (w.shape(3) != x.shape(1))
    throw py::value_error(op + ": input of shape " + shape_str(x) + " has " +
                          std::to_string(x.shape(1)) + " channels but weight of shape " +
                          shape_str(w) + " expects " + std::to_string(w.shape(3)));
  expect_sizes_fit(x.shape(2), pad[0], pad[1], w.shape(4), 1, op, "height");
  expect_sizes_fit(x.shape(3), pad[2], pad[3], w.shape(5), 1, op, "width");
  expect_countable({x.shape(1), x.shape(2) + pad[0] + pad[1], x.shape(3) + pad[2] + pad[3]}, op,
                   "padded input (C, H, W)", true);
  LocallyConnected2dShape s = locally_connected2d_shape(
      x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(2), w.shape(4), w.shape(5),
      stride[0], stride[1], pad[0], pad[1], pad[2], pad[3], position_bias);
  if (w.shape(0) != s.OH || w.shape(1) != s.OW)
    throw py::value_error(op + ": weight of shape " + shape_str(w) + " is for a (" +
                          std::to_string(w.shape(0)) + ", " + std::to_string(w.shape(1)) +
                          ") output, but input of shape " + shape_str(x) + " gives (" +
                          std::to_string(s.OH) + ", " + std::to_string(s.OW) + ")");
  return s;
}

Shape lc_bias_shape(const LocallyConnected2dShape& s) {
  return s.position_bias ? Shape{s.OC, s.OH, s.OW} : Shape{s.OC};
}

// Pad2dShape of an input of shape (..., H, W) padded by (top, bottom, left, right).
Pad2dShape pad_checked(const std::vector<int64_t>& shape, I4 pad, const std::string& op) {
  if (shape.size() < 2)
    throw py::value_error(op + ": expected input with at least 2 dimensions (..., H, W), got shape " +
                          shape_str(shape));
  expect_countable(shape, op, "input shape");
  int64_t planes = 1;
  for (size_t d = 0; d + 2 < shape.size(); ++d) planes *= shape[d];
  // the padded sizes and the output's element count must not wrap around int64
  std::vector<int64_t> padded(shape);
  int64_t& oh = padded[padded.size() - 2];
  int64_t& ow = padded.back();
  if (__builtin_add_overflow(oh, pad[0], &oh) || __builtin_add_overflow(oh, pad[1], &oh) ||
      __builtin_add_overflow(ow, pad[2], &ow) || __builtin_add_overflow(ow, pad[3], &ow))
    throw py::value_error(op + ": padding (top, bottom, left, right) = (" +
                          std::to_string(pad[0]) + ", " + std::to_string(pad[1]) + ", " +
                          std::to_string(pad[2]) + ", " + std::to_string(pad[3]) +
                          ") makes the size of input " + shape_str(shape) + " overflow 64 bits");
  const Pad2dShape s = pad2d_shape(planes, shape[shape.size() - 2], shape.back(), pad[0], pad[1],
                                   pad[2], pad[3]);
  expect_countable(padded, op, "padded shape");
  return s;
}

// === end of batch norm ... padding (helpers) ===============================================

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "cnnkit's compiled core (private: use cnnkit and cnnkit.functional)";
  m.attr("__version__") = CNNKIT_VERSION;

  py::class_<Workspace>(m, "Workspace",
                        "Scratch memory an op reuses across calls (a layer keeps one).")
      .def(py::init<>());

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

  // --- output sizes from the ops' shape functions (layers infer shapes before any data) ------
  m.def(
      "conv2d_output_size",
      [](std::array<int64_t, 3> chw, std::array<int64_t, 3> oc_kh_kw, I2 stride, I4 pad,
         I2 dilation, int64_t groups) {
        expect_countable({chw[0], chw[1], chw[2]}, "conv2d", "input shape", true);
        expect_sizes_fit(chw[1], pad[0], pad[1], oc_kh_kw[1], dilation[0], "conv2d", "height");
        expect_sizes_fit(chw[2], pad[2], pad[3], oc_kh_kw[2], dilation[1], "conv2d", "width");
        expect_countable({chw[0], chw[1] + pad[0] + pad[1], chw[2] + pad[2] + pad[3]}, "conv2d",
                         "padded input (C, H, W)", true);
        Conv2dShape s = conv2d_shape(1, chw[0], chw[1], chw[2], oc_kh_kw[0], oc_kh_kw[1],
                                     oc_kh_kw[2], stride[0], stride[1], pad[0], pad[1], pad[2],
                                     pad[3], dilation[0], dilation[1], groups);
        return py::make_tuple(s.OH, s.OW);
      },
      py::arg("chw"), py::arg("oc_kh_kw"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups") = 1);
  m.def(
      "pool2d_output_size",
      [](std::array<int64_t, 3> chw, I2 kernel, I2 stride, I4 pad) {
        expect_countable({chw[0], chw[1], chw[2]}, "pool", "input shape", true);
        expect_sizes_fit(chw[1], pad[0], pad[1], kernel[0], 1, "pool", "height");
        expect_sizes_fit(chw[2], pad[2], pad[3], kernel[1], 1, "pool", "width");
        Pool2dShape s = pool2d_shape(1, chw[0], chw[1], chw[2], kernel[0], kernel[1], stride[0],
                                     stride[1], pad[0], pad[1], pad[2], pad[3]);
        return py::make_tuple(s.OH, s.OW);
      },
      py::arg("chw"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"));

  // --- conv: groups (after the original parameters, so older calls keep working) -----------
  m.def(
      "conv2d_forward",
      [](py::handle x_obj, py::handle w_obj, py::handle bias, I2 stride, I4 pad, I2 dilation,
         bool ref, py::handle out, py::handle ws, int64_t groups) {
        py::array xa = real_array(x_obj, "conv2d", "input"), wa = real_array(w_obj, "conv2d", "weight");
        Conv2dShape s = conv2d_checked(xa, wa, "conv2d", stride, pad, dilation, groups);
        FArray x = to_float(xa), w = to_float(wa);
        return conv_forward(x, w, bias, s, false, "conv2d", ref, out, ws);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("ref") = false, py::arg("out") = py::none(),
      py::arg("workspace") = py::none(), py::arg("groups") = 1);
  m.def(
      "conv2d_backward",
      [](py::handle dy, py::handle x_obj, py::handle w_obj, I2 stride, I4 pad, I2 dilation,
         bool need_dx, bool need_dw, bool need_db, bool ref, py::handle out, py::handle ws,
         int64_t groups) {
        py::array xa = real_array(x_obj, "conv2d_backward", "input");
        py::array wa = real_array(w_obj, "conv2d_backward", "weight");
        Conv2dShape s = conv2d_checked(xa, wa, "conv2d_backward", stride, pad, dilation, groups);
        FArray x = to_float(xa), w = to_float(wa);
        return conv_backward(dy, x, w, s, false, need_dx, need_dw, need_db, "conv2d_backward",
                             ref, out, ws);
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("need_dx"), py::arg("need_dw"),
      py::arg("need_db"), py::arg("ref") = false, py::arg("out") = py::none(),
      py::arg("workspace") = py::none(), py::arg("groups") = 1);
  m.def(
      "conv1d_forward",
      [](py::handle x_obj, py::handle w_obj, py::handle bias, int64_t stride, I2 pad,
         int64_t dilation, bool ref, py::handle out, py::handle ws, int64_t groups) {
        py::array xa = real_array(x_obj, "conv1d", "input"), wa = real_array(w_obj, "conv1d", "weight");
        Conv2dShape s = conv1d_checked(xa, wa, stride, pad, dilation, groups);
        FArray x = to_float(xa), w = to_float(wa);
        return conv_forward(x, w, bias, s, true, "conv1d", ref, out, ws);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("ref") = false, py::arg("out") = py::none(),
      py::arg("workspace") = py::none(), py::arg("groups") = 1);
  m.def(
      "conv1d_backward",
      [](py::handle dy, py::handle x_obj, py::handle w_obj, int64_t stride, I2 pad,
         int64_t dilation, bool need_dx, bool need_dw, bool need_db, bool ref, py::handle out,
         py::handle ws, int64_t groups) {
        py::array xa = real_array(x_obj, "conv1d_backward", "input");
        py::array wa = real_array(w_obj, "conv1d_backward", "weight");
        Conv2dShape s = conv1d_checked(xa, wa, stride, pad, dilation, groups);
        FArray x = to_float(xa), w = to_float(wa);
        return conv_backward(dy, x, w, s, true, need_dx, need_dw, need_db, "conv1d_backward",
                             ref, out, ws);
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("need_dx"), py::arg("need_dw"),
      py::arg("need_db"), py::arg("ref") = false, py::arg("out") = py::none(),
      py::arg("workspace") = py::none(), py::arg("groups") = 1);

  // --- pooling: 2-D takes (kh, kw), (sh, sw), (top, bottom, left, right); 1-D takes k, s,
  // (left, right) ---------------------------------------------------------------------------
  // tier= (a tier name) runs that SIMD tier instead of the active one: the tier tests' hook.
  using OptTier = std::optional<std::string>;
  m.def(
      "max_pool2d_forward",
      [](py::handle x_obj, I2 kernel, I2 stride, I4 pad, bool ref, py::handle out, OptTier tier) {
        const std::string op = "max_pool2d";
        py::array xa = real_array(x_obj, op, "input");
        const Pool2dShape s = pool2d_checked(xa, op, kernel, stride, pad);
        FArray x = to_float(xa);
        return max_pool_forward(x, s, false,
                                pool_tier(ref, tier, op), out, op);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("ref") = false, py::arg("out") = py::none(), py::arg("tier") = py::none());
  m.def(
      "max_pool1d_forward",
      [](py::handle x_obj, int64_t kernel, int64_t stride, I2 pad, py::handle out, OptTier tier) {
        const std::string op = "max_pool1d";
        py::array xa = real_array(x_obj, op, "input");
        const Pool2dShape s = pool1d_checked(xa, op, kernel, stride, pad);
        FArray x = to_float(xa);
        return max_pool_forward(x, s, true,
                                pool_tier(false, tier, op), out, op);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("out") = py::none(), py::arg("tier") = py::none());
  m.def(
      "max_pool2d_backward",
      [](py::handle dy, py::handle idx, std::vector<int64_t> in, I2 kernel, I2 stride, I4 pad,
         py::handle out, OptTier tier) {
        const std::string op = "max_pool2d_backward";
        Pool2dShape s = pool_shape_from(in, false, op, kernel, stride, pad);
        return max_pool_backward(dy, idx, in, s, false, op, out, pool_tier(false, tier, op));
      },
      py::arg("grad_output"), py::arg("indices"), py::arg("input_shape"), py::arg("kernel_size"),
      py::arg("stride"), py::arg("padding"), py::arg("out") = py::none(),
      py::arg("tier") = py::none());
  // ReLU then max pooling, in one pass (a model fuses a ReLU layer followed by MaxPool2d):
  // the same y, indices and input gradient as relu_forward, max_pool2d_forward,
  // max_pool2d_backward and relu_backward, bit for bit, without relu(x) ever written. The
  // backward takes y, the forward's pooled output.
  m.def(
      "max_pool2d_relu_forward",
      [](py::handle x_obj, I2 kernel, I2 stride, I4 pad, py::handle out, OptTier tier) {
        const std::string op = "max_pool2d_relu";
        py::array xa = real_array(x_obj, op, "input");
        const Pool2dShape s = pool2d_checked(xa, op, kernel, stride, pad);
        FArray x = to_float(xa);
        return max_pool_forward(x, s, false,
                                pool_tier(false, tier, op), out, op, true);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("out") = py::none(), py::arg("tier") = py::none());
  m.def(
      "max_pool2d_relu_backward",
      [](py::handle dy, py::handle idx, py::handle y, std::vector<int64_t> in, I2 kernel,
         I2 stride, I4 pad, py::handle out, OptTier tier) {
        const std::string op = "max_pool2d_relu_backward";
        Pool2dShape s = pool_shape_from(in, false, op, kernel, stride, pad);
        return max_pool_backward(dy, idx, in, s, false, op, out, pool_tier(false, tier, op), y);
      },
      py::arg("grad_output"), py::arg("indices"), py::arg("y"), py::arg("input_shape"),
      py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("out") = py::none(),
      py::arg("tier") = py::none());
  m.def(
      "max_pool1d_backward",
      [](py::handle dy, py::handle idx, std::vector<int64_t> in, int64_t kernel, int64_t stride,
         I2 pad, py::handle out, OptTier tier) {
        const std::string op = "max_pool1d_backward";
        Pool2dShape s = pool_shape_from(in, true, op, {1, kernel}, {1, stride},
                                        {0, 0, pad[0], pad[1]});
        return max_pool_backward(dy, idx, in, s, true, op, out, pool_tier(false, tier, op));
      },
      py::arg("grad_output"), py::arg("indices"), py::arg("input_shape"), py::arg("kernel_size"),
      py::arg("stride"), py::arg("padding"), py::arg("out") = py::none(),
      py::arg("tier") = py::none());
  m.def(
      "avg_pool2d_forward",
      [](py::handle x_obj, I2 kernel, I2 stride, I4 pad, bool cip, bool ref, py::handle out,
         OptTier tier) {
        const std::string op = "avg_pool2d";
        py::array xa = real_array(x_obj, op, "input");
        const Pool2dShape s = pool2d_checked(xa, op, kernel, stride, pad);
        FArray x = to_float(xa);
        return avg_pool_forward(x, s, false, cip,
                                pool_tier(ref, tier, op), out, op);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("count_include_pad"), py::arg("ref") = false, py::arg("out") = py::none(),
      py::arg("tier") = py::none());
  m.def(
      "avg_pool1d_forward",
      [](py::handle x_obj, int64_t kernel, int64_t stride, I2 pad, bool cip, py::handle out,
         OptTier tier) {
        const std::string op = "avg_pool1d";
        py::array xa = real_array(x_obj, op, "input");
        const Pool2dShape s = pool1d_checked(xa, op, kernel, stride, pad);
        FArray x = to_float(xa);
        return avg_pool_forward(x, s, true, cip,
                                pool_tier(false, tier, op), out, op);
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("count_include_pad"), py::arg("out") = py::none(), py::arg("tier") = py::none());
  m.def(
      "avg_pool2d_backward",
      [](py::handle dy, std::vector<int64_t> in, I2 kernel, I2 stride, I4 pad, bool cip,
         py::handle out, OptTier tier) {
        const std::string op = "avg_pool2d_backward";
        Pool2dShape s = pool_shape_from(in, false, op, kernel, stride, pad);
        return avg_pool_backward(dy, in, s, false, cip, op, out, pool_tier(false, tier, op));
      },
      py::arg("grad_output"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"), py::arg("count_include_pad"), py::arg("out") = py::none(),
      py::arg("tier") = py::none());
  m.def(
      "avg_pool1d_backward",
      [](py::handle dy, std::vector<int64_t> in, int64_t kernel, int64_t stride, I2 pad,
         bool cip, py::handle out, OptTier tier) {
        const std::string op = "avg_pool1d_backward";
        Pool2dShape s = pool_shape_from(in, true, op, {1, kernel}, {1, stride},
                                        {0, 0, pad[0], pad[1]});
        return avg_pool_backward(dy, in, s, true, cip, op, out, pool_tier(false, tier, op));
      },
      py::arg("grad_output"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"), py::arg("count_include_pad"), py::arg("out") = py::none(),
      py::arg("tier") = py::none());
  m.def(
      "global_avg_pool2d_forward",
      [](py::handle x_obj, py::handle out) {
        py::array xa = real_array(x_obj, "global_avg_pool2d", "input");
        expect_ndim(xa, 4, "global_avg_pool2d", "input", "(N, C, H, W)");
        FArray x = to_float(xa);
        if (x.shape(2) < 1 || x.shape(3) < 1)
          throw py::value_error("global_avg_pool2d: input of shape " + shape_str(x) +
                                " has an empty plane");
        FArray y = output<float>(out, {x.shape(0), x.shape(1)}, "global_avg_pool2d", "out", {&x});
        {
          py::gil_scoped_release nogil;
          global_avg_pool2d_forward(y.mutable_data(), x.data(), x.shape(0) * x.shape(1),
                                    x.shape(2) * x.shape(3));
        }
        return y;
      },
      py::arg("x"), py::arg("out") = py::none());
  m.def(
      "global_avg_pool2d_backward",
      [](py::handle dy_obj, std::vector<int64_t> in, py::handle out) {
        const std::string op = "global_avg_pool2d_backward";
        if (in.size() != 4)
          throw py::value_error(op + ": input_shape must have 4 entries, got " +
                                std::to_string(in.size()));
        if (in[2] < 1 || in[3] < 1) throw py::value_error(op + ": input_shape has an empty plane");
        FArray dy = as_float_shaped(dy_obj, {in[0], in[1]}, op, "grad_output");
        FArray dx = input_grad(out, in, 4, op, {&dy});
        {
          py::gil_scoped_release nogil;
          global_avg_pool2d_backward(dx.mutable_data(), dy.data(), in[0] * in[1], in[2] * in[3]);
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("input_shape"), py::arg("out") = py::none());

  // --- linear: x (*, IN) ---------------------------------------------------------------------
  m.def(
      "linear_forward",
      [](py::handle x_obj, py::handle w_obj, py::handle bias, py::handle out) {
        const std::string op = "linear";
        py::array xa = real_array(x_obj, op, "input"), wa = real_array(w_obj, op, "weight");
        const Shape ys = linear_checked(xa, wa, op);
        std::optional<FArray> b;
        if (!bias.is_none()) b = as_float_shaped(bias, {wa.shape(0)}, op, "bias");
        FArray x = to_float(xa), w = to_float(wa);
        FArray y = output<float>(out, ys, op, "out", {&x, &w});
        const int64_t IN = w.shape(1), OUT = w.shape(0), N = IN ? x.size() / IN : 0;
        {
          py::gil_scoped_release nogil;
          linear_forward(y.mutable_data(), x.data(), w.data(), b ? b->data() : nullptr, N, IN,
                         OUT);
        }
        return y;
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out") = py::none());
  m.def(
      "linear_backward",
      [](py::handle dy_obj, py::handle x_obj, py::handle w_obj, bool need_dx, bool need_dw,
         bool need_db, py::handle out) {
        const std::string op = "linear_backward";
        py::array xa = real_array(x_obj, op, "input"), wa = real_array(w_obj, op, "weight");
        const Shape ys = linear_checked(xa, wa, op);
        FArray dy = as_float_shaped(dy_obj, ys, op, "grad_output");
        FArray x = to_float(xa), w = to_float(wa);
        const int64_t IN = w.shape(1), OUT = w.shape(0), N = IN ? x.size() / IN : 0;
        std::optional<FArray> dx, dw, db;
        if (need_dx)
          dx = output<float>(out_item(out, 0, 3, op), Shape(x.shape(), x.shape() + x.ndim()), op,
                             "out[0] (grad_input)", {&x, &w, &dy});
        if (need_dw)
          dw = output<float>(out_item(out, 1, 3, op), Shape{OUT, IN}, op, "out[1] (grad_weight)",
                             {&x, &w, &dy});
        if (need_db)
          db = output<float>(out_item(out, 2, 3, op), Shape{OUT}, op, "out[2] (grad_bias)",
                             {&x, &w, &dy});
        {
          py::gil_scoped_release nogil;
          linear_backward(dx ? dx->mutable_data() : nullptr, dw ? dw->mutable_data() : nullptr,
                          db ? db->mutable_data() : nullptr, dy.data(), x.data(), w.data(), N,
                          IN, OUT);
        }
        return py::make_tuple(opt(dx), opt(dw), opt(db));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("need_dx"),
      py::arg("need_dw"), py::arg("need_db"), py::arg("out") = py::none());

  // --- activations: out may alias the input (forward) or grad_output (backward) -------------
  const std::pair<const char*, std::pair<Unary, UnaryBackward>> activations[] = {
      {"relu", {relu_forward, relu_backward}},
      {"sigmoid", {sigmoid_forward, sigmoid_backward}},
      {"tanh", {tanh_forward, tanh_backward}},
  };
  for (const auto& [name, fns] : activations) {
    const std::string op = name;
    const Unary fwd = fns.first;
    const UnaryBackward bwd = fns.second;
    m.def((op + "_forward").c_str(),
          [op, fwd](py::handle x, py::handle out) { return unary(x, fwd, op, out); },
          py::arg("x"), py::arg("out") = py::none());
    m.def((op + "_backward").c_str(),
          [op, bwd](py::handle dy, py::handle y, py::handle out) {
            return unary_backward(dy, y, bwd, op + "_backward", out);
          },
          py::arg("grad_output"), py::arg("y"), py::arg("out") = py::none());
  }

  // --- softmax and cross-entropy over the last axis ------------------------------------------
  m.def(
      "softmax_forward",
      [](py::handle x_obj, py::handle out) {
        FArray x = as_float(x_obj, "softmax", "input");
        auto [rows, cols] = rows_cols(x, "softmax", "input");
        FArray y = output<float>(out, Shape(x.shape(), x.shape() + x.ndim()), "softmax", "out",
                                 {&x}, true);
        {
          py::gil_scoped_release nogil;
          softmax_forward(y.mutable_data(), x.data(), rows, cols);
        }
        return y;
      },
      py::arg("x"), py::arg("out") = py::none());
  m.def(
      "softmax_backward",
      [](py::handle dy_obj, py::handle y_obj, py::handle out) {
        const std::string op = "softmax_backward";
        auto [y, dy] = same_shape_pair(y_obj, "output", dy_obj, "grad_output", op);
        const Shape shape(y.shape(), y.shape() + y.ndim());
        auto [rows, cols] = rows_cols(y, op, "output");
        FArray dx = output<float>(out, shape, op, "out", {&dy, &y}, true);
        {
          py::gil_scoped_release nogil;
          softmax_backward(dx.mutable_data(), dy.data(), y.data(), rows, cols);
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("y"), py::arg("out") = py::none());
  m.def(
      "softmax_xent_forward",
      [](py::handle logits_obj, py::handle labels_obj, py::handle out) {
        const std::string op = "cross_entropy";
        py::array xa = real_array(logits_obj, op, "logits");
        expect_ndim(xa, 2, op, "logits", "(N, num_classes)");
        const int64_t N = xa.shape(0), K = xa.shape(1);
        if (K < 1) throw py::value_error(op + ": logits of shape " + shape_str(xa) + " have no classes");
        LArray labels = as_labels(labels_obj, N, K, op);
        FArray x = to_float(xa);
        FArray probs = output<float>(out, {N, K}, op, "out (probs)", {&x});
        double loss;
        {
          py::gil_scoped_release nogil;
          loss = softmax_xent_forward(probs.mutable_data(), x.data(), labels.data(), N, K);
        }
        return py::make_tuple(loss, probs);
      },
      py::arg("logits"), py::arg("labels"), py::arg("out") = py::none());
  m.def(
      "softmax_xent_backward",
      [](py::handle probs_obj, py::handle labels_obj, float dloss, py::handle out) {
        const std::string op = "cross_entropy_backward";
        py::array pa = real_array(probs_obj, op, "probs");
        expect_ndim(pa, 2, op, "probs", "(N, num_classes)");
        const int64_t N = pa.shape(0), K = pa.shape(1);
        LArray labels = as_labels(labels_obj, N, K, op);
        FArray p = to_float(pa);
        FArray dx = output<float>(out, {N, K}, op, "out", {&p}, true);
        {
          py::gil_scoped_release nogil;
          softmax_xent_backward(dx.mutable_data(), p.data(), labels.data(), N, K, dloss);
        }
        return dx;
      },
      py::arg("probs"), py::arg("labels"), py::arg("grad") = 1.0f, py::arg("out") = py::none());

  // --- dropout --------------------------------------------------------------------------------
  m.def(
      "dropout_forward",
      [](py::handle x_obj, float p, uint64_t seed, py::handle out, py::handle mask_out) {
        const std::string op = "dropout";
        if (!(p >= 0.0f && p < 1.0f))
          throw py::value_error(op + ": p must be in [0, 1), got " + std::to_string(p));
        FArray x = as_float(x_obj, op, "input");
        const Shape shape(x.shape(), x.shape() + x.ndim());
        FArray y = output<float>(out, shape, op, "out", {&x}, true);
        FArray mask = output<float>(mask_out, shape, op, "mask_out", {&x, &y});
        {
          py::gil_scoped_release nogil;
          dropout_forward(y.mutable_data(), mask.mutable_data(), x.data(), x.size(), p, seed);
        }
        return py::make_tuple(y, mask);
      },
      py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("out") = py::none(),
      py::arg("mask_out") = py::none());
  m.def(
      "dropout_backward",
      [](py::handle dy_obj, py::handle mask_obj, py::handle out) {
        const std::string op = "dropout_backward";
        auto [mask, dy] = same_shape_pair(mask_obj, "mask", dy_obj, "grad_output", op);
        const Shape shape(mask.shape(), mask.shape() + mask.ndim());
        FArray dx = output<float>(out, shape, op, "out", {&dy, &mask}, true);
        {
          py::gil_scoped_release nogil;
          dropout_backward(dx.mutable_data(), dy.data(), mask.data(), dy.size());
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("mask"), py::arg("out") = py::none());

  // --- merging branches: residual sum, channel concatenation ------------------------------------
  m.def(
      "add",
      [](py::handle a_obj, py::handle b_obj, py::handle out) {
        const std::string op = "add";
        auto [a, b] = same_shape_pair(a_obj, "a", b_obj, "b", op);
        const Shape shape(a.shape(), a.shape() + a.ndim());
        FArray y = output<float>(out, shape, op, "out", {&a, &b}, true);
        {
          py::gil_scoped_release nogil;
          add_forward(y.mutable_data(), a.data(), b.data(), a.size());
        }
        return y;
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none());
  m.def(
      "concat",
      [](py::sequence xs_obj, py::handle out) {
        const std::string op = "concat";
        if (py::len(xs_obj) == 0) throw py::value_error(op + ": needs at least one array");
        std::vector<FArray> xs;
        for (py::handle h : xs_obj) xs.push_back(as_float(h, op, "input"));
        if (xs[0].ndim() < 2)
          throw py::value_error(op + ": expected arrays with at least 2 dimensions (N, C, ...), got shape " +
                                shape_str(xs[0]));
        Shape shape(xs[0].shape(), xs[0].shape() + xs[0].ndim());
        std::vector<int64_t> cs;
        std::vector<const float*> ptrs;
        for (size_t i = 0; i < xs.size(); ++i) {
          Shape want = shape;
          want[1] = xs[i].ndim() >= 2 ? xs[i].shape(1) : 0;
          expect_shape(xs[i], want, op, "every input (same N and sizes after the channels)");
          cs.push_back(xs[i].shape(1));
          ptrs.push_back(xs[i].data());
        }
        shape[1] = 0;
        for (int64_t c : cs) shape[1] += c;
        int64_t inner = 1;
        for (size_t d = 2; d < shape.size(); ++d) inner *= shape[d];
        std::vector<const py::array*> inputs;
        for (const FArray& x : xs) inputs.push_back(&x);
        FArray y = output<float>(out, shape, op, "out", {});
        for (const py::array* in : inputs)
          if (overlaps(y, *in)) throw py::value_error(op + ": out overlaps an input array");
        {
          py::gil_scoped_release nogil;
          concat_forward(y.mutable_data(), ptrs.data(), cs.data(), static_cast<int>(cs.size()), shape[0],
                         inner);
        }
        return y;
      },
      py::arg("xs"), py::arg("out") = py::none());
  m.def(
      "concat_backward",
      [](py::handle dy_obj, std::vector<int64_t> sizes, py::handle outs) {
        const std::string op = "concat_backward";
        FArray dy = as_float(dy_obj, op, "grad_output");
        int64_t total = 0;
        for (int64_t c : sizes) {
          if (c < 1) throw py::value_error(op + ": channel sizes must be >= 1");
          total += c;
        }
        if (dy.ndim() < 2 || dy.shape(1) != total)
          throw py::value_error(op + ": grad_output of shape " + shape_str(dy) + " does not have " +
                                std::to_string(total) + " channels at axis 1");
        int64_t inner = 1;
        for (py::ssize_t d = 2; d < dy.ndim(); ++d) inner *= dy.shape(d);
        std::vector<FArray> dxs;
        std::vector<float*> ptrs;
        for (size_t i = 0; i < sizes.size(); ++i) {
          Shape shape(dy.shape(), dy.shape() + dy.ndim());
          shape[1] = sizes[i];
          dxs.push_back(output<float>(out_item(outs, i, sizes.size(), op), shape, op, "out[i]", {&dy}));
          ptrs.push_back(dxs.back().mutable_data());
        }
        {
          py::gil_scoped_release nogil;
          concat_backward(ptrs.data(), dy.data(), sizes.data(), static_cast<int>(sizes.size()), dy.shape(0),
                          inner);
        }
        py::list result;
        for (FArray& a : dxs) result.append(std::move(a));
        return result;
      },
      py::arg("grad_output"), py::arg("sizes"), py::arg("out") = py::none());

  // --- kernels and internals, for tests and benchmarks ------------------------------------------
  // The address of the float32 buffer an op would read for x: equal to x's own data address
  // exactly when the conversion is zero-copy.
  m.def("_float32_input_address", [](py::handle x) {
    return reinterpret_cast<std::uintptr_t>(as_float(x, "_float32_input_address", "x").data());
  });
  m.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("c") = py::none(), py::arg("tier") = py::none());

  // === optimizers and losses =================================================================
  // Optimizer steps update param and its state arrays in place (their own outputs, so they
  // take no out=); losses return the mean loss as a float, and their backward passes take out=.
  m.def(
      "sgd_step",
      [](py::handle param, py::handle momentum_buffer, py::handle grad, double lr,
         double momentum, bool nesterov, double weight_decay, bool first, bool ref) {
        const std::string op = "sgd_step";
        const Shape shape = param_shape(param, op);
        FArray g = as_float_shaped(grad, shape, op, "grad");
        InPlace p = in_place(param, shape, op, "param", {&g});
        std::optional<InPlace> buf;
        if (momentum != 0.0)
          buf = in_place(momentum_buffer, shape, op, "momentum_buffer", {&g, &p});
        {
          py::gil_scoped_release nogil;
          float* bp = buf ? buf->mutable_data() : nullptr;
          (ref ? sgd_step__ref : sgd_step)(p.mutable_data(), bp, g.data(), g.size(), lr, momentum,
                                          nesterov, weight_decay, first);
        }
      },
      py::arg("param"), py::arg("momentum_buffer"), py::arg("grad"), py::arg("lr"),
      py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"), py::arg("first"),
      py::arg("ref") = false);
  m.def(
      "adam_step",
      [](py::handle param, py::handle exp_avg, py::handle exp_avg_sq, py::handle grad,
         int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay,
         bool ref) {
        const std::string op = "adam_step";
        if (step < 1)
          throw py::value_error(op + ": step must be >= 1, got " + std::to_string(step));
        const Shape shape = param_shape(param, op);
        FArray g = as_float_shaped(grad, shape, op, "grad");
        InPlace p = in_place(param, shape, op, "param", {&g});
        InPlace m1 = in_place(exp_avg, shape, op, "exp_avg", {&g, &p});
        InPlace m2 = in_place(exp_avg_sq, shape, op, "exp_avg_sq", {&g, &p, &m1});
        {
          py::gil_scoped_release nogil;
          (ref ? adam_step__ref : adam_step)(p.mutable_data(), m1.mutable_data(),
                                            m2.mutable_data(), g.data(), g.size(), lr, beta1,
                                            beta2, eps, weight_decay, step);
        }
      },
      py::arg("param"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("grad"),
      py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
      py::arg("weight_decay"), py::arg("ref") = false);

  // One call for all of an optimizer's parameters (Optimizer.step's common case): the same
  // per-tensor ops in list order, so bit-identical to a sgd_step / adam_step call per tensor.
  // Returns False, having changed nothing, unless every array is as plain_tensors describes
  // and of the shape in `shapes` (a list of tuples); the caller then takes the per-tensor
  // path, whose checks name what is wrong.
  m.def(
      "sgd_step_many",
      [](py::handle params, py::handle bufs, py::handle grads, py::handle shapes, double lr,
         double momentum, bool nesterov, double weight_decay, bool first) {
        std::vector<py::array> p, b, g;
        const size_t count = py::isinstance<py::list>(params) ? py::len(params) : 0;
        const bool with_buf = momentum != 0.0;
        if (!plain_tensors(params, count, true, p) || !plain_tensors(grads, count, false, g) ||
            (with_buf && !plain_tensors(bufs, count, true, b)))
          return false;
        std::vector<std::vector<py::array>*> lists{&p, &g};
        if (with_buf) lists.push_back(&b);
        if (!tensors_fit(shapes, lists)) return false;
        struct Sgd { float *p, *buf; const float* g; int64_t n; };
        std::vector<Sgd> t(count);
        for (size_t i = 0; i < count; ++i)
          t[i] = {floats(p[i]), with_buf ? floats(b[i]) : nullptr, const_floats(g[i]), p[i].size()};
        py::gil_scoped_release nogil;
        for (const Sgd& x : t)
          sgd_step(x.p, x.buf, x.g, x.n, lr, momentum, nesterov, weight_decay, first);
        return true;
      },
      py::arg("params"), py::arg("momentum_buffers"), py::arg("grads"), py::arg("shapes"),
      py::arg("lr"), py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"),
      py::arg("first"));
  m.def(
      "adam_step_many",
      [](py::handle params, py::handle exp_avgs, py::handle exp_avg_sqs, py::handle grads,
         py::handle shapes, int64_t step, double lr, double beta1, double beta2, double eps,
         double weight_decay) {
        if (step < 1)
          throw py::value_error("adam_step_many: step must be >= 1, got " + std::to_string(step));
        std::vector<py::array> p, m1, m2, g;
        const size_t count = py::isinstance<py::list>(params) ? py::len(params) : 0;
        if (!plain_tensors(params, count, true, p) || !plain_tensors(grads, count, false, g) ||
            !plain_tensors(exp_avgs, count, true, m1) ||
            !plain_tensors(exp_avg_sqs, count, true, m2) || !tensors_fit(shapes, {&p, &g, &m1, &m2}))
          return false;
        struct Adam { float *p, *m, *v; const float* g; int64_t n; };
        std::vector<Adam> t(count);
        for (size_t i = 0; i < count; ++i)
          t[i] = {floats(p[i]), floats(m1[i]), floats(m2[i]), const_floats(g[i]), p[i].size()};
        py::gil_scoped_release nogil;
        for (const Adam& x : t)
          adam_step(x.p, x.m, x.v, x.g, x.n, lr, beta1, beta2, eps, weight_decay, step);
        return true;
      },
      py::arg("params"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("grads"),
      py::arg("shapes"), py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
      py::arg("eps"), py::arg("weight_decay"));

  m.def(
      "softmax_xent_soft_forward",
      [](py::handle logits, py::handle target, py::handle out) {
        const std::string op = "cross_entropy";
        auto [x, t] = soft_xent_inputs(logits, target, op, "logits");
        const int64_t N = x.shape(0), K = x.shape(1);
        FArray probs = output<float>(out, {N, K}, op, "out (probs)", {&x, &t});
        double loss;
        {
          py::gil_scoped_release nogil;
          loss = softmax_xent_soft_forward(probs.mutable_data(), x.data(), t.data(), N, K);
        }
        return py::make_tuple(loss, probs);
      },
      py::arg("logits"), py::arg("target"), py::arg("out") = py::none());
  m.def(
      "softmax_xent_soft_backward",
      [](py::handle probs, py::handle target, float dloss, py::handle out) {
        const std::string op = "cross_entropy_backward";
        auto [p, t] = soft_xent_inputs(probs, target, op, "probs");
        const int64_t N = p.shape(0), K = p.shape(1);
        FArray dx = output<float>(out, {N, K}, op, "out", {&p, &t}, true);
        {
          py::gil_scoped_release nogil;
          softmax_xent_soft_backward(dx.mutable_data(), p.data(), t.data(), N, K, dloss);
        }
        return dx;
      },
      py::arg("probs"), py::arg("target"), py::arg("grad") = 1.0f, py::arg("out") = py::none());

  using LossForward = double (*)(const float*, const float*, int64_t);
  using LossBackward = void (*)(float*, const float*, const float*, int64_t, float);
  const std::tuple<const char*, const char*, LossForward, LossBackward> elementwise_losses[] = {
      {"bce_logits", "binary_cross_entropy", bce_logits_forward, bce_logits_backward},
      {"mse", "mse_loss", mse_forward, mse_backward},
  };
  for (const auto& [prefix, name, fwd, bwd] : elementwise_losses) {
    const std::string op = name;
    m.def((std::string(prefix) + "_forward").c_str(),
          [op, fwd = fwd](py::handle input, py::handle target) {
            auto [x, t] = loss_inputs(input, target, op);
            py::gil_scoped_release nogil;
            return fwd(x.data(), t.data(), x.size());
          },
          py::arg("input"), py::arg("target"));
    m.def((std::string(prefix) + "_backward").c_str(),
          [op, bwd = bwd](py::handle input, py::handle target, float dloss, py::handle out) {
            const std::string opb = op + "_backward";
            auto [x, t] = loss_inputs(input, target, opb);
            FArray dx = output<float>(out, Shape(x.shape(), x.shape() + x.ndim()), opb, "out",
                                      {&x, &t}, true);
            {
              py::gil_scoped_release nogil;
              bwd(dx.mutable_data(), x.data(), t.data(), x.size(), dloss);
            }
            return dx;
          },
          py::arg("input"), py::arg("target"), py::arg("grad") = 1.0f,
          py::arg("out") = py::none());
  }
  // === end of optimizers and losses ==========================================================
  // === batch norm, locally connected, Lp and adaptive pooling, padding =======================
  // batch_norm_forward: training takes the batch's statistics (and updates running_mean and
  // running_var in place when given: writable float32 arrays); otherwise running_mean and
  // running_var are required and read. Returns (y, mean, invstd), the statistics y was
  // normalised with, which batch_norm_backward takes; out: None or those three arrays.
  m.def(
      "batch_norm_forward",
      [](py::handle x_obj, py::handle weight, py::handle bias, py::handle running_mean,
         py::handle running_var, bool training, double momentum, double eps, bool ref,
         py::handle out) {
        const std::string op = "batch_norm";
        py::array xa = real_array(x_obj, op, "input");
        const auto [N, C, HW] = batch_norm_dims(xa, op);
        expect_finite(eps, op, "eps", false);
        expect_finite(momentum, op, "momentum", false);
        const BatchNormShape s = batch_norm_shape(N, C, HW, training);
        std::optional<FArray> w = channel_vector(weight, C, op, "weight");
        std::optional<FArray> b = channel_vector(bias, C, op, "bias");
        if (!training && (running_mean.is_none() || running_var.is_none()))
          throw py::value_error(op + ": running_mean and running_var are required when not "
                                "training");
        if (!training) {  // their shapes, before x is converted (in place ones: below)
          channel_vector(running_mean, C, op, "running_mean");
          channel_vector(running_var, C, op, "running_var");
        }
        FArray x = to_float(xa);
        FArray y = output<float>(out_item(out, 0, 3, op), Shape(x.shape(), x.shape() + x.ndim()),
                                 op, "out[0]", {&x});
        FArray mean = output<float>(out_item(out, 1, 3, op), {C}, op, "out[1] (mean)", {&x, &y});
        FArray invstd =
            output<float>(out_item(out, 2, 3, op), {C}, op, "out[2] (invstd)", {&x, &y, &mean});
        // Running statistics: updated in place in training (so never converted), read in
        // evaluation (then any array-like of shape (C,)).
        std::optional<FArray> rm_in, rv_in;
        std::optional<InPlace> rm, rv;
        if (training) {
          if (!running_mean.is_none())
            rm = in_place(running_mean, {C}, op, "running_mean", {&x, &y, &mean, &invstd});
          if (!running_var.is_none())
            rv = in_place(running_var, {C}, op, "running_var", {&x, &y, &mean, &invstd});
          if (rm && rv && overlaps(*rm, *rv))
            throw py::value_error(op + ": running_mean overlaps running_var");
        } else {
          if (running_mean.is_none() || running_var.is_none())
            throw py::value_error(op + ": running_mean and running_var are required when not "
                                  "training");
          rm_in = channel_vector(running_mean, C, op, "running_mean");
          rv_in = channel_vector(running_var, C, op, "running_var");
        }
        {
          py::gil_scoped_release nogil;
          // evaluation only reads the running statistics (batch_norm_forward's contract)
          float* rmp = rm ? rm->mutable_data() : rm_in ? const_cast<float*>(rm_in->data()) : nullptr;
          float* rvp = rv ? rv->mutable_data() : rv_in ? const_cast<float*>(rv_in->data()) : nullptr;
          (ref ? batch_norm_forward__ref : batch_norm_forward)(
              y.mutable_data(), mean.mutable_data(), invstd.mutable_data(), rmp, rvp, x.data(),
              w ? w->data() : nullptr, b ? b->data() : nullptr, s, momentum, eps);
        }
        return py::make_tuple(y, mean, invstd);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("training"), py::arg("momentum") = 0.1,
      py::arg("eps") = 1e-5, py::arg("ref") = false, py::arg("out") = py::none());
  m.def(
      "batch_norm_backward",
      [](py::handle dy_obj, py::handle x_obj, py::handle weight, py::handle mean_obj,
         py::handle invstd_obj, bool training, bool need_dx, bool need_dw, bool need_db,
         bool ref, py::handle out) {
        const std::string op = "batch_norm_backward";
        py::array xa = real_array(x_obj, op, "input");
        const auto [N, C, HW] = batch_norm_dims(xa, op);
        const BatchNormShape s = batch_norm_shape(N, C, HW, training);
        const Shape xs(xa.shape(), xa.shape() + xa.ndim());
        FArray dy = as_float_shaped(dy_obj, xs, op, "grad_output");
        FArray x = to_float(xa);
        std::optional<FArray> w = channel_vector(weight, C, op, "weight");
        FArray mean = as_float(mean_obj, op, "mean");
        expect_shape(mean, {C}, op, "mean");
        FArray invstd = as_float(invstd_obj, op, "invstd");
        expect_shape(invstd, {C}, op, "invstd");
        std::optional<FArray> dx, dw, db;
        if (need_dx)
          dx = output<float>(out_item(out, 0, 3, op), xs, op, "out[0] (grad_input)", {&x, &dy});
        if (need_dw)
          dw = output<float>(out_item(out, 1, 3, op), {C}, op, "out[1] (grad_weight)", {&x, &dy});
        if (need_db)
          db = output<float>(out_item(out, 2, 3, op), {C}, op, "out[2] (grad_bias)", {&x, &dy});
        {
          py::gil_scoped_release nogil;
          (ref ? batch_norm_backward__ref : batch_norm_backward)(
              dx ? dx->mutable_data() : nullptr, dw ? dw->mutable_data() : nullptr,
              db ? db->mutable_data() : nullptr, dy.data(), x.data(), mean.data(),
              invstd.data(), w ? w->data() : nullptr, s);
        }
        return py::make_tuple(opt(dx), opt(dw), opt(db));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("mean"),
      py::arg("invstd"), py::arg("training"), py::arg("need_dx"), py::arg("need_dw"),
      py::arg("need_db"), py::arg("ref") = false, py::arg("out") = py::none());

  // Locally connected: weight (OH, OW, OC, C, KH, KW); bias (OC,) or (OC, OH, OW).
  m.def(
      "locally_connected2d_output_size",
      [](std::array<int64_t, 3> chw, std::array<int64_t, 3> oc_kh_kw, I2 stride, I4 pad) {
        expect_countable({chw[0], chw[1], chw[2]}, "locally_connected2d", "input shape", true);
        expect_sizes_fit(chw[1], pad[0], pad[1], oc_kh_kw[1], 1, "locally_connected2d", "height");
        expect_sizes_fit(chw[2], pad[2], pad[3], oc_kh_kw[2], 1, "locally_connected2d", "width");
        LocallyConnected2dShape s = locally_connected2d_shape(
            1, chw[0], chw[1], chw[2], oc_kh_kw[0], oc_kh_kw[1], oc_kh_kw[2], stride[0],
            stride[1], pad[0], pad[1], pad[2], pad[3], false);
        return py::make_tuple(s.OH, s.OW);
      },
      py::arg("chw"), py::arg("oc_kh_kw"), py::arg("stride"), py::arg("padding"));
  m.def(
      "locally_connected2d_forward",
      [](py::handle x_obj, py::handle w_obj, py::handle bias, I2 stride, I4 pad, bool ref,
         py::handle out, py::handle ws) {
        const std::string op = "locally_connected2d";
        py::array xa = real_array(x_obj, op, "input"), wa = real_array(w_obj, op, "weight");
        std::optional<py::array> ba;
        if (!bias.is_none()) ba = real_array(bias, op, "bias");
        const LocallyConnected2dShape s = lc_checked(xa, wa, op, stride, pad, ba && ba->ndim() == 3);
        if (ba) expect_shape(*ba, lc_bias_shape(s), op, "bias");
        FArray x = to_float(xa), w = to_float(wa);
        std::optional<FArray> b;
        if (ba) b = to_float(*ba);
        FArray y = output<float>(out, {s.N, s.OC, s.OH, s.OW}, op, "out", {&x, &w});
        Workspace& workspace = workspace_of(ws);
        {
          py::gil_scoped_release nogil;
          const float* bp = b ? b->data() : nullptr;
          if (ref)
            locally_connected2d_forward__ref(y.mutable_data(), x.data(), w.data(), bp, s);
          else
            locally_connected2d_forward(y.mutable_data(), x.data(), w.data(), bp, s, workspace);
        }
        return y;
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("ref") = false, py::arg("out") = py::none(), py::arg("workspace") = py::none());
  m.def(
      "locally_connected2d_backward",
      [](py::handle dy_obj, py::handle x_obj, py::handle w_obj, I2 stride, I4 pad, bool need_dx,
         bool need_dw, bool need_db, bool position_bias, bool ref, py::handle out,
         py::handle ws) {
        const std::string op = "locally_connected2d_backward";
        py::array xa = real_array(x_obj, op, "input"), wa = real_array(w_obj, op, "weight");
        const LocallyConnected2dShape s = lc_checked(xa, wa, op, stride, pad, position_bias);
        FArray dy = as_float_shaped(dy_obj, {s.N, s.OC, s.OH, s.OW}, op, "grad_output");
        FArray x = to_float(xa), w = to_float(wa);
        std::optional<FArray> dx, dw, db;
        if (need_dx)
          dx = output<float>(out_item(out, 0, 3, op), Shape(x.shape(), x.shape() + x.ndim()), op,
                             "out[0] (grad_input)", {&x, &w, &dy});
        if (need_dw)
          dw = output<float>(out_item(out, 1, 3, op), Shape(w.shape(), w.shape() + w.ndim()), op,
                             "out[1] (grad_weight)", {&x, &w, &dy});
        if (need_db)
          db = output<float>(out_item(out, 2, 3, op), lc_bias_shape(s), op, "out[2] (grad_bias)",
                             {&x, &w, &dy});
        Workspace& workspace = workspace_of(ws);
        {
          py::gil_scoped_release nogil;
          float* dxp = dx ? dx->mutable_data() : nullptr;
          float* dwp = dw ? dw->mutable_data() : nullptr;
          float* dbp = db ? db->mutable_data() : nullptr;
          if (ref)
            locally_connected2d_backward__ref(dxp, dwp, dbp, dy.data(), x.data(), w.data(), s);
          else
            locally_connected2d_backward(dxp, dwp, dbp, dy.data(), x.data(), w.data(), s,
                                         workspace);
        }
        return py::make_tuple(opt(dx), opt(dw), opt(db));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("stride"),
      py::arg("padding"), py::arg("need_dx"), py::arg("need_dw"), py::arg("need_db"),
      py::arg("position_bias") = false, py::arg("ref") = false, py::arg("out") = py::none(),
      py::arg("workspace") = py::none());

  // Lp pooling: unpadded windows, norm_type p finite and > 0.
  m.def(
      "lp_pool2d_forward",
      [](py::handle x_obj, double p, I2 kernel, I2 stride, py::handle out) {
        const std::string op = "lp_pool2d";
        expect_finite(p, op, "norm_type", true);
        py::array xa = real_array(x_obj, op, "input");
        Pool2dShape s = pool2d_checked(xa, op, kernel, stride, {0, 0, 0, 0});
        FArray x = to_float(xa);
        FArray y = output<float>(out, pool_out_shape(s, false), op, "out", {&x});
        {
          py::gil_scoped_release nogil;
          lp_pool2d_forward(y.mutable_data(), x.data(), s, static_cast<float>(p));
        }
        return y;
      },
      py::arg("x"), py::arg("norm_type"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("out") = py::none());
  m.def(
      "lp_pool2d_backward",
      [](py::handle dy_obj, py::handle x_obj, double p, I2 kernel, I2 stride, py::handle out) {
        const std::string op = "lp_pool2d_backward";
        expect_finite(p, op, "norm_type", true);
        py::array xa = real_array(x_obj, op, "input");
        Pool2dShape s = pool2d_checked(xa, op, kernel, stride, {0, 0, 0, 0});
        FArray dy = as_float_shaped(dy_obj, pool_out_shape(s, false), op, "grad_output");
        FArray x = to_float(xa);
        FArray dx = output<float>(out, Shape(x.shape(), x.shape() + x.ndim()), op, "out", {&x, &dy});
        {
          py::gil_scoped_release nogil;
          lp_pool2d_backward(dx.mutable_data(), dy.data(), x.data(), s, static_cast<float>(p));
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("x"), py::arg("norm_type"), py::arg("kernel_size"),
      py::arg("stride"), py::arg("out") = py::none());

  // Adaptive average pooling to output_size (OH, OW); the backward reads the output size
  // from grad_output.
  m.def(
      "adaptive_avg_pool2d_forward",
      [](py::handle x_obj, I2 output_size, py::handle out) {
        const std::string op = "adaptive_avg_pool2d";
        py::array xa = real_array(x_obj, op, "input");
        expect_ndim(xa, 4, op, "input", "(N, C, H, W)");
        const AdaptivePool2dShape s = adaptive_pool2d_shape(
            xa.shape(0), xa.shape(1), xa.shape(2), xa.shape(3), output_size[0], output_size[1]);
        FArray x = to_float(xa);
        FArray y = output<float>(out, {s.N, s.C, s.OH, s.OW}, op, "out", {&x});
        {
          py::gil_scoped_release nogil;
          adaptive_avg_pool2d_forward(y.mutable_data(), x.data(), s);
        }
        return y;
      },
      py::arg("x"), py::arg("output_size"), py::arg("out") = py::none());
  m.def(
      "adaptive_avg_pool2d_backward",
      [](py::handle dy_obj, std::vector<int64_t> in, py::handle out) {
        const std::string op = "adaptive_avg_pool2d_backward";
        py::array dya = real_array(dy_obj, op, "grad_output");
        expect_ndim(dya, 4, op, "grad_output", "(N, C, OH, OW)");
        if (in.size() != 4)
          throw py::value_error(op + ": input_shape must have 4 entries, got " +
                                std::to_string(in.size()));
        const AdaptivePool2dShape s =
            adaptive_pool2d_shape(in[0], in[1], in[2], in[3], dya.shape(2), dya.shape(3));
        expect_shape(dya, {s.N, s.C, s.OH, s.OW}, op, "grad_output");
        FArray dy = to_float(dya);
        FArray dx = input_grad(out, in, 4, op, {&dy});
        {
          py::gil_scoped_release nogil;
          adaptive_avg_pool2d_backward(dx.mutable_data(), dy.data(), s);
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("input_shape"), py::arg("out") = py::none());

  // Constant padding of the last two dimensions by (top, bottom, left, right); negative pads
  // crop. The backward takes the input's shape.
  m.def(
      "pad2d_forward",
      [](py::handle x_obj, I4 pad, float value, py::handle out) {
        const std::string op = "pad";
        py::array xa = real_array(x_obj, op, "input");
        const Pad2dShape s = pad_checked(Shape(xa.shape(), xa.shape() + xa.ndim()), pad, op);
        FArray x = to_float(xa);
        Shape ys(x.shape(), x.shape() + x.ndim());
        ys[ys.size() - 2] = s.OH;
        ys.back() = s.OW;
        FArray y = output<float>(out, ys, op, "out", {&x});
        {
          py::gil_scoped_release nogil;
          pad2d_forward(y.mutable_data(), x.data(), s, value);
        }
        return y;
      },
      py::arg("x"), py::arg("padding"), py::arg("value") = 0.0f, py::arg("out") = py::none());
  m.def(
      "pad2d_backward",
      [](py::handle dy_obj, std::vector<int64_t> in, I4 pad, py::handle out) {
        const std::string op = "pad_backward";
        const Pad2dShape s = pad_checked(in, pad, op);
        Shape ys(in.begin(), in.end());
        ys[ys.size() - 2] = s.OH;
        ys.back() = s.OW;
        FArray dy = as_float_shaped(dy_obj, ys, op, "grad_output");
        FArray dx = input_grad(out, in, in.size(), op, {&dy});
        {
          py::gil_scoped_release nogil;
          pad2d_backward(dx.mutable_data(), dy.data(), s);
        }
        return dx;
      },
      py::arg("grad_output"), py::arg("input_shape"), py::arg("padding"),
      py::arg("out") = py::none());
  // === end of batch norm ... padding =========================================================
}
