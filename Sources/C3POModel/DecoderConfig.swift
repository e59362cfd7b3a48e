import C3POCore
import Foundation

/// The `config.json` fields every decoder family shares, in both forms users have: the
/// released one (top-level `rope_theta`, `torch_dtype`, `rope_scaling`) and transformers 5's
/// (`rope_parameters`, `dtype`). A family file decodes this and its own fields from the same
/// JSON, then `validate` checks the shared ones once, naming the field.
struct DecoderConfig: Decodable, Sendable {
    struct RopeParameters: Decodable, Sendable {
        var ropeTheta: Double?
        var ropeType: String?
        var type: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type", type }
    }

    var modelType: String
    var vocabSize: Int
    var hiddenSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int?
    var headDim: Int?
    var hiddenAct: String?
    var maxPositionEmbeddings: Int?
    var rmsNormEps: Double?
    var tieWordEmbeddings: Bool?
    var ropeTheta: Double?
    var ropeParameters: RopeParameters?
    var ropeScaling: RopeParameters?
    var attentionBias: Bool?
    var nameOrPath: String?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
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
        case ropeScaling = "rope_scaling"
        case attentionBias = "attention_bias"
        case nameOrPath = "_name_or_path"
    }

    var kvHeads: Int { numKeyValueHeads ?? numAttentionHeads }
    var dHead: Int { headDim ?? hiddenSize / max(1, numAttentionHeads) }
    var tied: Bool { tieWordEmbeddings ?? false }
    var theta: Double { ropeParameters?.ropeTheta ?? ropeTheta ?? 10000 }
    var maxContext: Int { maxPositionEmbeddings ?? 4096 }

    /// Refuses the first of `fields` (name, value) that is not positive, by name.
    static func requirePositive(_ url: URL, _ fields: [(String, Int)]) throws {
        if let (f, v) = fields.first(where: { $0.1 <= 0 }) { throw ModelError.config(url, field: f, "must be positive, got \(v)") }
    }

    /// Checks the shared fields once, naming the field at fault.
    func validate(_ url: URL) throws {
        func bad(_ f: String, _ why: String) -> ModelError { .config(url, field: f, why) }
        try Self.requirePositive(url, [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                                       ("num_attention_heads", numAttentionHeads)])
        if let h = headDim, h <= 0 { throw bad("head_dim", "must be positive, got \(h)") }
        if headDim == nil, hiddenSize % numAttentionHeads != 0 {
            throw bad("num_attention_heads", "\(numAttentionHeads) does not divide hidden_size \(hiddenSize)")
        }
        guard dHead % 2 == 0 else { throw bad("head_dim", "head dimension \(dHead) is odd (RoPE rotates pairs)") }
        guard kvHeads > 0, numAttentionHeads % kvHeads == 0 else {
            throw bad("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(numAttentionHeads)")
        }
        if let a = hiddenAct, a != "silu" { throw bad("hidden_act", "'\(a)' is not supported (only silu)") }
        if let e = rmsNormEps, !(e > 0 && e.isFinite) { throw bad("rms_norm_eps", "must be positive and finite, got \(e)") }
        for (field, p) in [("rope_parameters", ropeParameters), ("rope_scaling", ropeScaling)] {
            guard let p else { continue }
            let kind = p.ropeType ?? p.type ?? "default"
            if kind != "default" {
                throw bad(field + ".rope_type", "'\(kind)' is not supported (only default RoPE; scaled variants such as linear, dynamic, yarn, llama3 are refused)")
            }
        }
        guard theta > 0 && theta.isFinite else { throw bad("rope_theta", "must be positive and finite, got \(theta)") }
        if let m = maxPositionEmbeddings, m <= 0 { throw bad("max_position_embeddings", "must be positive, got \(m)") }
    }

    /// Experts per layer and per token, checked together.
    static func validateExperts(_ url: URL, experts: Int, expertsField: String, topK: Int, topKField: String = "num_experts_per_tok") throws {
        guard experts > 0 else { throw ModelError.config(url, field: expertsField, "must be positive, got \(experts)") }
        guard topK > 0 else { throw ModelError.config(url, field: topKField, "must be positive, got \(topK)") }
        guard topK <= experts else { throw ModelError.config(url, field: topKField, "\(topK) exceeds \(expertsField) \(experts)") }
    }

    /// The engine's spec from the shared fields and the family's routing facts.
    func spec(family: String, qkNorm: QKNorm, clipQKV: Double?, experts: Int, topK: Int, normalizeTopK: Bool,
              defaultEps: Double) -> DecoderSpec {
        DecoderSpec(family: family, vocabSize: vocabSize, hidden: hiddenSize, heads: numAttentionHeads, kvHeads: kvHeads,
                    headDim: dHead, eps: Float(rmsNormEps ?? defaultEps), ropeTheta: theta, maxContext: maxContext,
                    qkNorm: qkNorm, clipQKV: clipQKV.map(Float.init), experts: experts, topK: topK, normalizeTopK: normalizeTopK)
    }

    /// The attention projections of layer prefix `p` ("model.layers.3."), with biases when
    /// `bias` and the q/k norm weights the mode needs.
    func attention(_ r: inout CheckpointReader, _ p: String, bias: Bool, qkNorm: QKNorm) throws -> AttentionWeights {
        let h = hiddenSize, qDim = numAttentionHeads * dHead, kvDim = kvHeads * dHead
        var a = AttentionWeights(q: try r.matrix(p + "self_attn.q_proj.weight", qDim, h), k: try r.matrix(p + "self_attn.k_proj.weight", kvDim, h),
                                 v: try r.matrix(p + "self_attn.v_proj.weight", kvDim, h), o: try r.matrix(p + "self_attn.o_proj.weight", h, qDim))
        if bias {
            a.qBias = try r.vector(p + "self_attn.q_proj.bias", qDim)
            a.kBias = try r.vector(p + "self_attn.k_proj.bias", kvDim)
            a.vBias = try r.vector(p + "self_attn.v_proj.bias", kvDim)
        }
        switch qkNorm {
        case .none: break
        case .fullWidth:
            a.qNorm = try r.vector(p + "self_attn.q_norm.weight", qDim)
            a.kNorm = try r.vector(p + "self_attn.k_norm.weight", kvDim)
        case .perHead:
            a.qNorm = try r.vector(p + "self_attn.q_norm.weight", dHead)
            a.kNorm = try r.vector(p + "self_attn.k_norm.weight", dHead)
        }
        return a
    }

    func identity(directory: URL, sha: String, experts: Int, topK: Int) -> ModelIdentity {
        let name = nameOrPath.flatMap { $0.isEmpty ? nil : $0 } ?? directory.standardizedFileURL.lastPathComponent
        return ModelIdentity(id: name, configSHA256: sha, layers: numHiddenLayers, experts: experts, topK: topK)
    }

    /// Reads the checkpoint of a pre-norm decoder whose layers differ only in their
    /// feed-forward block: embedding, final norm and head, then per layer the two norms, the
    /// attention of the family (`bias`, `spec.qkNorm`) and `ffn(reader, layer, "model.layers.l.")`;
    /// every tensor checked and every tensor used (`what` names the architecture in errors).
    func build(_ src: ModelSource, spec: DecoderSpec, bias: Bool, what: String,
               ffn: (inout CheckpointReader, Int, String) throws -> FeedForward) throws -> MoEDecoderModel {
        var r = try CheckpointReader(directory: src.directory)
        let h = hiddenSize
        let (embedding, head, norm) = try r.embeddingAndHead(vocab: vocabSize, hidden: h, tied: tied)
        var layers: [DecoderLayer] = []
        for l in 0..<numHiddenLayers {
            let p = "model.layers.\(l)."
            layers.append(DecoderLayer(inputNorm: try r.vector(p + "input_layernorm.weight", h),
                                       postAttentionNorm: try r.vector(p + "post_attention_layernorm.weight", h),
                                       attention: try attention(&r, p, bias: bias, qkNorm: spec.qkNorm), ffn: try ffn(&r, l, p)))
        }
        try r.finish("\(what) (\(numHiddenLayers) layers, \(spec.experts) experts)")
        var id = identity(directory: src.directory, sha: src.configSHA256, experts: spec.experts, topK: spec.topK)
        id.tokenizerSHA256 = src.tokenizerSHA256
        return MoEDecoderModel(spec: spec, identity: id,
                               tokenizer: src.tokenizer, checkpoint: r.checkpoint, layers: layers, embedding: embedding, lmHead: head, finalNorm: norm)
    }
}

/// What a family file gets to build its model from.
struct ModelSource {
    let directory: URL
    let configURL: URL
    let configData: Data
    let configSHA256: String
    let tokenizerSHA256: String
    let tokenizer: any TextTokenizer

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try ModelLoader.decode(type, configData, configURL) }
}

/// One MoE family: its `model_type` and how its config and tensor names become a decoder.
/// Adding a family = one file conforming to this + one line in `ModelLoader.families`.
protocol ModelFamily {
    static var modelType: String { get }
    static func load(_ source: ModelSource) throws -> MoEDecoderModel
}
