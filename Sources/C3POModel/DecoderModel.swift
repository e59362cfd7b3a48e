import C3POCore
import Foundation

// The shared decoder engine: every MoE family is a pre-norm decoder of attention and
// feed-forward blocks. A family file (Olmoe.swift, Qwen2Moe.swift, ...) reads its config and
// tensor names into a `DecoderSpec` and `DecoderLayer`s; everything that runs is here.

/// How q and k are normalised before RoPE.
enum QKNorm: Sendable {
    case none
    /// RMSNorm over the whole projection (OLMoE: q_norm spans heads × d, k_norm kvHeads × d).
    case fullWidth
    /// RMSNorm over each head's d values, one weight of d shared by the heads (Qwen3-MoE).
    case perHead
}

/// Where `MoEDecoderModel.projectQKV` lets an observer see q, k and v.
enum QKVStage { case projected, normed }

/// The architecture-wide facts the engine needs (decoded and validated by a family file).
struct DecoderSpec: Sendable {
    var family: String
    var vocabSize: Int
    var hidden: Int
    var heads: Int
    var kvHeads: Int
    var headDim: Int
    var eps: Float
    var ropeTheta: Double
    var maxContext: Int
    var qkNorm: QKNorm
    var clipQKV: Float?
    /// Routed experts per MoE layer and experts chosen per token.
    var experts: Int
    var topK: Int
    /// Renormalise the k chosen weights to sum 1 (OLMoE/Qwen: `norm_topk_prob`; Mixtral: always).
    var normalizeTopK: Bool

    var qDim: Int { heads * headDim }
    var kvDim: Int { kvHeads * headDim }
}

/// q/k/v/o projections of one layer, with the optional biases and norms of its family.
struct AttentionWeights {
    var q: WeightMatrix, k: WeightMatrix, v: WeightMatrix, o: WeightMatrix
    var qBias: [Float]?, kBias: [Float]?, vBias: [Float]?
    /// Per `QKNorm`: [qDim]/[kvDim] for fullWidth, [headDim] for perHead, nil for none.
    var qNorm: [Float]?, kNorm: [Float]?
}

/// A routed MoE block: softmax router over the routed experts, top-k, and optionally
/// shared experts that every token passes through (scaled by sigmoid(gate·x) when `sharedGate`).
struct MoEBlock {
    var router: WeightMatrix // [experts, hidden]
    var experts: ExpertBank
    var shared: ExpertBank?
    var sharedGate: WeightMatrix? // [1, hidden]
}

enum FeedForward {
    case dense(ExpertBank) // one SwiGLU MLP, run as a single always-chosen expert
    case moe(MoEBlock)
}

struct DecoderLayer {
    var inputNorm: [Float]
    var postAttentionNorm: [Float]
    var attention: AttentionWeights
    var ffn: FeedForward

    var moe: MoEBlock? { if case .moe(let b) = ffn { return b }; return nil }
}

/// The cached state of one prefill.
public final class DecoderPrefillState: PrefillState {
    public let tokens: [Int]
    public let logits: [Float]
    /// Per decoder layer; a dense layer's row is all zeros (it has no router).
    public let routerProbs: [[Float]]
    /// Keys and values per layer, after norms, clipping and RoPE. [layers][tokens × kvHeads·d]
    let keys: [[Float]]
    let values: [[Float]]
    /// The residual stream entering each layer at the last position. [layers][hidden]
    let lastInputs: [[Float]]
    let modelID: ObjectIdentifier
    /// What the tail gradient computed once at this prompt's lowest overridden layer, which no
    /// override can change (`TailGradient.swift`).
    let memo = LowestLayerMemo()

    init(tokens: [Int], logits: [Float], routerProbs: [[Float]], keys: [[Float]], values: [[Float]],
         lastInputs: [[Float]], modelID: ObjectIdentifier) {
        self.tokens = tokens; self.logits = logits; self.routerProbs = routerProbs
        self.keys = keys; self.values = values; self.lastInputs = lastInputs; self.modelID = modelID
    }

    public var byteCount: Int {
        func floats(_ a: [[Float]]) -> Int { a.reduce(0) { $0 + $1.count } }
        return 4 * (logits.count + floats(routerProbs) + floats(keys) + floats(values) + floats(lastInputs)) + 8 * tokens.count
    }

    /// Throws unless the state still holds layer `layer` and above (see `keepingTail`).
    func checkTail(from layer: Int, _ what: String) throws {
        guard lastInputs.indices.contains(layer), !lastInputs[layer].isEmpty else {
            throw ModelError.input("\(what): the state keeps only the tail above layer \(layer); it cannot start there")
        }
    }

    /// Keys and values of the layers below `layer`, and the residuals entering them, dropped.
    public func keepingTail(from layer: Int) -> PrefillState {
        let drop = max(0, min(layer, keys.count))
        let empty = [[Float]](repeating: [], count: drop)
        return DecoderPrefillState(tokens: tokens, logits: logits, routerProbs: routerProbs,
                                   keys: empty + keys[drop...], values: empty + values[drop...],
                                   lastInputs: empty + lastInputs[drop...], modelID: modelID)
    }
}

extension MoEDecoderModel {
    public func snapshot(_ state: PrefillState, fromLayer: Int) throws -> TailSnapshot {
        guard let st = state as? DecoderPrefillState, st.modelID == ObjectIdentifier(self) else {
            throw ModelError.input("snapshot: the state does not come from this model's prefill")
        }
        guard (0..<layerCount).contains(fromLayer) else { throw ModelError.input("snapshot: fromLayer \(fromLayer) out of range 0..<\(layerCount)") }
        try st.checkTail(from: fromLayer, "snapshot")
        return TailSnapshot(tokens: st.tokens, fromLayer: fromLayer, keys: Array(st.keys[fromLayer...]),
                            values: Array(st.values[fromLayer...]), lastInputs: Array(st.lastInputs[fromLayer...]))
    }

    /// Checks every shape against this model, naming what is wrong, before any is used.
    public func restore(_ s: TailSnapshot) throws -> PrefillState {
        let n = s.tokens.count, tail = layerCount - s.fromLayer
        guard (0..<layerCount).contains(s.fromLayer) else { throw ModelError.input("stored state: from layer \(s.fromLayer) outside 0..<\(layerCount)") }
        guard n > 0, n <= maxContext else { throw ModelError.input("stored state: \(n) tokens, the model takes 1...\(maxContext)") }
        if let bad = s.tokens.first(where: { !(0..<vocabularySize).contains($0) }) { throw ModelError.input("stored state: token \(bad) outside the vocabulary") }
        guard s.keys.count == tail, s.values.count == tail, s.lastInputs.count == tail else {
            throw ModelError.input("stored state: \(s.keys.count) layers of keys, \(s.values.count) of values, \(s.lastInputs.count) of inputs; layers \(s.fromLayer)..<\(layerCount) need \(tail)")
        }
        guard s.keys.allSatisfy({ $0.count == n * spec.kvDim }), s.values.allSatisfy({ $0.count == n * spec.kvDim }),
              s.lastInputs.allSatisfy({ $0.count == spec.hidden }) else {
            throw ModelError.input("stored state: keys and values must hold \(n) × \(spec.kvDim) values a layer and inputs \(spec.hidden)")
        }
        let empty = [[Float]](repeating: [], count: s.fromLayer)
        return DecoderPrefillState(tokens: s.tokens, logits: [], routerProbs: [], keys: empty + s.keys, values: empty + s.values,
                                   lastInputs: empty + s.lastInputs, modelID: ObjectIdentifier(self))
    }
}

/// A decoder-only MoE causal LM built by a family file: the runtime's `RoutedMoEModel`.
public final class MoEDecoderModel: RoutedMoEModel, @unchecked Sendable {
    let spec: DecoderSpec
    public let identity: ModelIdentity
    public let tokenizer: any TextTokenizer
    let checkpoint: SafetensorsCheckpoint
    let layers: [DecoderLayer]
    let embedding: WeightMatrix
    let lmHead: WeightMatrix
    let finalNorm: [Float]
    let rope: RoPE
    let router: TopKRouter
    let attention: CausalAttention
    /// Threads for our own loops (`C3PO_THREADS`, else all cores).
    public var threads: Int

    public var family: String { spec.family }
    public var layerCount: Int { layers.count }
    public var expertCount: Int { spec.experts }
    public var topK: Int { spec.topK }
    public var vocabularySize: Int { spec.vocabSize }
    public var maxContext: Int { spec.maxContext }
    public let routedLayers: [Int]

    init(spec: DecoderSpec, identity: ModelIdentity, tokenizer: any TextTokenizer, checkpoint: SafetensorsCheckpoint,
         layers: [DecoderLayer], embedding: WeightMatrix, lmHead: WeightMatrix, finalNorm: [Float]) {
        self.spec = spec; self.tokenizer = tokenizer; self.checkpoint = checkpoint
        self.layers = layers; self.embedding = embedding; self.lmHead = lmHead; self.finalNorm = finalNorm
        routedLayers = layers.indices.filter { layers[$0].moe != nil }
        var id = identity
        id.family = spec.family
        id.routedLayers = routedLayers.count == layers.count ? nil : routedLayers
        self.identity = id
        rope = RoPE(headDim: spec.headDim, theta: spec.ropeTheta)
        router = TopKRouter(experts: spec.experts, topK: spec.topK, normalizeTopK: spec.normalizeTopK)
        attention = CausalAttention(heads: spec.heads, kvHeads: spec.kvHeads, headDim: spec.headDim)
        threads = Parallel.defaultThreads
    }

    public func encode(_ text: String) throws -> [Int] { tokenizer.encode(text) }

    public internal(set) var endTokenIDs: Set<Int> = []

    public func text(of ids: [Int]) -> String {
        (tokenizer as? TokenDecoding)?.decode(ids, skipSpecialTokens: true) ?? ids.compactMap(tokenText).joined()
    }

    public func tokenText(_ id: Int) -> String? { (tokenizer as? TokenDecoding)?.decode([id], skipSpecialTokens: false) }

    public func labelTokenIDs(_ labels: [String]) throws -> [Int] {
        try labels.map { label in
            let ids = tokenizer.continuationIDs(label)
            guard ids.count == 1 else { throw TokenizerError.notSingleToken(" " + label, ids) }
            return ids[0]
        }
    }

    /// Runs `body` with one scratch buffer per worker (every product is on our kernels, each
    /// single-threaded inside its worker).
    func withWorkers<T>(_ body: (ScratchPool) throws -> T) rethrows -> T {
        try body(ScratchPool(workers: max(1, threads)))
    }

    func check(_ override: RoutingOverride?) throws {
        for (l, w) in override?.layers ?? [:] {
            guard l >= 0 && l < layerCount else { throw ModelError.override("layer \(l) out of range 0..<\(layerCount)") }
            guard layers[l].moe != nil else {
                throw ModelError.override("layer \(l) is a dense layer (no router); routed layers: \(routedLayers.map(String.init).joined(separator: ","))")
            }
            guard w.count == expertCount else { throw ModelError.override("layer \(l): \(w.count) weights, the model has \(expertCount) experts") }
            guard w.allSatisfy({ $0.isFinite && $0 >= 0 }), w.contains(where: { $0 > 0 }) else {
                throw ModelError.override("layer \(l): weights must be finite, non-negative and not all zero")
            }
        }
    }

    /// Full prefill: the last position's logits and routing, and the cached state of every
    /// layer that tail re-evaluation starts from.
    public func prefill(_ tokens: [Int], override: RoutingOverride?) throws -> PrefillState {
        try prefill(tokens, override: override, tailFrom: nil)
    }

    /// Only what tail work from `fromLayer` up needs (a neighbour's state for NGD, `--cache-states`):
    /// the last layer stops after its keys and values (its attention output and feed-forward block
    /// feed nothing but the logits, which the tail computes itself), no LM head, and the layers below
    /// `fromLayer` are dropped. Its logits and routing are empty, as a restored state's.
    public func prefillTail(_ tokens: [Int], fromLayer: Int) throws -> PrefillState {
        guard (0..<layerCount).contains(fromLayer) else { throw ModelError.input("prefillTail: from layer \(fromLayer) outside 0..<\(layerCount)") }
        return try prefill(tokens, override: nil, tailFrom: fromLayer)
    }

    private func prefill(_ tokens: [Int], override: RoutingOverride?, tailFrom: Int?) throws -> PrefillState {
        let t = tokens.count
        guard t > 0 else { throw ModelError.input("empty prompt") }
        guard t <= maxContext else { throw ModelError.input("prompt of \(t) tokens exceeds max_position_embeddings \(maxContext)") }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabularySize }) { throw ModelError.input("token id \(bad) outside the vocabulary of \(vocabularySize)") }
        try check(override)
        let s = spec, h = s.hidden, e = s.experts
        let prof = StageProfile.shared
        return withWorkers { pool in
            var x = [Float](repeating: 0, count: t * h) // [t, hidden] residual stream
            prof.time("embedding") {
                x.withUnsafeMutableBufferPointer { xb in for (i, id) in tokens.enumerated() { embedding.row(id, into: xb.baseAddress! + i * h) } }
            }
            var xn = [Float](repeating: 0, count: t * h)     // [t, hidden]
            var q = [Float](repeating: 0, count: t * s.qDim) // [t, heads·d]
            var attn = [Float](repeating: 0, count: t * s.qDim)
            var tmp = [Float](repeating: 0, count: t * h)
            var probs = [Float](repeating: 0, count: t * e)  // [t, experts]
            var keys: [[Float]] = [], values: [[Float]] = [], lastInputs: [[Float]] = []
            var routerProbs: [[Float]] = []
            for (l, layer) in layers.enumerated() {
                lastInputs.append(Array(x[(t - 1) * h ..< t * h]))
                var k = [Float](repeating: 0, count: t * s.kvDim), v = k // [t, kvHeads·d]
                prof.time("norms") { rmsNorm(x, into: &xn, rows: t, weight: layer.inputNorm) }
                prof.time("qkv") { projectQKV(layer.attention, xn, rows: t, firstPosition: 0, q: &q, k: &k, v: &v, pool: pool) }
                if tailFrom != nil, l == layers.count - 1 { keys.append(k); values.append(v); break } // the rest feeds only the logits
                prof.time("attention") {
                    q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in attn.withUnsafeMutableBufferPointer { ap in
                        attention(q: qp.baseAddress!, queries: t, firstQuery: 0, k: kp.baseAddress!, v: vp.baseAddress!, total: t, into: ap.baseAddress!, pool: pool)
                    } } } }
                }
                prof.time("o_proj") {
                    linear(attn, rows: t, weight: layer.attention.o, into: &tmp, pool: pool) // [t, hidden]
                    for i in 0..<(t * h) { x[i] += tmp[i] }
                }
                keys.append(k); values.append(v)
                prof.time("norms") { rmsNorm(x, into: &xn, rows: t, weight: layer.postAttentionNorm) }
                let last = feedForward(layer, l, xn, rows: t, override: override, probs: &probs, into: &tmp, pool: pool)
                routerProbs.append(last)
                for i in 0..<(t * h) { x[i] += tmp[i] }
            }
            if let from = tailFrom {
                let empty = [[Float]](repeating: [], count: from)
                return DecoderPrefillState(tokens: tokens, logits: [], routerProbs: [], keys: empty + keys[from...], values: empty + values[from...],
                                           lastInputs: empty + lastInputs[from...], modelID: ObjectIdentifier(self))
            }
            let logits = prof.time("lm_head") { head(Array(x[(t - 1) * h ..< t * h]), rows: nil, pool: pool) }
            return DecoderPrefillState(tokens: tokens, logits: logits, routerProbs: routerProbs,
                                       keys: keys, values: values, lastInputs: lastInputs, modelID: ObjectIdentifier(self))
        }
    }

    func rmsNorm(_ x: [Float], into out: inout [Float], rows: Int, weight: [Float]) {
        x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in
            Kernels.rmsNorm(xp.baseAddress!, into: op.baseAddress!, rows: rows, cols: spec.hidden, weight: weight, eps: spec.eps)
        } }
    }

    func linear(_ x: [Float], rows: Int, weight: WeightMatrix, into out: inout [Float], pool: ScratchPool) {
        x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in
            Kernels.linear(xp.baseAddress!, rows: rows, weight: weight, into: op.baseAddress!, pool: pool)
        } }
    }

    /// Rows up to which products of one input run as one parallel region (below the AMX kernels' range).
    static let fewRows = 8

    /// q/k/v projections of normalised rows, their biases, the family's q/k norm, clip_qkv, then
    /// RoPE at positions firstPosition ..< firstPosition + rows (or at `positions`, one per row). `observe` (the tail's backward
    /// keeps them) sees q, k, v after the projections and biases (`.projected`) and after the q/k
    /// norm, before clipping (`.normed`).
    func projectQKV(_ a: AttentionWeights, _ xn: [Float], rows t: Int, firstPosition: Int, positions: [Int]? = nil,
                    q: inout [Float], k: inout [Float], v: inout [Float], pool: ScratchPool,
                    observe: ((QKVStage, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) -> Void)? = nil) {
        let s = spec
        xn.withUnsafeBufferPointer { xp in
            q.withUnsafeMutableBufferPointer { qp in k.withUnsafeMutableBufferPointer { kp in v.withUnsafeMutableBufferPointer { vp in
                let x = xp.baseAddress!, qb = qp.baseAddress!, kb = kp.baseAddress!, vb = vp.baseAddress!
                if t <= Self.fewRows {
                    // A few rows (decoding, the tail): the three weights as one stream per worker.
                    Kernels.linears(x, rows: t, [(a.q, qb), (a.k, kb), (a.v, vb)], pool: pool)
                } else {
                    Kernels.linear(x, rows: t, weight: a.q, into: qb, pool: pool) // [t, heads·d]
                    Kernels.linear(x, rows: t, weight: a.k, into: kb, pool: pool) // [t, kvHeads·d]
                    Kernels.linear(x, rows: t, weight: a.v, into: vb, pool: pool) // [t, kvHeads·d]
                }
                func addBias(_ bias: [Float]?, _ p: UnsafeMutablePointer<Float>, _ width: Int) {
                    guard let bias else { return }
                    for r in 0..<t { for i in 0..<width { p[r * width + i] += bias[i] } }
                }
                addBias(a.qBias, qb, s.qDim); addBias(a.kBias, kb, s.kvDim); addBias(a.vBias, vb, s.kvDim)
                observe?(.projected, qb, kb, vb)
                switch s.qkNorm {
                case .none: break
                case .fullWidth:
                    Kernels.rmsNorm(qb, rows: t, cols: s.qDim, weight: a.qNorm!, eps: s.eps)
                    Kernels.rmsNorm(kb, rows: t, cols: s.kvDim, weight: a.kNorm!, eps: s.eps)
                case .perHead:
                    Kernels.rmsNorm(qb, rows: t * s.heads, cols: s.headDim, weight: a.qNorm!, eps: s.eps)
                    Kernels.rmsNorm(kb, rows: t * s.kvHeads, cols: s.headDim, weight: a.kNorm!, eps: s.eps)
                }
                observe?(.normed, qb, kb, vb)
                if let clip = s.clipQKV {
                    Kernels.clamp(qb, count: t * s.qDim, limit: clip)
                    Kernels.clamp(kb, count: t * s.kvDim, limit: clip)
                    Kernels.clamp(vb, count: t * s.kvDim, limit: clip)
                }
                if let positions {
                    for (r, p) in positions.enumerated() {
                        rope.apply(qb + r * s.qDim, rows: 1, heads: s.heads, firstPosition: p)
                        rope.apply(kb + r * s.kvDim, rows: 1, heads: s.kvHeads, firstPosition: p)
                    }
                } else {
                    rope.apply(qb, rows: t, heads: s.heads, firstPosition: firstPosition)
                    rope.apply(kb, rows: t, heads: s.kvHeads, firstPosition: firstPosition)
                }
            } } }
        }
    }

    /// The feed-forward block of layer `l` on rows `xn` into `out` [t, hidden]; returns the
    /// router softmax of the last row (zeros for a dense layer). `probs` [t, experts] holds every
    /// row's softmax afterwards (MoE layers).
    private func feedForward(_ layer: DecoderLayer, _ l: Int, _ xn: [Float], rows t: Int, override: RoutingOverride?,
                             probs: inout [Float], into out: inout [Float], pool: ScratchPool) -> [Float] {
        let h = spec.hidden, e = spec.experts
        let prof = StageProfile.shared
        switch layer.ffn {
        case .dense(let mlp):
            prof.time("experts") { runBank(mlp, xn, rows: t, routing: Array(repeating: [(0, 1)], count: t), into: &out, pool: pool) }
            return [Float](repeating: 0, count: e)
        case .moe(let block):
            let routing = prof.time("router") { route(block, l, xn, rows: t, override: override, probs: &probs, pool: pool) }
            prof.time("experts") { runBank(block.experts, xn, rows: t, routing: routing, into: &out, pool: pool) }
            if let shared = block.shared {
                prof.time("shared_experts") {
                    var y = [Float](repeating: 0, count: t * h)
                    runBank(shared, xn, rows: t, routing: Array(repeating: [(0, 1)], count: t), into: &y, pool: pool)
                    if let gate = block.sharedGate {
                        var g = [Float](repeating: 0, count: t)
                        linear(xn, rows: t, weight: gate, into: &g, pool: pool) // [t, 1]
                        for r in 0..<t {
                            let s = 1 / (1 + expf(-g[r]))
                            for i in 0..<h { y[r * h + i] *= s }
                        }
                    }
                    for i in 0..<(t * h) { out[i] += y[i] }
                }
            }
            return Array(probs[(t - 1) * e ..< t * e])
        }
    }

    private func runBank(_ bank: ExpertBank, _ xn: [Float], rows t: Int, routing: [[(expert: Int, weight: Float)]],
                         into out: inout [Float], pool: ScratchPool) {
        xn.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in
            bank(xp.baseAddress!, tokens: t, routing: routing, into: op.baseAddress!, pool: pool)
        } }
    }

    /// Router softmax of rows `xn` into `probs` [t, experts], the override of layer `l` applied to
    /// the last row, and each row's top-k.
    private func route(_ block: MoEBlock, _ l: Int, _ xn: [Float], rows t: Int, override: RoutingOverride?,
                       probs: inout [Float], pool: ScratchPool) -> [[(expert: Int, weight: Float)]] {
        let e = spec.experts
        if probs.count != t * e { probs = [Float](repeating: 0, count: t * e) }
        return xn.withUnsafeBufferPointer { xp in probs.withUnsafeMutableBufferPointer { lp in
            let p = lp.baseAddress!
            Kernels.linear(xp.baseAddress!, rows: t, weight: block.router, into: p, pool: pool) // [t, experts]
            for r in 0..<t { Kernels.softmax(p + r * e, count: e) }
            var routing: [[(expert: Int, weight: Float)]] = []
            routing.reserveCapacity(t)
            for r in 0..<(t - 1) { routing.append(router.select(p + r * e)) }
            if let w = override?.layers[l] {
                let replaced = TopKRouter.normalizedOverride(w)
                routing.append(replaced.withUnsafeBufferPointer { router.select($0.baseAddress!) })
            } else {
                routing.append(router.select(p + (t - 1) * e))
            }
            return routing
        } }
    }

    /// Final norm and LM head for one hidden row; `rows` selects vocabulary rows.
    private func head(_ hidden: [Float], rows: [Int]?, pool: ScratchPool) -> [Float] {
        var xn = hidden
        let h = spec.hidden
        xn.withUnsafeMutableBufferPointer { Kernels.rmsNorm($0.baseAddress!, rows: 1, cols: h, weight: finalNorm, eps: spec.eps) }
        if let rows {
            // Only the requested vocabulary rows, read in their stored dtype. [rows]
            var out = [Float](repeating: 0, count: rows.count)
            xn.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in
                for (i, r) in rows.enumerated() {
                    lmHead.product(xp.baseAddress!, ldx: h, tokens: 1, rows: r, r + 1, into: op.baseAddress! + i, ldo: 1)
                }
            } }
            return out
        }
        var logits = [Float](repeating: 0, count: spec.vocabSize)
        linear(xn, rows: 1, weight: lmHead, into: &logits, pool: pool) // [1, vocab]
        return logits
    }

    /// Scratch of `onePosition`, one set per pass.
    struct OnePositionScratch {
        var xn, q, kNew, vNew, attn, tmp, probs: [Float]
        init(_ s: DecoderSpec) {
            xn = [Float](repeating: 0, count: s.hidden); q = [Float](repeating: 0, count: s.qDim)
            kNew = [Float](repeating: 0, count: s.kvDim); vNew = kNew
            attn = [Float](repeating: 0, count: s.qDim); tmp = [Float](repeating: 0, count: s.hidden)
            probs = [Float](repeating: 0, count: s.experts)
        }
    }

    /// Decoder layer `l` at the one position `p` (tail re-evaluation, a decoding step): the
    /// positions before it attend from the first p rows of `cachedKeys`/`cachedValues`;
    /// x ← x + attention, x ← x + MoE (with `override` at this position). Returns the layer's
    /// keys and values through p ([p + 1, kvHeads·d]) and the router's distribution at p.
    func onePosition(_ l: Int, _ x: inout [Float], position p: Int, cachedKeys: [Float], cachedValues: [Float],
                     override: RoutingOverride?, scratch w: inout OnePositionScratch, pool: ScratchPool) -> ([Float], [Float], [Float]) {
        let layer = layers[l], s = spec, h = s.hidden
        rmsNorm(x, into: &w.xn, rows: 1, weight: layer.inputNorm)
        projectQKV(layer.attention, w.xn, rows: 1, firstPosition: p, q: &w.q, k: &w.kNew, v: &w.vNew, pool: pool)
        let k = Array(cachedKeys.prefix(p * s.kvDim)) + w.kNew, v = Array(cachedValues.prefix(p * s.kvDim)) + w.vNew
        w.q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in w.attn.withUnsafeMutableBufferPointer { ap in
            attention(q: qp.baseAddress!, queries: 1, firstQuery: p, k: kp.baseAddress!, v: vp.baseAddress!, total: p + 1, into: ap.baseAddress!, pool: pool)
        } } } }
        linear(w.attn, rows: 1, weight: layer.attention.o, into: &w.tmp, pool: pool) // [1, hidden]
        for i in 0..<h { x[i] += w.tmp[i] }
        rmsNorm(x, into: &w.xn, rows: 1, weight: layer.postAttentionNorm)
        let probs = feedForward(layer, l, w.xn, rows: 1, override: override, probs: &w.probs, into: &w.tmp, pool: pool)
        for i in 0..<h { x[i] += w.tmp[i] }
        return (k, v, probs)
    }

    public func reevaluateTail(_ state: PrefillState, fromLayer: Int, override: RoutingOverride?, rows: [Int]?) throws -> [Float] {
        guard let st = state as? DecoderPrefillState, st.modelID == ObjectIdentifier(self) else {
            throw ModelError.input("reevaluateTail: the state does not come from this model's prefill")
        }
        guard fromLayer >= 0 && fromLayer < layerCount else { throw ModelError.input("reevaluateTail: fromLayer \(fromLayer) out of range 0..<\(layerCount)") }
        try check(override)
        if let below = override?.layers.keys.filter({ $0 < fromLayer }).min() {
            throw ModelError.override("layer \(below) lies below fromLayer \(fromLayer): its cached state cannot change")
        }
        if let bad = rows?.first(where: { $0 < 0 || $0 >= vocabularySize }) { throw ModelError.input("reevaluateTail: row \(bad) outside the vocabulary") }
        try st.checkTail(from: fromLayer, "reevaluateTail")
        let t = st.tokens.count
        return withWorkers { pool in
            var x = st.lastInputs[fromLayer] // [hidden] residual stream of the last position
            var scratch = OnePositionScratch(spec)
            for l in fromLayer..<layerCount {
                // Earlier positions' keys/values from the cache, the last position's recomputed.
                _ = onePosition(l, &x, position: t - 1, cachedKeys: st.keys[l], cachedValues: st.values[l],
                                override: override, scratch: &scratch, pool: pool)
            }
            return head(x, rows: rows, pool: pool)
        }
    }

    public func decode(_ state: PrefillState, token: Int, override: RoutingOverride?) throws -> PrefillState {
        guard let st = state as? DecoderPrefillState, st.modelID == ObjectIdentifier(self) else {
            throw ModelError.input("decode: the state does not come from this model")
        }
        guard token >= 0 && token < vocabularySize else { throw ModelError.input("decode: token id \(token) outside the vocabulary of \(vocabularySize)") }
        try st.checkTail(from: 0, "decode")
        let t = st.tokens.count // the new token's position
        guard t + 1 <= maxContext else { throw ModelError.input("decode: \(t + 1) tokens exceed max_position_embeddings \(maxContext)") }
        try check(override)
        return withWorkers { pool in
            var x = [Float](repeating: 0, count: spec.hidden) // [hidden] residual stream of the new position
            x.withUnsafeMutableBufferPointer { embedding.row(token, into: $0.baseAddress!) }
            var scratch = OnePositionScratch(spec)
            var keys: [[Float]] = [], values: [[Float]] = [], lastInputs: [[Float]] = [], routerProbs: [[Float]] = []
            for l in layers.indices {
                lastInputs.append(x)
                // The cache grows by the new position.
                let (k, v, probs) = onePosition(l, &x, position: t, cachedKeys: st.keys[l], cachedValues: st.values[l],
                                                override: override, scratch: &scratch, pool: pool)
                keys.append(k); values.append(v); routerProbs.append(probs)
            }
            let logits = head(x, rows: nil, pool: pool)
            return DecoderPrefillState(tokens: st.tokens + [token], logits: logits, routerProbs: routerProbs,
                                       keys: keys, values: values, lastInputs: lastInputs, modelID: ObjectIdentifier(self))
        }
    }
}
