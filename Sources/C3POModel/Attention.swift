import C3POCore
import Foundation

/// Causal multi-head attention with grouped key/value heads over a key/value cache.
/// Queries `q` [nq, heads × d] sit at positions `firstQuery ..< firstQuery + nq`; keys and
/// values `k`, `v` [total, kvHeads × d] cover positions 0 ..< total; query i attends to keys
/// 0 ... firstQuery + i (eager_attention_forward with a causal mask: softmax(QKᵀ·scale)·V).
/// One sgemm for QKᵀ and one for PV per head; heads run in parallel.
struct CausalAttention {
    let heads: Int
    let kvHeads: Int
    let headDim: Int

    func callAsFunction(q: UnsafePointer<Float>, queries nq: Int, firstQuery: Int,
                        k: UnsafePointer<Float>, v: UnsafePointer<Float>, total: Int,
                        into out: UnsafeMutablePointer<Float>, pool: ScratchPool) {
        let d = headDim, qStride = heads * d, kvStride = kvHeads * d
        let group = heads / kvHeads
        let scale = 1 / Float(d).squareRoot()
        Kernels.dynamicForEach(heads, workers: pool.workers) { worker, h in
            let kvh = h / group // repeat_kv: query head h reads key/value head h / group
            let scores = pool.buffer(worker, nq * total) // [nq, total]
            // [nq, d] · [total, d]ᵀ → [nq, total]
            BLAS.sgemm(transB: true, m: nq, n: total, k: d, alpha: scale, a: q + h * d, lda: qStride,
                       b: k + kvh * d, ldb: kvStride, c: scores, ldc: total)
            for i in 0..<nq {
                let row = scores + i * total
                let visible = firstQuery + i + 1
                Kernels.softmax(row, count: visible)
                for j in visible..<max(visible, total) { row[j] = 0 }
            }
            // [nq, total] · [total, d] → out[:, h·d ..< (h+1)·d]
            BLAS.sgemm(m: nq, n: d, k: total, a: scores, lda: total, b: v + kvh * d, ldb: kvStride,
                       c: out + h * d, ldc: qStride)
        }
    }
}
