// AMX path: bf16 and f16 weights through tdpbf16ps, one instruction a 16 × 16 × 32 product.
//
// The product is taken transposed, yᵀ = W · xᵀ, so that the weight is the A operand: a tile of
// 16 weight rows × 32 columns is loaded straight from the mapped checkpoint with the row stride
// of the matrix (no copy, no repacking of the weight). The activations are the B operand, which
// AMX wants in pairs along k ("VNNI" layout: tile row kk holds, for each of 16 tokens, columns
// 2kk and 2kk+1); they are split into three bf16 parts (see c3po_kernels.h) and packed once per
// call. f16 weights are converted per group of 64 rows into two bf16 parts (exact) in a scratch
// buffer.
//
// f32 weights do not come here: their products run in f32 arithmetic on the avx512 path, with
// the tokens in the vector lanes from 12 tokens on, which was measured faster than splitting the
// weight into three bf16 parts per call for the tiles (six products per tile instead of one).
//
// Tiles: 0-3 accumulate 4 blocks of 16 weight rows × 16 tokens; 4 holds a weight tile, 5-7 the
// three activation parts of one k step. Shapes the tiles do not cover (k not a multiple of 32,
// the last n mod 16 rows) go to the avx512 path (f32 arithmetic).
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TAMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16,avx2,fma,f16c")))

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static __thread int tiles_configured;

static TAMX void configure_tiles(void) {
    if (tiles_configured) return;
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) { c.colsb[i] = 64; c.rows[i] = 16; }
    _tile_loadconfig(&c);
    tiles_configured = 1;
}

// 32 f16 from src[c] → bf16 hi, lo with hi + lo == the f16 value exactly.
static TAMX void split_f16_row(const uint16_t *src, long k, uint16_t *hi, uint16_t *lo) {
    for (long c = 0; c < k; c += 32) {
        __m512 f0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + c)));
        __m512 f1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + c + 16)));
        __m512i h = (__m512i)_mm512_cvtne2ps_pbh(f1, f0);
        __m512 h0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16));
        __m512 h1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16));
        __m512i l = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(f1, h1), _mm512_sub_ps(f0, h0));
        _mm512_storeu_si512(hi + c, h);
        _mm512_storeu_si512(lo + c, l);
    }
}

// Packs x [m, k] into tiles: for token block tb, k block kb and part p (0-2), the 1 KiB tile at
// ((tb·kblocks + kb)·3 + p)·256 (32-bit units), row kk, column t = the bf16 pair of columns
// 32kb + 2kk, +1 of token 16tb + t, part p. Tokens past m are zero. Each token block is split
// into `rows` ([16, 3, k] bf16), then each 16 tokens × 16 pairs square is transposed in registers.
static TAMX void pack_activations(const float *x, long ldx, long m, long k, uint32_t *tiles, uint16_t *rows) {
    long kblocks = k / 32, tblocks = (m + 15) / 16;
    for (long tb = 0; tb < tblocks; tb++) {
        long tn = m - tb * 16 < 16 ? m - tb * 16 : 16;
        for (long t = 0; t < tn; t++) {
            uint16_t *p = rows + t * 3 * k;
            c3po_split_bf16(x + (tb * 16 + t) * ldx, k, p, p + k, p + 2 * k);
        }
        uint32_t *base = tiles + tb * kblocks * 768;
        for (long kb = 0; kb < kblocks; kb++)
            for (int p = 0; p < 3; p++) {
                __m512i r[16];
                for (int t = 0; t < 16; t++) r[t] = t < tn ? _mm512_loadu_si512(rows + t * 3 * k + p * k + kb * 32) : _mm512_setzero_si512();
                c3po_transpose16(r);
                uint32_t *tile = base + (kb * 3 + p) * 256;
                for (int kk = 0; kk < 16; kk++) _mm512_storeu_si512(tile + kk * 16, r[kk]);
            }
    }
}

// One weight block i (tile i) of the current k step, the activation parts already in tiles 5-7:
// bf16 weights w·(p0 + p1 + p2); f16 weights split in two, wh·(p0 + p1 + p2) + wl·(p0 + p1)
// (wl·p2 is below 2^-24 of the product).
#define STEP_BF16(i, a, lda)                 \
    do {                                     \
        _tile_loadd(4, (a), (lda));          \
        _tile_dpbf16ps(i, 4, 5);             \
        _tile_dpbf16ps(i, 4, 6);             \
        _tile_dpbf16ps(i, 4, 7);             \
    } while (0)
#define STEP_F16(i, a, b, lda)               \
    do {                                     \
        _tile_loadd(4, (a), (lda));          \
        _tile_dpbf16ps(i, 4, 5);             \
        _tile_dpbf16ps(i, 4, 6);             \
        _tile_dpbf16ps(i, 4, 7);             \
        _tile_loadd(4, (b), (lda));          \
        _tile_dpbf16ps(i, 4, 5);             \
        _tile_dpbf16ps(i, 4, 6);             \
    } while (0)

TAMX void c3po_linear_amx(C3PO_LINEAR_ARGS) {
    long n16 = n & ~15L;
    if (k % 32 != 0 || n16 == 0 || dtype == C3PO_DTYPE_F32) { c3po_linear_avx512(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); return; }
    configure_tiles();
    // Tokens are taken in chunks whose packed activations (6 bytes per token and column) stay in
    // L2 while every weight group passes over them: 128 tokens at k = 1024, 64 at 2048.
    long kblocks = k / 32, chunk = (768 * 1024 / (6 * k)) & ~15L;
    if (chunk < 16) chunk = 16;
    if (chunk > 128) chunk = 128;
    if (chunk > ((m + 15) & ~15L)) chunk = (m + 15) & ~15L;
    uint32_t *tiles = c3po_scratch(1, sizeof(uint32_t) * (size_t)(chunk / 16 * kblocks * 768));
    uint16_t *row = c3po_scratch(2, sizeof(uint16_t) * (size_t)(16 * 3 * k));
    // f16 weights are converted per group of 64 rows into two bf16 parts (exact) in scratch,
    // rows of k.
    uint16_t *whi = NULL, *wlo = NULL;
    if (dtype == C3PO_DTYPE_F16) { whi = c3po_scratch(3, sizeof(uint16_t) * (size_t)(2 * 64 * k)); wlo = whi + 64 * k; }
    float out[4][16][16];
    const uint16_t *wb = (const uint16_t *)w;
    for (long c0 = 0; c0 < m; c0 += chunk) {
        long mc = m - c0 < chunk ? m - c0 : chunk, tblocks = (mc + 15) / 16;
        pack_activations(x + c0 * ldx, ldx, mc, k, tiles, row);
        for (long j0 = 0; j0 < n16; j0 += 64) {
            int nb = (int)((n16 - j0) / 16 < 4 ? (n16 - j0) / 16 : 4);
            const uint16_t *ahi = wb + j0 * ldw, *alo = NULL;
            long lda = 2 * ldw;
            if (dtype == C3PO_DTYPE_F16) {
                for (int r = 0; r < 16 * nb; r++) split_f16_row(ahi + r * ldw, k, whi + r * k, wlo + r * k);
                ahi = whi; alo = wlo; lda = 2 * k;
            }
            long rowstep = lda / 2 * 16; // elements from one 16-row block to the next
            for (long tb = 0; tb < tblocks; tb++) {
                _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                const uint32_t *xt = tiles + tb * kblocks * 768;
                for (long kb = 0; kb < kblocks; kb++) {
                    _tile_loadd(5, xt + kb * 768, 64);
                    _tile_loadd(6, xt + kb * 768 + 256, 64);
                    _tile_loadd(7, xt + kb * 768 + 512, 64);
                    const uint16_t *h = ahi + kb * 32;
                    if (!alo) {
                        STEP_BF16(0, h, lda);
                        if (nb > 1) STEP_BF16(1, h + rowstep, lda);
                        if (nb > 2) STEP_BF16(2, h + 2 * rowstep, lda);
                        if (nb > 3) STEP_BF16(3, h + 3 * rowstep, lda);
                    } else {
                        const uint16_t *l = alo + kb * 32;
                        STEP_F16(0, h, l, lda);
                        if (nb > 1) STEP_F16(1, h + rowstep, l + rowstep, lda);
                        if (nb > 2) STEP_F16(2, h + 2 * rowstep, l + 2 * rowstep, lda);
                        if (nb > 3) STEP_F16(3, h + 3 * rowstep, l + 3 * rowstep, lda);
                    }
                }
                _tile_stored(0, out[0], 64);
                if (nb > 1) _tile_stored(1, out[1], 64);
                if (nb > 2) _tile_stored(2, out[2], 64);
                if (nb > 3) _tile_stored(3, out[3], 64);
                long t0 = c0 + tb * 16, tn = m - t0 < 16 ? m - t0 : 16;
                for (long t = 0; t < tn; t++) {
                    float *yt = y + (t0 + t) * ldy + j0;
                    if (accumulate) { for (int i = 0; i < nb; i++) for (int r = 0; r < 16; r++) yt[16 * i + r] += out[i][r][t]; }
                    else { for (int i = 0; i < nb; i++) for (int r = 0; r < 16; r++) yt[16 * i + r] = out[i][r][t]; }
                }
            }
        }
    }
    if (n16 < n)
        c3po_linear_avx512(x, ldx, (const char *)w + (size_t)(n16 * ldw) * 2, dtype, ldw,
                           y + n16, ldy, m, n - n16, k, accumulate);
}

#else
void c3po_linear_amx(C3PO_LINEAR_ARGS) { c3po_linear_scalar(x, ldx, w, dtype, ldw, y, ldy, m, n, k, accumulate); }
#endif
