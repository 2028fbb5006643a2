/* The compiled CPU path's C library, part 2 (see edge_pixels.c): the guided propagation at half
 * resolution (block means, normalized fill with push-pull, the guided filter's coefficients) and
 * its last step on the full grid (the coefficients upsampled bilinearly and applied to the gray
 * image), as defocus_xai.defocus.propagation computes them, within float rounding
 * (tests/test_defocus_native.py). Plain C (C++-compatible), no dependencies. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bilinear source index and weights along one dimension (F.interpolate, align_corners=False):
 * output o reads inputs i0[o], i1[o] with weights w0[o], w1[o]; the source position with one
 * rounding, as torch's CPU kernel computes it. */
static void linear_taps(int64_t n_in, int64_t n_out, int64_t *i0, int64_t *i1, float *w0, float *w1) {
    const float scale = (float)n_in / (float)n_out;
    for (int64_t o = 0; o < n_out; ++o) {
        float src = fmaf(scale, (float)o + 0.5f, -0.5f);
        if (src < 0.0f) src = 0.0f;
        int64_t i = (int64_t)src;
        if (i > n_in - 1) i = n_in - 1;
        float lam = src - (float)i;
        lam = lam < 0.0f ? 0.0f : (lam > 1.0f ? 1.0f : lam);
        i0[o] = i;
        i1[o] = i < n_in - 1 ? i + 1 : i;
        w0[o] = 1.0f - lam;
        w1[o] = lam;
    }
}

/* dense[b] = clamp(A * gray[b] + C, 0, vmax), where A and C are coef[b, 0] and coef[b, 1] (h, w)
 * upsampled bilinearly to (H, W) (F.interpolate, align_corners=False): along the width first (rows
 * of the small grid, into a scratch of 2 h W floats), then along the height (whole rows). coef
 * (B, 2, h, w), gray and dense (B, H, W), contiguous. Returns 0, or -1 when out of memory. */
int apply_coefficients(const float *coef, const float *gray, int64_t B, int64_t h, int64_t w,
                       int64_t H, int64_t W, float vmax, float *dense) {
    int64_t *ix = (int64_t *)malloc(sizeof(int64_t) * 2 * (W + H));
    float *wx = (float *)malloc(sizeof(float) * 2 * (W + H));
    float *across = (float *)malloc(sizeof(float) * 2 * h * W);
    if (!ix || !wx || !across) {
        free(ix);
        free(wx);
        free(across);
        return -1;
    }
    int64_t *jx0 = ix, *jx1 = ix + W, *iy0 = ix + 2 * W, *iy1 = iy0 + H;
    float *ux0 = wx, *ux1 = wx + W, *vy0 = wx + 2 * W, *vy1 = vy0 + H;
    linear_taps(w, W, jx0, jx1, ux0, ux1);
    linear_taps(h, H, iy0, iy1, vy0, vy1);
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t r = 0; r < 2 * h; ++r) {          /* both maps' rows */
            const float *src = coef + (b * 2 * h + r) * w;
            float *dst = across + r * W;
            for (int64_t x = 0; x < W; ++x) dst[x] = ux0[x] * src[jx0[x]] + ux1[x] * src[jx1[x]];
        }
        for (int64_t y = 0; y < H; ++y) {
            const float *a0 = across + iy0[y] * W, *a1 = across + iy1[y] * W;
            const float *c0 = across + (h + iy0[y]) * W, *c1 = across + (h + iy1[y]) * W;
            const float v0 = vy0[y], v1 = vy1[y];
            const float *g = gray + (b * H + y) * W;
            float *d = dense + (b * H + y) * W;
            for (int64_t x = 0; x < W; ++x) {
                const float value = (v0 * a0[x] + v1 * a1[x]) * g[x] + (v0 * c0[x] + v1 * c1[x]);
                d[x] = value < 0.0f ? 0.0f : (value > vmax ? vmax : value);
            }
        }
    }
    free(ix);
    free(wx);
    free(across);
    return 0;
}

/* Reflected index (the edge not repeated) of i in [-(n - 1), 2 n - 2]. */
static int64_t reflect(int64_t i, int64_t n) {
    return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

/* Sums over 2 x 2 blocks of x (h, w) into s (ceil(h / 2), ceil(w / 2)), rows first, zero past the
 * bottom and right; count (optional): the pixels in each block. */
static void pool_sums(const float *x, int64_t h, int64_t w, float *s, float *count) {
    const int64_t hh = (h + 1) / 2, ww = (w + 1) / 2, full = w / 2;
    for (int64_t i = 0; i < hh; ++i) {
        const float *r0 = x + 2 * i * w;
        float *o = s + i * ww;
        if (2 * i + 1 < h) {
            const float *r1 = r0 + w;
            for (int64_t j = 0; j < full; ++j)
                o[j] = (r0[2 * j] + r1[2 * j]) + (r0[2 * j + 1] + r1[2 * j + 1]);
            if (full < ww) o[full] = (r0[2 * full] + r1[2 * full]) + 0.0f;
        } else {
            for (int64_t j = 0; j < full; ++j) o[j] = (r0[2 * j] + 0.0f) + (r0[2 * j + 1] + 0.0f);
            if (full < ww) o[full] = (r0[2 * full] + 0.0f) + 0.0f;
        }
        if (count)
            for (int64_t j = 0; j < ww; ++j)
                count[i * ww + j] = (float)((2 * i + 1 < h ? 2 : 1) * (j < full ? 2 : 1));
    }
}

/* Symmetric taps w[0 .. 2 r] along the rows then the columns of x (h, w), reflect padding
 * (r < h, w), into out; tmp: h w floats. Each output accumulates x w[r], then the pairs at distance
 * 1 .. r (the loops run over whole rows, so that they vectorize). */
static void blur_2d(const float *x, int64_t h, int64_t w, const float *taps, int64_t r, float *tmp,
                    float *out) {
    for (int64_t y = 0; y < h; ++y) {
        const float *row = x + y * w;
        float *o = tmp + y * w;
        for (int64_t c = 0; c < w; ++c) o[c] = row[c] * taps[r];
        for (int64_t j = 1; j <= r; ++j) {
            const float t = taps[r + j];
            for (int64_t c = 0; c < j; ++c)
                o[c] += (row[reflect(c - j, w)] + row[reflect(c + j, w)]) * t;
            for (int64_t c = j; c < w - j; ++c) o[c] += (row[c - j] + row[c + j]) * t;
            for (int64_t c = w - j > j ? w - j : j; c < w; ++c)
                o[c] += (row[c - j] + row[reflect(c + j, w)]) * t;
        }
    }
    for (int64_t y = 0; y < h; ++y) {
        float *o = out + y * w;
        const float *mid = tmp + y * w;
        for (int64_t c = 0; c < w; ++c) o[c] = mid[c] * taps[r];
        for (int64_t j = 1; j <= r; ++j) {
            const float t = taps[r + j];
            const float *up = tmp + reflect(y - j, h) * w, *down = tmp + reflect(y + j, h) * w;
            for (int64_t c = 0; c < w; ++c) o[c] += (up[c] + down[c]) * t;
        }
    }
}

/* Sums of k consecutive values of row, o[c] = row[c + d] + row[c + d + 1] + ... (left to right),
 * for c in [lo, hi), where every index is inside the row: one pass (k = 3, 5, 7 unrolled). */
static void window_sums(const float *row, int64_t d, int64_t k, int64_t lo, int64_t hi, float *o) {
    const float *p = row + d;
    switch (k) {
    case 3:
        for (int64_t c = lo; c < hi; ++c) o[c] = (p[c] + p[c + 1]) + p[c + 2];
        return;
    case 5:
        for (int64_t c = lo; c < hi; ++c) o[c] = (((p[c] + p[c + 1]) + p[c + 2]) + p[c + 3]) + p[c + 4];
        return;
    case 7:
        for (int64_t c = lo; c < hi; ++c)
            o[c] = (((((p[c] + p[c + 1]) + p[c + 2]) + p[c + 3]) + p[c + 4]) + p[c + 5]) + p[c + 6];
        return;
    default:
        for (int64_t c = lo; c < hi; ++c) o[c] = p[c] + p[c + 1];
        for (int64_t j = 2; j < k; ++j)
            for (int64_t c = lo; c < hi; ++c) o[c] += p[c + j];
    }
}

/* Means over (2 r + 1)^2 windows of x (h, w), reflect padding (r < h, w), along the rows then the
 * columns, each window's sum accumulated from its first element on, into out; tmp: h w floats. */
static void box_mean(const float *x, int64_t h, int64_t w, int64_t r, float *tmp, float *out) {
    const int64_t k = 2 * r + 1;
    const float scale = 1.0f / (float)(k * k);
    for (int64_t y = 0; y < h; ++y) {
        const float *row = x + y * w;
        float *o = tmp + y * w;
        for (int64_t c = 0; c < w; ++c) {
            if (c == r && w - r > r) {             /* the interior: no reflection */
                window_sums(row, -r, k, r, w - r, o);
                c = w - r - 1;
                continue;
            }
            float acc = row[reflect(c - r, w)] + row[reflect(c - r + 1, w)];
            for (int64_t j = 2; j < k; ++j) acc += row[reflect(c - r + j, w)];
            o[c] = acc;
        }
    }
    for (int64_t y = 0; y < h; ++y) {
        float *o = out + y * w;
        const float *r0 = tmp + reflect(y - r, h) * w, *r1 = tmp + reflect(y - r + 1, h) * w;
        if (k == 5) {
            const float *r2 = tmp + reflect(y - r + 2, h) * w, *r3 = tmp + reflect(y - r + 3, h) * w;
            const float *r4 = tmp + reflect(y - r + 4, h) * w;
            for (int64_t c = 0; c < w; ++c) o[c] = ((((r0[c] + r1[c]) + r2[c]) + r3[c]) + r4[c]) * scale;
            continue;
        }
        for (int64_t c = 0; c < w; ++c) o[c] = r0[c] + r1[c];
        for (int64_t j = 2; j < k; ++j) {
            const float *rj = tmp + reflect(y - r + j, h) * w;
            for (int64_t c = 0; c < w; ++c) o[c] += rj[c];
        }
        for (int64_t c = 0; c < w; ++c) o[c] *= scale;
    }
}

/* Normalized fill with push-pull of num / den (h, w) into val, as propagation.normalized_fill (the
 * Gaussian taps, radius rb, at this grid; levels pooled by 2 down to one pixel, then each level's
 * confident value blended with the bilinear upsampling of the coarser one, along the width first,
 * then the height, as torch's kernel). work: 7 h w floats; index: 2 w integers. */
static void normalized_fill(const float *num, const float *den, int64_t h, int64_t w,
                            const float *taps, int64_t rb, float *work, int64_t *index, float *val) {
    float *lev[64];
    int64_t hs[64], ws[64], n_lev = 1;
    float *tmp = work, *across = work + h * w, *next = work + 2 * h * w;
    lev[0] = next;
    hs[0] = h;
    ws[0] = w;
    blur_2d(num, h, w, taps, rb, tmp, lev[0]);
    blur_2d(den, h, w, taps, rb, tmp, lev[0] + h * w);
    next += 2 * h * w;
    while ((hs[n_lev - 1] < ws[n_lev - 1] ? hs[n_lev - 1] : ws[n_lev - 1]) > 1 && n_lev < 64) {
        const int64_t ph = hs[n_lev - 1], pw = ws[n_lev - 1], nh = (ph + 1) / 2, nw = (pw + 1) / 2;
        lev[n_lev] = next;
        pool_sums(lev[n_lev - 1], ph, pw, next, tmp);
        pool_sums(lev[n_lev - 1] + ph * pw, ph, pw, next + nh * nw, NULL);
        for (int64_t p = 0; p < nh * nw; ++p) {
            const float f = 4.0f / tmp[p];           /* partial blocks rescaled to four pixels */
            next[p] *= f;
            next[nh * nw + p] *= f;
        }
        hs[n_lev] = nh;
        ws[n_lev] = nw;
        next += 2 * nh * nw;
        ++n_lev;
    }
    const int64_t top = n_lev - 1, tn = hs[top] * ws[top];
    float sn = 0.0f, sd = 0.0f;
    for (int64_t p = 0; p < tn; ++p) {
        sn += lev[top][p];
        sd += lev[top][tn + p];
    }
    const float current = sd > 0.0f ? sn / (sd > 1e-12f ? sd : 1e-12f) : 0.0f;
    float *up = tmp, *row_up = next;           /* the coarser level's values; one upsampled row */
    int64_t uh = 1, uw = 1;
    up[0] = current;
    int64_t *x0 = index, *x1 = index + w;
    float *wx0 = row_up + w, *wx1 = row_up + 2 * w;
    for (int64_t l = top - 1; l >= 0; --l) {
        const int64_t lh = hs[l], lw = ws[l];
        float *dst = l == 0 ? val : row_up + 3 * w;
        const int single = uh * uw == 1;        /* one value: expanded, as torch */
        if (!single) {
            linear_taps(uw, lw, x0, x1, wx0, wx1);
            for (int64_t i = 0; i < uh; ++i)
                for (int64_t x = 0; x < lw; ++x)
                    across[i * lw + x] = wx0[x] * up[i * uw + x0[x]] + wx1[x] * up[i * uw + x1[x]];
        }
        const float ys = (float)uh / (float)lh;
        for (int64_t y = 0; y < lh; ++y) {
            if (single) {
                for (int64_t x = 0; x < lw; ++x) row_up[x] = up[0];
            } else {
                float sy = fmaf(ys, (float)y + 0.5f, -0.5f);
                if (sy < 0.0f) sy = 0.0f;
                int64_t y0 = (int64_t)sy;
                if (y0 > uh - 1) y0 = uh - 1;
                const int64_t y1 = y0 < uh - 1 ? y0 + 1 : y0;
                float hy1 = sy - (float)y0;
                hy1 = hy1 < 0.0f ? 0.0f : (hy1 > 1.0f ? 1.0f : hy1);
                const float hy0 = 1.0f - hy1;
                const float *a0 = across + y0 * lw, *a1 = across + y1 * lw;
                for (int64_t x = 0; x < lw; ++x) row_up[x] = hy0 * a0[x] + hy1 * a1[x];
            }
            const float *n = lev[l] + y * lw, *d = lev[l] + lh * lw + y * lw;
            float *o = dst + y * lw;
            for (int64_t x = 0; x < lw; ++x) {
                const float c = d[x] < 0.0f ? 0.0f : (d[x] > 1.0f ? 1.0f : d[x]);
                const float mean = n[x] / (d[x] > 1e-12f ? d[x] : 1e-12f);
                const float blended = c * mean + (1.0f - c) * row_up[x];
                o[x] = d[x] > 0.0f ? blended : row_up[x];
            }
        }
        memcpy(up, dst, sizeof(float) * (size_t)(lh * lw));   /* the next level's `up` */
        uh = lh;
        uw = lw;
    }
    if (top == 0)
        for (int64_t p = 0; p < h * w; ++p) val[p] = current;
}

/* The guided propagation's linear coefficients (fast_graphs.back): from the block sums of
 * sigma weight and weight, sums (2, B, h, w), and the gray image (B, H, W) (h, w = ceil(H / 2),
 * ceil(W / 2)): the block means, the normalized fill (Gaussian taps blur, radius rb), the guided
 * filter's a and b over (2 r + 1)^2 windows with eps, box-averaged, into coef (B, 2, h, w).
 * Returns 0, or -1 when out of memory. */
int guided_coefficients(const float *sums, const float *gray, int64_t B, int64_t H, int64_t W,
                        const float *blur, int64_t rb, int64_t r, float eps, float *coef) {
    const int64_t h = (H + 1) / 2, w = (W + 1) / 2, n = h * w;
    float *buf = (float *)malloc(sizeof(float) * (size_t)(20 * n + 8 * w + 64));
    int64_t *index = (int64_t *)malloc(sizeof(int64_t) * (size_t)(2 * w));
    if (!buf || !index) {
        free(buf);
        free(index);
        return -1;
    }
    float *count = buf, *small = buf + n, *num = buf + 2 * n, *den = buf + 3 * n;
    float *filled = buf + 4 * n, *stack = buf + 5 * n, *work = buf + 9 * n;
    for (int64_t b = 0; b < B; ++b) {
        const float *sn = sums + b * n, *sd = sums + (B + b) * n;
        pool_sums(gray + b * H * W, H, W, small, count);
        for (int64_t p = 0; p < n; ++p) {
            const float dm = sd[p] / count[p], dk = dm * 4.0f;
            small[p] /= count[p];
            num[p] = sn[p] / count[p] / (dm > 1e-12f ? dm : 1e-12f) * dk;
            den[p] = dk;
        }
        normalized_fill(num, den, h, w, blur, rb, work, index, filled);
        for (int64_t p = 0; p < n; ++p) {
            stack[p] = small[p] * filled[p];
            stack[n + p] = small[p] * small[p];
        }
        float *mi = work, *mp = work + n, *cip = work + 2 * n, *cii = work + 3 * n, *tmp = work + 4 * n;
        box_mean(small, h, w, r, tmp, mi);
        box_mean(filled, h, w, r, tmp, mp);
        box_mean(stack, h, w, r, tmp, cip);
        box_mean(stack + n, h, w, r, tmp, cii);
        float *a = stack, *bb = stack + n;
        for (int64_t p = 0; p < n; ++p) {
            float var = cii[p] - mi[p] * mi[p];
            var = var < 0.0f ? 0.0f : var;
            a[p] = (cip[p] - mi[p] * mp[p]) / (var + eps);
            bb[p] = mp[p] - a[p] * mi[p];
        }
        box_mean(a, h, w, r, tmp, coef + (2 * b) * n);
        box_mean(bb, h, w, r, tmp, coef + (2 * b + 1) * n);
    }
    free(buf);
    free(index);
    return 0;
}

#ifdef __cplusplus
}
#endif
