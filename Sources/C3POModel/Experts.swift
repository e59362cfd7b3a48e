import C3POCore
import Foundation

/// One SwiGLU expert (OlmoeMLP): down(silu(gate(x)) · up(x)).
struct SwiGLUExpert: @unchecked Sendable {
    let gate: WeightMatrix // [inter, hidden]
    let up: WeightMatrix   // [inter, hidden]
    let down: WeightMatrix // [hidden, inter]
}

/// A layer's routed experts, run grouped: the tokens routed to each expert are gathered and
/// multiplied with one kernel call per projection (the weight read in place in its stored
/// dtype); experts run in parallel.
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
        let prof = StageProfile.shared
        Parallel.dynamicForEach(active.count, workers: pool.workers) { worker, ai in
            let e = active[ai]
            let rows = assigned[e]
            let m = rows.count
            let scratch = pool.buffer(worker, m * h + 2 * m * n + m * h)
            let xe = scratch                // [m, hidden]
            let g = xe + m * h              // [m, inter]
            let u = g + m * n               // [m, inter]
            let y = u + m * n               // [m, hidden]
            var laps = StageProfile.Laps(prof)
            for (r, p) in rows.enumerated() { (xe + r * h).update(from: x + p.token * h, count: h) }
            laps.lap("experts.gather")
            let ex = experts[e]
            ex.gate.product(xe, ldx: h, tokens: m, rows: 0, n, into: g, ldo: n) // [m, inter]
            ex.up.product(xe, ldx: h, tokens: m, rows: 0, n, into: u, ldo: n)   // [m, inter]
            MatMul.siluMul(g, u, count: m * n)
            ex.down.product(g, ldx: n, tokens: m, rows: 0, h, into: y, ldo: h)  // [m, hidden]
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
