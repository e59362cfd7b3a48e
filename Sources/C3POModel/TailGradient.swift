import C3POCore
import Foundation

// Exact gradients of one prompt's last-position loss with respect to the routing weights of the
// overridden layers, at the cost of a tail re-evaluation (neighbourhood gradient descent).
//
// The override touches only the last position, and a causal model's earlier positions never see
// it: with a prefill's cached keys/values of the earlier positions and the residual entering the
// lowest overridden layer, the loss is a function of one token's path through the remaining
// layers, the final norm and the label rows of the LM head. The forward below keeps what the
// backward needs (a tape per layer); the backward is derived by hand, operation by operation.

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

extension MoEDecoderModel {
    /// One SwiGLU expert at one position: its inputs to the activation and its output.
    struct ExpertTape {
        var expert: Int
        /// The mixing weight the block gave this expert (1 for a dense MLP or an ungated shared expert).
        var gate: Float
        var preGate: [Float] // [inter] gate_proj(b)
        var up: [Float]      // [inter] up_proj(b)
        var out: [Float]     // [hidden] down_proj(silu(preGate) · up)
    }

    /// The feed-forward block of one layer at one position.
    struct FeedForwardTape {
        var experts: [ExpertTape]
        /// The distribution top-k was taken from: ω / Σω where overridden, else the router's softmax
        /// (nil for a dense layer). [experts]
        var distribution: [Float]?
        /// Σω of an overridden layer (nil: the router is live and its softmax is differentiated).
        var omegaSum: Float?
        var shared: ExpertTape?
        /// The shared expert's gate logit (Qwen2-MoE: y += sigmoid(z) · shared(b)).
        var sharedGateLogit: Float?
    }

    /// What the backward needs of one decoder layer at the last position.
    struct LayerTape {
        var xIn: [Float]          // [hidden] residual entering the layer
        var a: [Float]            // [hidden] input_layernorm(xIn)
        var qProjected: [Float]   // [qDim] after q_proj and bias
        var kProjected: [Float]   // [kvDim]
        var qNormed: [Float]      // [qDim] after the q norm, before clipping
        var kNormed: [Float]      // [kvDim]
        var vProjected: [Float]   // [kvDim] after v_proj and bias, before clipping
        var q: [Float]            // [qDim] the query attention used (clipped, rotated)
        var keys: [Float]         // [p + 1, kvDim] every position's keys, the last one new
        var values: [Float]       // [p + 1, kvDim]
        var attention: [Float]    // [heads, p + 1] softmax weights of the one query
        var x1: [Float]           // [hidden] xIn + o_proj(attention output)
        var b: [Float]            // [hidden] post_attention_layernorm(x1)
        var ffn: FeedForwardTape
    }

    public func tailGradient(_ state: PrefillState, override: RoutingOverride, rows: [Int], target: Int) throws -> TailGradient {
        guard let st = state as? DecoderPrefillState, st.modelID == ObjectIdentifier(self) else {
            throw ModelError.input("tailGradient: the state does not come from this model's prefill")
        }
        try check(override)
        guard let fromLayer = override.firstLayer else { throw ModelError.override("tailGradient: the override names no layer") }
        try st.checkTail(from: fromLayer, "tailGradient")
        guard !rows.isEmpty, rows.allSatisfy({ $0 >= 0 && $0 < vocabularySize }) else {
            throw ModelError.input("tailGradient: rows must be non-empty vocabulary ids")
        }
        guard rows.indices.contains(target) else { throw ModelError.input("tailGradient: target \(target) outside 0..<\(rows.count)") }
        let p = st.tokens.count - 1, h = spec.hidden
        return withWorkers { pool in
            // Forward, keeping a tape per layer.
            var x = st.lastInputs[fromLayer] // [hidden]
            var tapes: [LayerTape] = []
            for l in fromLayer..<layerCount {
                let tape = forwardTape(l, x, position: p, cachedKeys: st.keys[l], cachedValues: st.values[l],
                                       weights: override.layers[l], pool: pool)
                x = tape.x1
                addOutput(tape.ffn, into: &x)
                tapes.append(tape)
            }
            // Final norm, label rows, cross-entropy.
            var z = [Float](repeating: 0, count: h) // [hidden]
            x.withUnsafeBufferPointer { xp in z.withUnsafeMutableBufferPointer {
                Kernels.rmsNorm(xp.baseAddress!, into: $0.baseAddress!, rows: 1, cols: h, weight: finalNorm, eps: spec.eps)
            } }
            var logits = [Float](repeating: 0, count: rows.count) // [rows]
            z.withUnsafeBufferPointer { zp in logits.withUnsafeMutableBufferPointer { lp in
                for (i, r) in rows.enumerated() { lmHead.product(zp.baseAddress!, ldx: h, tokens: 1, rows: r, r + 1, into: lp.baseAddress! + i, ldo: 1) }
            } }
            let peak = Double(logits.max()!)
            let sum = logits.reduce(0.0) { $0 + exp(Double($1) - peak) }
            let loss = Float(log(sum) + peak - Double(logits[target]))
            var dLogits = logits.map { Float(exp(Double($0) - peak) / sum) } // softmax − onehot [rows]
            dLogits[target] -= 1

            // Backward: ∂loss/∂z, then through the final norm into the residual stream.
            var dz = [Float](repeating: 0, count: h)
            dLogits.withUnsafeBufferPointer { gp in dz.withUnsafeMutableBufferPointer { dp in
                for (i, r) in rows.enumerated() {
                    lmHead.transposedProduct(gp.baseAddress! + i, ldy: 1, tokens: 1, rows: r, r + 1, into: dp.baseAddress!, ldx: h, accumulate: true)
                }
            } }
            var dx = [Float](repeating: 0, count: h) // ∂loss/∂x, x the residual after the current layer
            x.withUnsafeBufferPointer { xp in dz.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer {
                Kernels.rmsNormBackward(xp.baseAddress!, gp.baseAddress!, cols: h, weight: finalNorm, eps: spec.eps, into: $0.baseAddress!, accumulate: false)
            } } }
            var omega: [Int: [Float]] = [:]
            for (i, l) in (fromLayer..<layerCount).enumerated().reversed() {
                let (dIn, dOmega) = backward(l, tapes[i], dx, position: p, pool: pool)
                dx = dIn
                if let dOmega { omega[l] = dOmega }
            }
            return TailGradient(loss: loss, logits: logits, omega: omega)
        }
    }

    private func addOutput(_ f: FeedForwardTape, into x: inout [Float]) {
        for e in f.experts { for i in x.indices { x[i] += e.gate * e.out[i] } }
        if let s = f.shared { for i in x.indices { x[i] += s.gate * s.out[i] } }
    }

    // MARK: forward with a tape

    private func expertForward(_ ex: SwiGLUExpert, expert: Int, gate: Float, _ b: [Float]) -> ExpertTape {
        let n = ex.gate.rows, h = ex.down.rows
        var t = ExpertTape(expert: expert, gate: gate, preGate: [Float](repeating: 0, count: n), up: [Float](repeating: 0, count: n),
                           out: [Float](repeating: 0, count: h))
        var act = [Float](repeating: 0, count: n) // [inter] silu(gate) · up
        b.withUnsafeBufferPointer { bp in
            t.preGate.withUnsafeMutableBufferPointer { ex.gate.product(bp.baseAddress!, ldx: h, tokens: 1, rows: 0, n, into: $0.baseAddress!, ldo: n) }
            t.up.withUnsafeMutableBufferPointer { ex.up.product(bp.baseAddress!, ldx: h, tokens: 1, rows: 0, n, into: $0.baseAddress!, ldo: n) }
        }
        for i in 0..<n { let g = t.preGate[i]; act[i] = g / (1 + expf(-g)) * t.up[i] }
        act.withUnsafeBufferPointer { ap in t.out.withUnsafeMutableBufferPointer {
            ex.down.product(ap.baseAddress!, ldx: n, tokens: 1, rows: 0, h, into: $0.baseAddress!, ldo: h)
        } }
        return t
    }

    /// Runs experts `chosen` of `bank` on `b` in parallel, in the order given.
    private func experts(_ bank: ExpertBank, _ chosen: [(expert: Int, weight: Float)], _ b: [Float], pool: ScratchPool) -> [ExpertTape] {
        var out = [ExpertTape?](repeating: nil, count: chosen.count)
        out.withUnsafeMutableBufferPointer { op in
            let o = op.baseAddress!
            Parallel.dynamicForEach(chosen.count, workers: pool.workers) { _, i in
                o[i] = expertForward(bank.experts[chosen[i].expert], expert: chosen[i].expert, gate: chosen[i].weight, b)
            }
        }
        return out.map { $0! }
    }

    /// Layer `l` at position `p` (as `onePosition`), keeping the tape; `weights` the override of
    /// this layer (nil: the router's own routing).
    private func forwardTape(_ l: Int, _ xIn: [Float], position p: Int, cachedKeys: [Float], cachedValues: [Float],
                             weights: [Float]?, pool: ScratchPool) -> LayerTape {
        let layer = layers[l], s = spec, h = s.hidden, d = s.headDim
        var a = [Float](repeating: 0, count: h)
        rmsNorm(xIn, into: &a, rows: 1, weight: layer.inputNorm)
        var q = [Float](repeating: 0, count: s.qDim), k = [Float](repeating: 0, count: s.kvDim), v = k
        var qP: [Float] = [], kP: [Float] = [], qN: [Float] = [], kN: [Float] = [], vP: [Float] = []
        projectQKV(layer.attention, a, rows: 1, firstPosition: p, q: &q, k: &k, v: &v, pool: pool) { stage, qb, kb, vb in
            switch stage {
            case .projected:
                qP = Array(UnsafeBufferPointer(start: qb, count: s.qDim)); kP = Array(UnsafeBufferPointer(start: kb, count: s.kvDim))
                vP = Array(UnsafeBufferPointer(start: vb, count: s.kvDim))
            case .normed:
                qN = Array(UnsafeBufferPointer(start: qb, count: s.qDim)); kN = Array(UnsafeBufferPointer(start: kb, count: s.kvDim))
            }
        }
        let keys = Array(cachedKeys.prefix(p * s.kvDim)) + k, values = Array(cachedValues.prefix(p * s.kvDim)) + v // [p + 1, kvDim]
        // One query over p + 1 keys per head, its softmax weights kept. [heads, p + 1]
        var probs = [Float](repeating: 0, count: s.heads * (p + 1))
        var attn = [Float](repeating: 0, count: s.qDim) // [heads·d]
        let group = s.heads / s.kvHeads, scale = 1 / Float(d).squareRoot()
        for hd in 0..<s.heads {
            let g = hd / group
            probs.withUnsafeMutableBufferPointer { pb in
                let row = pb.baseAddress! + hd * (p + 1)
                for j in 0...p {
                    var dot: Float = 0
                    for c in 0..<d { dot += q[hd * d + c] * keys[j * s.kvDim + g * d + c] }
                    row[j] = dot * scale
                }
                Kernels.softmax(row, count: p + 1)
                for j in 0...p { let w = row[j]; for c in 0..<d { attn[hd * d + c] += w * values[j * s.kvDim + g * d + c] } }
            }
        }
        var x1 = [Float](repeating: 0, count: h)
        linear(attn, rows: 1, weight: layer.attention.o, into: &x1, pool: pool) // [hidden]
        for i in 0..<h { x1[i] += xIn[i] }
        var b = [Float](repeating: 0, count: h)
        rmsNorm(x1, into: &b, rows: 1, weight: layer.postAttentionNorm)

        var ffn: FeedForwardTape
        switch layer.ffn {
        case .dense(let mlp):
            ffn = FeedForwardTape(experts: experts(mlp, [(0, 1)], b, pool: pool), distribution: nil, omegaSum: nil)
        case .moe(let block):
            var dist: [Float], omegaSum: Float?
            if let w = weights {
                dist = TopKRouter.normalizedOverride(w)
                omegaSum = w.reduce(0, +)
            } else {
                dist = [Float](repeating: 0, count: s.experts)
                linear(b, rows: 1, weight: block.router, into: &dist, pool: pool) // [experts]
                dist.withUnsafeMutableBufferPointer { Kernels.softmax($0.baseAddress!, count: s.experts) }
            }
            let chosen = dist.withUnsafeBufferPointer { router.select($0.baseAddress!) }
            ffn = FeedForwardTape(experts: experts(block.experts, chosen, b, pool: pool), distribution: dist, omegaSum: omegaSum)
            if let shared = block.shared {
                var gate: Float = 1
                if let g = block.sharedGate {
                    var z = [Float](repeating: 0, count: 1)
                    linear(b, rows: 1, weight: g, into: &z, pool: pool) // [1]
                    ffn.sharedGateLogit = z[0]
                    gate = 1 / (1 + expf(-z[0]))
                }
                ffn.shared = expertForward(shared.experts[0], expert: 0, gate: gate, b)
            }
        }
        return LayerTape(xIn: xIn, a: a, qProjected: qP, kProjected: kP, qNormed: qN, kNormed: kN, vProjected: vP, q: q,
                         keys: keys, values: values, attention: probs, x1: x1, b: b, ffn: ffn)
    }

    // MARK: backward

    /// ∂loss/∂b of one expert given dy = ∂loss/∂(block output), and ∂loss/∂gate = dy · out.
    private func expertBackward(_ ex: SwiGLUExpert, _ t: ExpertTape, dy: [Float]) -> (db: [Float], dGate: Float) {
        let n = ex.gate.rows, h = ex.down.rows
        var dGate: Float = 0
        for i in 0..<h { dGate += dy[i] * t.out[i] }
        let dOut = dy.map { $0 * t.gate } // [hidden]
        var dAct = [Float](repeating: 0, count: n) // [inter] ∂/∂(silu(g)·u)
        dOut.withUnsafeBufferPointer { gp in dAct.withUnsafeMutableBufferPointer {
            ex.down.transposedProduct(gp.baseAddress!, ldy: h, tokens: 1, rows: 0, h, into: $0.baseAddress!, ldx: n, accumulate: false)
        } }
        var dPre = [Float](repeating: 0, count: n), dUp = dPre // [inter]
        for i in 0..<n {
            let g = t.preGate[i], sg = 1 / (1 + expf(-g))
            dUp[i] = dAct[i] * g * sg                           // ∂/∂u of silu(g)·u
            dPre[i] = dAct[i] * t.up[i] * sg * (1 + g * (1 - sg)) // silu'(g) = σ(g)(1 + g(1 − σ(g)))
        }
        var db = [Float](repeating: 0, count: h) // [hidden]
        db.withUnsafeMutableBufferPointer { dp in
            dPre.withUnsafeBufferPointer { ex.gate.transposedProduct($0.baseAddress!, ldy: n, tokens: 1, rows: 0, n, into: dp.baseAddress!, ldx: h, accumulate: false) }
            dUp.withUnsafeBufferPointer { ex.up.transposedProduct($0.baseAddress!, ldy: n, tokens: 1, rows: 0, n, into: dp.baseAddress!, ldx: h, accumulate: true) }
        }
        return (db, dGate)
    }

    /// Backward of layer `l`: from ∂loss/∂(its output residual) to ∂loss/∂(its input residual), and
    /// ∂loss/∂ω when the layer is overridden.
    private func backward(_ l: Int, _ t: LayerTape, _ dOut: [Float], position p: Int, pool: ScratchPool) -> ([Float], [Float]?) {
        let layer = layers[l], s = spec, h = s.hidden, d = s.headDim, e = s.experts
        // Feed-forward block: y = Σ gate_s · expert_s(b) (+ shared); x2 = x1 + y.
        var db = [Float](repeating: 0, count: h) // [hidden] ∂loss/∂b
        var dOmega: [Float]?
        switch layer.ffn {
        case .dense(let mlp):
            db = expertBackward(mlp.experts[0], t.ffn.experts[0], dy: dOut).db
        case .moe(let block):
            let tapes = t.ffn.experts
            var parts = [([Float], Float)?](repeating: nil, count: tapes.count)
            parts.withUnsafeMutableBufferPointer { pp in
                let out = pp.baseAddress!
                Parallel.dynamicForEach(tapes.count, workers: pool.workers) { _, i in
                    out[i] = expertBackward(block.experts.experts[tapes[i].expert], tapes[i], dy: dOut)
                }
            }
            for part in parts { for i in 0..<h { db[i] += part!.0[i] } } // fixed order
            let dGates = parts.map { $0!.1 } // [k] ∂loss/∂gate of the chosen experts
            let dist = t.ffn.distribution!
            // Gates from the distribution: g_s = p_s, or p_s / Σ_chosen p when renormalised.
            var dDist = [Float](repeating: 0, count: e) // [experts]
            if spec.normalizeTopK {
                let mass = tapes.reduce(Float(0)) { $0 + dist[$1.expert] }
                let mean = zip(tapes, dGates).reduce(Float(0)) { $0 + $1.0.gate * $1.1 }
                for (tp, g) in zip(tapes, dGates) { dDist[tp.expert] = (g - mean) / mass }
            } else {
                for (tp, g) in zip(tapes, dGates) { dDist[tp.expert] = g }
            }
            let dot = (0..<e).reduce(Float(0)) { $0 + dist[$1] * dDist[$1] }
            if let sum = t.ffn.omegaSum {
                // dist = ω / Σω.
                dOmega = (0..<e).map { (dDist[$0] - dot) / sum }
            } else {
                // dist = softmax(router · b): ∂/∂logits = dist ⊙ (dDist − dist·dDist), then router ᵀ.
                let dLogits = (0..<e).map { dist[$0] * (dDist[$0] - dot) } // [experts]
                dLogits.withUnsafeBufferPointer { gp in db.withUnsafeMutableBufferPointer {
                    Kernels.linearBackward(gp.baseAddress!, rows: 1, weight: block.router, into: $0.baseAddress!, accumulate: true, pool: pool)
                } }
            }
            if let shared = block.shared, let st = t.ffn.shared {
                let (dbShared, dGate) = expertBackward(shared.experts[0], st, dy: dOut)
                for i in 0..<h { db[i] += dbShared[i] }
                if let gateW = block.sharedGate {
                    // gate = σ(z), z = w · b: ∂loss/∂z = σ'(z) · (dy · shared(b)).
                    var dz = [st.gate * (1 - st.gate) * dGate] // [1]
                    dz.withUnsafeMutableBufferPointer { gp in db.withUnsafeMutableBufferPointer {
                        Kernels.linearBackward(gp.baseAddress!, rows: 1, weight: gateW, into: $0.baseAddress!, accumulate: true, pool: pool)
                    } }
                }
            }
        }
        // b = post_attention_layernorm(x1); x2 = x1 + y.
        var dx1 = dOut // [hidden]
        t.x1.withUnsafeBufferPointer { xp in db.withUnsafeBufferPointer { gp in dx1.withUnsafeMutableBufferPointer {
            Kernels.rmsNormBackward(xp.baseAddress!, gp.baseAddress!, cols: h, weight: layer.postAttentionNorm, eps: s.eps, into: $0.baseAddress!, accumulate: true)
        } } }
        // x1 = xIn + o_proj(attn).
        var dAttn = [Float](repeating: 0, count: s.qDim) // [heads·d]
        dx1.withUnsafeBufferPointer { gp in dAttn.withUnsafeMutableBufferPointer {
            Kernels.linearBackward(gp.baseAddress!, rows: 1, weight: layer.attention.o, into: $0.baseAddress!, accumulate: false, pool: pool)
        } }
        // attn_h = Σ_j α_j V[j]; α = softmax(scale · q_h · K[j]); only the last key and value are
        // this position's (the earlier ones are constants of the cache).
        var dq = [Float](repeating: 0, count: s.qDim), dk = [Float](repeating: 0, count: s.kvDim), dv = dk
        let group = s.heads / s.kvHeads, scale = 1 / Float(d).squareRoot()
        for hd in 0..<s.heads {
            let g = hd / group, alpha = Array(t.attention[(hd * (p + 1))..<((hd + 1) * (p + 1))])
            var dAlpha = [Float](repeating: 0, count: p + 1) // [p + 1]
            for j in 0...p { var acc: Float = 0; for c in 0..<d { acc += dAttn[hd * d + c] * t.values[j * s.kvDim + g * d + c] }; dAlpha[j] = acc }
            let mean = (0...p).reduce(Float(0)) { $0 + alpha[$1] * dAlpha[$1] }
            for j in 0...p {
                let dScore = alpha[j] * (dAlpha[j] - mean) * scale
                for c in 0..<d { dq[hd * d + c] += dScore * t.keys[j * s.kvDim + g * d + c] }
                if j == p { for c in 0..<d { dk[g * d + c] += dScore * t.q[hd * d + c] } }
            }
            for c in 0..<d { dv[g * d + c] += alpha[p] * dAttn[hd * d + c] }
        }
        // RoPE is a rotation: its backward is the inverse rotation.
        dq.withUnsafeMutableBufferPointer { rope.applyTransposed($0.baseAddress!, heads: s.heads, position: p) }
        dk.withUnsafeMutableBufferPointer { rope.applyTransposed($0.baseAddress!, heads: s.kvHeads, position: p) }
        // clip_qkv: no gradient where the value was clipped.
        if let clip = s.clipQKV {
            for i in 0..<s.qDim where abs(t.qNormed[i]) > clip { dq[i] = 0 }
            for i in 0..<s.kvDim where abs(t.kNormed[i]) > clip { dk[i] = 0 }
            for i in 0..<s.kvDim where abs(t.vProjected[i]) > clip { dv[i] = 0 }
        }
        // q/k norm.
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
        // a = input_layernorm(xIn); q, k, v = projections of a.
        var da = [Float](repeating: 0, count: h) // [hidden]
        da.withUnsafeMutableBufferPointer { ap in
            let out = ap.baseAddress!
            dq.withUnsafeBufferPointer { Kernels.linearBackward($0.baseAddress!, rows: 1, weight: layer.attention.q, into: out, accumulate: false, pool: pool) }
            dk.withUnsafeBufferPointer { Kernels.linearBackward($0.baseAddress!, rows: 1, weight: layer.attention.k, into: out, accumulate: true, pool: pool) }
            dv.withUnsafeBufferPointer { Kernels.linearBackward($0.baseAddress!, rows: 1, weight: layer.attention.v, into: out, accumulate: true, pool: pool) }
        }
        var dIn = dx1
        t.xIn.withUnsafeBufferPointer { xp in da.withUnsafeBufferPointer { gp in dIn.withUnsafeMutableBufferPointer {
            Kernels.rmsNormBackward(xp.baseAddress!, gp.baseAddress!, cols: h, weight: layer.inputNorm, eps: s.eps, into: $0.baseAddress!, accumulate: true)
        } } }
        return (dIn, dOmega)
    }
}
