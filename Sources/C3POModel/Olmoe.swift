import C3POCore
import Foundation

/// `config.json` of an OLMoE checkpoint (transformers' OlmoeConfig).
public struct OlmoeConfig: Codable, Sendable {
    public struct RopeParameters: Codable, Sendable {
        public var ropeTheta: Double?
        public var ropeType: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type" }
    }

    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var hiddenAct: String?
    public var maxPositionEmbeddings: Int?
    public var rmsNormEps: Double?
    public var tieWordEmbeddings: Bool?
    public var ropeTheta: Double?
    public var ropeParameters: RopeParameters?
    public var attentionBias: Bool?
    public var clipQKV: Double?
    public var numExpertsPerTok: Int
    public var numExperts: Int
    public var normTopKProb: Bool?
    public var nameOrPath: String?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case tieWordEmbeddings = "tie_word_embeddings"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case attentionBias = "attention_bias"
        case clipQKV = "clip_qkv"
        case numExpertsPerTok = "num_experts_per_tok"
        case numExperts = "num_experts"
        case normTopKProb = "norm_topk_prob"
        case nameOrPath = "_name_or_path"
    }

    // Derived values, with OlmoeConfig's defaults.
    public var kvHeads: Int { numKeyValueHeads ?? numAttentionHeads }
    public var dHead: Int { headDim ?? hiddenSize / max(1, numAttentionHeads) }
    public var eps: Float { Float(rmsNormEps ?? 1e-5) }
    public var tied: Bool { tieWordEmbeddings ?? false }
    public var theta: Double { ropeParameters?.ropeTheta ?? ropeTheta ?? 10000 }
    public var maxContext: Int { maxPositionEmbeddings ?? 4096 }
    public var normalizeTopK: Bool { normTopKProb ?? false }

    /// Checks every field once; the error names the field.
    public func validate(_ url: URL) throws {
        func bad(_ f: String, _ why: String) -> ModelError { .config(url, field: f, why) }
        for (f, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                       ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                       ("num_experts", numExperts), ("num_experts_per_tok", numExpertsPerTok)] where v <= 0 {
            throw bad(f, "must be positive, got \(v)")
        }
        guard numExpertsPerTok <= numExperts else { throw bad("num_experts_per_tok", "\(numExpertsPerTok) exceeds num_experts \(numExperts)") }
        guard hiddenSize % numAttentionHeads == 0 else { throw bad("num_attention_heads", "\(numAttentionHeads) does not divide hidden_size \(hiddenSize)") }
        // OLMoE's q_norm spans hidden_size and k_norm (hidden/heads)·kv_heads: head_dim must be hidden/heads.
        if let h = headDim, h != hiddenSize / numAttentionHeads { throw bad("head_dim", "\(h) differs from hidden_size / num_attention_heads") }
        guard dHead % 2 == 0 else { throw bad("hidden_size", "head dimension \(dHead) is odd (RoPE rotates pairs)") }
        guard kvHeads > 0, numAttentionHeads % kvHeads == 0 else { throw bad("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(numAttentionHeads)") }
        if let a = hiddenAct, a != "silu" { throw bad("hidden_act", "'\(a)' is not supported (only silu)") }
        if attentionBias == true { throw bad("attention_bias", "true is not supported") }
        if let e = rmsNormEps, !(e > 0 && e.isFinite) { throw bad("rms_norm_eps", "must be positive and finite, got \(e)") }
        if let t = ropeParameters?.ropeType, t != "default" { throw bad("rope_parameters.rope_type", "'\(t)' is not supported (only default)") }
        guard theta > 0 && theta.isFinite else { throw bad("rope_theta", "must be positive and finite, got \(theta)") }
        if let c = clipQKV, !(c > 0 && c.isFinite) { throw bad("clip_qkv", "must be positive and finite, got \(c)") }
        if let m = maxPositionEmbeddings, m <= 0 { throw bad("max_position_embeddings", "must be positive, got \(m)") }
    }
}

/// The cached state of one OLMoE prefill.
public final class OlmoePrefillState: PrefillState {
    public let tokens: [Int]
    public let logits: [Float]
    public let routerProbs: [[Float]]
    /// Router softmax of every position, per layer [layers][tokens × experts]; when requested.
    public let allRouterProbs: [[Float]]?
    /// Keys and values per layer, after q/k norm, clipping and RoPE. [layers][tokens × kvHeads·d]
    let keys: [[Float]]
    let values: [[Float]]
    /// The residual stream entering each layer at the last position. [layers][hidden]
    let lastInputs: [[Float]]
    let modelID: ObjectIdentifier

    init(tokens: [Int], logits: [Float], routerProbs: [[Float]], allRouterProbs: [[Float]]?, keys: [[Float]], values: [[Float]],
         lastInputs: [[Float]], modelID: ObjectIdentifier) {
        self.tokens = tokens; self.logits = logits; self.routerProbs = routerProbs; self.allRouterProbs = allRouterProbs
        self.keys = keys; self.values = values; self.lastInputs = lastInputs; self.modelID = modelID
    }
}

/// OLMoE (allenai/OLMoE-1B-7B-*): pre-norm decoder layers with q/k RMSNorm over the full
/// projections, optional clip_qkv, RoPE, GQA, and a sparse block of SwiGLU experts behind a
/// softmax top-k router (transformers/models/olmoe/modeling_olmoe.py).
public final class OlmoeModel: RoutedMoEModel, @unchecked Sendable {
    struct Layer {
        var inputNorm: [Float]
        var postAttentionNorm: [Float]
        var qNorm: [Float]
        var kNorm: [Float]
        var q: WeightMatrix, k: WeightMatrix, v: WeightMatrix, o: WeightMatrix
        var router: WeightMatrix
        var experts: ExpertBank
    }

    public let config: OlmoeConfig
    public let identity: ModelIdentity
    public let tokenizer: ByteLevelBPETokenizer
    let checkpoint: SafetensorsCheckpoint
    let layers: [Layer]
    let embedding: WeightMatrix
    let lmHead: WeightMatrix
    let finalNorm: [Float]
    let rope: RoPE
    let router: TopKRouter
    let attention: CausalAttention
    /// Threads for our own loops (`C3PO_THREADS`, else all cores).
    public var threads: Int

    public var layerCount: Int { config.numHiddenLayers }
    public var expertCount: Int { config.numExperts }
    public var topK: Int { config.numExpertsPerTok }
    public var vocabularySize: Int { config.vocabSize }
    public var maxContext: Int { config.maxContext }

    /// Loads an OLMoE folder whose config has been decoded and validated.
    init(directory: URL, config c: OlmoeConfig, identity: ModelIdentity, tokenizer: ByteLevelBPETokenizer) throws {
        config = c
        self.identity = identity
        self.tokenizer = tokenizer
        let ckpt = try SafetensorsCheckpoint(directory: directory)
        checkpoint = ckpt
        let h = c.hiddenSize, n = c.intermediateSize, d = c.dHead, e = c.numExperts
        let qDim = c.numAttentionHeads * d, kvDim = c.kvHeads * d
        var used = Set<String>()
        func tensor(_ name: String, _ shape: [Int]) throws -> SafetensorsFile.Tensor {
            guard let t = ckpt.tensors[name] else { throw ModelError.tensor(directory, name: name, "missing from the checkpoint") }
            guard t.shape == shape else { throw ModelError.tensor(directory, name: name, "shape \(t.shape), expected \(shape)") }
            guard t.isFloat else { throw ModelError.tensor(directory, name: name, "dtype \(t.dtype), expected F32, F16 or BF16") }
            used.insert(name)
            return t
        }
        func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> WeightMatrix {
            WeightMatrix(try tensor(name, [rows, cols]), rows: rows, cols: cols)
        }
        func vector(_ name: String, _ count: Int) throws -> [Float] { try tensor(name, [count]).floats() }

        embedding = try matrix("model.embed_tokens.weight", c.vocabSize, h)
        finalNorm = try vector("model.norm.weight", h)
        if c.tied {
            lmHead = embedding
            // Some tied checkpoints still store the head; it must then be the right shape.
            if ckpt.tensors["lm_head.weight"] != nil { _ = try tensor("lm_head.weight", [c.vocabSize, h]) }
        } else {
            lmHead = try matrix("lm_head.weight", c.vocabSize, h)
        }
        // Transformers 5 holds experts fused ([experts, 2·inter, hidden] gate‖up and
        // [experts, hidden, inter] down); save_pretrained writes them per expert, but accept both.
        let fused = ckpt.tensors["model.layers.0.mlp.experts.gate_up_proj"] != nil
        var layers: [Layer] = []
        for l in 0..<c.numHiddenLayers {
            let p = "model.layers.\(l)."
            var experts: [SwiGLUExpert] = []
            if fused {
                let gu = try tensor(p + "mlp.experts.gate_up_proj", [e, 2 * n, h])
                let dn = try tensor(p + "mlp.experts.down_proj", [e, h, n])
                for x in 0..<e {
                    experts.append(SwiGLUExpert(gate: WeightMatrix(gu, offset: x * 2 * n * h, rows: n, cols: h),
                                                up: WeightMatrix(gu, offset: x * 2 * n * h + n * h, rows: n, cols: h),
                                                down: WeightMatrix(dn, offset: x * h * n, rows: h, cols: n)))
                }
            } else {
                for x in 0..<e {
                    let q = p + "mlp.experts.\(x)."
                    experts.append(SwiGLUExpert(gate: try matrix(q + "gate_proj.weight", n, h), up: try matrix(q + "up_proj.weight", n, h),
                                                down: try matrix(q + "down_proj.weight", h, n)))
                }
            }
            layers.append(Layer(
                inputNorm: try vector(p + "input_layernorm.weight", h),
                postAttentionNorm: try vector(p + "post_attention_layernorm.weight", h),
                qNorm: try vector(p + "self_attn.q_norm.weight", qDim),
                kNorm: try vector(p + "self_attn.k_norm.weight", kvDim),
                q: try matrix(p + "self_attn.q_proj.weight", qDim, h), k: try matrix(p + "self_attn.k_proj.weight", kvDim, h),
                v: try matrix(p + "self_attn.v_proj.weight", kvDim, h), o: try matrix(p + "self_attn.o_proj.weight", h, qDim),
                router: try matrix(p + "mlp.gate.weight", e, h),
                experts: ExpertBank(experts: experts, hidden: h, inter: n)))
        }
        if let extra = ckpt.tensors.keys.filter({ !used.contains($0) }).sorted().first {
            throw ModelError.tensor(directory, name: extra, "not expected by the OLMoE architecture (\(c.numHiddenLayers) layers, \(e) experts)")
        }
        self.layers = layers
        rope = RoPE(headDim: d, theta: c.theta)
        router = TopKRouter(experts: e, topK: c.numExpertsPerTok, normalizeTopK: c.normalizeTopK)
        attention = CausalAttention(heads: c.numAttentionHeads, kvHeads: c.kvHeads, headDim: d)
        threads = Parallel.defaultThreads
    }

    public func encode(_ text: String) throws -> [Int] { tokenizer.encode(text) }

    public func labelTokenIDs(_ labels: [String]) throws -> [Int] {
        try labels.map { label in
            let ids = tokenizer.encode(" " + label)
            guard ids.count == 1 else { throw TokenizerError.notSingleToken(" " + label, ids) }
            return ids[0]
        }
    }

    public func prefill(_ tokens: [Int], override: RoutingOverride?) throws -> PrefillState {
        try prefill(tokens, override: override, allPositions: false)
    }

    /// Runs BLAS single-threaded while our own workers parallelise (restoring its setting after).
    func withWorkers<T>(_ body: (ScratchPool) throws -> T) rethrows -> T {
        let previous = BLAS.threads
        BLAS.setThreads(1)
        defer { BLAS.setThreads(previous) }
        return try body(ScratchPool(workers: max(1, threads)))
    }

    func check(_ override: RoutingOverride?) throws {
        for (l, w) in override?.layers ?? [:] {
            guard l >= 0 && l < layerCount else { throw ModelError.override("layer \(l) out of range 0..<\(layerCount)") }
            guard w.count == expertCount else { throw ModelError.override("layer \(l): \(w.count) weights, the model has \(expertCount) experts") }
            guard w.allSatisfy({ $0.isFinite && $0 >= 0 }), w.contains(where: { $0 > 0 }) else {
                throw ModelError.override("layer \(l): weights must be finite, non-negative and not all zero")
            }
        }
    }

    /// Full prefill; `allPositions` also keeps every position's router softmax.
    public func prefill(_ tokens: [Int], override: RoutingOverride?, allPositions: Bool) throws -> OlmoePrefillState {
        let t = tokens.count
        guard t > 0 else { throw ModelError.input("empty prompt") }
        guard t <= maxContext else { throw ModelError.input("prompt of \(t) tokens exceeds max_position_embeddings \(maxContext)") }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabularySize }) { throw ModelError.input("token id \(bad) outside the vocabulary of \(vocabularySize)") }
        try check(override)
        let c = config, h = c.hiddenSize, e = c.numExperts
        let qDim = c.numAttentionHeads * c.dHead, kvDim = c.kvHeads * c.dHead
        let prof = StageProfile.shared
        return withWorkers { pool in
            var x = [Float](repeating: 0, count: t * h) // [t, hidden] residual stream
            prof.time("embedding") {
                x.withUnsafeMutableBufferPointer { xb in for (i, id) in tokens.enumerated() { embedding.row(id, into: xb.baseAddress! + i * h) } }
            }
            var xn = [Float](repeating: 0, count: t * h)   // [t, hidden]
            var q = [Float](repeating: 0, count: t * qDim) // [t, heads·d]
            var attn = [Float](repeating: 0, count: t * qDim)
            var tmp = [Float](repeating: 0, count: t * h)
            var logitsE = [Float](repeating: 0, count: t * e) // [t, experts]
            var keys: [[Float]] = [], values: [[Float]] = [], lastInputs: [[Float]] = []
            var routerProbs: [[Float]] = [], all: [[Float]] = []
            for (l, layer) in layers.enumerated() {
                lastInputs.append(Array(x[(t - 1) * h ..< t * h]))
                var k = [Float](repeating: 0, count: t * kvDim), v = k // [t, kvHeads·d]
                prof.time("norms") {
                    x.withUnsafeBufferPointer { xp in xn.withUnsafeMutableBufferPointer { xnp in
                        Kernels.rmsNorm(xp.baseAddress!, into: xnp.baseAddress!, rows: t, cols: h, weight: layer.inputNorm, eps: c.eps)
                    } }
                }
                prof.time("qkv") { projectQKV(layer, xn, rows: t, firstPosition: 0, q: &q, k: &k, v: &v, pool: pool) }
                prof.time("attention") {
                    q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in attn.withUnsafeMutableBufferPointer { ap in
                        attention(q: qp.baseAddress!, queries: t, firstQuery: 0, k: kp.baseAddress!, v: vp.baseAddress!, total: t, into: ap.baseAddress!, pool: pool)
                    } } } }
                }
                prof.time("o_proj") {
                    attn.withUnsafeBufferPointer { ap in tmp.withUnsafeMutableBufferPointer { tp in
                        Kernels.linear(ap.baseAddress!, rows: t, weight: layer.o, into: tp.baseAddress!, pool: pool) // [t, hidden]
                    } }
                    for i in 0..<(t * h) { x[i] += tmp[i] }
                }
                keys.append(k); values.append(v)
                // Sparse MoE block.
                prof.time("norms") {
                    x.withUnsafeBufferPointer { xp in xn.withUnsafeMutableBufferPointer { xnp in
                        Kernels.rmsNorm(xp.baseAddress!, into: xnp.baseAddress!, rows: t, cols: h, weight: layer.postAttentionNorm, eps: c.eps)
                    } }
                }
                let routing = prof.time("router") { route(layer, l, xn, rows: t, override: override, logits: &logitsE, pool: pool) }
                routerProbs.append(Array(logitsE[(t - 1) * e ..< t * e]))
                if allPositions { all.append(logitsE) }
                prof.time("experts") {
                    xn.withUnsafeBufferPointer { xnp in tmp.withUnsafeMutableBufferPointer { tp in
                        layer.experts(xnp.baseAddress!, tokens: t, routing: routing, into: tp.baseAddress!, pool: pool)
                    } }
                    for i in 0..<(t * h) { x[i] += tmp[i] }
                }
            }
            let logits = prof.time("lm_head") { head(Array(x[(t - 1) * h ..< t * h]), rows: nil, pool: pool) }
            return OlmoePrefillState(tokens: tokens, logits: logits, routerProbs: routerProbs, allRouterProbs: allPositions ? all : nil,
                                     keys: keys, values: values, lastInputs: lastInputs, modelID: ObjectIdentifier(self))
        }
    }

    /// q/k/v projections of normalised rows, OLMoE's q/k RMSNorm over the full projection,
    /// clip_qkv, then RoPE at positions firstPosition ..< firstPosition + rows.
    private func projectQKV(_ layer: Layer, _ xn: [Float], rows t: Int, firstPosition: Int,
                            q: inout [Float], k: inout [Float], v: inout [Float], pool: ScratchPool) {
        let c = config, qDim = c.numAttentionHeads * c.dHead, kvDim = c.kvHeads * c.dHead
        xn.withUnsafeBufferPointer { xp in
            q.withUnsafeMutableBufferPointer { qp in k.withUnsafeMutableBufferPointer { kp in v.withUnsafeMutableBufferPointer { vp in
                let x = xp.baseAddress!
                Kernels.linear(x, rows: t, weight: layer.q, into: qp.baseAddress!, pool: pool) // [t, heads·d]
                Kernels.linear(x, rows: t, weight: layer.k, into: kp.baseAddress!, pool: pool) // [t, kvHeads·d]
                Kernels.linear(x, rows: t, weight: layer.v, into: vp.baseAddress!, pool: pool) // [t, kvHeads·d]
                Kernels.rmsNorm(qp.baseAddress!, rows: t, cols: qDim, weight: layer.qNorm, eps: c.eps)
                Kernels.rmsNorm(kp.baseAddress!, rows: t, cols: kvDim, weight: layer.kNorm, eps: c.eps)
                if let clip = c.clipQKV {
                    Kernels.clamp(qp.baseAddress!, count: t * qDim, limit: Float(clip))
                    Kernels.clamp(kp.baseAddress!, count: t * kvDim, limit: Float(clip))
                    Kernels.clamp(vp.baseAddress!, count: t * kvDim, limit: Float(clip))
                }
                rope.apply(qp.baseAddress!, rows: t, heads: c.numAttentionHeads, firstPosition: firstPosition)
                rope.apply(kp.baseAddress!, rows: t, heads: c.kvHeads, firstPosition: firstPosition)
            } } }
        }
    }

    /// Router softmax of rows `xn` into `logits` [t, experts] (in place → probabilities), the
    /// override of layer `l` applied to the last row, and each row's top-k.
    private func route(_ layer: Layer, _ l: Int, _ xn: [Float], rows t: Int, override: RoutingOverride?,
                       logits: inout [Float], pool: ScratchPool) -> [[(expert: Int, weight: Float)]] {
        let e = config.numExperts
        if logits.count != t * e { logits = [Float](repeating: 0, count: t * e) }
        return xn.withUnsafeBufferPointer { xp in logits.withUnsafeMutableBufferPointer { lp in
            let p = lp.baseAddress!
            Kernels.linear(xp.baseAddress!, rows: t, weight: layer.router, into: p, pool: pool) // [t, experts]
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
        xn.withUnsafeMutableBufferPointer { Kernels.rmsNorm($0.baseAddress!, rows: 1, cols: config.hiddenSize, weight: finalNorm, eps: config.eps) }
        let h = config.hiddenSize
        if let rows {
            // Only the requested vocabulary rows, read in their stored dtype. [rows]
            var out = [Float](repeating: 0, count: rows.count)
            xn.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in
                HalfKernels.product(lmHead, rowList: rows, x: xp.baseAddress!, tokens: 1, ldx: h, into: op.baseAddress!, rowStride: 1, tokenStride: 1)
            } }
            return out
        }
        var logits = [Float](repeating: 0, count: config.vocabSize)
        xn.withUnsafeBufferPointer { xp in logits.withUnsafeMutableBufferPointer { lp in
            Kernels.linear(xp.baseAddress!, rows: 1, weight: lmHead, into: lp.baseAddress!, pool: pool) // [1, vocab]
        } }
        return logits
    }

    public func reevaluateTail(_ state: PrefillState, fromLayer: Int, override: RoutingOverride?, rows: [Int]?) throws -> [Float] {
        guard let s = state as? OlmoePrefillState, s.modelID == ObjectIdentifier(self) else {
            throw ModelError.input("reevaluateTail: the state does not come from this model's prefill")
        }
        guard fromLayer >= 0 && fromLayer < layerCount else { throw ModelError.input("reevaluateTail: fromLayer \(fromLayer) out of range 0..<\(layerCount)") }
        try check(override)
        if let below = override?.layers.keys.filter({ $0 < fromLayer }).min() {
            throw ModelError.override("layer \(below) lies below fromLayer \(fromLayer): its cached state cannot change")
        }
        if let bad = rows?.first(where: { $0 < 0 || $0 >= vocabularySize }) { throw ModelError.input("reevaluateTail: row \(bad) outside the vocabulary") }
        let c = config, h = c.hiddenSize, t = s.tokens.count, e = c.numExperts
        let qDim = c.numAttentionHeads * c.dHead, kvDim = c.kvHeads * c.dHead
        return withWorkers { pool in
            var x = s.lastInputs[fromLayer] // [hidden] residual stream of the last position
            var xn = [Float](repeating: 0, count: h)
            var q = [Float](repeating: 0, count: qDim)
            var kNew = [Float](repeating: 0, count: kvDim), vNew = kNew
            var attn = [Float](repeating: 0, count: qDim)
            var tmp = [Float](repeating: 0, count: h)
            var probs = [Float](repeating: 0, count: e)
            for l in fromLayer..<layerCount {
                let layer = layers[l]
                x.withUnsafeBufferPointer { xp in xn.withUnsafeMutableBufferPointer { xnp in
                    Kernels.rmsNorm(xp.baseAddress!, into: xnp.baseAddress!, rows: 1, cols: h, weight: layer.inputNorm, eps: c.eps)
                } }
                projectQKV(layer, xn, rows: 1, firstPosition: t - 1, q: &q, k: &kNew, v: &vNew, pool: pool)
                // Earlier positions' keys/values from the cache, the last position's recomputed. [t, kvHeads·d]
                var k = s.keys[l], v = s.values[l]
                k.replaceSubrange((t - 1) * kvDim ..< t * kvDim, with: kNew)
                v.replaceSubrange((t - 1) * kvDim ..< t * kvDim, with: vNew)
                q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in attn.withUnsafeMutableBufferPointer { ap in
                    attention(q: qp.baseAddress!, queries: 1, firstQuery: t - 1, k: kp.baseAddress!, v: vp.baseAddress!, total: t, into: ap.baseAddress!, pool: pool)
                } } } }
                attn.withUnsafeBufferPointer { ap in tmp.withUnsafeMutableBufferPointer { tp in
                    Kernels.linear(ap.baseAddress!, rows: 1, weight: layer.o, into: tp.baseAddress!, pool: pool) // [1, hidden]
                } }
                for i in 0..<h { x[i] += tmp[i] }
                x.withUnsafeBufferPointer { xp in xn.withUnsafeMutableBufferPointer { xnp in
                    Kernels.rmsNorm(xp.baseAddress!, into: xnp.baseAddress!, rows: 1, cols: h, weight: layer.postAttentionNorm, eps: c.eps)
                } }
                let routing = route(layer, l, xn, rows: 1, override: override, logits: &probs, pool: pool)
                xn.withUnsafeBufferPointer { xnp in tmp.withUnsafeMutableBufferPointer { tp in
                    layer.experts(xnp.baseAddress!, tokens: 1, routing: routing, into: tp.baseAddress!, pool: pool)
                } }
                for i in 0..<h { x[i] += tmp[i] }
            }
            return head(x, rows: rows, pool: pool)
        }
    }
}
