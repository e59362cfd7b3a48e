import C3POCore
import Foundation

/// Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B), transformers/models/qwen3_moe/modeling_qwen3_moe.py:
/// attention with per-head q/k RMSNorm before RoPE (`Qwen3MoeAttention.forward`: q_norm/k_norm of
/// size head_dim on q_proj(x).view(..., head_dim)), an explicit `head_dim`, optional
/// `attention_bias`; sparse layers as Qwen2-MoE's rule (`mlp_only_layers`, `decoder_sparse_step`)
/// with a softmax top-k router renormalised if `norm_topk_prob` (true in the released models) and
/// no shared expert; other layers a dense SwiGLU MLP.
enum Qwen3Moe: ModelFamily {
    static let modelType = "qwen3_moe"

    struct Config: Decodable {
        var intermediateSize: Int
        var moeIntermediateSize: Int
        /// Released configs say `num_experts`; transformers 5's save_pretrained writes the same
        /// number as `num_local_experts` (Qwen3MoeConfig.attribute_map): either is read.
        var numExpertsKey: Int?
        var numLocalExperts: Int?
        var numExpertsPerTok: Int
        var normTopKProb: Bool?
        var decoderSparseStep: Int?
        var mlpOnlyLayers: [Int]?
        var useSlidingWindow: Bool?
        enum CodingKeys: String, CodingKey {
            case intermediateSize = "intermediate_size"
            case moeIntermediateSize = "moe_intermediate_size"
            case numExpertsKey = "num_experts"
            case numLocalExperts = "num_local_experts"
            case numExpertsPerTok = "num_experts_per_tok"
            case normTopKProb = "norm_topk_prob"
            case decoderSparseStep = "decoder_sparse_step"
            case mlpOnlyLayers = "mlp_only_layers"
            case useSlidingWindow = "use_sliding_window"
        }
        var numExperts: Int { numExpertsKey ?? numLocalExperts ?? 0 }
    }

    static func load(_ src: ModelSource) throws -> MoEDecoderModel {
        let c = try src.decode(DecoderConfig.self), f = try src.decode(Config.self), url = src.configURL
        try c.validate(url)
        guard f.numExpertsKey != nil || f.numLocalExperts != nil else { throw ModelError.config(url, field: "num_experts", "missing") }
        try DecoderConfig.validateExperts(url, experts: f.numExperts, expertsField: "num_experts", topK: f.numExpertsPerTok)
        try DecoderConfig.requirePositive(url, [("intermediate_size", f.intermediateSize), ("moe_intermediate_size", f.moeIntermediateSize)])
        try Qwen2Moe.checkSparseFields(url, step: f.decoderSparseStep, mlpOnly: f.mlpOnlyLayers, layers: c.numHiddenLayers, slidingWindow: f.useSlidingWindow)

        let spec = c.spec(family: modelType, qkNorm: .perHead, clipQKV: nil, experts: f.numExperts, topK: f.numExpertsPerTok,
                          normalizeTopK: f.normTopKProb ?? false, defaultEps: 1e-6)
        let h = c.hiddenSize
        return try c.build(src, spec: spec, bias: c.attentionBias ?? false, what: "Qwen3-MoE") { r, l, p in
            guard Qwen2Moe.isSparse(l, mlpOnly: f.mlpOnlyLayers, step: f.decoderSparseStep, experts: f.numExperts) else {
                return .dense(try r.mlp(p + "mlp.", hidden: h, inter: f.intermediateSize))
            }
            return .moe(MoEBlock(router: try r.matrix(p + "mlp.gate.weight", f.numExperts, h),
                                 experts: try r.experts(p + "mlp.experts.", count: f.numExperts, hidden: h, inter: f.moeIntermediateSize)))
        }
    }
}
