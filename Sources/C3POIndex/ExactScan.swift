import C3POCore
import Foundation

/// Exact inner-product search over the embeddings in memory, on our kernels: the search of a
/// `Flat` index (the same answer as faiss's IndexFlatIP, whose single-query path scans without
/// BLAS and ran at 5.5x a memory-bound scan here: docs/benchmarks.md). Reference rows are taken
/// in blocks of 4,096 handed out to the workers, so that one query uses every core; each worker
/// keeps its own top-k per query, merged at the end. Ties go to the lower row.
public enum ExactScan {
    struct Hit { var id: Int; var score: Float }

    static let blockRows = 4096
    static let queryGroup = 64

    /// The `k` best rows of each query: queries [n, d], rows [count, d], best first.
    public static func search(_ queries: [Float], rows: [Float], dimension d: Int, k: Int,
                       threads: Int = Parallel.defaultThreads) -> [[(id: Int, score: Float)]] {
        let n = queries.count / d, count = rows.count / d
        guard n > 0, count > 0, k > 0 else { return Array(repeating: [], count: n) }
        let kk = min(k, count)
        let blocks = (count + blockRows - 1) / blockRows, groups = (n + queryGroup - 1) / queryGroup
        let workers = max(1, min(threads, blocks * groups))
        // tops[w][q]: worker w's best kk of query q, best first.
        // Each worker's list is its own buffer from the start: a repeated value would share one
        // until the first write, and workers writing their copies at once race on that buffer's
        // uniqueness check (ThreadSanitizer reports it).
        var tops = (0..<workers).map { _ in [[Hit]](repeating: [], count: n) }
        let scratch = ScratchPool(workers: workers)
        queries.withUnsafeBufferPointer { qb in
            rows.withUnsafeBytes { rb in
                tops.withUnsafeMutableBufferPointer { tb in
                    let tp = tb.baseAddress!
                    Parallel.dynamicForEach(blocks * groups, workers: workers) { w, task in
                        let g = task / blocks, b = task % blocks
                        let q0 = g * queryGroup, qn = min(queryGroup, n - q0)
                        let r0 = b * blockRows, rn = min(blockRows, count - r0)
                        let scores = scratch.buffer(w, qn * rn) // [qn, rn]
                        MatMul.linear(qb.baseAddress! + q0 * d, ldx: d, weight: rb.baseAddress! + 4 * r0 * d, dtype: .f32, ldw: d,
                                      into: scores, ldy: rn, m: qn, n: rn, k: d)
                        for i in 0..<qn {
                            let row = scores + i * rn
                            var top = tp[w][q0 + i]
                            for j in 0..<rn {
                                let s = row[j]
                                if top.count == kk, !(s > top[kk - 1].score) { continue }
                                insert(Hit(id: r0 + j, score: s), into: &top, limit: kk)
                            }
                            tp[w][q0 + i] = top
                        }
                    }
                }
            }
        }
        return (0..<n).map { q in
            var all = tops.flatMap { $0[q] }
            all.sort { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }
            return all.prefix(kk).map { ($0.id, $0.score) }
        }
    }

    /// Sorted insertion (best first; equal scores keep the lower row first) into at most `limit`.
    @inline(__always)
    static func insert(_ h: Hit, into top: inout [Hit], limit: Int) {
        var i = top.count
        while i > 0, top[i - 1].score < h.score || (top[i - 1].score == h.score && top[i - 1].id > h.id) { i -= 1 }
        guard i < limit else { return }
        top.insert(h, at: i)
        if top.count > limit { top.removeLast() }
    }
}
