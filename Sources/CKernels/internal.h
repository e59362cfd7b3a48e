// Entry points of the code paths behind c3po_linear (kernels.c dispatches).
#ifndef C3PO_KERNELS_INTERNAL_H
#define C3PO_KERNELS_INTERNAL_H

#include "c3po_kernels.h"
#include <string.h>

#define C3PO_LINEAR_ARGS const float *x, long ldx, const void *w, int dtype, long ldw, \
                         float *y, long ldy, long m, long n, long k, int accumulate

// From this many tokens on, f32 weights on the avx512 path are multiplied with the tokens in the
// vector lanes (kernels_avx512.c) instead of by dot products.
#ifndef C3PO_BROADCAST_MIN_TOKENS
#define C3PO_BROADCAST_MIN_TOKENS 12
#endif

void c3po_linear_scalar(C3PO_LINEAR_ARGS);
void c3po_linear_avx2(C3PO_LINEAR_ARGS);
void c3po_linear_avx512(C3PO_LINEAR_ARGS);
void c3po_linear_avx512bf16(C3PO_LINEAR_ARGS); // bf16 weights only
void c3po_linear_amx(C3PO_LINEAR_ARGS);        // bf16 and f16 weights

// src[0..k) → three bf16 parts summing to it, each zero padded to a multiple of 32
// (avx512bf16 only).
void c3po_split_bf16(const float *src, long k, uint16_t *p0, uint16_t *p1, uint16_t *p2);

void c3po_softmax_avx512(float *x, long n);
void c3po_silu_mul_avx512(float *g, const float *u, long n);
void c3po_silu_mul_backward_avx512(const float *g, const float *u, const float *d, float *dg, float *du, long n);
void c3po_gelu_avx512(float *x, long n);
void c3po_add_layer_norm_avx512(float *x, const float *residual, long n, const float *weight, const float *bias, float eps);

// A thread's scratch buffer of at least `bytes` (64-byte aligned; reused, grown on demand).
void *c3po_scratch(int slot, size_t bytes);

static inline float c3po_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}

static inline float c3po_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);                 // inf, NaN
    else if (exp != 0) u = sign | ((exp + 112) << 23) | (man << 13);       // normal
    else if (man == 0) u = sign;                                           // ±0
    else {                                                                 // subnormal: normalise
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f; memcpy(&f, &u, 4); return f;
}

static inline float c3po_weight(const void *w, int dtype, long i) {
    switch (dtype) {
    case C3PO_DTYPE_BF16: return c3po_bf16_to_f32(((const uint16_t *)w)[i]);
    case C3PO_DTYPE_F16: return c3po_f16_to_f32(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

// In place: r[j] lane i ← r[i] lane j, a 16 × 16 transpose of 32-bit elements in 64 shuffles.
static inline __attribute__((target("avx512f"))) void c3po_transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) { t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]); t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]); }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]); r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]); r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) { r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88); r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd); }
}

#endif

static inline void c3po_store(float *dst, float v, int accumulate) { if (accumulate) *dst += v; else *dst = v; }

#endif
