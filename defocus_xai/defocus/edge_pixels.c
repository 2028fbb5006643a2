/* The compiled CPU path's C library, part 1 (defocus_xai/defocus/native.py builds it with
 * propagation.c and loads it with ctypes): the per-image percentile and thresholds of the edge
 * detector; the double threshold with hysteresis followed by the list of edge pixels, in one pass
 * over each image instead of the many small torch operations of defocus_xai.defocus.edges.hysteresis.
 * Plain C (C++-compatible), no dependencies; hysteresis equals the torch code's result exactly, the
 * thresholds within three float32 ulps (tests/test_defocus_native.py). */
#include <stdint.h>
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

/* The k-th and (k + 1)-th smallest values of v[0 .. n) (k + 1 < n), as from a sort, into *first and
 * *second: a histogram of the top 12 bits of the order keys finds the bin of rank k; its members
 * (copied to scratch, room for n floats) are selected among exactly (two passes over v). */
static void order_pair(const float *v, int64_t n, int64_t k, float *scratch, float *first,
                       float *second) {
    int64_t hist[4096];
    memset(hist, 0, sizeof hist);
    for (int64_t p = 0; p < n; ++p) hist[order_key(v[p]) >> 20]++;
    int64_t before = 0;                /* values in the bins below the one of rank k */
    uint32_t bin = 0;
    while (before + hist[bin] <= k) before += hist[bin++];
    int64_t m = 0;
    for (int64_t p = 0; p < n; ++p)
        if (order_key(v[p]) >> 20 == bin) scratch[m++] = v[p];
    const int64_t j = k - before;
    *first = kth_smallest(scratch, m, j);
    if (j + 1 < m) {                   /* after the selection, the rest of the bin is >= first */
        *second = scratch[j + 1];
        for (int64_t p = j + 2; p < m; ++p)
            if (scratch[p] < *second) *second = scratch[p];
    } else {                           /* the smallest value of the bins above */
        uint32_t best = 0xFFFFFFFFu;
        *second = *first;
        for (int64_t p = 0; p < n; ++p) {
            const uint32_t key = order_key(v[p]);
            if (key >> 20 > bin && key <= best) {
                best = key;
                *second = v[p];
            }
        }
    }
}

/* The thresholds of defocus_xai.defocus.edges.edge_thresholds for each row b of sample (B, n):
 * the 99th percentile ref (torch.quantile's: rank 0.99 (n - 1), linear interpolation between the
 * order statistics around it; within a few float32 ulps), lo = max(low ref, floor),
 * hi = max(high ref, floor, lo). scratch: n floats. */
void percentile_thresholds(const float *sample, int64_t B, int64_t n, float low, float high,
                           float floor_value, float *scratch, float *lo, float *hi) {
    const double rank = 0.99 * (double)(n - 1);
    const int64_t below = (int64_t)rank;
    const float weight = (float)(rank - (double)below);
    for (int64_t b = 0; b < B; ++b) {
        float first, second;
        if (n == 1) {
            first = second = sample[b];
        } else if (below + 1 < n) {
            order_pair(sample + b * n, n, below, scratch, &first, &second);
        } else {
            order_pair(sample + b * n, n, below - 1, scratch, &second, &first);
        }
        const float ref = weight == 0.0f ? first            /* an exact rank: no interpolation */
                          : weight < 0.5f ? first + weight * (second - first)
                                          : second - (second - first) * (1.0f - weight);
        float l = low * ref, h = high * ref;
        if (!(l >= floor_value)) l = l != l ? l : floor_value;   /* max, NaN kept as torch's */
        if (!(h >= floor_value)) h = h != h ? h : floor_value;
        if (l > h) h = l;
        lo[b] = l;
        hi[b] = h;
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

#ifdef __cplusplus
}
#endif
