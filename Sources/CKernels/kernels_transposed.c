// The backward of c3po_linear: dx = dy · W with the weight stored [n, k] row-major in its own
// dtype, read in place. A linear layer y = x · Wᵀ reads W along its rows (dot products); its
// input gradient reads the same rows as scaled additions: for each weight row j,
// dx[i, 0..k) += dy[i, j] · W[j, 0..k). Four weight rows are widened per step so that each
// dx vector is loaded and stored once per four rows; dx (m × k floats) stays in cache.
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static void linear_t_scalar(const float *dy, long lddy, const void *w, int dtype, long ldw,
                            float *dx, long lddx, long m, long n, long k) {
    for (long j = 0; j < n; j++) {
        for (long i = 0; i < m; i++) {
            float a = dy[i * lddy + j];
            if (a == 0) continue;
            float *d = dx + i * lddx;
            for (long c = 0; c < k; c++) d[c] += a * c3po_weight(w, dtype, j * ldw + c);
        }
    }
}

#if defined(__x86_64__)
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

// 16 weights of row `r` from element c (masked: only the lanes in mk), widened to f32.
static inline T512 __m512 load_w(const void *w, int dtype, long r, long c, __mmask16 mk) {
    switch (dtype) {
    case C3PO_DTYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + r + c)), 16));
    case C3PO_DTYPE_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + r + c));
    default:
        return _mm512_maskz_loadu_ps(mk, (const float *)w + r + c);
    }
}

// Weight rows in blocks of 8, each 16-column chunk of them widened once and used by every token
// (the weight is read once whatever m is): dx[i, c..c+16) += Σ_r dy[i, j + r] · W[j + r, c..c+16),
// dy broadcast from memory. dx (m × k floats) stays in L1 or L2 while the weight streams by; the
// next block's rows are fetched while this one computes (one line per 64 bytes of row), so that
// memory latency overlaps the arithmetic.
#define T_ROWS 8
static T512 void linear_t_avx512(const float *restrict dy, long lddy, const void *restrict w, int dtype, long ldw,
                                 float *restrict dxOut, long lddxOut, long m, long n, long k) {
    const long esize = dtype == C3PO_DTYPE_F32 ? 4 : 2;
    // dx rows a multiple of 1 KiB apart (k = 512 or 1024 floats, the usual cases) make a token's
    // load of dx alias an earlier token's store in the low 12 address bits, and the loads wait
    // for the stores ("4K aliasing": 2x slower at 12-24 tokens). Such rows are accumulated in
    // scratch rows one cache line longer, and copied back at the end.
    float *restrict dx = dxOut;
    long lddx = lddxOut;
    int staged = m > 1 && ((lddxOut * 4) & 1023) == 0;
    if (staged) {
        lddx = ((k + 15) & ~15L) + 16;
        dx = c3po_scratch(4, sizeof(float) * (size_t)(m * lddx));
        for (long q = 0; q < m; q++) memcpy(dx + q * lddx, dxOut + q * lddxOut, sizeof(float) * (size_t)k);
    }
    long j = 0;
    for (; j + T_ROWS <= n; j += T_ROWS) {
        const char *next = (const char *)w + (j + T_ROWS < n ? (j + T_ROWS) * ldw : j * ldw) * esize;
        const float *a = dy + j;
        for (long c = 0; c < k; c += 16) {
            __mmask16 mk = k - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - c)) - 1);
            if (((c * esize) & 63) == 0)
                for (int r = 0; r < T_ROWS; r++) _mm_prefetch(next + (r * ldw + c) * esize, _MM_HINT_T0);
            __m512 wv[T_ROWS];
            for (int r = 0; r < T_ROWS; r++) wv[r] = load_w(w, dtype, (j + r) * ldw, c, mk);
            for (long q = 0; q < m; q++) {
                float *d = dx + q * lddx + c;
                const float *aq = a + q * lddy;
                // Two chains of four, added at the end: half the latency of one chain of eight.
                __m512 acc0 = _mm512_maskz_loadu_ps(mk, d), acc1 = _mm512_setzero_ps();
                for (int r = 0; r < T_ROWS; r += 2) {
                    acc0 = _mm512_fmadd_ps(_mm512_set1_ps(aq[r]), wv[r], acc0);
                    acc1 = _mm512_fmadd_ps(_mm512_set1_ps(aq[r + 1]), wv[r + 1], acc1);
                }
                _mm512_mask_storeu_ps(d, mk, _mm512_add_ps(acc0, acc1));
            }
        }
    }
    for (; j < n; j++) {
        for (long c = 0; c < k; c += 16) {
            __mmask16 mk = k - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - c)) - 1);
            __m512 w0 = load_w(w, dtype, j * ldw, c, mk);
            for (long q = 0; q < m; q++) {
                float *d = dx + q * lddx + c;
                _mm512_mask_storeu_ps(d, mk, _mm512_fmadd_ps(_mm512_set1_ps(dy[q * lddy + j]), w0, _mm512_maskz_loadu_ps(mk, d)));
            }
        }
    }
    if (staged)
        for (long q = 0; q < m; q++) memcpy(dxOut + q * lddxOut, dx + q * lddx, sizeof(float) * (size_t)k);
}

#define T256 __attribute__((target("avx2,fma,f16c")))

// 8 weights of row `r` from element c, widened to f32; `tail` < 8 reads only that many (the rest 0).
static inline T256 __m256 load_w8(const void *w, int dtype, long r, long c, long tail) {
    if (tail < 8) {
        float tmp[8] = {0};
        for (long i = 0; i < tail; i++) tmp[i] = c3po_weight(w, dtype, r + c + i);
        return _mm256_loadu_ps(tmp);
    }
    switch (dtype) {
    case C3PO_DTYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + r + c))), 16));
    case C3PO_DTYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + r + c)));
    default:
        return _mm256_loadu_ps((const float *)w + r + c);
    }
}

// The AVX2 form of linear_t_avx512: 8 lanes, one weight row at a time, dx rows updated in
// 8-column chunks (the ragged end through a small buffer).
static T256 void linear_t_avx2(const float *restrict dy, long lddy, const void *restrict w, int dtype, long ldw,
                               float *restrict dx, long lddx, long m, long n, long k) {
    for (long j = 0; j < n; j++) {
        for (long c = 0; c < k; c += 8) {
            long tail = k - c < 8 ? k - c : 8;
            __m256 wv = load_w8(w, dtype, j * ldw, c, tail);
            for (long i = 0; i < m; i++) {
                float *d = dx + i * lddx + c;
                __m256 a = _mm256_set1_ps(dy[i * lddy + j]);
                if (tail == 8) {
                    _mm256_storeu_ps(d, _mm256_fmadd_ps(a, wv, _mm256_loadu_ps(d)));
                } else {
                    float tmp[8] = {0};
                    for (long q = 0; q < tail; q++) tmp[q] = d[q];
                    _mm256_storeu_ps(tmp, _mm256_fmadd_ps(a, wv, _mm256_loadu_ps(tmp)));
                    for (long q = 0; q < tail; q++) d[q] = tmp[q];
                }
            }
        }
    }
}
#endif

void c3po_linear_t(int path, const float *dy, long lddy, const void *w, int dtype, long ldw,
                   float *dx, long lddx, long m, long n, long k, int accumulate) {
    if (m <= 0 || k <= 0) return;
    if (!accumulate) for (long i = 0; i < m; i++) memset(dx + i * lddx, 0, sizeof(float) * (size_t)k);
    if (n <= 0) return;
#if defined(__x86_64__)
    if (path >= C3PO_PATH_AVX512 && c3po_path_supported(C3PO_PATH_AVX512)) {
        linear_t_avx512(dy, lddy, w, dtype, ldw, dx, lddx, m, n, k);
        return;
    }
    if (path >= C3PO_PATH_AVX2 && c3po_path_supported(C3PO_PATH_AVX2)) {
        linear_t_avx2(dy, lddy, w, dtype, ldw, dx, lddx, m, n, k);
        return;
    }
#endif
    (void)path;
    linear_t_scalar(dy, lddy, w, dtype, ldw, dx, lddx, m, n, k);
}
