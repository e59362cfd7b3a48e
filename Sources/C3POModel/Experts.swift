import C3POCore
import Foundation

/// One SwiGLU expert (OlmoeMLP): down(silu(gate(x)) · up(x)).
struct SwiGLUExpert: @unchecked Sendable {
    let gate: WeightMatrix // [inter, hidden]
    let up: WeightMatrix   // [inter, hidden]
    let down: WeightMatrix // [hidden, inter]
}

/// A layer's routed experts, run grouped: the tokens routed to each expert are gathered and
/// multiplied with one sgemm per projection (or, for half-precision weights, per tile of
/// weight rows); experts run in parallel.
///
/// The products are computed transposed, Wᵀ-side first: gᵀ [inter, m] = W_gate [inter, hidden]
/// · x_eᵀ. OpenBLAS is markedly faster for a tall weight times a few token columns than for
/// the mirrored x_e · Wᵀ at the m ≈ 8–32 tokens an expert receives in a prefill (measured on
/// this machine: ~24 vs ~14 GFLOP/s at m = 16), and weight rows map to contiguous output rows,
/// so half-precision weights can be converted and multiplied a tile of rows at a time.
struct ExpertBank {
    let experts: [SwiGLUExpert]
    let hidden: Int
    let inter: Int

    /// Rows of a half-precision weight converted per sgemm (`C3PO_HALF_TILE_ROWS`; 0 = the
    /// whole matrix). A 128 × 2048 f32 tile is 1 MiB: it stays in cache between its conversion
    /// and its product, and per-worker scratch stays small.
    static let tileRows: Int = {
        if let s = ProcessInfo.processInfo.environment["C3PO_HALF_TILE_ROWS"], let v = Int(s), v >= 0 { return v }
        return 128
    }()

    /// wOut[rows of W, m] = W · xᵀ for x [m, cols]: rows of W in tiles converted into `tile`
    /// (half precision) or straight from the mapping (f32). Output [W.rows, m], ldc m.
    @inline(__always)
    static func productT(_ w: WeightMatrix, x: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>,
                         tile: UnsafeMutablePointer<Float>) {
        let prof = StageProfile.shared
        var t0 = prof.enabled ? StageProfile.now() : 0
        func lap(_ stage: String) { if prof.enabled { let t1 = StageProfile.now(); prof.add(stage, t1 - t0); t0 = t1 } }
        if w.isF32 {
            // [rows, cols] · [m, cols]ᵀ → [rows, m]
            BLAS.sgemm(transB: true, m: w.rows, n: m, k: w.cols, a: w.rows(0, w.rows, scratch: tile), lda: w.cols,
                       b: x, ldb: w.cols, c: out, ldc: m)
            lap("experts.compute.sgemm")
        } else if m <= HalfKernels.directMaxRows {
            HalfKernels.product(w, rows: 0, w.rows, x: x, tokens: m, ldx: w.cols, into: out, rowStride: m, tokenStride: 1)
            lap("experts.compute.direct")
        } else {
            let step = tileRows == 0 ? w.rows : tileRows
            var lo = 0
            while lo < w.rows {
                let hi = min(w.rows, lo + step)
                let wt = w.rows(lo, hi, scratch: tile) // [hi - lo, cols]
                lap("experts.compute.convert")
                // [hi - lo, cols] · [m, cols]ᵀ → out rows lo ..< hi
                BLAS.sgemm(transB: true, m: hi - lo, n: m, k: w.cols, a: wt, lda: w.cols, b: x, ldb: w.cols, c: out + lo * m, ldc: m)
                lap("experts.compute.sgemm")
                lo = hi
            }
        }
    }

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
        let prof = StageProfile.shared
        let tileFloats = Self.tileRows == 0 ? max(n, h) * max(n, h) : Self.tileRows * max(n, h)
        Kernels.dynamicForEach(active.count, workers: pool.workers) { worker, ai in
            let e = active[ai]
            let rows = assigned[e]
            let m = rows.count
            let weightsF32 = experts[e].gate.isF32
            let scratch = pool.buffer(worker, m * h + 2 * m * n + m * h + (weightsF32 ? 0 : tileFloats))
            let xe = scratch                // [m, hidden]
            let g = xe + m * h              // gᵀ [inter, m]
            let u = g + m * n               // uᵀ [inter, m]
            let y = u + m * n               // yᵀ [hidden, m]
            let tile = y + m * h            // converted weight rows
            var t0 = prof.enabled ? StageProfile.now() : 0
            func lap(_ stage: String) { if prof.enabled { let t1 = StageProfile.now(); prof.add(stage, t1 - t0); t0 = t1 } }
            for (r, p) in rows.enumerated() { (xe + r * h).update(from: x + p.token * h, count: h) }
            lap("experts.gather")
            Self.productT(experts[e].gate, x: xe, m: m, into: g, tile: tile) // [inter, m]
            Self.productT(experts[e].up, x: xe, m: m, into: u, tile: tile)   // [inter, m]
            for i in 0..<(m * n) { g[i] = Kernels.silu(g[i]) * u[i] }
            // down: [hidden, inter] · (silu(g)·u)ᵀ; productT wants its right side as [m, inter] rows.
            let a = u // reuse: [m, inter]
            for r in 0..<m { for j in 0..<n { a[r * n + j] = g[j * m + r] } }
            Self.productT(experts[e].down, x: a, m: m, into: y, tile: tile) // [hidden, m]
            lap("experts.compute")
            for (r, p) in rows.enumerated() {
                let w = routing[p.token][p.slot].weight
                let dst = slots + (p.token * k + p.slot) * h
                for i in 0..<h { dst[i] = w * y[i * m + r] }
            }
            lap("experts.scatter")
        }
        let tc = prof.enabled ? StageProfile.now() : 0
        defer { if prof.enabled { prof.add("experts.combine", StageProfile.now() - tc) } }
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
