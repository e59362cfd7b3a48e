import C3POCore
import Foundation

/// One SwiGLU expert (OlmoeMLP): down(silu(gate(x)) · up(x)).
struct SwiGLUExpert: @unchecked Sendable {
    let gate: WeightMatrix // [inter, hidden]
    let up: WeightMatrix   // [inter, hidden]
    let down: WeightMatrix // [hidden, inter]
}

/// A layer's routed experts, run grouped: the tokens routed to each expert are gathered and
/// multiplied with one sgemm per projection; experts run in parallel, each converting its
/// half-precision weights once into the worker's scratch.
struct ExpertBank {
    let experts: [SwiGLUExpert]
    let hidden: Int
    let inter: Int

    /// out[t] = Σ_slot weight · expert(x[t]) for the given routing; `x` [t, hidden], `out` [t, hidden].
    func callAsFunction(_ x: UnsafePointer<Float>, tokens t: Int, routing: [[(expert: Int, weight: Float)]],
                        into out: UnsafeMutablePointer<Float>, pool: ScratchPool) {
        let k = routing.first?.count ?? 0
        // Per expert: the (token, slot) pairs routed to it.
        var assigned = [[(token: Int, slot: Int)]](repeating: [], count: experts.count)
        for (tok, sel) in routing.enumerated() { for (s, c) in sel.enumerated() { assigned[c.expert].append((tok, s)) } }
        let active = assigned.indices.filter { !assigned[$0].isEmpty }
        // Each (token, slot) result lands in its own row so that the sum below runs in a fixed order.
        let slots = UnsafeMutablePointer<Float>.allocate(capacity: max(1, t * k * hidden)) // [t, k, hidden]
        defer { slots.deallocate() }
        let (h, n) = (hidden, inter)
        Kernels.dynamicForEach(active.count, workers: pool.workers) { worker, ai in
            let e = active[ai]
            let rows = assigned[e]
            let m = rows.count
            let weightsF32 = experts[e].gate.isF32
            let scratch = pool.buffer(worker, m * h + 2 * m * n + m * h + (weightsF32 ? 0 : 3 * n * h))
            let xe = scratch                // [m, hidden]
            let g = xe + m * h              // [m, inter]
            let u = g + m * n               // [m, inter]
            let y = u + m * n               // [m, hidden]
            let wbuf = y + m * h            // 3 × [inter, hidden] converted weights
            for (r, p) in rows.enumerated() { (xe + r * h).update(from: x + p.token * h, count: h) }
            let wg = experts[e].gate.rows(0, n, scratch: wbuf)              // [inter, hidden]
            let wu = experts[e].up.rows(0, n, scratch: wbuf + n * h)        // [inter, hidden]
            let wd = experts[e].down.rows(0, h, scratch: wbuf + 2 * n * h)  // [hidden, inter]
            // [m, hidden] · [inter, hidden]ᵀ → [m, inter]
            BLAS.sgemm(transB: true, m: m, n: n, k: h, a: xe, lda: h, b: wg, ldb: h, c: g, ldc: n)
            BLAS.sgemm(transB: true, m: m, n: n, k: h, a: xe, lda: h, b: wu, ldb: h, c: u, ldc: n)
            for i in 0..<(m * n) { g[i] = Kernels.silu(g[i]) * u[i] }
            // [m, inter] · [hidden, inter]ᵀ → [m, hidden]
            BLAS.sgemm(transB: true, m: m, n: h, k: n, a: g, lda: n, b: wd, ldb: n, c: y, ldc: h)
            for (r, p) in rows.enumerated() {
                let w = routing[p.token][p.slot].weight
                let dst = slots + (p.token * k + p.slot) * h
                let src = y + r * h
                for i in 0..<h { dst[i] = w * src[i] }
            }
        }
        for tok in 0..<t {
            let o = out + tok * h
            for i in 0..<h { o[i] = 0 }
            for s in 0..<k {
                let src = slots + (tok * k + s) * h
                for i in 0..<h { o[i] += src[i] }
            }
        }
    }
}
