// Matrix products of the MoE engine and the sentence embedder, with the weight read in place
// in its stored precision. One entry point, several code paths chosen at run time from what the
// CPU (cpuid) and the OS (xgetbv, and for AMX the Linux permission request) offer:
//
//   scalar      portable C, any CPU
//   avx2        AVX2 + FMA + F16C, 8 lanes; bf16/f16 weights widened to f32 on load
//   avx512      AVX-512 F/BW/VL/DQ, 16 lanes; bf16/f16 weights widened to f32 on load; f32
//               weights from 12 tokens on with the tokens in the lanes (also on the amx path)
//   avx512bf16  avx512 + AVX512_BF16: bf16 weights through vdpbf16ps
//   amx         avx512bf16 + AMX-TILE/AMX-BF16: bf16 and f16 weights through tdpbf16ps tiles
//
// Every path computes to f32 accuracy and accumulates in f32. f32 weights always run in f32
// arithmetic (fused multiply-add). The bf16 instructions multiply bf16 by bf16, so the f32
// activations are split into three bf16 parts, x = p0 + p1 + p2 with p0 = bf16(x),
// p1 = bf16(x - p0), p2 = bf16(x - p0 - p1) (24 significant bits, as many as the f32), and each
// part is multiplied; f16 weights on the amx path are split exactly into two bf16 parts
// (an f16 has 11 significant bits) and the five products above 2^-24 are accumulated.
//
// The fastest path is chosen in the order amx, avx512, avx512bf16, avx2, scalar: with the
// three-part split, vdpbf16ps was measured slower than widening bf16 to f32 for FMA on the
// machine this was written on (docs/benchmarks.md), so avx512bf16 runs only when asked for.
#ifndef C3PO_KERNELS_H
#define C3PO_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum c3po_dtype { C3PO_DTYPE_F32 = 0, C3PO_DTYPE_BF16 = 1, C3PO_DTYPE_F16 = 2 };

enum c3po_path {
    C3PO_PATH_SCALAR = 0,
    C3PO_PATH_AVX2 = 1,
    C3PO_PATH_AVX512 = 2,
    C3PO_PATH_AVX512BF16 = 3,
    C3PO_PATH_AMX = 4,
    C3PO_PATH_COUNT = 5
};

// CPU and OS features (cpuid, xgetbv), one bit each.
enum c3po_cpu_feature {
    C3PO_CPU_AVX2 = 1u << 0,        // AVX2 and FMA, AVX state enabled by the OS
    C3PO_CPU_F16C = 1u << 1,
    C3PO_CPU_AVX512 = 1u << 2,      // AVX-512 F, BW, VL and DQ, ZMM state enabled by the OS
    C3PO_CPU_AVX512VNNI = 1u << 3,
    C3PO_CPU_AVX512BF16 = 1u << 4,
    C3PO_CPU_AVX512FP16 = 1u << 5,
    C3PO_CPU_AMX_TILE = 1u << 6,    // AMX-TILE with tile state enabled by the OS (XCR0 bits 17, 18)
    C3PO_CPU_AMX_BF16 = 1u << 7,
    C3PO_CPU_AMX_INT8 = 1u << 8,
    C3PO_CPU_AMX_PERMITTED = 1u << 9 // Linux granted this process the tile data state
};

// Features of this CPU; the AMX permission is requested on the first call (once per process).
unsigned c3po_cpu_features(void);

// Whether `path` can run here (every instruction it uses is offered by the CPU and the OS).
int c3po_path_supported(int path);

// The preferred path that can run here (amx, avx512, avx512bf16, avx2, scalar in that order).
int c3po_best_path(void);

// "scalar", "avx2", "avx512", "avx512bf16", "amx"; NULL outside the range.
const char *c3po_path_name(int path);

// y[i·ldy + j] = Σ_c x[i·ldx + c] · W[j·ldw + c]   (accumulate = 0)
// y[i·ldy + j] += Σ_c x[i·ldx + c] · W[j·ldw + c]  (accumulate ≠ 0)
// for tokens i < m, output features j < n, inputs c < k: a linear layer y = x · Wᵀ with the
// weight stored [n, k] row-major (PyTorch's layout) in `dtype`, ldw in elements. Single-threaded;
// callers split n (or m) across threads. `path` must be supported (the scalar path always is);
// a path without a kernel for this dtype or shape uses the next one below it.
void c3po_linear(int path, const float *x, long ldx, const void *w, int dtype, long ldw,
                 float *y, long ldy, long m, long n, long k, int accumulate);

// dx[i·lddx + c] = Σ_j dy[i·lddy + j] · W[j·ldw + c]   (accumulate = 0; += otherwise)
// for i < m, c < k, j < n: the input gradient of c3po_linear's layer (dx = dy · W), the weight
// [n, k] read in place in `dtype`. Single-threaded; callers split k (columns) across threads.
// AVX-512 or AVX2 where the path has it (f32 fused multiply-add, bf16/f16 widened), else scalar.
void c3po_linear_t(int path, const float *dy, long lddy, const void *w, int dtype, long ldw,
                   float *dx, long lddx, long m, long n, long k, int accumulate);

// f32 weights the caller holds in memory and may repack once (the embedder's layers): W [n, k]
// (row stride ldw) as panels of 32 output features, [ceil(n/32)][k][32] floats, zero padded;
// then y (+)= x · Wᵀ as c3po_linear, by outer products (no reductions). A panel range starts at
// panels + (j / 32)·32·k for output feature j (a multiple of 32).
long c3po_panel_floats(long n, long k);
void c3po_pack_panels(const float *w, long ldw, long n, long k, float *panels);
void c3po_linear_panels(int path, const float *x, long ldx, const float *panels, float *y, long ldy,
                        long m, long n, long k, int accumulate);
// The same with the activations packed once by the caller (x [m, k] as [ceil(m/8)][k][8], zero
// padded: c3po_pack_rows8, c3po_packed_rows8_floats floats), e.g. once for all the threads that
// split n; `x` itself is still given (the paths without AVX-512 read it unpacked). With `bias`
// (n values, or NULL), y[t, j] += bias[j] as well.
long c3po_packed_rows8_floats(long m, long k);
// Whether c3po_linear_panels_packed on `path` reads the packed activations (else xp may be NULL).
int c3po_panels_read_packed(int path);
void c3po_pack_rows8(const float *x, long ldx, long m, long k, float *out);
void c3po_linear_panels_packed(int path, const float *xp, const float *x, long ldx, const float *panels, const float *bias,
                               float *y, long ldy, long m, long n, long k, int accumulate);

// dst[i] = src[i] for n IEEE float16 values (exact; hardware conversion where the CPU has it).
void c3po_f16_to_f32_array(const uint16_t *src, float *dst, long n);

// Attention of one query position over p cached positions (K, V: p rows of ldkv floats, kv head g
// at column g·d) and its own key and value (kown, vown [kvHeads·d]), every head (heads a multiple
// of kvHeads; head h uses kv head h / (heads / kvHeads)): alpha [heads][p + 1] ← softmax(scale ·
// q_h · key_j), the own position last; out [heads·d] ← Σ_j alpha_hj value_j.
void c3po_attend_one(int path, const float *q, const float *K, const float *V, long ldkv, const float *kown, const float *vown,
                     long p, long heads, long kvHeads, long d, float scale, float *alpha, float *out);
// Its backward given dout = ∂/∂out [heads·d]: ds [heads][p + 1] ← ∂/∂(scaled scores) (scratch
// the caller provides, left holding them), dq += ∂/∂q, dkown += ∂/∂kown, dvown += ∂/∂vown (the
// cache's keys and values are constants).
void c3po_attend_one_backward(int path, const float *q, const float *K, const float *V, long ldkv, const float *kown, const float *vown,
                              const float *alpha, const float *dout, long p, long heads, long kvHeads, long d, float scale,
                              float *ds, float *dq, float *dkown, float *dvown);

// Element-wise functions with exp, 16 lanes at a time where the path has AVX-512 (exp by a
// degree-6 polynomial on [-ln2/2, ln2/2] and vscalefps, within 2 ulp of expf), else expf.
// x[0..n) ← softmax(x) (max subtracted first).
void c3po_softmax(int path, float *x, long n);
// g[i] ← g[i] / (1 + exp(-g[i])) · u[i] (SwiGLU: silu(gate) · up).
void c3po_silu_mul(int path, float *g, const float *u, long n);
// The backward of c3po_silu_mul at gate g and up u, given d = ∂/∂(silu(g) · u):
// du[i] = d[i] · silu(g[i]), dg[i] = d[i] · u[i] · σ(g[i]) (1 + g[i] (1 − σ(g[i]))).
void c3po_silu_mul_backward(int path, const float *g, const float *u, const float *d, float *dg, float *du, long n);
// One row of BERT's LayerNorm after a residual add: x ← x + residual (when not NULL), then
// x ← (x − mean) / √(var + eps) · weight + bias over its n values (biased variance, as torch).
void c3po_add_layer_norm(int path, float *x, const float *residual, long n, const float *weight, const float *bias, float eps);
// x[i] ← x[i]/2 · (1 + erf(x[i]/√2)) (BERT's exact GELU); erf on AVX-512 by Abramowitz and
// Stegun 7.1.26 (absolute error below 1.5e-7), else erff.
void c3po_gelu(int path, float *x, long n);

// A parallel region on the kernels' worker pool (pool.c): fn(ctx, worker, item) for every item
// in 0..<items, items handed out one at a time to `workers` threads (the caller is worker 0).
// Returns 0 when done, or C3PO_POOL_BUSY without running anything when the pool is running
// another region (another thread's, or the caller's own: a region inside a task).
typedef void (*c3po_task_fn)(void *ctx, long worker, long item);
#define C3PO_POOL_BUSY 1
int c3po_parallel(long items, long workers, c3po_task_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
