import C3POCore
import Foundation

/// Mixtral (Mixtral-8x7B, 8x22B), transformers/models/mixtral/modeling_mixtral.py: Llama-style
/// attention (GQA, no bias, no q/k norm) and in every layer a sparse block whose router
/// (`MixtralTopKRouter.forward`) takes the softmax over all `num_local_experts`, keeps the top-k
/// and always renormalises them. Released keys: `block_sparse_moe.gate` and
/// `block_sparse_moe.experts.N.w1|w2|w3` (w1 gate, w3 up, w2 down); transformers 5 writes
/// `mlp.gate` and fused `mlp.experts.gate_up_proj`/`down_proj` instead: both load.
enum Mixtral: ModelFamily {
    static let modelType = "mixtral"

    struct Config: Decodable {
        var intermediateSize: Int
        var numLocalExperts: Int
        var numExpertsPerTok: Int
        var slidingWindow: Int?
        enum CodingKeys: String, CodingKey {
            case intermediateSize = "intermediate_size"
            case numLocalExperts = "num_local_experts"
            case numExpertsPerTok = "num_experts_per_tok"
            case slidingWindow = "sliding_window"
        }
    }

    static func load(_ src: ModelSource) throws -> MoEDecoderModel {
        let c = try src.decode(DecoderConfig.self), f = try src.decode(Config.self), url = src.configURL
        try c.validate(url)
        try DecoderConfig.validateExperts(url, experts: f.numLocalExperts, expertsField: "num_local_experts", topK: f.numExpertsPerTok)
        try DecoderConfig.requirePositive(url, [("intermediate_size", f.intermediateSize)])
        if let w = f.slidingWindow, w <= 0 { throw ModelError.config(url, field: "sliding_window", "must be positive or null, got \(w)") }
        if c.attentionBias == true { throw ModelError.config(url, field: "attention_bias", "true is not supported") }

        var spec = c.spec(family: modelType, qkNorm: .none, clipQKV: nil, experts: f.numLocalExperts, topK: f.numExpertsPerTok,
                          normalizeTopK: true, defaultEps: 1e-5)
        // With a sliding window W, attention equals full causal attention for prompts of at most W
        // tokens; longer prompts are refused rather than computed differently.
        if let w = f.slidingWindow { spec.maxContext = min(spec.maxContext, w) }
        let h = c.hiddenSize, e = f.numLocalExperts
        return try c.build(src, spec: spec, bias: false, what: "Mixtral") { r, _, p in
            if r.has(p + "block_sparse_moe.gate.weight") {
                return .moe(MoEBlock(router: try r.matrix(p + "block_sparse_moe.gate.weight", e, h),
                                     experts: try r.experts(p + "block_sparse_moe.experts.", count: e, hidden: h, inter: f.intermediateSize,
                                                            names: ("w1", "w3", "w2"))))
            }
            return .moe(MoEBlock(router: try r.matrix(p + "mlp.gate.weight", e, h),
                                 experts: try r.experts(p + "mlp.experts.", count: e, hidden: h, inter: f.intermediateSize)))
        }
    }
}
