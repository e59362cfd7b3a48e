import C3POCore
import Foundation

/// One SwiGLU expert (OlmoeMLP): down(silu(gate(x)) · up(x)).
struct SwiGLUExpert: @unchecked Sendable {
    let gate: WeightMatrix // [inter, hidden]
    let up: WeightMatrix   // [inter, hidden]
    let down: WeightMatrix // [hidden, inter]
}

/// A layer's routed experts, run grouped: the tokens routed to each expert are gathered and
/// multiplied with one sgemm per projection (for half-precision weights, one per tile of
/// weight rows, or a direct product when the expert received only a few tokens); experts run
/// in parallel.
struct ExpertBank {
    let experts: [SwiGLUExpert]
    let hidden: Int
    let inter: Int

    /// Rows of a half-precision weight converted per sgemm (`C3PO_HALF_TILE_ROWS`); 0, the
    /// default, converts one whole projection (inter × hidden, 8 MiB of f32 at OLMoE-1B-7B's
    /// shape) per worker at a time. Tiles of 64–256 rows would keep the converted weight in
    /// cache, but measured slower here: 30–45 % more CPU in the expert products, since each
    /// sgemm then gets a narrow [m, tile] output (docs/benchmarks.md `## moe`).
    static let tileRows: Int = {
        if let s = ProcessInfo.processInfo.environment["C3PO_HALF_TILE_ROWS"], let v = Int(s), v >= 0 { return v }
        return 0
    }()

    /// out [m, W.rows] = x [m, cols] · Wᵀ. F32 weights straight from the mapping; half-precision
    /// ones read directly for m ≤ `HalfKernels.directMaxRows`, else converted into `tile`
    /// (whole, or `tileRows` rows at a time) and multiplied with sgemm.
    @inline(__always)
    static func product(_ w: WeightMatrix, x: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>,
                        tile: UnsafeMutablePointer<Float>) {
        var laps = StageProfile.Laps(StageProfile.shared)
        if w.isF32 {
            // [m, cols] · [rows, cols]ᵀ → [m, rows]
            BLAS.sgemm(transB: true, m: m, n: w.rows, k: w.cols, a: x, lda: w.cols, b: w.rows(0, w.rows, scratch: tile), ldb: w.cols,
                       c: out, ldc: w.rows)
            laps.lap("experts.compute.sgemm")
        } else if m <= HalfKernels.directMaxRows {
            HalfKernels.product(w, rows: 0, w.rows, x: x, tokens: m, ldx: w.cols, into: out, rowStride: 1, tokenStride: w.rows)
            laps.lap("experts.compute.direct")
        } else {
            let step = tileRows == 0 ? w.rows : tileRows
            var lo = 0
            while lo < w.rows {
                let hi = min(w.rows, lo + step)
                let wt = w.rows(lo, hi, scratch: tile) // [hi - lo, cols]
                laps.lap("experts.compute.convert")
                // [m, cols] · [hi - lo, cols]ᵀ → out[:, lo ..< hi]
                BLAS.sgemm(transB: true, m: m, n: hi - lo, k: w.cols, a: x, lda: w.cols, b: wt, ldb: w.cols, c: out + lo, ldc: w.rows)
                laps.lap("experts.compute.sgemm")
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
        let tileFloats = Self.tileRows == 0 ? n * h : Self.tileRows * max(n, h)
        Kernels.dynamicForEach(active.count, workers: pool.workers) { worker, ai in
            let e = active[ai]
            let rows = assigned[e]
            let m = rows.count
            let weightsF32 = experts[e].gate.isF32
            let scratch = pool.buffer(worker, m * h + 2 * m * n + m * h + (weightsF32 ? 0 : tileFloats))
            let xe = scratch                // [m, hidden]
            let g = xe + m * h              // [m, inter]
            let u = g + m * n               // [m, inter]
            let y = u + m * n               // [m, hidden]
            let tile = y + m * h            // converted weight rows
            var laps = StageProfile.Laps(prof)
            for (r, p) in rows.enumerated() { (xe + r * h).update(from: x + p.token * h, count: h) }
            laps.lap("experts.gather")
            Self.product(experts[e].gate, x: xe, m: m, into: g, tile: tile) // [m, inter]
            Self.product(experts[e].up, x: xe, m: m, into: u, tile: tile)   // [m, inter]
            for i in 0..<(m * n) { g[i] = Kernels.silu(g[i]) * u[i] }
            Self.product(experts[e].down, x: g, m: m, into: y, tile: tile)  // [m, hidden]
            laps.lap("experts.compute")
            for (r, p) in rows.enumerated() {
                let w = routing[p.token][p.slot].weight
                let dst = slots + (p.token * k + p.slot) * h
                let src = y + r * h
                for i in 0..<h { dst[i] = w * src[i] }
            }
            laps.lap("experts.scatter")
        }
        var combine = StageProfile.Laps(prof)
        defer { combine.lap("experts.combine") }
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
