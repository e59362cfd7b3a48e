import C3POCore
import Foundation

/// DeepSeekMoE (deepseek-ai/deepseek-moe-16b-*; `model_type` "deepseek", not V2/V3), from the
/// published `modeling_deepseek.py` (its modeling code is not in transformers):
/// Llama-style attention; layer l is a MoE layer when `l >= first_k_dense_replace` and
/// `l % moe_layer_freq == 0` (`DeepseekDecoderLayer.__init__`), else a dense SwiGLU MLP of
/// `intermediate_size`. MoE layers (`DeepseekMoE.forward`, `MoEGate.forward`): softmax over the
/// `n_routed_experts` (`scoring_func` softmax), greedy top-k, renormalised only when
/// `norm_topk_prob` (and k > 1; false in the released model), plus `n_shared_experts` fused into
/// one ungated MLP of `moe_intermediate_size × n_shared_experts` that every token passes.
enum DeepseekMoe: ModelFamily {
    static let modelType = "deepseek"

    struct Config: Decodable {
        var intermediateSize: Int
        var moeIntermediateSize: Int
        var nRoutedExperts: Int
        var nSharedExperts: Int?
        var numExpertsPerTok: Int
        var firstKDenseReplace: Int?
        var moeLayerFreq: Int?
        var normTopKProb: Bool?
        var scoringFunc: String?
        var topkMethod: String?
        enum CodingKeys: String, CodingKey {
            case intermediateSize = "intermediate_size"
            case moeIntermediateSize = "moe_intermediate_size"
            case nRoutedExperts = "n_routed_experts"
            case nSharedExperts = "n_shared_experts"
            case numExpertsPerTok = "num_experts_per_tok"
            case firstKDenseReplace = "first_k_dense_replace"
            case moeLayerFreq = "moe_layer_freq"
            case normTopKProb = "norm_topk_prob"
            case scoringFunc = "scoring_func"
            case topkMethod = "topk_method"
        }
    }

    static func load(_ src: ModelSource) throws -> MoEDecoderModel {
        let c = try src.decode(DecoderConfig.self), f = try src.decode(Config.self), url = src.configURL
        func bad(_ field: String, _ why: String) -> ModelError { .config(url, field: field, why) }
        try c.validate(url)
        try DecoderConfig.validateExperts(url, experts: f.nRoutedExperts, expertsField: "n_routed_experts", topK: f.numExpertsPerTok)
        try DecoderConfig.requirePositive(url, [("intermediate_size", f.intermediateSize), ("moe_intermediate_size", f.moeIntermediateSize)])
        if let s = f.nSharedExperts, s < 0 { throw bad("n_shared_experts", "must not be negative, got \(s)") }
        if let k = f.firstKDenseReplace, k < 0 { throw bad("first_k_dense_replace", "must not be negative, got \(k)") }
        if let m = f.moeLayerFreq, m <= 0 { throw bad("moe_layer_freq", "must be positive, got \(m)") }
        if let s = f.scoringFunc, s != "softmax" { throw bad("scoring_func", "'\(s)' is not supported (DeepSeekMoE v1 scores with softmax)") }
        if let t = f.topkMethod, t != "greedy" { throw bad("topk_method", "'\(t)' is not supported (only greedy; group-limited routing is DeepSeek-V2's)") }
        if c.attentionBias == true { throw bad("attention_bias", "true is not supported") }

        let spec = c.spec(family: modelType, qkNorm: .none, clipQKV: nil, experts: f.nRoutedExperts, topK: f.numExpertsPerTok,
                          normalizeTopK: (f.normTopKProb ?? false) && f.numExpertsPerTok > 1, defaultEps: 1e-6)
        let h = c.hiddenSize, e = f.nRoutedExperts
        let shared = f.nSharedExperts.flatMap { $0 > 0 ? $0 : nil }
        return try c.build(src, spec: spec, bias: false, what: "DeepSeekMoE") { r, l, p in
            guard l >= (f.firstKDenseReplace ?? 0) && l % (f.moeLayerFreq ?? 1) == 0 else {
                return .dense(try r.mlp(p + "mlp.", hidden: h, inter: f.intermediateSize))
            }
            return .moe(MoEBlock(router: try r.matrix(p + "mlp.gate.weight", e, h),
                                 experts: try r.experts(p + "mlp.experts.", count: e, hidden: h, inter: f.moeIntermediateSize),
                                 shared: try shared.map { try r.mlp(p + "mlp.shared_experts.", hidden: h, inter: f.moeIntermediateSize * $0) }))
        }
    }
}
