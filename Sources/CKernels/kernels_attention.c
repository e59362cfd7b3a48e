// Attention of one query position over a cache of earlier positions, every head at once, and its
// backward: the tail's attention (tail re-evaluation and the NGD gradient). The cache holds p
// positions of ldkv floats (kv head g at column g·d); the position's own key and value come apart.
// Keys and values are read position by position, each cached row once and contiguously, for all
// the heads that use it (a task per head read a d-wide slice of every row, one slice per page).
#include "internal.h"

#include <math.h>

static void attend_scalar(const float *q, const float *K, const float *V, long ldkv, const float *kown, const float *vown,
                          long p, long heads, long kvHeads, long d, float scale, float *alpha, float *out) {
    long group = heads / kvHeads;
    for (long h = 0; h < heads; h++) {
        long g = h / group;
        float *a = alpha + h * (p + 1);
        for (long j = 0; j <= p; j++) {
            const float *kr = j < p ? K + j * ldkv + g * d : kown + g * d;
            float s = 0;
            for (long c = 0; c < d; c++) s += q[h * d + c] * kr[c];
            a[j] = s * scale;
        }
        c3po_softmax(C3PO_PATH_SCALAR, a, p + 1);
        for (long c = 0; c < d; c++) out[h * d + c] = 0;
        for (long j = 0; j <= p; j++) {
            const float *vr = j < p ? V + j * ldkv + g * d : vown + g * d;
            for (long c = 0; c < d; c++) out[h * d + c] += a[j] * vr[c];
        }
    }
}

static void attend_backward_scalar(const float *q, const float *K, const float *V, long ldkv, const float *kown, const float *vown,
                                   const float *alpha, const float *dout, long p, long heads, long kvHeads, long d, float scale,
                                   float *ds, float *dq, float *dkown, float *dvown) {
    long group = heads / kvHeads;
    for (long h = 0; h < heads; h++) {
        long g = h / group;
        const float *a = alpha + h * (p + 1), *dy = dout + h * d;
        float *s = ds + h * (p + 1);
        for (long j = 0; j <= p; j++) {
            const float *vr = j < p ? V + j * ldkv + g * d : vown + g * d;
            float t = 0;
            for (long c = 0; c < d; c++) t += dy[c] * vr[c];
            s[j] = t;
        }
        float mean = 0;
        for (long j = 0; j <= p; j++) mean += a[j] * s[j];
        for (long j = 0; j <= p; j++) s[j] = a[j] * (s[j] - mean) * scale;
        for (long j = 0; j <= p; j++) {
            const float *kr = j < p ? K + j * ldkv + g * d : kown + g * d;
            for (long c = 0; c < d; c++) dq[h * d + c] += s[j] * kr[c];
        }
        for (long c = 0; c < d; c++) { dkown[g * d + c] += s[p] * q[h * d + c]; dvown[g * d + c] += a[p] * dy[c]; }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

// Σ_c a[c]·b[c] over d (a multiple of 16) floats.
static inline T512 float dot16(const float *a, const float *b, long d) {
    __m512 s = _mm512_mul_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b));
    for (long c = 16; c < d; c += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), s);
    return _mm512_reduce_add_ps(s);
}

// y[0..d) += w · x[0..d)
static inline T512 void axpy16(float w, const float *x, float *y, long d) {
    __m512 wv = _mm512_set1_ps(w);
    for (long c = 0; c < d; c += 16) _mm512_storeu_ps(y + c, _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + c), _mm512_loadu_ps(y + c)));
}

static T512 void attend_avx512(const float *q, const float *K, const float *V, long ldkv, const float *kown, const float *vown,
                               long p, long heads, long kvHeads, long d, float scale, float *alpha, float *out) {
    long group = heads / kvHeads;
    for (long j = 0; j <= p; j++) {
        const float *kr = j < p ? K + j * ldkv : kown;
        if (j + 1 < p) for (long c = 0; c < kvHeads * d; c += 16) _mm_prefetch((const char *)(K + (j + 1) * ldkv + c), _MM_HINT_T0);
        for (long h = 0; h < heads; h++) alpha[h * (p + 1) + j] = dot16(q + h * d, kr + (h / group) * d, d) * scale;
    }
    for (long h = 0; h < heads; h++) c3po_softmax(C3PO_PATH_AVX512, alpha + h * (p + 1), p + 1);
    memset(out, 0, sizeof(float) * (size_t)(heads * d));
    for (long j = 0; j <= p; j++) {
        const float *vr = j < p ? V + j * ldkv : vown;
        if (j + 1 < p) for (long c = 0; c < kvHeads * d; c += 16) _mm_prefetch((const char *)(V + (j + 1) * ldkv + c), _MM_HINT_T0);
        for (long h = 0; h < heads; h++) axpy16(alpha[h * (p + 1) + j], vr + (h / group) * d, out + h * d, d);
    }
}

static T512 void attend_backward_avx512(const float *q, const float *K, const float *V, long ldkv, const float *kown, const float *vown,
                                        const float *alpha, const float *dout, long p, long heads, long kvHeads, long d, float scale,
                                        float *ds, float *dq, float *dkown, float *dvown) {
    long group = heads / kvHeads;
    for (long j = 0; j <= p; j++) {
        const float *vr = j < p ? V + j * ldkv : vown;
        if (j + 1 < p) for (long c = 0; c < kvHeads * d; c += 16) _mm_prefetch((const char *)(V + (j + 1) * ldkv + c), _MM_HINT_T0);
        for (long h = 0; h < heads; h++) ds[h * (p + 1) + j] = dot16(dout + h * d, vr + (h / group) * d, d);
    }
    for (long h = 0; h < heads; h++) {
        const float *a = alpha + h * (p + 1);
        float *s = ds + h * (p + 1), mean = 0;
        for (long j = 0; j <= p; j++) mean += a[j] * s[j];
        for (long j = 0; j <= p; j++) s[j] = a[j] * (s[j] - mean) * scale;
    }
    for (long j = 0; j <= p; j++) {
        const float *kr = j < p ? K + j * ldkv : kown;
        if (j + 1 < p) for (long c = 0; c < kvHeads * d; c += 16) _mm_prefetch((const char *)(K + (j + 1) * ldkv + c), _MM_HINT_T0);
        for (long h = 0; h < heads; h++) axpy16(ds[h * (p + 1) + j], kr + (h / group) * d, dq + h * d, d);
    }
    for (long h = 0; h < heads; h++) {
        long g = h / group;
        axpy16(ds[h * (p + 1) + p], q + h * d, dkown + g * d, d);
        axpy16(alpha[h * (p + 1) + p], dout + h * d, dvown + g * d, d);
    }
}
#endif

void c3po_attend_one(int path, const float *q, const float *K, const float *V, long ldkv, const float *kown, const float *vown,
                     long p, long heads, long kvHeads, long d, float scale, float *alpha, float *out) {
#if defined(__x86_64__)
    if (path >= C3PO_PATH_AVX512 && d % 16 == 0 && c3po_path_supported(C3PO_PATH_AVX512)) {
        attend_avx512(q, K, V, ldkv, kown, vown, p, heads, kvHeads, d, scale, alpha, out);
        return;
    }
#endif
    (void)path;
    attend_scalar(q, K, V, ldkv, kown, vown, p, heads, kvHeads, d, scale, alpha, out);
}

void c3po_attend_one_backward(int path, const float *q, const float *K, const float *V, long ldkv, const float *kown, const float *vown,
                              const float *alpha, const float *dout, long p, long heads, long kvHeads, long d, float scale,
                              float *ds, float *dq, float *dkown, float *dvown) {
#if defined(__x86_64__)
    if (path >= C3PO_PATH_AVX512 && d % 16 == 0 && c3po_path_supported(C3PO_PATH_AVX512)) {
        attend_backward_avx512(q, K, V, ldkv, kown, vown, alpha, dout, p, heads, kvHeads, d, scale, ds, dq, dkown, dvown);
        return;
    }
#endif
    (void)path;
    attend_backward_scalar(q, K, V, ldkv, kown, vown, alpha, dout, p, heads, kvHeads, d, scale, ds, dq, dkown, dvown);
}
