import C3POCore
import Foundation

// Exact gradients of prompts' last-position losses with respect to the routing weights of the
// overridden layers, at the cost of a tail re-evaluation (neighbourhood gradient descent).
//
// The override touches only the last position, and a causal model's earlier positions never see
// it: with a prefill's cached keys/values of the earlier positions and the residual entering the
// lowest overridden layer, the loss is a function of one token's path through the remaining
// layers, the final norm and the label rows of the LM head. The forward below keeps what the
// backward needs (a tape per layer); the backward is derived by hand, operation by operation.
// Several prompts (a test question's neighbours, or the neighbours of several test questions)
// run as the rows of one batch, each row under its own override: every weight is read once per
// batch, and an expert that several rows choose runs once over all of them.

/// The cross-entropy of one prompt's label logits at the last position under an override, and
/// its gradient with respect to the override's weights.
public struct TailGradient: Sendable {
    /// −log softmax(logits)[target], over the requested rows only.
    public var loss: Float
    /// The logits of the requested rows at the last position, the override applied. [rows]
    public var logits: [Float]
    /// ∂loss/∂ω for every overridden layer, over all experts, where ω is the override's raw
    /// weights (the layer's distribution is replaced by ω / Σω, then top-k is taken from it).
    /// Experts outside the top-k receive gradient only through that normalisation (none when the
    /// family renormalises the k chosen weights). [layer: [experts]]
    public var omega: [Int: [Float]]
}

/// At the lowest overridden layer of a prompt, the input is the prefill's own (no override below
/// it), so attention, the post-attention norm and every expert's output there are constants of
/// the prompt: only the mixing weights change with ω, and ∂loss/∂gate = dy · out needs no weight.
/// Kept per layer with the state, filled as experts are first chosen.
final class LowestLayerMemo: @unchecked Sendable {
    final class Layer {
        var x1: [Float] = []    // [hidden] input + attention
        var b: [Float] = []     // [hidden] post_attention_layernorm(x1)
        var outs: [Int: [Float]] = [:] // expert → [hidden] output on b
        var shared: [Float]?    // [hidden] shared expert's output
        var sharedGate: Float = 1
    }
    private let lock = NSLock()
    private var layers: [Int: Layer] = [:]

    func existing(_ l: Int) -> Layer? {
        lock.lock(); defer { lock.unlock() }
        return layers[l]
    }

    /// Keeps `x` as layer `l`'s memo unless one is there already.
    func store(_ l: Int, _ x: Layer) {
        lock.lock(); defer { lock.unlock() }
        if layers[l] == nil { layers[l] = x }
    }
}

extension MoEDecoderModel {
    /// The rows of a batch that one SwiGLU expert (or MLP) ran on, and what it computed.
    struct ExpertGroup {
        var expert: Int
        /// (batch row, slot in that row's top-k) per gathered row.
        var entries: [(row: Int, slot: Int)]
        /// The mixing weight of each gathered row (1 for a dense MLP or an ungated shared expert).
        var gates: [Float]
        var preGate: [Float] // [n, inter] gate_proj(b)
        var up: [Float]      // [n, inter] up_proj(b)
        var out: [Float]     // [n, hidden] down_proj(silu(preGate) · up)

        /// The entries of the rows `live` marks (nil when none is left).
        func restricted(to live: [Bool]) -> ExpertGroup? {
            let keep = entries.indices.filter { live[entries[$0].row] }
            if keep.count == entries.count { return self }
            guard !keep.isEmpty else { return nil }
            func rows(_ a: [Float]) -> [Float] {
                guard !a.isEmpty else { return a }
                let w = a.count / entries.count
                return keep.flatMap { a[($0 * w)..<(($0 + 1) * w)] }
            }
            return ExpertGroup(expert: expert, entries: keep.map { entries[$0] }, gates: keep.map { gates[$0] },
                               preGate: rows(preGate), up: rows(up), out: rows(out))
        }
    }

    /// The feed-forward block of one layer at the batch's rows.
    struct FeedForwardTape {
        var groups: [ExpertGroup]
        /// Per row, the distribution top-k was taken from: ω / Σω where overridden, else the
        /// router's softmax (empty for a dense layer). [rows][experts]
        var distributions: [[Float]]
        /// Per row, the chosen experts and their mixing weights.
        var routing: [[(expert: Int, weight: Float)]]
        /// Per row, Σω of an overridden layer (nil: the router is live and its softmax is differentiated).
        var omegaSums: [Float]?
        /// The shared expert over every row, its gates σ(z) (Qwen2-MoE) or 1.
        var shared: ExpertGroup?
        var sharedGated = false
    }

    /// What the backward needs of one decoder layer at the last positions of the batch's rows.
    struct LayerTape {
        var xIn: [Float]          // [m, hidden] residual entering the layer
        var qProjected: [Float]   // [m, qDim] after q_proj and bias
        var kProjected: [Float]   // [m, kvDim]
        var qNormed: [Float]      // [m, qDim] after the q norm, before clipping
        var kNormed: [Float]      // [m, kvDim]
        var vProjected: [Float]   // [m, kvDim] after v_proj and bias, before clipping
        var q: [Float]            // [m, qDim] the queries attention used (clipped, rotated)
        var keys: [[Float]]       // per row the cache's keys [≥ p, kvDim] (positions before the last)
        var values: [[Float]]     // per row the cache's values
        var k: [Float]            // [m, kvDim] each row's own key (clipped, rotated) and value
        var v: [Float]
        var attention: [[Float]]  // per row [heads, p + 1] softmax weights of its one query
        var x1: [Float]           // [m, hidden] xIn + o_proj(attention output)
        var b: [Float]            // [m, hidden] post_attention_layernorm(x1), the feed-forward input
        var ffn: FeedForwardTape
    }

    public func tailGradient(_ state: PrefillState, override: RoutingOverride, rows: [Int], target: Int) throws -> TailGradient {
        try tailGradients([state], override: override, rows: [rows], targets: [target], gradient: true)[0]
    }

    public func tailGradients(_ states: [PrefillState], overrides: [RoutingOverride], rows: [[Int]], targets: [Int?], gradient: Bool) throws -> [TailGradient] {
        guard rows.count == states.count, targets.count == states.count, overrides.count == states.count else {
            throw ModelError.input("tailGradient: \(states.count) states, \(overrides.count) overrides, \(rows.count) row sets, \(targets.count) targets")
        }
        guard let first = overrides.first else { return [] }
        guard let fromLayer = first.firstLayer else { throw ModelError.override("tailGradient: the override names no layer") }
        let overridden = Set(first.layers.keys)
        for o in overrides {
            try check(o)
            guard Set(o.layers.keys) == overridden else {
                throw ModelError.override("tailGradient: the rows' overrides name different layers (\(overridden.sorted()) and \(o.layers.keys.sorted()))")
            }
        }
        var sts: [DecoderPrefillState] = []
        for (i, state) in states.enumerated() {
            guard let st = state as? DecoderPrefillState, st.modelID == ObjectIdentifier(self) else {
                throw ModelError.input("tailGradient: the state does not come from this model's prefill")
            }
            try st.checkTail(from: fromLayer, "tailGradient")
            guard !rows[i].isEmpty, rows[i].allSatisfy({ $0 >= 0 && $0 < vocabularySize }) else {
                throw ModelError.input("tailGradient: rows must be non-empty vocabulary ids")
            }
            if let t = targets[i], !rows[i].indices.contains(t) { throw ModelError.input("tailGradient: target \(t) outside 0..<\(rows[i].count)") }
            sts.append(st)
        }
        let m = sts.count, h = spec.hidden
        guard m > 0 else { return [] }
        let positions = sts.map { $0.tokens.count - 1 }
        return withWorkers { pool in
            // Forward, keeping a tape per layer.
            var x = sts.flatMap { $0.lastInputs[fromLayer] } // [m, hidden]
            var tapes: [LayerTape] = []
            let lowest = StageProfile.shared.time("grad.forward") {
                lowestLayer(fromLayer, x, states: sts, weights: overrides.map { $0.layers[fromLayer]! }, pool: pool)
            }
            x = lowest.x1
            addOutput(lowest.ffn, into: &x)
            for l in (fromLayer + 1)..<max(fromLayer + 1, layerCount) {
                let tape = StageProfile.shared.time("grad.forward") {
                    forwardTape(l, x, positions: positions, cachedKeys: sts.map { $0.keys[l] }, cachedValues: sts.map { $0.values[l] },
                                weights: overridden.contains(l) ? overrides.map { $0.layers[l]! } : nil, pool: pool)
                }
                x = tape.x1
                addOutput(tape.ffn, into: &x)
                tapes.append(tape)
            }
            // Final norm, label rows, cross-entropy; then ∂loss/∂x through the head and the norm.
            var results: [TailGradient] = []
            var dx = [Float](repeating: 0, count: m * h) // [m, hidden] ∂loss/∂(residual after the current layer)
            x.withUnsafeBufferPointer { xp in dx.withUnsafeMutableBufferPointer { dp in
                var z = [Float](repeating: 0, count: h), dz = z // [hidden]
                for r in 0..<m {
                    let xr = xp.baseAddress! + r * h
                    z.withUnsafeMutableBufferPointer { Kernels.rmsNorm(xr, into: $0.baseAddress!, rows: 1, cols: h, weight: finalNorm, eps: spec.eps) }
                    let labels = rows[r]
                    var logits = [Float](repeating: 0, count: labels.count) // [labels]
                    z.withUnsafeBufferPointer { zp in logits.withUnsafeMutableBufferPointer { lp in
                        for (i, row) in labels.enumerated() { lmHead.product(zp.baseAddress!, ldx: h, tokens: 1, rows: row, row + 1, into: lp.baseAddress! + i, ldo: 1) }
                    } }
                    guard let target = targets[r] else {
                        // Logits only: no loss, and nothing flows back from this row.
                        for i in 0..<h { dp[r * h + i] = 0 }
                        results.append(TailGradient(loss: 0, logits: logits, omega: [:]))
                        continue
                    }
                    let peak = Double(logits.max()!)
                    let sum = logits.reduce(0.0) { $0 + exp(Double($1) - peak) }
                    var dLogits = logits.map { Float(exp(Double($0) - peak) / sum) } // softmax − onehot
                    dLogits[target] -= 1
                    for i in 0..<h { dz[i] = 0 }
                    dLogits.withUnsafeBufferPointer { gp in dz.withUnsafeMutableBufferPointer { zp in
                        for (i, row) in labels.enumerated() {
                            lmHead.transposedProduct(gp.baseAddress! + i, ldy: 1, tokens: 1, rows: row, row + 1, into: zp.baseAddress!, ldx: h, accumulate: true)
                        }
                    } }
                    dz.withUnsafeBufferPointer { Kernels.rmsNormBackward(xr, $0.baseAddress!, cols: h, weight: finalNorm, eps: spec.eps, into: dp.baseAddress! + r * h, accumulate: false) }
                    results.append(TailGradient(loss: Float(log(sum) + peak - Double(logits[target])), logits: logits, omega: [:]))
                }
            } }
            guard gradient else { return results }
            let live = targets.map { $0 != nil } // rows with a loss to differentiate
            for (i, l) in ((fromLayer + 1)..<max(fromLayer + 1, layerCount)).enumerated().reversed() {
                let (dIn, dOmega) = StageProfile.shared.time("grad.backward") { backward(l, tapes[i], dx, positions: positions, live: live, pool: pool) }
                dx = dIn
                if let dOmega { for r in 0..<m where live[r] { results[r].omega[l] = dOmega[r] } }
            }
            // The lowest layer: only its mixing weights depend on ω.
            let dOmega = gateGradients(lowest.ffn, dx)
            for r in 0..<m where live[r] { results[r].omega[fromLayer] = dOmega[r] }
            return results
        }
    }

    /// Tasks per row of the tail's attention: 1, or the workers' count when the rows are fewer,
    /// each taking a contiguous share of the kv heads.
    private func attentionShares(rows m: Int, workers: Int) -> Int { m >= workers ? 1 : min(spec.kvHeads, workers) }

    /// Share i of `shares`: its kv heads [g0, g1), and the query heads that use them (from h0, hn of them).
    private func kvHeadShare(_ i: Int, of shares: Int) -> (g0: Int, g1: Int, h0: Int, hn: Int) {
        let g0 = spec.kvHeads * i / shares, g1 = spec.kvHeads * (i + 1) / shares, group = spec.heads / spec.kvHeads
        return (g0, g1, g0 * group, (g1 - g0) * group)
    }

    private func addOutput(_ f: FeedForwardTape, into x: inout [Float]) {
        let h = spec.hidden
        for g in f.groups + (f.shared.map { [$0] } ?? []) {
            for (i, e) in g.entries.enumerated() {
                let w = g.gates[i]
                for c in 0..<h { x[e.row * h + c] += w * g.out[i * h + c] }
            }
        }
    }

    // MARK: forward with a tape

    /// Rows `entries` of `b` [m, hidden] through one expert, keeping its activations.
    private func groupForward(_ ex: SwiGLUExpert, expert: Int, entries: [(row: Int, slot: Int)], gates: [Float], _ b: [Float]) -> ExpertGroup {
        let n = ex.gate.rows, h = ex.down.rows, c = entries.count
        var xe = [Float](repeating: 0, count: c * h) // [c, hidden]
        for (i, e) in entries.enumerated() { for j in 0..<h { xe[i * h + j] = b[e.row * h + j] } }
        var g = ExpertGroup(expert: expert, entries: entries, gates: gates, preGate: [Float](repeating: 0, count: c * n),
                            up: [Float](repeating: 0, count: c * n), out: [Float](repeating: 0, count: c * h))
        xe.withUnsafeBufferPointer { xp in
            g.preGate.withUnsafeMutableBufferPointer { ex.gate.product(xp.baseAddress!, ldx: h, tokens: c, rows: 0, n, into: $0.baseAddress!, ldo: n) }
            g.up.withUnsafeMutableBufferPointer { ex.up.product(xp.baseAddress!, ldx: h, tokens: c, rows: 0, n, into: $0.baseAddress!, ldo: n) }
        }
        var act = g.preGate // [c, inter] silu(gate) · up
        act.withUnsafeMutableBufferPointer { ap in g.up.withUnsafeBufferPointer { MatMul.siluMul(ap.baseAddress!, $0.baseAddress!, count: c * n) } }
        act.withUnsafeBufferPointer { ap in g.out.withUnsafeMutableBufferPointer {
            ex.down.product(ap.baseAddress!, ldx: n, tokens: c, rows: 0, h, into: $0.baseAddress!, ldo: h)
        } }
        return g
    }

    /// The routed experts of a batch: per expert, the rows that chose it (in row order), run in parallel.
    private func routedGroups(_ bank: ExpertBank, _ routing: [[(expert: Int, weight: Float)]], _ b: [Float], pool: ScratchPool) -> [ExpertGroup] {
        var assigned: [Int: [(row: Int, slot: Int)]] = [:]
        for (r, sel) in routing.enumerated() { for (s, c) in sel.enumerated() { assigned[c.expert, default: []].append((r, s)) } }
        let experts = assigned.keys.sorted()
        var out = [ExpertGroup?](repeating: nil, count: experts.count)
        out.withUnsafeMutableBufferPointer { op in
            let o = op.baseAddress!
            Parallel.dynamicForEach(experts.count, workers: pool.workers) { _, i in
                let e = experts[i], entries = assigned[e]!
                o[i] = groupForward(bank.experts[e], expert: e, entries: entries, gates: entries.map { routing[$0.row][$0.slot].weight }, b)
            }
        }
        return out.map { $0! }
    }

    /// Layer `l` at each row's last position `positions[r]` (as `onePosition`), keeping the tape;
    /// `weights` per row the override of this layer (nil: the router's own routing).
    private func forwardTape(_ l: Int, _ xIn: [Float], positions: [Int], cachedKeys: [[Float]], cachedValues: [[Float]],
                             weights: [[Float]]?, pool: ScratchPool) -> LayerTape {
        let layer = layers[l], s = spec, h = s.hidden, d = s.headDim, m = positions.count
        var laps = StageProfile.Laps(StageProfile.shared)
        var a = [Float](repeating: 0, count: m * h) // [m, hidden]
        rmsNorm(xIn, into: &a, rows: m, weight: layer.inputNorm)
        var q = [Float](repeating: 0, count: m * s.qDim), k = [Float](repeating: 0, count: m * s.kvDim), v = k
        var qP: [Float] = [], kP: [Float] = [], qN: [Float] = [], kN: [Float] = [], vP: [Float] = []
        projectQKV(layer.attention, a, rows: m, firstPosition: 0, positions: positions, q: &q, k: &k, v: &v, pool: pool) { stage, qb, kb, vb in
            switch stage {
            case .projected:
                qP = Array(UnsafeBufferPointer(start: qb, count: m * s.qDim)); kP = Array(UnsafeBufferPointer(start: kb, count: m * s.kvDim))
                vP = Array(UnsafeBufferPointer(start: vb, count: m * s.kvDim))
            case .normed:
                qN = Array(UnsafeBufferPointer(start: qb, count: m * s.qDim)); kN = Array(UnsafeBufferPointer(start: kb, count: m * s.kvDim))
            }
        }
        laps.lap("grad.forward.qkv")
        // Per row: one query over the p cached keys and its own, every head, the softmax weights kept
        // (c3po_attend_one reads each cached row once, for all the heads that use it). A task is a
        // row, or a share of its kv heads when there are fewer rows than workers.
        var attn = [Float](repeating: 0, count: m * s.qDim) // [m, heads·d]
        let scale = 1 / Float(d).squareRoot()
        var offsets = [0]
        for p in positions { offsets.append(offsets.last! + s.heads * (p + 1)) }
        var flat = [Float](repeating: 0, count: offsets.last!) // per row [heads, p + 1]
        let shares = attentionShares(rows: m, workers: pool.workers)
        q.withUnsafeBufferPointer { qb in k.withUnsafeBufferPointer { kn in v.withUnsafeBufferPointer { vn in
            flat.withUnsafeMutableBufferPointer { fb in attn.withUnsafeMutableBufferPointer { ab in
                let fp = fb.baseAddress!, ap = ab.baseAddress!
                Parallel.dynamicForEach(m * shares, workers: pool.workers) { _, task in
                    let r = task / shares, (g0, g1, h0, hn) = kvHeadShare(task % shares, of: shares), p = positions[r]
                    cachedKeys[r].withUnsafeBufferPointer { kb in cachedValues[r].withUnsafeBufferPointer { vb in
                        // scores [h, p + 1] = scale · q_h · [K_cache; k]ᵀ, softmax; out_h [d] = α · [V_cache; v].
                        MatMul.attendOne(qb.baseAddress! + r * s.qDim + h0 * d, keys: (kb.baseAddress ?? qb.baseAddress!) + g0 * d,
                                         values: (vb.baseAddress ?? qb.baseAddress!) + g0 * d, ldkv: s.kvDim,
                                         ownKey: kn.baseAddress! + r * s.kvDim + g0 * d, ownValue: vn.baseAddress! + r * s.kvDim + g0 * d,
                                         positions: p, heads: hn, kvHeads: g1 - g0, headDim: d, scale: scale,
                                         alpha: fp + offsets[r] + h0 * (p + 1), into: ap + r * s.qDim + h0 * d)
                    } }
                }
            } }
        } } }
        let probs = (0..<m).map { Array(flat[offsets[$0]..<offsets[$0 + 1]]) }
        laps.lap("grad.forward.attention")
        var x1 = [Float](repeating: 0, count: m * h)
        attn.withUnsafeBufferPointer { ap in x1.withUnsafeMutableBufferPointer { Kernels.linears(ap.baseAddress!, rows: m, [(layer.attention.o, $0.baseAddress!)], pool: pool) } } // [m, hidden]
        for i in 0..<(m * h) { x1[i] += xIn[i] }
        var b = [Float](repeating: 0, count: m * h)
        rmsNorm(x1, into: &b, rows: m, weight: layer.postAttentionNorm)
        laps.lap("grad.forward.o")
        defer { laps.lap("grad.forward.experts") }

        var ffn: FeedForwardTape
        let everyRow = (0..<m).map { (row: $0, slot: 0) }
        switch layer.ffn {
        case .dense(let mlp):
            ffn = FeedForwardTape(groups: [groupForward(mlp.experts[0], expert: 0, entries: everyRow, gates: Array(repeating: 1, count: m), b)],
                                  distributions: [], routing: Array(repeating: [(0, 1)], count: m), omegaSums: nil)
        case .moe(let block):
            var dists: [[Float]], omegaSums: [Float]?
            if let w = weights {
                dists = w.map(TopKRouter.normalizedOverride)
                omegaSums = w.map { $0.reduce(0, +) }
            } else {
                var logits = [Float](repeating: 0, count: m * s.experts) // [m, experts]
                linear(b, rows: m, weight: block.router, into: &logits, pool: pool)
                dists = (0..<m).map { r in
                    var row = Array(logits[(r * s.experts)..<((r + 1) * s.experts)])
                    row.withUnsafeMutableBufferPointer { Kernels.softmax($0.baseAddress!, count: s.experts) }
                    return row
                }
            }
            let routing = dists.map { d in d.withUnsafeBufferPointer { router.select($0.baseAddress!) } }
            ffn = FeedForwardTape(groups: routedGroups(block.experts, routing, b, pool: pool), distributions: dists, routing: routing, omegaSums: omegaSums)
            if let shared = block.shared {
                var gates = [Float](repeating: 1, count: m)
                if let g = block.sharedGate {
                    var z = [Float](repeating: 0, count: m) // [m, 1]
                    linear(b, rows: m, weight: g, into: &z, pool: pool)
                    gates = z.map { 1 / (1 + expf(-$0)) }
                    ffn.sharedGated = true
                }
                ffn.shared = groupForward(shared.experts[0], expert: 0, entries: everyRow, gates: gates, b)
            }
        }
        return LayerTape(xIn: xIn, qProjected: qP, kProjected: kP, qNormed: qN, kNormed: kN, vProjected: vP, q: q,
                         keys: cachedKeys, values: cachedValues, k: k, v: v, attention: probs, x1: x1, b: b, ffn: ffn)
    }

    /// The lowest overridden layer of each row, from the state's memo: attention and the experts'
    /// outputs once per prompt, only the routing of `weights` (per row) per call.
    private func lowestLayer(_ l: Int, _ xIn: [Float], states: [DecoderPrefillState], weights: [[Float]], pool: ScratchPool)
        -> (x1: [Float], ffn: FeedForwardTape) {
        guard case .moe(let block) = layers[l].ffn else { preconditionFailure("an overridden layer is routed (check)") }
        let h = spec.hidden, m = states.count
        let dists = weights.map(TopKRouter.normalizedOverride)
        let chosen = dists.map { d in d.withUnsafeBufferPointer { router.select($0.baseAddress!) } } // per row
        var x1 = [Float](), groups: [ExpertGroup] = []
        var shared: ExpertGroup?
        var entries: [Int: [(row: Int, slot: Int)]] = [:] // expert → its rows, in row order
        for r in 0..<m { for (slot, c) in chosen[r].enumerated() { entries[c.expert, default: []].append((r, slot)) } }
        // Rows without a memo yet: their attention and chosen experts as one batch (each weight read once).
        let missing = (0..<m).filter { states[$0].memo.existing(l) == nil }
        if !missing.isEmpty {
            let tape = forwardTape(l, missing.flatMap { xIn[($0 * h)..<(($0 + 1) * h)] }, positions: missing.map { states[$0].tokens.count - 1 },
                                   cachedKeys: missing.map { states[$0].keys[l] }, cachedValues: missing.map { states[$0].values[l] },
                                   weights: missing.map { weights[$0] }, pool: pool)
            func row(_ a: [Float], _ i: Int) -> [Float] { Array(a[(i * h)..<((i + 1) * h)]) }
            for (i, r) in missing.enumerated() {
                let x = LowestLayerMemo.Layer()
                x.x1 = row(tape.x1, i)
                x.b = row(tape.b, i)
                for g in tape.ffn.groups { for (j, e) in g.entries.enumerated() where e.row == i { x.outs[g.expert] = row(g.out, j) } }
                if let sg = tape.ffn.shared, let j = sg.entries.firstIndex(where: { $0.row == i }) { x.shared = row(sg.out, j); x.sharedGate = sg.gates[j] }
                states[r].memo.store(l, x)
            }
        }
        let memos = states.map { $0.memo.existing(l)! }
        // Experts chosen since a row's memo was made: per expert, its rows as one batch.
        var need: [Int: [Int]] = [:] // expert → rows
        for (r, memo) in memos.enumerated() { for c in chosen[r] where memo.outs[c.expert] == nil { need[c.expert, default: []].append(r) } }
        if !need.isEmpty {
            let experts = need.keys.sorted()
            var made = [[Float]](repeating: [], count: experts.count) // per expert [rows, hidden]
            made.withUnsafeMutableBufferPointer { mp in
                let o = mp.baseAddress!
                Parallel.dynamicForEach(experts.count, workers: pool.workers) { _, i in
                    let rows = need[experts[i]]!
                    o[i] = groupForward(block.experts.experts[experts[i]], expert: experts[i], entries: rows.indices.map { ($0, 0) },
                                        gates: Array(repeating: 1, count: rows.count), rows.flatMap { memos[$0].b }).out
                }
            }
            for (i, e) in experts.enumerated() {
                for (j, r) in need[e]!.enumerated() { memos[r].outs[e] = Array(made[i][(j * h)..<((j + 1) * h)]) }
            }
        }
        var sharedOut: [Float] = [], sharedGates: [Float] = []
        for memo in memos {
            x1 += memo.x1
            if let s = memo.shared { sharedOut += s; sharedGates.append(memo.sharedGate) }
        }
        for e in entries.keys.sorted() {
            let rows = entries[e]!
            groups.append(ExpertGroup(expert: e, entries: rows, gates: rows.map { chosen[$0.row][$0.slot].weight },
                                      preGate: [], up: [], out: rows.flatMap { memos[$0.row].outs[e]! })) // [rows, hidden]
        }
        if !sharedOut.isEmpty {
            shared = ExpertGroup(expert: 0, entries: (0..<m).map { ($0, 0) }, gates: sharedGates, preGate: [], up: [], out: sharedOut)
        }
        var ffn = FeedForwardTape(groups: groups, distributions: dists, routing: chosen, omegaSums: weights.map { $0.reduce(0, +) })
        ffn.shared = shared
        return (x1, ffn)
    }

    /// ∂loss/∂ω per row of an overridden layer from dy = ∂loss/∂(block output) [m, hidden]:
    /// ∂loss/∂gate = dy · out, through top-k's renormalisation and ω / Σω.
    private func gateGradients(_ f: FeedForwardTape, _ dy: [Float]) -> [[Float]] {
        let h = spec.hidden
        var dGate = f.routing.map { [Float](repeating: 0, count: $0.count) } // [m][k]
        for g in f.groups {
            for (i, entry) in g.entries.enumerated() {
                var acc: Float = 0
                for c in 0..<h { acc += dy[entry.row * h + c] * g.out[i * h + c] }
                dGate[entry.row][entry.slot] = acc
            }
        }
        return omegaGradients(f, dGate)
    }

    /// ∂loss/∂ω per row of an overridden layer (dist = ω / Σω) from ∂loss/∂(mixing weight) [m][k].
    private func omegaGradients(_ f: FeedForwardTape, _ dGate: [[Float]]) -> [[Float]] {
        (0..<f.routing.count).map { r in distributionGradient(f.distributions[r], f.routing[r], dGate[r]).map { $0 / f.omegaSums![r] } }
    }

    /// ∂loss/∂(distribution top-k was taken from), minus its mean under the distribution:
    /// Σ_j dist_j (∂_j − Σ dist ∂) is the form both ω / Σω (divided by Σω) and a softmax
    /// (multiplied by dist) need. Mixing weights: p_s, or p_s / Σ_chosen p when renormalised.
    private func distributionGradient(_ dist: [Float], _ chosen: [(expert: Int, weight: Float)], _ dGate: [Float]) -> [Float] {
        let e = spec.experts
        var dDist = [Float](repeating: 0, count: e) // [experts]
        if spec.normalizeTopK {
            let mass = chosen.reduce(Float(0)) { $0 + dist[$1.expert] }
            let mean = zip(chosen, dGate).reduce(Float(0)) { $0 + $1.0.weight * $1.1 }
            for (c, g) in zip(chosen, dGate) { dDist[c.expert] = (g - mean) / mass }
        } else {
            for (c, g) in zip(chosen, dGate) { dDist[c.expert] = g }
        }
        let dot = (0..<e).reduce(Float(0)) { $0 + dist[$1] * dDist[$1] }
        return dDist.map { $0 - dot }
    }

    // MARK: backward

    /// One expert's backward over its gathered rows, given dy = ∂loss/∂(block output) [m, hidden]:
    /// ∂loss/∂b of each gathered row [n, hidden] and ∂loss/∂gate = dy · out per row.
    private func groupBackward(_ ex: SwiGLUExpert, _ g: ExpertGroup, dy: [Float]) -> (db: [Float], dGates: [Float]) {
        let n = ex.gate.rows, h = ex.down.rows, c = g.entries.count
        var dGates = [Float](repeating: 0, count: c)
        var dOut = [Float](repeating: 0, count: c * h) // [c, hidden] gate · dy
        for (i, e) in g.entries.enumerated() {
            var acc: Float = 0
            for j in 0..<h { let v = dy[e.row * h + j]; acc += v * g.out[i * h + j]; dOut[i * h + j] = g.gates[i] * v }
            dGates[i] = acc
        }
        var dAct = [Float](repeating: 0, count: c * n) // [c, inter] ∂/∂(silu(g)·u)
        dOut.withUnsafeBufferPointer { gp in dAct.withUnsafeMutableBufferPointer {
            ex.down.transposedProduct(gp.baseAddress!, ldy: h, tokens: c, rows: 0, h, into: $0.baseAddress!, ldx: n, accumulate: false)
        } }
        var dPre = [Float](repeating: 0, count: c * n), dUp = dPre // [c, inter]
        // ∂/∂u of silu(g)·u is silu(g); ∂/∂g is u · silu'(g), silu'(g) = σ(g)(1 + g(1 − σ(g))).
        g.preGate.withUnsafeBufferPointer { gp in g.up.withUnsafeBufferPointer { up in dAct.withUnsafeBufferPointer { ap in
            dPre.withUnsafeMutableBufferPointer { pp in dUp.withUnsafeMutableBufferPointer { qp in
                MatMul.siluMulBackward(gp.baseAddress!, up.baseAddress!, ap.baseAddress!, dg: pp.baseAddress!, du: qp.baseAddress!, count: c * n)
            } }
        } } }
        var db = [Float](repeating: 0, count: c * h) // [c, hidden]
        db.withUnsafeMutableBufferPointer { dp in
            dPre.withUnsafeBufferPointer { ex.gate.transposedProduct($0.baseAddress!, ldy: n, tokens: c, rows: 0, n, into: dp.baseAddress!, ldx: h, accumulate: false) }
            dUp.withUnsafeBufferPointer { ex.up.transposedProduct($0.baseAddress!, ldy: n, tokens: c, rows: 0, n, into: dp.baseAddress!, ldx: h, accumulate: true) }
        }
        return (db, dGates)
    }

    /// Backward of layer `l`: from ∂loss/∂(its output residual) [m, hidden] to ∂loss/∂(its input
    /// residual), and ∂loss/∂ω per row when the layer is overridden.
    private func backward(_ l: Int, _ t: LayerTape, _ dOut: [Float], positions: [Int], live: [Bool], pool: ScratchPool) -> ([Float], [[Float]]?) {
        let layer = layers[l], s = spec, h = s.hidden, d = s.headDim, e = s.experts, m = positions.count
        // Feed-forward block: y = Σ gate · expert(b) (+ shared); x2 = x1 + y.
        var db = [Float](repeating: 0, count: m * h) // [m, hidden] ∂loss/∂b
        var dOmega: [[Float]]?
        func scatter(_ g: ExpertGroup, _ part: [Float]) {
            for (i, entry) in g.entries.enumerated() { for c in 0..<h { db[entry.row * h + c] += part[i * h + c] } }
        }
        let bank: ExpertBank
        switch layer.ffn {
        case .dense(let mlp): bank = mlp
        case .moe(let block): bank = block.experts
        }
        // Rows without a loss (logits only) have no gradient: their experts' rows are left out.
        // Backward order is the forward's reversed (the weights read last come back first, from cache).
        let groups = Array(t.ffn.groups.compactMap { $0.restricted(to: live) }.reversed())
        var parts = [([Float], [Float])?](repeating: nil, count: groups.count)
        var laps = StageProfile.Laps(StageProfile.shared)
        defer { laps.lap("grad.backward.qkv") }
        parts.withUnsafeMutableBufferPointer { pp in
            let out = pp.baseAddress!
            Parallel.dynamicForEach(groups.count, workers: pool.workers) { _, i in
                out[i] = groupBackward(bank.experts[groups[i].expert], groups[i], dy: dOut)
            }
        }
        laps.lap("grad.backward.experts")
        var dGate = t.ffn.routing.map { [Float](repeating: 0, count: $0.count) } // [m][k] ∂loss/∂(mixing weight)
        for (g, part) in zip(groups, parts) { // fixed order: experts descending
            scatter(g, part!.0)
            for (i, entry) in g.entries.enumerated() { dGate[entry.row][entry.slot] = part!.1[i] }
        }
        if case .moe(let block) = layer.ffn {
            if t.ffn.omegaSums != nil {
                dOmega = omegaGradients(t.ffn, dGate)
            } else {
                // dist = softmax(router · b): ∂/∂logits = dist ⊙ (dDist − dist·dDist).
                var dLogits = [Float](repeating: 0, count: m * e) // [m, experts]
                for r in 0..<m {
                    let dist = t.ffn.distributions[r], centred = distributionGradient(dist, t.ffn.routing[r], dGate[r])
                    for j in 0..<e { dLogits[r * e + j] = dist[j] * centred[j] }
                }
                dLogits.withUnsafeBufferPointer { gp in db.withUnsafeMutableBufferPointer {
                    Kernels.linearBackward(gp.baseAddress!, rows: m, weight: block.router, into: $0.baseAddress!, accumulate: true, pool: pool)
                } }
            }
            if let shared = block.shared, let sg = t.ffn.shared?.restricted(to: live) {
                let (dbShared, dGates) = groupBackward(shared.experts[0], sg, dy: dOut)
                scatter(sg, dbShared)
                if t.ffn.sharedGated, let gateW = block.sharedGate {
                    // gate = σ(z), z = w · b: ∂loss/∂z = σ'(z) · (dy · shared(b)).
                    var dz = [Float](repeating: 0, count: m) // [m, 1]
                    for (i, entry) in sg.entries.enumerated() { dz[entry.row] = sg.gates[i] * (1 - sg.gates[i]) * dGates[i] }
                    dz.withUnsafeBufferPointer { gp in db.withUnsafeMutableBufferPointer {
                        Kernels.linearBackward(gp.baseAddress!, rows: m, weight: gateW, into: $0.baseAddress!, accumulate: true, pool: pool)
                    } }
                }
            }
        }
        laps.lap("grad.backward.gates")
        // b = post_attention_layernorm(x1); x2 = x1 + y.
        var dx1 = dOut // [m, hidden]
        t.x1.withUnsafeBufferPointer { xp in db.withUnsafeBufferPointer { gp in dx1.withUnsafeMutableBufferPointer { op in
            for r in 0..<m {
                Kernels.rmsNormBackward(xp.baseAddress! + r * h, gp.baseAddress! + r * h, cols: h, weight: layer.postAttentionNorm, eps: s.eps,
                                        into: op.baseAddress! + r * h, accumulate: true)
            }
        } } }
        // x1 = xIn + o_proj(attn).
        var dAttn = [Float](repeating: 0, count: m * s.qDim) // [m, heads·d]
        dx1.withUnsafeMutableBufferPointer { gp in dAttn.withUnsafeMutableBufferPointer {
            Kernels.linearsBackward([(layer.attention.o, gp.baseAddress!)], rows: m, into: $0.baseAddress!, accumulate: false, pool: pool)
        } }
        laps.lap("grad.backward.o")
        // attn_h = Σ_j α_j V[j], α = softmax(scale · q_h · K[j]); only each row's last key and value
        // are its own position's (the earlier ones are constants of the cache).
        var dq = [Float](repeating: 0, count: m * s.qDim), dk = [Float](repeating: 0, count: m * s.kvDim), dv = dk
        let scale = 1 / Float(d).squareRoot()
        // As in the forward, a task is a row or a share of its kv heads: the heads of a kv head share
        // its dk and dv slice, so a task owns those slices and its heads' dq slices; tasks never write
        // the same values.
        let shares = attentionShares(rows: m, workers: pool.workers)
        dq.withUnsafeMutableBufferPointer { qbuf in dk.withUnsafeMutableBufferPointer { kbuf in dv.withUnsafeMutableBufferPointer { vbuf in
            dAttn.withUnsafeBufferPointer { ab in
                let qb = qbuf.baseAddress!, dkb = kbuf.baseAddress!, dvb = vbuf.baseAddress!
                Parallel.dynamicForEach(m * shares, workers: pool.workers) { _, task in
                    let r = task / shares, (g0, g1, h0, hn) = kvHeadShare(task % shares, of: shares), p = positions[r]
                    guard live[r] else { return } // no gradient reaches this row
                    var dScores = [Float](repeating: 0, count: hn * (p + 1)) // [heads of the share, p + 1]
                    t.keys[r].withUnsafeBufferPointer { kb in t.values[r].withUnsafeBufferPointer { vb in t.attention[r].withUnsafeBufferPointer { pb in
                        t.q.withUnsafeBufferPointer { tq in t.k.withUnsafeBufferPointer { tk in t.v.withUnsafeBufferPointer { tv in
                            dScores.withUnsafeMutableBufferPointer { sb in
                                // ∂/∂α = dOut_h · V; ∂/∂score_j = α_j (∂α_j − Σ α ∂α) · scale; dq_h += ∂score · K;
                                // the last key and value are this position's own.
                                let ko = r * s.kvDim + g0 * d
                                MatMul.attendOneBackward(tq.baseAddress! + r * s.qDim + h0 * d, keys: (kb.baseAddress ?? tq.baseAddress!) + g0 * d,
                                                         values: (vb.baseAddress ?? tq.baseAddress!) + g0 * d, ldkv: s.kvDim,
                                                         ownKey: tk.baseAddress! + ko, ownValue: tv.baseAddress! + ko,
                                                         alpha: pb.baseAddress! + h0 * (p + 1), dOut: ab.baseAddress! + r * s.qDim + h0 * d,
                                                         positions: p, heads: hn, kvHeads: g1 - g0, headDim: d, scale: scale, scratch: sb.baseAddress!,
                                                         dq: qb + r * s.qDim + h0 * d, dOwnKey: dkb + ko, dOwnValue: dvb + ko)
                            }
                        } } }
                    } } }
                }
            }
        } } }
        // RoPE is a rotation: its backward is the inverse rotation.
        dq.withUnsafeMutableBufferPointer { qp in dk.withUnsafeMutableBufferPointer { kp in
            for (r, p) in positions.enumerated() {
                rope.applyTransposed(qp.baseAddress! + r * s.qDim, heads: s.heads, position: p)
                rope.applyTransposed(kp.baseAddress! + r * s.kvDim, heads: s.kvHeads, position: p)
            }
        } }
        // clip_qkv: no gradient where the value was clipped.
        if let clip = s.clipQKV {
            for i in dq.indices where abs(t.qNormed[i]) > clip { dq[i] = 0 }
            for i in dk.indices where abs(t.kNormed[i]) > clip { dk[i] = 0 }
            for i in dv.indices where abs(t.vProjected[i]) > clip { dv[i] = 0 }
        }
        // q/k norm, per row of `width` values.
        func normBackward(_ x: [Float], _ g: inout [Float], weight: [Float]?, width: Int) {
            guard let weight else { return }
            let dIn = g
            x.withUnsafeBufferPointer { xp in dIn.withUnsafeBufferPointer { gp in g.withUnsafeMutableBufferPointer { op in
                for r in 0..<(x.count / width) {
                    Kernels.rmsNormBackward(xp.baseAddress! + r * width, gp.baseAddress! + r * width, cols: width, weight: weight, eps: s.eps,
                                            into: op.baseAddress! + r * width, accumulate: false)
                }
            } } }
        }
        switch s.qkNorm {
        case .none: break
        case .fullWidth:
            normBackward(t.qProjected, &dq, weight: layer.attention.qNorm, width: s.qDim)
            normBackward(t.kProjected, &dk, weight: layer.attention.kNorm, width: s.kvDim)
        case .perHead:
            normBackward(t.qProjected, &dq, weight: layer.attention.qNorm, width: d)
            normBackward(t.kProjected, &dk, weight: layer.attention.kNorm, width: d)
        }
        laps.lap("grad.backward.scores")
        // a = input_layernorm(xIn); q, k, v = projections of a.
        var da = [Float](repeating: 0, count: m * h) // [m, hidden]
        da.withUnsafeMutableBufferPointer { ap in
            let out = ap.baseAddress!
            // In reverse order of the forward's (v, k, q): the weights read last come back first.
            dq.withUnsafeMutableBufferPointer { qp in dk.withUnsafeMutableBufferPointer { kp in dv.withUnsafeMutableBufferPointer { vp in
                Kernels.linearsBackward([(layer.attention.v, vp.baseAddress!), (layer.attention.k, kp.baseAddress!), (layer.attention.q, qp.baseAddress!)],
                                        rows: m, into: out, accumulate: false, pool: pool)
            } } }
        }
        var dIn = dx1
        t.xIn.withUnsafeBufferPointer { xp in da.withUnsafeBufferPointer { gp in dIn.withUnsafeMutableBufferPointer { op in
            for r in 0..<m {
                Kernels.rmsNormBackward(xp.baseAddress! + r * h, gp.baseAddress! + r * h, cols: h, weight: layer.inputNorm, eps: s.eps,
                                        into: op.baseAddress! + r * h, accumulate: true)
            }
        } } }
        return (dIn, dOmega)
    }
}
