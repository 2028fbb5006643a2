/* The compiled CPU path's small C library (defocus_xai/defocus/native.py loads it with ctypes):
 * the two order statistics of the per-image percentile; the double threshold with hysteresis
 * followed by the list of edge pixels, in one pass over each image instead of the many small torch
 * operations of defocus_xai.defocus.edges.hysteresis; the guided filter's coefficients upsampled and
 * applied to the gray image. Plain C (C++-compatible), no dependencies; the first two equal the
 * torch code's results exactly, the last F.interpolate's within float rounding
 * (tests/test_defocus_native.py). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "edge_pixels.c reads bytes as little-endian words"
#endif

#ifdef __cplusplus
extern "C" {
#endif

static void swap_f(float *a, int64_t i, int64_t j) {
    float t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* The k-th smallest of a[0 .. n) (quickselect, Hoare partition around a median of three); a is
 * reordered so that every element after position k is >= a[k]. The inner scans are bounded, so
 * NaN (an input the caller refuses afterwards) gives a meaningless value, never a bad access. */
static float kth_smallest(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo]) swap_f(a, lo, mid);
        if (a[hi] < a[lo]) swap_f(a, lo, hi);
        if (a[hi] < a[mid]) swap_f(a, mid, hi);
        const float pivot = a[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (i <= hi && a[i] < pivot) i++;
            while (j >= lo && a[j] > pivot) j--;
            if (i <= j) {
                swap_f(a, i, j);
                i++;
                j--;
            }
        }
        if (k <= j) {
            hi = j;
        } else if (k >= i) {
            lo = i;
        } else {
            return a[k];            /* between the two parts: equal to the pivot */
        }
    }
    return a[k];
}

/* An unsigned key with the order of the floats (negative ones reversed). */
static uint32_t order_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* For each row b of values (B, n): out[2 b] = its below-th smallest value and out[2 b + 1] its
 * above-th (0-based ranks, below <= above <= below + 1 < n). A histogram of the top 12 bits of the
 * order keys finds the bin of rank below; its members (copied to scratch, room for n floats) are
 * selected among exactly (two passes over the row instead of a sort). */
void order_statistics(const float *values, int64_t B, int64_t n, int64_t below, int64_t above,
                      float *scratch, float *out) {
    int64_t hist[4096];
    for (int64_t b = 0; b < B; ++b) {
        const float *v = values + b * n;
        memset(hist, 0, sizeof hist);
        for (int64_t p = 0; p < n; ++p) hist[order_key(v[p]) >> 20]++;
        int64_t before = 0;            /* values in the bins below the one of rank `below` */
        uint32_t bin = 0;
        while (before + hist[bin] <= below) before += hist[bin++];
        int64_t m = 0;
        for (int64_t p = 0; p < n; ++p)
            if (order_key(v[p]) >> 20 == bin) scratch[m++] = v[p];
        const int64_t k = below - before;
        const float first = kth_smallest(scratch, m, k);
        float second = first;
        if (above > below) {
            if (k + 1 < m) {           /* after the selection, the rest of the bin is >= first */
                second = scratch[k + 1];
                for (int64_t p = k + 2; p < m; ++p)
                    if (scratch[p] < second) second = scratch[p];
            } else {                   /* the smallest value of the bins above */
                uint32_t best = 0xFFFFFFFFu;
                for (int64_t p = 0; p < n; ++p) {
                    const uint32_t key = order_key(v[p]);
                    if (key >> 20 > bin && key <= best) {
                        best = key;
                        second = v[p];
                    }
                }
            }
        }
        out[2 * b] = first;
        out[2 * b + 1] = second;
    }
}

/* Eight bytes as one little-endian word: byte j of the word is bits 8 j to 8 j + 7. */
static uint64_t word_at(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* Double threshold and hysteresis on (B, H, W) maps: a pixel with peaks != 0 is strong when
 * mag >= hi[b], weak when mag >= lo[b]; kept are the strong pixels and the weak ones joined to a
 * strong one by a chain of weak 8-neighbours (the exact components of edges.hysteresis, by a flood
 * fill from the strong pixels). mag's pixel (b, y, x) is at mag[b mag_image + y mag_row + x]; peaks
 * and edges are contiguous. Writes edges (B, H, W) as 0 / 1, and for each kept pixel, in
 * ascending order (room for B H W each): idx, its flat index into (B, H, W); centre, into the maps
 * framed by `frame` pixels on each side, (B, H + 2 frame, W + 2 frame); block, the flat index of its
 * 2 x 2 block on the (B, ceil(H / 2), ceil(W / 2)) grid. stack: scratch for H W indices. Returns
 * the number of kept pixels. */
int64_t edge_pixels(const float *mag, int64_t mag_image, int64_t mag_row, const uint8_t *peaks,
                    const float *lo, const float *hi, int64_t B, int64_t H, int64_t W, int64_t frame,
                    uint8_t *edges, int64_t *stack, int64_t *idx, int64_t *centre, int64_t *block) {
    const int64_t Hp = H + 2 * frame, Wp = W + 2 * frame, h = (H + 1) / 2, w = (W + 1) / 2;
    const int64_t n = H * W;
    int64_t count = 0;
    for (int64_t b = 0; b < B; ++b) {
        const uint8_t *pk = peaks + b * n;
        uint8_t *e = edges + b * n;
        int64_t *cand = idx + count;   /* this image's weak and strong pixels, in order */
        const float low = lo[b], high = hi[b];
        /* 0: off, 1: weak (not yet reached), 2: strong or reached */
        for (int64_t y = 0; y < H; ++y) {
            const float *m = mag + b * mag_image + y * mag_row;
            const uint8_t *pr = pk + y * W;
            uint8_t *er = e + y * W;
            for (int64_t x = 0; x < W; ++x)
                er[x] = (uint8_t)((pr[x] != 0) * ((m[x] >= low) + (m[x] >= high)));
        }
        int64_t c = 0, top = 0;
        for (int64_t start = 0; start < n; start += 8) {
            if (start + 8 <= n) {      /* the nonzero bytes of each nonzero 8-byte word */
                uint64_t bits = word_at(e + start);
                while (bits) {
                    const int byte = __builtin_ctzll(bits) >> 3;
                    bits &= ~((uint64_t)0xFF << (8 * byte));
                    cand[c++] = start + byte;
                }
            } else {
                for (int64_t p = start; p < n; ++p)
                    if (e[p]) cand[c++] = p;
            }
        }
        for (int64_t i = 0; i < c; ++i)
            if (e[cand[i]] == 2) stack[top++] = cand[i];
        while (top > 0) {
            const int64_t p = stack[--top], y = p / W, x = p - y * W;
            for (int64_t yy = y - 1; yy <= y + 1; ++yy) {
                if (yy < 0 || yy >= H) continue;
                for (int64_t xx = x - 1; xx <= x + 1; ++xx) {
                    if (xx < 0 || xx >= W) continue;
                    const int64_t q = yy * W + xx;
                    if (e[q] == 1) {
                        e[q] = 2;
                        stack[top++] = q;
                    }
                }
            }
        }
        int64_t kept = 0;
        for (int64_t i = 0; i < c; ++i) {
            const int64_t p = cand[i];
            const uint8_t keep = e[p] == 2;
            e[p] = keep;
            if (keep) {
                const int64_t y = p / W, x = p - y * W, k = count + kept++;
                idx[k] = b * n + p;    /* k <= count + i: cand's entries not yet read stay */
                centre[k] = (b * Hp + y + frame) * Wp + x + frame;
                block[k] = (b * h + y / 2) * w + x / 2;
            }
        }
        count += kept;
    }
    return count;
}

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

#ifdef __cplusplus
}
#endif
