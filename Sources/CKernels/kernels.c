// CPU detection, path choice and the portable scalar path.
#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__)
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static unsigned features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void detect(void) {
    unsigned f = 0;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6, os_zmm = (xcr0 & 0xe6) == 0xe6, os_tile = (xcr0 & 0x60000) == 0x60000;
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (__get_cpuid_max(0, 0) >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d7);
        unsigned bb, cc, dd;
        __cpuid_count(7, 1, a71, bb, cc, dd);
    }
    if (avx && os_avx && fma && ((b7 >> 5) & 1)) f |= C3PO_CPU_AVX2;
    if (f16c && os_avx) f |= C3PO_CPU_F16C;
    // F (16), DQ (17), BW (30), VL (31)
    if (os_zmm && (f & C3PO_CPU_AVX2) && ((b7 >> 16) & 1) && ((b7 >> 17) & 1) && ((b7 >> 30) & 1) && ((b7 >> 31) & 1)) {
        f |= C3PO_CPU_AVX512;
        if ((c7 >> 11) & 1) f |= C3PO_CPU_AVX512VNNI;
        if ((a71 >> 5) & 1) f |= C3PO_CPU_AVX512BF16;
        if ((d7 >> 23) & 1) f |= C3PO_CPU_AVX512FP16;
    }
    if (os_tile && ((d7 >> 24) & 1)) {
        f |= C3PO_CPU_AMX_TILE;
        if ((d7 >> 22) & 1) f |= C3PO_CPU_AMX_BF16;
        if ((d7 >> 25) & 1) f |= C3PO_CPU_AMX_INT8;
#if defined(__linux__)
        // Linux hands out the 8 KiB tile data state only on request (ARCH_REQ_XCOMP_PERM,
        // XFEATURE_XTILEDATA); the grant covers every thread of the process.
        if (syscall(SYS_arch_prctl, 0x1023, 18) == 0) f |= C3PO_CPU_AMX_PERMITTED;
#endif
    }
#endif
    features = f;
}

unsigned c3po_cpu_features(void) {
    pthread_once(&features_once, detect);
    return features;
}

int c3po_path_supported(int path) {
    unsigned f = c3po_cpu_features();
    switch (path) {
    case C3PO_PATH_SCALAR: return 1;
    case C3PO_PATH_AVX2: return (f & C3PO_CPU_AVX2) && (f & C3PO_CPU_F16C);
    case C3PO_PATH_AVX512: return c3po_path_supported(C3PO_PATH_AVX2) && (f & C3PO_CPU_AVX512);
    case C3PO_PATH_AVX512BF16: return c3po_path_supported(C3PO_PATH_AVX512) && (f & C3PO_CPU_AVX512BF16);
    case C3PO_PATH_AMX:
        return c3po_path_supported(C3PO_PATH_AVX512BF16) && (f & C3PO_CPU_AMX_TILE) && (f & C3PO_CPU_AMX_BF16)
            && (f & C3PO_CPU_AMX_PERMITTED);
    default: return 0;
    }
}

int c3po_best_path(void) {
    static const int order[] = {C3PO_PATH_AMX, C3PO_PATH_AVX512, C3PO_PATH_AVX512BF16, C3PO_PATH_AVX2};
    for (int i = 0; i < 4; i++) if (c3po_path_supported(order[i])) return order[i];
    return C3PO_PATH_SCALAR;
}

const char *c3po_path_name(int path) {
    static const char *names[] = {"scalar", "avx2", "avx512", "avx512bf16", "amx"};
    return path >= 0 && path < C3PO_PATH_COUNT ? names[path] : NULL;
}

// Per-thread scratch: a few slots, each grown to the largest request seen (0-3 the products'
// packed operands, 4 the transposed product's staged rows, 5 the f32 tokens-in-lanes product's
// partial sums).
#define SCRATCH_SLOTS 6
static __thread void *scratch_ptr[SCRATCH_SLOTS];
static __thread size_t scratch_size[SCRATCH_SLOTS];
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *unused) {
    (void)unused;
    for (int i = 0; i < SCRATCH_SLOTS; i++) { free(scratch_ptr[i]); scratch_ptr[i] = NULL; scratch_size[i] = 0; }
}
static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

void *c3po_scratch(int slot, size_t bytes) {
    if (scratch_size[slot] < bytes) {
        pthread_once(&scratch_once, scratch_init);
        pthread_setspecific(scratch_key, (void *)1); // so the thread's exit frees the slots
        free(scratch_ptr[slot]);
        size_t size = (bytes + 63) & ~(size_t)63;
        scratch_ptr[slot] = aligned_alloc(64, size);
        if (!scratch_ptr[slot]) abort();
        scratch_size[slot] = size;
    }
    return scratch_ptr[slot];
}

void c3po_linear_scalar(C3PO_LINEAR_ARGS) {
    for (long i = 0; i < m; i++) {
        const float *xi = x + i * ldx;
        for (long j = 0; j < n; j++) {
            float s = 0;
            for (long c = 0; c < k; c++) s += xi[c] * c3po_weight(w, dtype, j * ldw + c);
            c3po_store(y + i * ldy + j, s, accumulate);
        }
    }
}

void c3po_linear(int path, const float *x, long ldx, const void *w, int dtype, long ldw,
                 float *y, long ldy, long m, long n, long k, int accumulate) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate) for (long i = 0; i < m; i++) memset(y + i * ldy, 0, sizeof(float) * (size_t)n);
        return;
    }
    if (!c3po_path_supported(path)) path = C3PO_PATH_SCALAR;
    switch (path) {
    case C3PO_PATH_AMX:
        // Below a few tokens the tiles are mostly padding and the widening path streams the weight
        // faster: bf16 takes the tiles from 8 tokens on; f16, whose weights are also converted
        // into bf16 parts per call, above 16 (crossovers measured with one thread at expert shape,
        // 512 × 1024: docs/benchmarks.md). f32 weights stay on the avx512 path (kernels_amx.c).
        if ((dtype == C3PO_DTYPE_BF16 && m >= 8) || (dtype == C3PO_DTYPE_F16 && m > 16)) {
            c3po_linear_amx(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate);
            return;
        }
        c3po_linear_avx512(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate);
        return;
    case C3PO_PATH_AVX512BF16:
        if (dtype == C3PO_DTYPE_BF16) { c3po_linear_avx512bf16(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); return; }
        // fall through
    case C3PO_PATH_AVX512: c3po_linear_avx512(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); return;
    case C3PO_PATH_AVX2: c3po_linear_avx2(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); return;
    default: c3po_linear_scalar(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); return;
    }
}

void c3po_softmax(int path, float *x, long n) {
    if (n <= 0) return;
    if (path >= C3PO_PATH_AVX512 && c3po_path_supported(C3PO_PATH_AVX512)) { c3po_softmax_avx512(x, n); return; }
    float m = x[0], s = 0;
    for (long i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    for (long i = 0; i < n; i++) { x[i] = expf(x[i] - m); s += x[i]; }
    float inv = 1 / s;
    for (long i = 0; i < n; i++) x[i] *= inv;
}

void c3po_silu_mul(int path, float *g, const float *u, long n) {
    if (path >= C3PO_PATH_AVX512 && c3po_path_supported(C3PO_PATH_AVX512)) { c3po_silu_mul_avx512(g, u, n); return; }
    for (long i = 0; i < n; i++) g[i] = g[i] / (1 + expf(-g[i])) * u[i];
}

void c3po_silu_mul_backward(int path, const float *g, const float *u, const float *d, float *dg, float *du, long n) {
    if (path >= C3PO_PATH_AVX512 && c3po_path_supported(C3PO_PATH_AVX512)) { c3po_silu_mul_backward_avx512(g, u, d, dg, du, n); return; }
    for (long i = 0; i < n; i++) {
        float v = g[i], sg = 1 / (1 + expf(-v));
        du[i] = d[i] * v * sg;
        dg[i] = d[i] * u[i] * sg * (1 + v * (1 - sg));
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c"))) static void f16_to_f32_avx512(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        __mmask16 mk = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, mk, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, src + i)));
    }
}

__attribute__((target("avx2,f16c"))) static void f16_to_f32_f16c(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = c3po_f16_to_f32(src[i]);
}
#endif

void c3po_f16_to_f32_array(const uint16_t *src, float *dst, long n) {
#if defined(__x86_64__)
    if (c3po_path_supported(C3PO_PATH_AVX512)) { f16_to_f32_avx512(src, dst, n); return; }
    if ((c3po_cpu_features() & (C3PO_CPU_AVX2 | C3PO_CPU_F16C)) == (C3PO_CPU_AVX2 | C3PO_CPU_F16C)) { f16_to_f32_f16c(src, dst, n); return; }
#endif
    for (long i = 0; i < n; i++) dst[i] = c3po_f16_to_f32(src[i]);
}

void c3po_add_layer_norm(int path, float *x, const float *residual, long n, const float *weight, const float *bias, float eps) {
    if (path >= C3PO_PATH_AVX512 && c3po_path_supported(C3PO_PATH_AVX512)) { c3po_add_layer_norm_avx512(x, residual, n, weight, bias, eps); return; }
    if (residual) for (long j = 0; j < n; j++) x[j] += residual[j];
    float mean = 0, var = 0;
    for (long j = 0; j < n; j++) mean += x[j];
    mean /= (float)n;
    for (long j = 0; j < n; j++) { float t = x[j] - mean; var += t * t; }
    var /= (float)n;
    float inv = 1 / sqrtf(var + eps);
    for (long j = 0; j < n; j++) x[j] = (x[j] - mean) * inv * weight[j] + bias[j];
}

void c3po_gelu(int path, float *x, long n) {
    if (path >= C3PO_PATH_AVX512 && c3po_path_supported(C3PO_PATH_AVX512)) { c3po_gelu_avx512(x, n); return; }
    for (long i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1 + erff(x[i] * 0.70710678118654752f));
}
