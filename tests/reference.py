"""Float64 NumPy references, written from the formulas, that cnnkit's float32 ops are held to.

Nothing here calls cnnkit. Convolution is explicit im2col + einsum; pooling is a loop over
output positions. Padding is given per side: conv and pool take pads = (top, bottom, left,
right) for 2-D and (left, right) for 1-D. Every reference itself is gradchecked by central
finite differences in tests/test_reference.py.
"""
import numpy as np


def f64(a):
    return np.asarray(a, dtype=np.float64)


# --- convolution ----------------------------------------------------------------------------

def conv2d_out_size(size, k, stride, pad_before, pad_after, dilation):
    return (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def _conv2d_cols(x, KH, KW, stride, pads, dilation):
    """im2col: cols[n, c, kh, kw, oh, ow] = xpad[n, c, oh*SH + kh*DH, ow*SW + kw*DW]."""
    N, C, H, W = x.shape
    SH, SW = stride
    PT, PB, PL, PR = pads
    DH, DW = dilation
    OH = conv2d_out_size(H, KH, SH, PT, PB, DH)
    OW = conv2d_out_size(W, KW, SW, PL, PR, DW)
    xp = np.pad(x, ((0, 0), (0, 0), (PT, PB), (PL, PR)))
    cols = np.empty((N, C, KH, KW, OH, OW))
    for kh in range(KH):
        for kw in range(KW):
            h0, w0 = kh * DH, kw * DW
            cols[:, :, kh, kw] = xp[:, :, h0:h0 + SH * (OH - 1) + 1:SH, w0:w0 + SW * (OW - 1) + 1:SW]
    return cols, OH, OW


def conv2d(x, w, b=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """y[n, o, i, j] = b[o] + sum_{c, kh, kw} xpad[n, g*C/G + c, i*SH + kh*DH, j*SW + kw*DW] * w[o, c, kh, kw]
    for w (OC, C/G, KH, KW): output channel o of group g = o // (OC/G) sums its C/G channels c."""
    x, w = f64(x), f64(w)
    G, (N, C), OC = groups, x.shape[:2], w.shape[0]
    cols, OH, OW = _conv2d_cols(x, w.shape[2], w.shape[3], stride, pads, dilation)
    cols = cols.reshape((N, G, C // G) + cols.shape[2:])  # not -1: N may be 0
    y = np.einsum("ngckhij,gockh->ngoij", cols, w.reshape((G, OC // G) + w.shape[1:]))
    y = y.reshape(N, OC, OH, OW)
    if b is not None:
        y += f64(b)[None, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """(dx, dw, db) of conv2d for upstream gradient dy."""
    dy, x, w = f64(dy), f64(x), f64(w)
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    G = groups
    SH, SW = stride
    PT, PB, PL, PR = pads
    DH, DW = dilation
    cols, OH, OW = _conv2d_cols(x, KH, KW, stride, pads, dilation)
    cols = cols.reshape((N, G, C // G) + cols.shape[2:])
    dyg = dy.reshape(N, G, OC // G, OH, OW)
    wg = w.reshape((G, OC // G) + w.shape[1:])
    dw = np.einsum("ngckhij,ngoij->gockh", cols, dyg).reshape(w.shape)
    dcols = np.einsum("ngoij,gockh->ngckhij", dyg, wg).reshape(N, C, KH, KW, OH, OW)
    dxp = np.zeros((N, C, H + PT + PB, W + PL + PR))
    for kh in range(KH):
        for kw in range(KW):
            h0, w0 = kh * DH, kw * DW
            dxp[:, :, h0:h0 + SH * (OH - 1) + 1:SH, w0:w0 + SW * (OW - 1) + 1:SW] += dcols[:, :, kh, kw]
    dx = dxp[:, :, PT:PT + H, PL:PL + W]
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


def conv1d(x, w, b=None, stride=1, pads=(0, 0), dilation=1, groups=1):
    """conv2d with H = KH = 1 on x (N, C, L), w (OC, C/G, K)."""
    y = conv2d(f64(x)[:, :, None, :], f64(w)[:, :, None, :], b, (1, stride), (0, 0) + tuple(pads),
               (1, dilation), groups)
    return y[:, :, 0, :]


def conv1d_backward(dy, x, w, stride=1, pads=(0, 0), dilation=1, groups=1):
    dx, dw, db = conv2d_backward(f64(dy)[:, :, None, :], f64(x)[:, :, None, :],
                                 f64(w)[:, :, None, :], (1, stride), (0, 0) + tuple(pads),
                                 (1, dilation), groups)
    return dx[:, :, 0, :], dw[:, :, 0, :], db


# --- pooling --------------------------------------------------------------------------------

def _pool_out(size, k, stride, before, after):
    return (size + before + after - k) // stride + 1


def max_pool2d(x, kernel, stride, pads=(0, 0, 0, 0)):
    """(y, indices): max over each window with padding as -inf; indices are flat h * W + w in
    the input plane of the first maximum (a NaN wins)."""
    x = f64(x)
    N, C, H, W = x.shape
    KH, KW = kernel
    SH, SW = stride
    PT, PB, PL, PR = pads
    OH, OW = _pool_out(H, KH, SH, PT, PB), _pool_out(W, KW, SW, PL, PR)
    xp = np.pad(x, ((0, 0), (0, 0), (PT, PB), (PL, PR)), constant_values=-np.inf)
    y = np.empty((N, C, OH, OW))
    idx = np.empty((N, C, OH, OW), dtype=np.int64)
    for i in range(OH):
        for j in range(OW):
            win = xp[:, :, i * SH:i * SH + KH, j * SW:j * SW + KW].reshape(N, C, KH * KW)
            nan = np.isnan(win)
            # first maximum, but a NaN wins (its last occurrence, as PyTorch's running update)
            k = np.where(nan.any(-1), KH * KW - 1 - np.argmax(nan[..., ::-1], -1), np.argmax(win, -1))
            y[:, :, i, j] = np.take_along_axis(win, k[..., None], -1)[..., 0]
            h = i * SH + k // KW - PT
            w = j * SW + k % KW - PL
            idx[:, :, i, j] = h * W + w
    return y, idx


def max_pool2d_backward(dy, idx, input_shape):
    dy = f64(dy)
    N, C, H, W = input_shape
    dx = np.zeros((N * C, H * W))
    plane = dy.shape[-1] * dy.shape[-2]  # not -1: N may be 0
    flat_dy = dy.reshape(N * C, plane)
    flat_idx = np.asarray(idx).reshape(N * C, plane)
    for p in range(N * C):
        np.add.at(dx[p], flat_idx[p], flat_dy[p])
    return dx.reshape(input_shape)


def _avg_divisors(H, W, kernel, stride, pads, count_include_pad):
    KH, KW = kernel
    SH, SW = stride
    PT, PB, PL, PR = pads
    OH, OW = _pool_out(H, KH, SH, PT, PB), _pool_out(W, KW, SW, PL, PR)
    if count_include_pad:
        return np.full((OH, OW), float(KH * KW))
    ones = np.pad(np.ones((H, W)), ((PT, PB), (PL, PR)))
    d = np.empty((OH, OW))
    for i in range(OH):
        for j in range(OW):
            d[i, j] = ones[i * SH:i * SH + KH, j * SW:j * SW + KW].sum()
    return d


def avg_pool2d(x, kernel, stride, pads=(0, 0, 0, 0), count_include_pad=True):
    x = f64(x)
    N, C, H, W = x.shape
    KH, KW = kernel
    SH, SW = stride
    PT, PB, PL, PR = pads
    div = _avg_divisors(H, W, kernel, stride, pads, count_include_pad)
    OH, OW = div.shape
    xp = np.pad(x, ((0, 0), (0, 0), (PT, PB), (PL, PR)))
    y = np.empty((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            y[:, :, i, j] = xp[:, :, i * SH:i * SH + KH, j * SW:j * SW + KW].sum(axis=(2, 3)) / div[i, j]
    return y


def avg_pool2d_backward(dy, input_shape, kernel, stride, pads=(0, 0, 0, 0), count_include_pad=True):
    dy = f64(dy)
    N, C, H, W = input_shape
    KH, KW = kernel
    SH, SW = stride
    PT, PB, PL, PR = pads
    div = _avg_divisors(H, W, kernel, stride, pads, count_include_pad)
    OH, OW = div.shape
    dxp = np.zeros((N, C, H + PT + PB, W + PL + PR))
    for i in range(OH):
        for j in range(OW):
            dxp[:, :, i * SH:i * SH + KH, j * SW:j * SW + KW] += (dy[:, :, i, j] / div[i, j])[:, :, None, None]
    return dxp[:, :, PT:PT + H, PL:PL + W]


def max_pool1d(x, kernel, stride, pads=(0, 0)):
    y, idx = max_pool2d(f64(x)[:, :, None, :], (1, kernel), (1, stride), (0, 0) + tuple(pads))
    return y[:, :, 0, :], idx[:, :, 0, :]


def avg_pool1d(x, kernel, stride, pads=(0, 0), count_include_pad=True):
    return avg_pool2d(f64(x)[:, :, None, :], (1, kernel), (1, stride), (0, 0) + tuple(pads),
                      count_include_pad)[:, :, 0, :]


def avg_pool1d_backward(dy, input_shape, kernel, stride, pads=(0, 0), count_include_pad=True):
    N, C, L = input_shape
    dx = avg_pool2d_backward(f64(dy)[:, :, None, :], (N, C, 1, L), (1, kernel), (1, stride),
                             (0, 0) + tuple(pads), count_include_pad)
    return dx[:, :, 0, :]


def global_avg_pool2d(x):
    return f64(x).mean(axis=(2, 3))


def global_avg_pool2d_backward(dy, input_shape):
    N, C, H, W = input_shape
    return np.broadcast_to(f64(dy)[:, :, None, None] / (H * W), input_shape).copy()


# --- dense, activations, softmax, loss --------------------------------------------------------

def linear(x, w, b=None):
    y = f64(x) @ f64(w).T
    return y + f64(b) if b is not None else y


def linear_backward(dy, x, w):
    dy, x, w = f64(dy), f64(x), f64(w)
    dy2, x2 = dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1])
    return dy @ w, dy2.T @ x2, dy2.sum(axis=0)


def relu(x):
    return np.maximum(f64(x), 0.0)


def relu_backward(dy, y):
    return f64(dy) * (f64(y) > 0)


def sigmoid(x):
    x = f64(x)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def sigmoid_backward(dy, y):
    y = f64(y)
    return f64(dy) * y * (1.0 - y)


def tanh(x):
    return np.tanh(f64(x))


def tanh_backward(dy, y):
    y = f64(y)
    return f64(dy) * (1.0 - y * y)


def softmax(x, axis=-1):
    x = f64(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(dy, y, axis=-1):
    dy, y = f64(dy), f64(y)
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def cross_entropy(logits, labels):
    """mean_n [logsumexp(logits[n]) - logits[n, labels[n]]]."""
    x = f64(logits)
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    labels = np.asarray(labels, dtype=np.int64)
    return float(np.mean(lse - x[np.arange(len(labels)), labels]))


def cross_entropy_backward(logits, labels, grad=1.0):
    p = softmax(logits, axis=1)
    labels = np.asarray(labels, dtype=np.int64)
    p[np.arange(len(labels)), labels] -= 1.0
    return p * grad / len(labels)


def soft_cross_entropy(logits, target):
    """mean_n [-sum_k target[n, k] * log_softmax(logits)[n, k]] for class probabilities target (N, K)."""
    x, t = f64(logits), f64(target)
    m = x.max(axis=1, keepdims=True)
    lsm = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    return float(np.mean(-(t * lsm).sum(axis=1)))


def soft_cross_entropy_backward(logits, target, grad=1.0):
    """(softmax(logits) * sum_k target[n, k] - target) * grad / N."""
    t = f64(target)
    return (softmax(logits, axis=1) * t.sum(axis=1, keepdims=True) - t) * grad / t.shape[0]


def bce_logits(x, t):
    """mean of max(x, 0) - x * t + log1p(exp(-|x|)) over all elements (sigmoid cross-entropy)."""
    x, t = f64(x), f64(t)
    return float(np.mean(np.maximum(x, 0.0) - x * t + np.log1p(np.exp(-np.abs(x)))))


def bce_logits_backward(x, t, grad=1.0):
    """(sigmoid(x) - t) * grad / numel."""
    x, t = f64(x), f64(t)
    return (sigmoid(x) - t) * grad / x.size


def mse(x, t):
    return float(np.mean((f64(x) - f64(t)) ** 2))


def mse_backward(x, t, grad=1.0):
    """2 * (x - t) * grad / numel."""
    x, t = f64(x), f64(t)
    return 2.0 * (x - t) * grad / x.size


# --- dropout, merging branches ------------------------------------------------------------------

def dropout(x, mask):
    """Inverted dropout with a given mask of 0 and 1 / (1 - p) entries: x * mask (the backward
    is dy * mask)."""
    return f64(x) * f64(mask)


def add(a, b):
    return f64(a) + f64(b)


def concat(xs):
    """Concatenation along the channels (axis 1); its backward splits dy at the same sizes."""
    return np.concatenate([f64(x) for x in xs], axis=1)


# --- optimizers ---------------------------------------------------------------------------------

def sgd_step(p, grad, buf, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One torch.optim.SGD step (dampening 0) in float64: (new p, new momentum buffer or None).
    buf is None on the first step."""
    p, d = f64(p), f64(grad)
    d = d + weight_decay * p
    if momentum != 0.0:
        buf = d.copy() if buf is None else momentum * f64(buf) + d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


def adam_step(p, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """One torch.optim.Adam step (L2 weight decay) in float64: (new p, new m, new v); step is
    1-based."""
    p, d = f64(p), f64(grad)
    d = d + weight_decay * p
    m = beta1 * f64(m) + (1.0 - beta1) * d
    v = beta2 * f64(v) + (1.0 - beta2) * d * d
    denom = np.sqrt(v) / np.sqrt(1.0 - beta2 ** step) + eps
    return p - lr / (1.0 - beta1 ** step) * m / denom, m, v


# --- batch normalisation --------------------------------------------------------------------

def _channel(v, ndim):
    """A per-channel vector (C,) shaped to broadcast against (N, C, ...) of rank ndim."""
    return f64(v).reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm_stats(x):
    """(mean, biased variance, unbiased variance) of x (N, C, ...) per channel (axis 1)."""
    x = f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = ((x - _channel(mean, x.ndim)) ** 2).sum(axis=axes) / m
    return mean, var, var * m / (m - 1)


def batch_norm(x, mean, var, weight=None, bias=None, eps=1e-5):
    """y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c] over axis 1 of x (N, C, ...).
    Training passes the batch's mean and biased variance (batch_norm_stats); evaluation the
    running ones."""
    x = f64(x)
    y = (x - _channel(mean, x.ndim)) / np.sqrt(_channel(var, x.ndim) + eps)
    if weight is not None:
        y = y * _channel(weight, x.ndim)
    if bias is not None:
        y = y + _channel(bias, x.ndim)
    return y


def batch_norm_train(x, weight=None, bias=None, eps=1e-5):
    """batch_norm with the batch's own statistics: the function training differentiates."""
    mean, var, _ = batch_norm_stats(x)
    return batch_norm(x, mean, var, weight, bias, eps)


def batch_norm_train_backward(dy, x, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of batch_norm_train: with xhat = (x - mean) * invstd and g = dy *
    weight, dx = invstd * (g - mean(g) - xhat * mean(g * xhat)) (means over N and the plane)."""
    dy, x = f64(dy), f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    mean, var, _ = batch_norm_stats(x)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - _channel(mean, x.ndim)) * _channel(invstd, x.ndim)
    g = dy * (_channel(weight, x.ndim) if weight is not None else 1.0)
    dx = _channel(invstd, x.ndim) * (g - g.mean(axis=axes, keepdims=True)
                                     - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def batch_norm_eval_backward(dy, x, mean, var, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of batch_norm with fixed (running) statistics: an affine map."""
    dy, x = f64(dy), f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    invstd = _channel(1.0 / np.sqrt(f64(var) + eps), x.ndim)
    xhat = (x - _channel(mean, x.ndim)) * invstd
    dx = dy * invstd * (_channel(weight, x.ndim) if weight is not None else 1.0)
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


# --- locally connected ----------------------------------------------------------------------

def locally_connected2d(x, w, b=None, stride=(1, 1), pads=(0, 0, 0, 0)):
    """y[n, o, i, j] = b + sum_{c, kh, kw} xpad[n, c, i*SH + kh, j*SW + kw] * w[i, j, o, c, kh, kw],
    b of shape (OC,) or (OC, OH, OW)."""
    x, w = f64(x), f64(w)
    cols, _, _ = _conv2d_cols(x, w.shape[4], w.shape[5], stride, pads, (1, 1))
    y = np.einsum("nckhij,ijockh->noij", cols, w)
    if b is not None:
        b = f64(b)
        y += b[None, :, None, None] if b.ndim == 1 else b[None]
    return y


def locally_connected2d_backward(dy, x, w, stride=(1, 1), pads=(0, 0, 0, 0), position_bias=False):
    """(dx, dw, db) of locally_connected2d; db (OC, OH, OW) with position_bias, else (OC,)."""
    dy, x, w = f64(dy), f64(x), f64(w)
    N, C, H, W = x.shape
    OH, OW, _, _, KH, KW = w.shape
    SH, SW = stride
    PT, PB, PL, PR = pads
    cols, _, _ = _conv2d_cols(x, KH, KW, stride, pads, (1, 1))
    dw = np.einsum("nckhij,noij->ijockh", cols, dy)
    dcols = np.einsum("noij,ijockh->nckhij", dy, w)
    dxp = np.zeros((N, C, H + PT + PB, W + PL + PR))
    for kh in range(KH):
        for kw in range(KW):
            dxp[:, :, kh:kh + SH * (OH - 1) + 1:SH, kw:kw + SW * (OW - 1) + 1:SW] += dcols[:, :, kh, kw]
    db = dy.sum(axis=0) if position_bias else dy.sum(axis=(0, 2, 3))
    return dxp[:, :, PT:PT + H, PL:PL + W], dw, db


# --- Lp and adaptive pooling, padding -------------------------------------------------------

def lp_pool2d(x, p, kernel, stride):
    """y = (sum over each unpadded window of x ** p) ** (1 / p)."""
    x = f64(x)
    N, C, H, W = x.shape
    (KH, KW), (SH, SW) = kernel, stride
    OH, OW = _pool_out(H, KH, SH, 0, 0), _pool_out(W, KW, SW, 0, 0)
    y = np.empty((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            y[:, :, i, j] = (x[:, :, i * SH:i * SH + KH, j * SW:j * SW + KW] ** p).sum(axis=(2, 3)) ** (1.0 / p)
    return y


def lp_pool2d_backward(dy, x, p, kernel, stride):
    """dx = x^(p-1) * sum over the windows covering x of dy * S^(1/p - 1) (S the window's sum of
    x^p), for windows with S > 0."""
    dy, x = f64(dy), f64(x)
    (KH, KW), (SH, SW) = kernel, stride
    _, _, OH, OW = dy.shape
    ds = np.zeros_like(x)
    for i in range(OH):
        for j in range(OW):
            s = (x[:, :, i * SH:i * SH + KH, j * SW:j * SW + KW] ** p).sum(axis=(2, 3))
            g = np.where(s > 0, dy[:, :, i, j] * np.where(s > 0, s, 1.0) ** (1.0 / p - 1.0), 0.0)
            ds[:, :, i * SH:i * SH + KH, j * SW:j * SW + KW] += g[:, :, None, None]
    return ds * x ** (p - 1.0)


def adaptive_bins(size, out):
    """PyTorch's adaptive pooling bins: [floor(i * size / out), ceil((i + 1) * size / out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    x = f64(x)
    N, C, H, W = x.shape
    OH, OW = output_size
    y = np.empty((N, C, OH, OW))
    for i, (h0, h1) in enumerate(adaptive_bins(H, OH)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, OW)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(dy, input_shape):
    dy = f64(dy)
    N, C, H, W = input_shape
    _, _, OH, OW = dy.shape
    dx = np.zeros(input_shape)
    for i, (h0, h1) in enumerate(adaptive_bins(H, OH)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, OW)):
            dx[:, :, h0:h1, w0:w1] += (dy[:, :, i, j] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
    return dx


def _crop_slices(pads, H, W):
    """Slices of an (H, W) plane kept after cropping by the negative entries of (top, bottom,
    left, right)."""
    t, b, l, r = (max(-p, 0) for p in pads)
    return slice(t, H - b), slice(l, W - r)


def pad2d(x, pads, value=0.0):
    """x (..., H, W) padded with value by (top, bottom, left, right); negative entries crop."""
    x = f64(x)
    hs, ws = _crop_slices(pads, *x.shape[-2:])
    t, b, l, r = (max(p, 0) for p in pads)
    return np.pad(x[..., hs, ws], [(0, 0)] * (x.ndim - 2) + [(t, b), (l, r)], constant_values=value)


def pad2d_backward(dy, input_shape, pads):
    """dx: dy with the padding cut off, zero where the forward cropped."""
    dy = f64(dy)
    H, W = input_shape[-2:]
    hs, ws = _crop_slices(pads, H, W)
    t, b, l, r = (max(p, 0) for p in pads)
    dx = np.zeros(input_shape)
    dx[..., hs, ws] = dy[..., t:dy.shape[-2] - b, l:dy.shape[-1] - r]
    return dx


# --- finite differences ---------------------------------------------------------------------

def numerical_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at float64 x: df/dx, same shape as x."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g
