// AVX2 path: the avx512 path's 4 tokens × 4 weight rows blocks with 8 lanes; bf16 weights
// widened by a shift, f16 through F16C. Columns past the last multiple of 8 run scalar.
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T256 __attribute__((target("avx2,fma,f16c")))

static inline T256 __m256 w8_f32(const void *p, long c) { return _mm256_loadu_ps((const float *)p + c); }
static inline T256 __m256 w8_bf16(const void *p, long c) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + c));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline T256 __m256 w8_f16(const void *p, long c) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + c))); }

// Lane j of the result: the sum of the 8 lanes of v[j], j < 4.
static inline T256 __m128 reduce4(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

#define DOT_BLOCK8(NAME, LOAD, DTYPE)                                                                 \
    static T256 void NAME(const float *x, long ldx, const char *w, long ldwb, float *y, long ldy,    \
                          long mt, long nr, long k, int accumulate) {                               \
        const float *xs[4];                                                                           \
        const char *ws[4];                                                                            \
        for (int q = 0; q < 4; q++) xs[q] = x + (q < mt ? q : mt - 1) * ldx;                         \
        for (int j = 0; j < 4; j++) ws[j] = w + (j < nr ? j : nr - 1) * ldwb;                        \
        __m256 acc[16];                                                                               \
        for (int i = 0; i < 16; i++) acc[i] = _mm256_setzero_ps();                                    \
        long c = 0;                                                                                   \
        for (; c + 8 <= k; c += 8) {                                                                  \
            __m256 b[4];                                                                              \
            for (int j = 0; j < 4; j++) b[j] = LOAD(ws[j], c);                                        \
            for (int q = 0; q < 4; q++) {                                                             \
                __m256 a = _mm256_loadu_ps(xs[q] + c);                                                \
                for (int j = 0; j < 4; j++) acc[4 * q + j] = _mm256_fmadd_ps(a, b[j], acc[4 * q + j]); \
            }                                                                                         \
        }                                                                                             \
        for (long q = 0; q < mt; q++) {                                                               \
            float out[4];                                                                             \
            _mm_storeu_ps(out, reduce4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]));  \
            for (long j = 0; j < nr; j++) {                                                           \
                float s = out[j];                                                                     \
                for (long cc = c; cc < k; cc++) s += xs[q][cc] * c3po_weight(ws[j], DTYPE, cc);      \
                c3po_store(y + q * ldy + j, s, accumulate);                                           \
            }                                                                                         \
        }                                                                                             \
    }

DOT_BLOCK8(block8_f32, w8_f32, C3PO_DTYPE_F32)
DOT_BLOCK8(block8_bf16, w8_bf16, C3PO_DTYPE_BF16)
DOT_BLOCK8(block8_f16, w8_f16, C3PO_DTYPE_F16)

typedef void (*block_fn)(const float *, long, const char *, long, float *, long, long, long, long, int);

static T256 void drive8(block_fn fn, const float *x, long ldx, const char *w, long ldwb, float *y, long ldy,
                        long m, long n, long k, int accumulate) {
    const long chunk = 64;
    for (long t0 = 0; t0 < m; t0 += chunk) {
        long t1 = t0 + chunk < m ? t0 + chunk : m;
        for (long j = 0; j < n; j += 4) {
            long nr = n - j < 4 ? n - j : 4;
            for (long t = t0; t < t1; t += 4)
                fn(x + t * ldx, ldx, w + j * ldwb, ldwb, y + t * ldy + j, ldy, t1 - t < 4 ? t1 - t : 4, nr, k, accumulate);
        }
    }
}

void c3po_linear_avx2(C3PO_LINEAR_ARGS) {
    switch (dtype) {
    case C3PO_DTYPE_BF16: drive8(block8_bf16, x, ldx, (const char *)w, 2 * ldw, y, ldy, m, n, k, accumulate); break;
    case C3PO_DTYPE_F16: drive8(block8_f16, x, ldx, (const char *)w, 2 * ldw, y, ldy, m, n, k, accumulate); break;
    default: drive8(block8_f32, x, ldx, (const char *)w, 4 * ldw, y, ldy, m, n, k, accumulate); break;
    }
}

#else
void c3po_linear_avx2(C3PO_LINEAR_ARGS) { c3po_linear_scalar(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); }
#endif
