import C3POCore
import Foundation

/// OLMoE (allenai/OLMoE-1B-7B-*), transformers/models/olmoe/modeling_olmoe.py: pre-norm decoder
/// layers with q/k RMSNorm over the full projections (`OlmoeAttention`), optional clip_qkv, RoPE,
/// GQA, and every layer a sparse block of SwiGLU experts behind a softmax top-k router
/// (`OlmoeTopKRouter`: softmax over all experts, top-k, renormalised only if `norm_topk_prob`).
enum Olmoe: ModelFamily {
    static let modelType = "olmoe"

    struct Config: Decodable {
        var intermediateSize: Int
        var numExperts: Int
        var numExpertsPerTok: Int
        var normTopKProb: Bool?
        var clipQKV: Double?
        enum CodingKeys: String, CodingKey {
            case intermediateSize = "intermediate_size"
            case numExperts = "num_experts"
            case numExpertsPerTok = "num_experts_per_tok"
            case normTopKProb = "norm_topk_prob"
            case clipQKV = "clip_qkv"
        }
    }

    static func load(_ src: ModelSource) throws -> MoEDecoderModel {
        let c = try src.decode(DecoderConfig.self), f = try src.decode(Config.self), url = src.configURL
        try c.validate(url)
        try DecoderConfig.validateExperts(url, experts: f.numExperts, expertsField: "num_experts", topK: f.numExpertsPerTok)
        try DecoderConfig.requirePositive(url, [("intermediate_size", f.intermediateSize)])
        // OLMoE's q_norm spans hidden_size and k_norm (hidden/heads)·kv_heads: head_dim must be hidden/heads.
        if let h = c.headDim, h != c.hiddenSize / c.numAttentionHeads {
            throw ModelError.config(url, field: "head_dim", "\(h) differs from hidden_size / num_attention_heads")
        }
        if c.attentionBias == true { throw ModelError.config(url, field: "attention_bias", "true is not supported") }
        if let clip = f.clipQKV, !(clip > 0 && clip.isFinite) { throw ModelError.config(url, field: "clip_qkv", "must be positive and finite, got \(clip)") }

        let spec = c.spec(family: modelType, qkNorm: .fullWidth, clipQKV: f.clipQKV, experts: f.numExperts, topK: f.numExpertsPerTok,
                          normalizeTopK: f.normTopKProb ?? false, defaultEps: 1e-5)
        return try c.build(src, spec: spec, bias: false, what: "OLMoE") { r, _, p in
            .moe(MoEBlock(router: try r.matrix(p + "mlp.gate.weight", f.numExperts, c.hiddenSize),
                          experts: try r.experts(p + "mlp.experts.", count: f.numExperts, hidden: c.hiddenSize, inter: f.intermediateSize)))
        }
    }
}
