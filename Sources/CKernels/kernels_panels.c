// Products with f32 weights that the caller owns and can repack once (the sentence embedder's
// layers): W [n, k] is stored as panels of 32 output features, each panel [k][32] contiguous, so
// the product is a sum of outer products, y[t, 32 columns] += x[t, c] · panel[c, :], with no
// horizontal reduction: 8 tokens × 32 columns of accumulators (AVX-512: 16 registers, AVX2: 4
// tokens × 32 columns), the activation broadcast from memory. k is taken in slices of 256 so
// that a panel slice (32 KiB) stays in L1 while the chunk's token blocks pass over it; the
// AVX-512 path reads the activations packed as [token block of 8][k][8] (one cache line per two
// columns for the 8 broadcasts, instead of 8 rows read 4 bytes at a time), packed once per
// product and shared by the threads that split its panels (c3po_linear_panels_packed).
#include "internal.h"

long c3po_panel_floats(long n, long k) { return (n + 31) / 32 * 32 * k; }

void c3po_pack_panels(const float *w, long ldw, long n, long k, float *panels) {
    for (long p = 0; p < (n + 31) / 32; p++)
        for (long c = 0; c < k; c++)
            for (long j = 0; j < 32; j++) {
                long r = p * 32 + j;
                panels[(p * k + c) * 32 + j] = r < n ? w[r * ldw + c] : 0;
            }
}

static void panels_scalar(const float *x, long ldx, const float *panels, float *y, long ldy, long m, long n, long k, int accumulate) {
    for (long t = 0; t < m; t++)
        for (long j = 0; j < n; j++) {
            const float *col = panels + (j / 32) * k * 32 + (j % 32);
            float s = 0;
            for (long c = 0; c < k; c++) s += x[t * ldx + c] * col[c * 32];
            c3po_store(y + t * ldy + j, s, accumulate);
        }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define T256 __attribute__((target("avx2,fma,f16c")))

// Packed tokens xp [c1 - c0][8] (missing tokens zero) × one panel's columns [0, nc) (nc ≤ 32)
// over the k slice [c0, c1); stores mt ≤ TB token rows. TB = 8, 4, 2, 1: a block of fewer tokens
// (the last of a sentence) multiplies only its own, not 8 with zeros.
#define PANEL_BLOCK(NAME, TB)                                                                                   \
    static T512 void NAME(const float *xp, const float *panel, float *y, long ldy, long mt, long nc, long c0,  \
                          long c1, int accumulate, const float *bias, const char *pf, long pflines) {          \
        /* xp points at column c0 of the token block; bias (the panel's 32, or NULL) is added once.   */       \
        /* pf: pflines cache lines to prefetch, one per input from c0 on.                             */       \
        __m512 acc[TB][2];                                                                                      \
        for (int t = 0; t < TB; t++) { acc[t][0] = _mm512_setzero_ps(); acc[t][1] = _mm512_setzero_ps(); }   \
        for (long c = c0; c < c1; c++) {                                                                        \
            if (c - c0 < pflines) _mm_prefetch(pf + (c - c0) * 64, _MM_HINT_T0);                                \
            __m512 w0 = _mm512_loadu_ps(panel + c * 32), w1 = _mm512_loadu_ps(panel + c * 32 + 16);             \
            const float *xc = xp + (c - c0) * 8;                                                                \
            for (int t = 0; t < TB; t++) {                                                                      \
                __m512 a = _mm512_set1_ps(xc[t]);                                                               \
                acc[t][0] = _mm512_fmadd_ps(a, w0, acc[t][0]);                                                  \
                acc[t][1] = _mm512_fmadd_ps(a, w1, acc[t][1]);                                                  \
            }                                                                                                   \
        }                                                                                                       \
        __mmask16 m0 = nc >= 16 ? 0xffff : (__mmask16)((1u << nc) - 1);                                         \
        __mmask16 m1 = nc >= 32 ? 0xffff : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);                   \
        __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();                              \
        __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();                         \
        for (long t = 0; t < mt; t++) {                                                                         \
            float *yt = y + t * ldy;                                                                            \
            if (accumulate) {                                                                                   \
                acc[t][0] = _mm512_add_ps(acc[t][0], _mm512_maskz_loadu_ps(m0, yt));                            \
                acc[t][1] = _mm512_add_ps(acc[t][1], _mm512_maskz_loadu_ps(m1, yt + 16));                       \
            }                                                                                                   \
            if (bias) { acc[t][0] = _mm512_add_ps(acc[t][0], b0); acc[t][1] = _mm512_add_ps(acc[t][1], b1); }   \
            _mm512_mask_storeu_ps(yt, m0, acc[t][0]);                                                           \
            _mm512_mask_storeu_ps(yt + 16, m1, acc[t][1]);                                                      \
        }                                                                                                       \
    }

PANEL_BLOCK(panel_block512, 8)
PANEL_BLOCK(panel_block512_4, 4)
PANEL_BLOCK(panel_block512_2, 2)
PANEL_BLOCK(panel_block512_1, 1)

// xp: the activations packed as [ceil(m / 8)][k][8] (c3po_pack_rows8), so that every k slice of
// a token block is contiguous. Panel by panel, slice by slice: the weight is read in the order it
// is stored, and while the token blocks pass over one slice they prefetch the next one (the next
// 32 KiB of panels), a share each. With few tokens (one sentence, 2-4 token blocks) the first
// block over a slice otherwise waited for memory while the others ran from L1.
static T512 void panels_drive512(const float *xp, const float *panels, float *y, long ldy,
                                 long m, long n, long k, int accumulate, const float *bias) {
    const long slice = 128, chunk = 64;
    for (long t0 = 0; t0 < m; t0 += chunk) {
        long t1 = t0 + chunk < m ? t0 + chunk : m;
        for (long p = 0; p * 32 < n; p++) {
            long nc = n - p * 32 < 32 ? n - p * 32 : 32;
            for (long c0 = 0; c0 < k; c0 += slice) {
                long c1 = c0 + slice < k ? c0 + slice : k;
                int acc = accumulate || c0 > 0;
                long blocks = (t1 - t0 + 7) / 8, lines = (c1 - c0) * 2, share = (lines + blocks - 1) / blocks;
                const char *next = (const char *)(panels + p * k * 32 + c1 * 32); // the next slice, or the next panel's first
                if (c1 == k && (p + 1) * 32 >= n) lines = 0;                    // the last slice of the last panel
                for (long t = t0, q = 0; t < t1; t += 8, q++) {
                    long mine = lines - q * share < share ? lines - q * share : share;
                    long mt = t1 - t < 8 ? t1 - t : 8;
                    (mt > 4 ? panel_block512 : mt > 2 ? panel_block512_4 : mt > 1 ? panel_block512_2 : panel_block512_1)(xp + (t / 8 * k + c0) * 8, panels + p * k * 32, y + t * ldy + p * 32, ldy,
                                   mt, nc, c0, c1, acc, bias && c0 == 0 ? bias + p * 32 : NULL,
                                   next + q * share * 64, mine > 0 ? mine : 0);
                }
            }
        }
    }
}

static T256 void panel_block256(const float *x, long ldx, const float *panel, float *y, long ldy,
                                long mt, long nc, long c0, long c1, int accumulate) {
    __m256 acc[4][4];
    for (int t = 0; t < 4; t++) for (int v = 0; v < 4; v++) acc[t][v] = _mm256_setzero_ps();
    const float *xs[4];
    for (int t = 0; t < 4; t++) xs[t] = x + (t < mt ? t : mt - 1) * ldx;
    for (long c = c0; c < c1; c++) {
        __m256 w[4];
        for (int v = 0; v < 4; v++) w[v] = _mm256_loadu_ps(panel + c * 32 + 8 * v);
        for (int t = 0; t < 4; t++) {
            __m256 a = _mm256_broadcast_ss(xs[t] + c);
            for (int v = 0; v < 4; v++) acc[t][v] = _mm256_fmadd_ps(a, w[v], acc[t][v]);
        }
    }
    for (long t = 0; t < mt; t++) {
        float out[32];
        for (int v = 0; v < 4; v++) _mm256_storeu_ps(out + 8 * v, acc[t][v]);
        for (long j = 0; j < nc; j++) c3po_store(y + t * ldy + j, out[j], accumulate);
    }
}

typedef void (*panel_fn)(const float *, long, const float *, float *, long, long, long, long, long, int);

static void panels_drive(panel_fn fn, long rows, const float *x, long ldx, const float *panels, float *y, long ldy,
                         long m, long n, long k, int accumulate) {
    const long slice = 256, chunk = 64;
    for (long t0 = 0; t0 < m; t0 += chunk) {
        long t1 = t0 + chunk < m ? t0 + chunk : m;
        for (long c0 = 0; c0 < k; c0 += slice) {
            long c1 = c0 + slice < k ? c0 + slice : k;
            int acc = accumulate || c0 > 0;
            for (long p = 0; p * 32 < n; p++) {
                long nc = n - p * 32 < 32 ? n - p * 32 : 32;
                for (long t = t0; t < t1; t += rows)
                    fn(x + t * ldx, ldx, panels + p * k * 32, y + t * ldy + p * 32, ldy, t1 - t < rows ? t1 - t : rows, nc, c0, c1, acc);
            }
        }
    }
}
#endif

long c3po_packed_rows8_floats(long m, long k) { return (m + 7) / 8 * 8 * k; }

#if defined(__x86_64__)
// One block of 8 full rows: 8 × 8 tiles transposed in registers ([c][8] out), the ragged end scalar.
static T256 void pack_block8_avx2(const float *x, long ldx, long k, float *blk) {
    long c = 0;
    for (; c + 8 <= k; c += 8) {
        __m256 r[8], t[8], u[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + i * ldx + c);
        for (int i = 0; i < 4; i++) { t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]); t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]); }
        for (int i = 0; i < 2; i++) {
            u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
            u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
            u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
            u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
        }
        for (int i = 0; i < 4; i++) {
            _mm256_storeu_ps(blk + (c + i) * 8, _mm256_permute2f128_ps(u[i], u[4 + i], 0x20));
            _mm256_storeu_ps(blk + (c + 4 + i) * 8, _mm256_permute2f128_ps(u[i], u[4 + i], 0x31));
        }
    }
    for (; c < k; c++) for (long i = 0; i < 8; i++) blk[c * 8 + i] = x[i * ldx + c];
}
#endif

void c3po_pack_rows8(const float *x, long ldx, long m, long k, float *out) {
    for (long b = 0; b < (m + 7) / 8; b++) {
#if defined(__x86_64__)
        if (b * 8 + 8 <= m && c3po_path_supported(C3PO_PATH_AVX2)) { pack_block8_avx2(x + b * 8 * ldx, ldx, k, out + b * k * 8); continue; }
#endif
        float *blk = out + b * k * 8;
        for (long i = 0; i < 8; i++) {
            long t = b * 8 + i;
            if (t < m) { const float *row = x + t * ldx; for (long c = 0; c < k; c++) blk[c * 8 + i] = row[c]; }
            else for (long c = 0; c < k; c++) blk[c * 8 + i] = 0;
        }
    }
}

int c3po_panels_read_packed(int path) {
#if defined(__x86_64__)
    return path >= C3PO_PATH_AVX512 && c3po_path_supported(C3PO_PATH_AVX512);
#else
    (void)path;
    return 0;
#endif
}

void c3po_linear_panels_packed(int path, const float *xp, const float *x, long ldx, const float *panels, const float *bias,
                               float *y, long ldy, long m, long n, long k, int accumulate) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate) for (long i = 0; i < m; i++) memset(y + i * ldy, 0, sizeof(float) * (size_t)n);
    } else {
#if defined(__x86_64__)
        if (c3po_panels_read_packed(path)) {
            panels_drive512(xp, panels, y, ldy, m, n, k, accumulate, bias);
            return;
        }
        if (path >= C3PO_PATH_AVX2 && c3po_path_supported(C3PO_PATH_AVX2)) {
            panels_drive(panel_block256, 4, x, ldx, panels, y, ldy, m, n, k, accumulate);
        } else
#endif
        panels_scalar(x, ldx, panels, y, ldy, m, n, k, accumulate);
    }
    (void)xp;
    if (bias) for (long t = 0; t < m; t++) for (long j = 0; j < n; j++) y[t * ldy + j] += bias[j];
}

void c3po_linear_panels(int path, const float *x, long ldx, const float *panels, float *y, long ldy,
                        long m, long n, long k, int accumulate) {
    if (m <= 0 || n <= 0) return;
    float *xp = NULL;
    if (k > 0 && c3po_panels_read_packed(path)) {
        xp = c3po_scratch(0, sizeof(float) * (size_t)c3po_packed_rows8_floats(m, k));
        c3po_pack_rows8(x, ldx, m, k, xp);
    }
    c3po_linear_panels_packed(path, xp, x, ldx, panels, NULL, y, ldy, m, n, k, accumulate);
}
