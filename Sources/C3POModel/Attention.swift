import C3POCore
import Foundation

/// Causal multi-head attention with grouped key/value heads over a key/value cache.
/// Queries `q` [nq, heads × d] sit at positions `firstQuery ..< firstQuery + nq`; keys and
/// values `k`, `v` [total, kvHeads × d] cover positions 0 ..< total; query i attends to keys
/// 0 ... firstQuery + i (eager_attention_forward with a causal mask: softmax(QKᵀ·scale)·V).
/// Products on our kernels (weights = the cached keys, and the values transposed per head), in
/// blocks of 64 queries so that masked-out keys are neither multiplied nor summed; heads run in
/// parallel.
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
        let block = 64
        Parallel.dynamicForEach(heads, workers: pool.workers) { worker, h in
            let kvh = h / group // repeat_kv: query head h reads key/value head h / group
            let buffer = pool.buffer(worker, block * total + d * total)
            let scores = buffer             // [≤ block, total]
            let vt = buffer + block * total // [d, total]: this head's values, transposed
            let vh = v + kvh * d
            for j in 0..<total { for c in 0..<d { vt[c * total + j] = vh[j * kvStride + c] } }
            var i0 = 0
            while i0 < nq {
                let rows = min(block, nq - i0)
                let cols = min(total, firstQuery + i0 + rows) // keys the block's last query sees
                // [rows, d] · [cols, d]ᵀ → scores [rows, cols] (row stride cols)
                MatMul.linear(q + i0 * qStride + h * d, ldx: qStride, weight: UnsafeRawPointer(k + kvh * d), dtype: .f32, ldw: kvStride,
                              into: scores, ldy: cols, m: rows, n: cols, k: d)
                for i in 0..<rows {
                    let row = scores + i * cols
                    let visible = firstQuery + i0 + i + 1
                    for j in 0..<visible { row[j] *= scale }
                    Kernels.softmax(row, count: visible)
                    for j in visible..<cols { row[j] = 0 }
                }
                // [rows, cols] · Vᵀ[d, cols]ᵀ → out[i0 ..< i0 + rows, h·d ..< (h+1)·d]
                MatMul.linear(scores, ldx: cols, weight: UnsafeRawPointer(vt), dtype: .f32, ldw: total,
                              into: out + i0 * qStride + h * d, ldy: qStride, m: rows, n: d, k: cols)
                i0 += rows
            }
        }
    }
}
