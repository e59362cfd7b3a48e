// AVX-512 paths: f32 fused multiply-add with the weight widened on load (avx512), and bf16
// weights through vdpbf16ps (avx512bf16). Both compute dot products along k, which is
// contiguous in the activations and in the stored weight rows, so the weight is read in place:
// a block of 4 tokens × 4 weight rows keeps 16 accumulators in registers, each weight vector
// loaded (and widened) once is used for 4 tokens, each activation vector for 4 rows.
#include "internal.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define TBF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))

// 16 weights from element c of a stored row, widened to f32; the masked forms read only the
// lanes set in `mk` (the rest are 0), so nothing past the row end is touched.
static inline T512 __m512 w_f32(const void *p, long c) { return _mm512_loadu_ps((const float *)p + c); }
static inline T512 __m512 wm_f32(const void *p, long c, __mmask16 mk) { return _mm512_maskz_loadu_ps(mk, (const float *)p + c); }
static inline T512 __m512 widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
static inline T512 __m512 w_bf16(const void *p, long c) { return widen_bf16(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + c))); }
static inline T512 __m512 wm_bf16(const void *p, long c, __mmask16 mk) { return widen_bf16(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)p + c)); }
static inline T512 __m512 w_f16(const void *p, long c) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + c))); }
static inline T512 __m512 wm_f16(const void *p, long c, __mmask16 mk) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)p + c)); }

// Sums the 16 lanes of each of v[0..15] (v[4q + j]); lane 4j + q of the result is Σ v[4q + j].
// A tree of 30 shuffles and 15 adds instead of 16 separate reductions of 8 operations each.
static inline T512 __m512 reduce16(const __m512 *v) {
    __m512 w[8], x[4], y[2];
    for (int i = 0; i < 8; i++) // 256-bit halves: low half ← v[2i], high half ← v[2i+1]
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++) // 128-bit lane j ← partial sums of v[4i + j]
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88), _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)
        y[i] = _mm512_add_ps(_mm512_unpacklo_ps(x[2 * i], x[2 * i + 1]), _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]));
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(y[0]), _mm512_castps_pd(y[1]))),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(y[0]), _mm512_castps_pd(y[1]))));
}

// Writes the mt × nr block of a reduced 4 × 4 tile (lane 4j + q: token q, row j).
static inline T512 void store_block(__m512 r, float *y, long ldy, long mt, long nr, int accumulate) {
    float out[16];
    _mm512_storeu_ps(out, r);
    for (long q = 0; q < mt; q++)
        for (long j = 0; j < nr; j++) c3po_store(y + q * ldy + j, out[4 * j + q], accumulate);
}

// One block: tokens x[0..mt) × weight rows w[0..nr) (mt, nr ≤ 4; missing tokens and rows
// repeat the last real one and are not stored). ldwb: weight row stride in bytes. While the
// block computes, `pfrows` rows of the next weight block (pf + i·pfstride) are prefetched one
// line per k step, so that memory latency overlaps the arithmetic of the current block.
#define DOT_BLOCK(NAME, LOAD, LOADM, ESIZE)                                                                  \
    static T512 void NAME(const float *x, long ldx, const char *w, long ldwb, float *y, long ldy,    \
                          long mt, long nr, long k, int accumulate, const char *pf, long pfstride, \
                          int pfrows) {                                                               \
        const float *xs[4];                                                                           \
        const char *ws[4];                                                                            \
        for (int q = 0; q < 4; q++) xs[q] = x + (q < mt ? q : mt - 1) * ldx;                         \
        for (int j = 0; j < 4; j++) ws[j] = w + (j < nr ? j : nr - 1) * ldwb;                        \
        __m512 acc[16];                                                                               \
        for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();                                    \
        long c = 0;                                                                                   \
        for (; c + 16 <= k; c += 16) {                                                                \
            __m512 b[4];                                                                              \
            for (int j = 0; j < 4; j++) b[j] = LOAD(ws[j], c);                                        \
            for (int i = 0; i < pfrows; i++) _mm_prefetch(pf + i * pfstride + c * ESIZE, _MM_HINT_T0); \
            for (int q = 0; q < 4; q++) {                                                             \
                __m512 a = _mm512_loadu_ps(xs[q] + c);                                                \
                for (int j = 0; j < 4; j++) acc[4 * q + j] = _mm512_fmadd_ps(a, b[j], acc[4 * q + j]); \
            }                                                                                         \
        }                                                                                             \
        if (c < k) {                                                                                  \
            __mmask16 mk = (__mmask16)((1u << (k - c)) - 1);                                          \
            __m512 b[4];                                                                              \
            for (int j = 0; j < 4; j++) b[j] = LOADM(ws[j], c, mk);                                   \
            for (int q = 0; q < 4; q++) {                                                             \
                __m512 a = _mm512_maskz_loadu_ps(mk, xs[q] + c);                                      \
                for (int j = 0; j < 4; j++) acc[4 * q + j] = _mm512_fmadd_ps(a, b[j], acc[4 * q + j]); \
            }                                                                                         \
        }                                                                                             \
        store_block(reduce16(acc), y, ldy, mt, nr, accumulate);                                       \
    }

DOT_BLOCK(block_f32, w_f32, wm_f32, 4)
DOT_BLOCK(block_bf16, w_bf16, wm_bf16, 2)
DOT_BLOCK(block_f16, w_f16, wm_f16, 2)

typedef void (*block_fn)(const float *, long, const char *, long, float *, long, long, long, long, int, const char *, long, int);

// Token chunks of about 32 KiB of activations, 16 to 64 tokens (they stay close to L1 while
// every weight row block passes over them: 20 tokens at k = 384 ran 1.2-1.4x faster than 64);
// within a chunk each 4-row block of weights is loaded from memory once and reused from L1 for
// the chunk's token blocks.
static T512 void drive(block_fn fn, const float *x, long ldx, const char *w, long ldwb, float *y, long ldy,
                       long m, long n, long k, int accumulate) {
    long chunk = 32768 / (4 * k);
    chunk = chunk < 16 ? 16 : chunk > 64 ? 64 : chunk & ~3L;
    for (long t0 = 0; t0 < m; t0 += chunk) {
        long t1 = t0 + chunk < m ? t0 + chunk : m;
        long blocks = (t1 - t0 + 3) / 4;
        for (long j = 0; j < n; j += 4) {
            long nr = n - j < 4 ? n - j : 4, nextRows = n - j - 4 < 4 ? n - j - 4 : 4;
            const char *next = w + (j + 4) * ldwb;
            for (long t = t0, q = 0; t < t1; t += 4, q++) {
                // token block q prefetches next-block rows q, q + blocks, … (all 4 rows in all).
                int pfrows = q < nextRows ? (int)((nextRows - q + blocks - 1) / blocks) : 0;
                fn(x + t * ldx, ldx, w + j * ldwb, ldwb, y + t * ldy + j, ldy, t1 - t < 4 ? t1 - t : 4, nr, k, accumulate,
                   next + q * ldwb, blocks * ldwb, pfrows);
            }
        }
    }
}

// MARK: f32 weights, 12 tokens or more: tokens in the lanes

// With f32 weights the dot products above leave most of the FMA units idle (each block ends in
// a reduction tree and loads two vectors per four FMAs). From 12 tokens on the product is taken
// the other way round: the activations of 16 or 32 tokens are transposed once per call into
// xt[c][t], and for every input c one weight per row is broadcast from the row in place and
// multiplied into all the tokens at once. No reductions, one load per R FMAs (V = 2), and the
// weight is still read in place: a block of R rows walks R streams of the mapping.

// Tokens t0..t0 + mt of x (mt ≤ T = 16·V) → xt[c·T + t], zeros for t ≥ mt, by 16 × 16 register
// transposes.
static T512 void pack_tokens(const float *x, long ldx, long mt, long k, long T, float *xt) {
    for (long g = 0; g < T; g += 16) {
        long tn = mt - g < 0 ? 0 : mt - g < 16 ? mt - g : 16;
        for (long c = 0; c < k; c += 16) {
            long cn = k - c < 16 ? k - c : 16;
            __mmask16 mk = (__mmask16)((1u << cn) - 1);
            __m512i r[16];
            for (long t = 0; t < 16; t++)
                r[t] = t < tn ? _mm512_castps_si512(_mm512_maskz_loadu_ps(mk, x + (g + t) * ldx + c)) : _mm512_setzero_si512();
            c3po_transpose16(r);
            for (long j = 0; j < cn; j++) _mm512_store_si512((__m512i *)(xt + (c + j) * T + g), r[j]);
        }
    }
}

// R full weight rows (w + r·ldw, inputs c < k) × V vectors of 16 packed tokens, summed into
// part[r·16V + 16v ...] (set on the first input block, added to after). The next block's rows
// (pf, pfrows of them) are prefetched into L2, one line per row every 16 inputs: into L1 they
// would share the set of the current rows (rows a multiple of 4 KiB apart map to one set) and
// evict them. The loops over rows, vectors and 16 inputs are unrolled in full (at -O2 the
// compiler otherwise kept the accumulators in memory).
#define BROADCAST_BLOCK(NAME, R, V)                                                                              \
    static T512 void NAME(const float *xt, const float *w, long ldw, long k, float *part, int first,            \
                          const float *pf, long pfrows) {                                                        \
        __m512 acc[R][V];                                                                                        \
        _Pragma("unroll") for (int r = 0; r < R; r++)                                                            \
            _Pragma("unroll") for (int v = 0; v < V; v++)                                                        \
                acc[r][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(part + (r * V + v) * 16);               \
        long c = 0;                                                                                              \
        for (; c + 16 <= k; c += 16) {                                                                           \
            for (long r = 0; r < pfrows; r++) _mm_prefetch((const char *)(pf + r * ldw + c), _MM_HINT_T1);       \
            _Pragma("nounroll") for (int cc = 0; cc < 16; cc++) {                                                  \
                __m512 a[V];                                                                                     \
                _Pragma("unroll") for (int v = 0; v < V; v++) a[v] = _mm512_load_ps(xt + ((c + cc) * V + v) * 16); \
                _Pragma("unroll") for (int r = 0; r < R; r++) {                                                  \
                    __m512 b = _mm512_set1_ps(w[r * ldw + c + cc]);                                              \
                    _Pragma("unroll") for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(a[v], b, acc[r][v]); \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
        for (; c < k; c++) {                                                                                     \
            __m512 a[V];                                                                                         \
            _Pragma("unroll") for (int v = 0; v < V; v++) a[v] = _mm512_load_ps(xt + (c * V + v) * 16);          \
            _Pragma("unroll") for (int r = 0; r < R; r++) {                                                      \
                __m512 b = _mm512_set1_ps(w[r * ldw + c]);                                                       \
                _Pragma("unroll") for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(a[v], b, acc[r][v]);   \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("unroll") for (int r = 0; r < R; r++)                                                            \
            _Pragma("unroll") for (int v = 0; v < V; v++) _mm512_store_ps(part + (r * V + v) * 16, acc[r][v]);   \
    }

BROADCAST_BLOCK(broadcast_12x2, 12, 2)
BROADCAST_BLOCK(broadcast_4x2, 4, 2)
BROADCAST_BLOCK(broadcast_1x2, 1, 2)
BROADCAST_BLOCK(broadcast_12x1, 12, 1)
BROADCAST_BLOCK(broadcast_8x1, 8, 1)
BROADCAST_BLOCK(broadcast_4x1, 4, 1)
BROADCAST_BLOCK(broadcast_1x1, 1, 1)

// y[i·ldy + j] (+)= part[j·T + i] for tokens i < mt, rows j < n: 16 × 16 squares transposed in
// registers.
static T512 void store_transposed(const float *part, long T, float *y, long ldy, long mt, long n, int accumulate) {
    for (long g = 0; g < mt; g += 16) {
        long tn = mt - g < 16 ? mt - g : 16;
        for (long j = 0; j < n; j += 16) {
            long jn = n - j < 16 ? n - j : 16;
            __mmask16 mk = (__mmask16)((1u << jn) - 1);
            __m512i r[16];
            for (long q = 0; q < 16; q++) r[q] = q < jn ? _mm512_load_si512((const __m512i *)(part + (j + q) * T + g)) : _mm512_setzero_si512();
            c3po_transpose16(r);
            for (long i = 0; i < tn; i++) {
                float *yi = y + (g + i) * ldy + j;
                __m512 v = _mm512_castsi512_ps(r[i]);
                if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, yi));
                _mm512_mask_storeu_ps(yi, mk, v);
            }
        }
    }
}

typedef void (*broadcast_fn)(const float *, const float *, long, long, float *, int, const float *, long);

// Groups of tokens whose packed activations fit in 512 KiB (L2) are packed first. Tokens go 32
// at a time (two vectors), the last 16 or fewer in one. Rows go 12 at a time where the group has
// more than 16 tokens, else 8 (16 accumulators of one vector: measured faster than 12 for 16
// tokens alone); the rows that do not fill a block go 4 and then 1 at a time. The inputs are
// taken in blocks whose packed activations stay in L1 while every row block passes over them
// (256 inputs of 16 tokens, 128 of 32: 16 KiB); the sums so far wait in `part`, [n][16V] per
// token block, which is transposed into y at the end.
static T512 void linear_broadcast_f32(const float *x, long ldx, const float *w, long ldw, float *y, long ldy, long m,
                                      long n, long k, int accumulate) {
    long group = (512 * 1024 / (4 * k)) & ~31L;
    if (group < 32) group = 32;
    if (group > m + 31) group = (m + 31) & ~31L;
    float *xt = c3po_scratch(0, sizeof(float) * (size_t)(group * k));
    float *part = c3po_scratch(5, sizeof(float) * (size_t)(group * n));
    for (long g0 = 0; g0 < m; g0 += group) {
        long gm = m - g0 < group ? m - g0 : group, full = gm > 16 ? 12 : 8;
        long kblock = gm > 16 ? 128 : 256;
        for (long t = 0; t < gm; t += 32) {
            long mt = gm - t < 32 ? gm - t : 32;
            pack_tokens(x + (g0 + t) * ldx, ldx, mt, k, mt > 16 ? 32 : 16, xt + t * k);
        }
        for (long c0 = 0; c0 < k; c0 += kblock) {
            long kn = k - c0 < kblock ? k - c0 : kblock;
            for (long j = 0; j < n;) {
                long rem = n - j, block = rem >= full ? full : rem >= 4 ? 4 : 1;
                long after = rem - block, nextBlock = after >= full ? full : after >= 4 ? 4 : after;
                for (long t = 0; t < gm; t += 32) {
                    long mt = gm - t < 32 ? gm - t : 32, T = mt > 16 ? 32 : 16;
                    broadcast_fn fn = T == 32 ? (block == 12 ? broadcast_12x2 : block == 4 ? broadcast_4x2 : broadcast_1x2)
                                              : (block == 12 ? broadcast_12x1 : block == 8 ? broadcast_8x1 : block == 4 ? broadcast_4x1 : broadcast_1x1);
                    // The last token block prefetches the next row block's rows.
                    long pfrows = t + 32 >= gm ? nextBlock : 0;
                    fn(xt + t * k + c0 * T, w + j * ldw + c0, ldw, kn, part + t * n + j * T, c0 == 0, w + (j + block) * ldw + c0, pfrows);
                }
                j += block;
            }
        }
        for (long t = 0; t < gm; t += 32) {
            long mt = gm - t < 32 ? gm - t : 32, T = mt > 16 ? 32 : 16;
            store_transposed(part + t * n, T, y + (g0 + t) * ldy, ldy, mt, n, accumulate);
        }
    }
}

void c3po_linear_avx512(C3PO_LINEAR_ARGS) {
    if (dtype == C3PO_DTYPE_F32 && m >= C3PO_BROADCAST_MIN_TOKENS) {
        linear_broadcast_f32(x, ldx, (const float *)w, ldw, y, ldy, m, n, k, accumulate);
        return;
    }
    switch (dtype) {
    case C3PO_DTYPE_BF16: drive(block_bf16, x, ldx, (const char *)w, 2 * ldw, y, ldy, m, n, k, accumulate); break;
    case C3PO_DTYPE_F16: drive(block_f16, x, ldx, (const char *)w, 2 * ldw, y, ldy, m, n, k, accumulate); break;
    default: drive(block_f32, x, ldx, (const char *)w, 4 * ldw, y, ldy, m, n, k, accumulate); break;
    }
}

// MARK: bf16 × bf16 (vdpbf16ps)

// src[0..k) → three bf16 parts, each zero padded to a multiple of 32: p0 = bf16(x) (round to
// nearest even), p1 = bf16(x - p0), p2 = bf16(x - p0 - p1); p0 + p1 + p2 carries 24 significant
// bits of x, as many as the f32 itself.
TBF16 void c3po_split_bf16(const float *src, long k, uint16_t *p0, uint16_t *p1, uint16_t *p2) {
    uint16_t *parts[3] = {p0, p1, p2};
    for (long c = 0; c < k; c += 32) {
        long r = k - c;
        __mmask16 m0 = r >= 16 ? 0xffff : (__mmask16)((1u << r) - 1);
        __mmask16 m1 = r >= 32 ? 0xffff : r <= 16 ? 0 : (__mmask16)((1u << (r - 16)) - 1);
        __m512 f0 = _mm512_maskz_loadu_ps(m0, src + c), f1 = _mm512_maskz_loadu_ps(m1, src + c + 16);
        for (int p = 0; p < 3; p++) {
            __m512i h = (__m512i)_mm512_cvtne2ps_pbh(f1, f0);
            _mm512_storeu_si512(parts[p] + c, h);
            f0 = _mm512_sub_ps(f0, widen_bf16(_mm512_castsi512_si256(h)));
            f1 = _mm512_sub_ps(f1, widen_bf16(_mm512_extracti64x4_epi64(h, 1)));
        }
    }
}

// One block of 4 tokens × 4 bf16 weight rows over the split activations (three parts per
// token, rows of kp = k rounded up to 32, zero padded): acc += w·p0 + w·p1 + w·p2.
static TBF16 void block_dpbf16(const uint16_t *xs3, long kp, const uint16_t *w, long ldw,
                               float *y, long ldy, long mt, long nr, long k, int accumulate) {
    const uint16_t *xs[4], *ws[4];
    for (int q = 0; q < 4; q++) xs[q] = xs3 + 3 * (q < mt ? q : mt - 1) * kp;
    for (int j = 0; j < 4; j++) ws[j] = w + (j < nr ? j : nr - 1) * ldw;
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (long c = 0; c < k; c += 32) {
        __mmask32 mk = k - c >= 32 ? 0xffffffffu : (__mmask32)((1u << (k - c)) - 1);
        __m512i b[4];
        for (int j = 0; j < 4; j++) b[j] = _mm512_maskz_loadu_epi16(mk, ws[j] + c);
        for (int q = 0; q < 4; q++) {
            for (int p = 0; p < 3; p++) {
                __m512i a = _mm512_loadu_si512(xs[q] + p * kp + c);
                for (int j = 0; j < 4; j++) acc[4 * q + j] = _mm512_dpbf16_ps(acc[4 * q + j], (__m512bh)a, (__m512bh)b[j]);
            }
        }
    }
    store_block(reduce16(acc), y, ldy, mt, nr, accumulate);
}

TBF16 void c3po_linear_avx512bf16(C3PO_LINEAR_ARGS) {
    (void)dtype;
    const long chunk = 64, kp = (k + 31) & ~31L;
    uint16_t *xs = c3po_scratch(0, sizeof(uint16_t) * (size_t)(3 * chunk * kp)); // [chunk, 3, kp]
    for (long t0 = 0; t0 < m; t0 += chunk) {
        long t1 = t0 + chunk < m ? t0 + chunk : m;
        for (long t = t0; t < t1; t++) {
            uint16_t *p = xs + 3 * (t - t0) * kp;
            c3po_split_bf16(x + t * ldx, k, p, p + kp, p + 2 * kp);
        }
        for (long j = 0; j < n; j += 4) {
            long nr = n - j < 4 ? n - j : 4;
            for (long t = t0; t < t1; t += 4)
                block_dpbf16(xs + 3 * (t - t0) * kp, kp, (const uint16_t *)w + j * ldw, ldw,
                             y + t * ldy + j, ldy, t1 - t < 4 ? t1 - t : 4, nr, k, accumulate);
        }
    }
}

// MARK: exp

// e^x for 16 lanes: n = round(x·log2 e), r = x − n·ln 2 (in two parts), e^r by Cephes' expf
// polynomial, then ·2^n with vscalefps (which also gives 0 and +inf past the range).
static inline T512 __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

T512 void c3po_softmax_avx512(float *x, long n) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    long i = 0;
    for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
    __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
    if (i < n) vm = _mm512_mask_max_ps(vm, tail, vm, _mm512_maskz_loadu_ps(tail, x + i));
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vm)), vs = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), m));
        _mm512_storeu_ps(x + i, e);
        vs = _mm512_add_ps(vs, e);
    }
    if (i < n) {
        __m512 e = _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), m)));
        _mm512_mask_storeu_ps(x + i, tail, e);
        vs = _mm512_add_ps(vs, e);
    }
    __m512 inv = _mm512_set1_ps(1 / _mm512_reduce_add_ps(vs));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n) _mm512_mask_storeu_ps(x + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), inv));
}

T512 void c3po_silu_mul_avx512(float *g, const float *u, long n) {
    __m512 one = _mm512_set1_ps(1.0f);
    for (long i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(mk, g + i);
        __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        _mm512_mask_storeu_ps(g + i, mk, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(mk, u + i)));
    }
}

T512 void c3po_silu_mul_backward_avx512(const float *g, const float *u, const float *d, float *dg, float *du, long n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (long i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(mk, g + i), dv = _mm512_maskz_loadu_ps(mk, d + i);
        __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), v))));
        _mm512_mask_storeu_ps(du + i, mk, _mm512_mul_ps(dv, _mm512_mul_ps(v, sg)));
        __m512 slope = _mm512_mul_ps(sg, _mm512_fmadd_ps(v, _mm512_sub_ps(one, sg), one)); // σ (1 + g (1 − σ))
        _mm512_mask_storeu_ps(dg + i, mk, _mm512_mul_ps(_mm512_mul_ps(dv, _mm512_maskz_loadu_ps(mk, u + i)), slope));
    }
}

T512 void c3po_add_layer_norm_avx512(float *x, const float *residual, long n, const float *weight, const float *bias, float eps) {
    __m512 vs = _mm512_setzero_ps();
    for (long j = 0; j < n; j += 16) {
        __mmask16 mk = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + j);
        if (residual) { v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, residual + j)); _mm512_mask_storeu_ps(x + j, mk, v); }
        vs = _mm512_add_ps(vs, v);
    }
    float mean = _mm512_reduce_add_ps(vs) / (float)n;
    __m512 vm = _mm512_set1_ps(mean), vv = _mm512_setzero_ps();
    for (long j = 0; j < n; j += 16) {
        __mmask16 mk = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 t = _mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, x + j), vm);
        vv = _mm512_fmadd_ps(t, t, vv);
    }
    __m512 inv = _mm512_set1_ps(1 / sqrtf(_mm512_reduce_add_ps(vv) / (float)n + eps));
    for (long j = 0; j < n; j += 16) {
        __mmask16 mk = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), vm), inv);
        _mm512_mask_storeu_ps(x + j, mk, _mm512_fmadd_ps(t, _mm512_maskz_loadu_ps(mk, weight + j), _mm512_maskz_loadu_ps(mk, bias + j)));
    }
}

T512 void c3po_gelu_avx512(float *x, long n) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    for (long i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        __m512 z = _mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f));
        __m512 a = _mm512_abs_ps(z);
        __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), a, one));
        __m512 p = _mm512_set1_ps(1.061405429f);
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
        p = _mm512_mul_ps(p, t);
        __m512 erfa = _mm512_fnmadd_ps(p, exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a)), one); // erf(|z|)
        __m512 erfz = _mm512_mask_sub_ps(erfa, _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps(), erfa);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erfz)));
    }
}

#else
void c3po_gelu_avx512(float *x, long n) { c3po_gelu(C3PO_PATH_SCALAR, x, n); }
void c3po_add_layer_norm_avx512(float *x, const float *residual, long n, const float *weight, const float *bias, float eps) {
    c3po_add_layer_norm(C3PO_PATH_SCALAR, x, residual, n, weight, bias, eps);
}
void c3po_softmax_avx512(float *x, long n) { c3po_softmax(C3PO_PATH_SCALAR, x, n); }
void c3po_silu_mul_avx512(float *g, const float *u, long n) { c3po_silu_mul(C3PO_PATH_SCALAR, g, u, n); }
void c3po_silu_mul_backward_avx512(const float *g, const float *u, const float *d, float *dg, float *du, long n) {
    c3po_silu_mul_backward(C3PO_PATH_SCALAR, g, u, d, dg, du, n);
}
void c3po_linear_avx512(C3PO_LINEAR_ARGS) { c3po_linear_scalar(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); }
void c3po_linear_avx512bf16(C3PO_LINEAR_ARGS) { c3po_linear_scalar(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); }
#endif
