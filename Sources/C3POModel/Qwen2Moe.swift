import C3POCore
import Foundation

/// Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B), transformers/models/qwen2_moe/modeling_qwen2_moe.py:
/// Llama-style attention with q/k/v bias (`qkv_bias`, default true), and per layer either a dense
/// SwiGLU MLP (`intermediate_size`) or a sparse block (`Qwen2MoeSparseMoeBlock.forward`): softmax
/// top-k router over `num_experts` (renormalised if `norm_topk_prob`, `Qwen2MoeTopKRouter`), plus a
/// shared expert (`shared_expert_intermediate_size`) scaled by sigmoid(shared_expert_gate(x)).
enum Qwen2Moe: ModelFamily {
    static let modelType = "qwen2_moe"

    struct Config: Decodable {
        var intermediateSize: Int
        var moeIntermediateSize: Int
        var sharedExpertIntermediateSize: Int
        var numExperts: Int
        var numExpertsPerTok: Int
        var normTopKProb: Bool?
        var decoderSparseStep: Int?
        var mlpOnlyLayers: [Int]?
        var qkvBias: Bool?
        var useSlidingWindow: Bool?
        enum CodingKeys: String, CodingKey {
            case intermediateSize = "intermediate_size"
            case moeIntermediateSize = "moe_intermediate_size"
            case sharedExpertIntermediateSize = "shared_expert_intermediate_size"
            case numExperts = "num_experts"
            case numExpertsPerTok = "num_experts_per_tok"
            case normTopKProb = "norm_topk_prob"
            case decoderSparseStep = "decoder_sparse_step"
            case mlpOnlyLayers = "mlp_only_layers"
            case qkvBias = "qkv_bias"
            case useSlidingWindow = "use_sliding_window"
        }
    }

    /// `Qwen2MoeDecoderLayer.__init__` (and Qwen3-MoE's): sparse unless listed in
    /// `mlp_only_layers`, and only every `decoder_sparse_step`-th layer ((l + 1) % step == 0).
    static func isSparse(_ l: Int, mlpOnly: [Int]?, step: Int?, experts: Int) -> Bool {
        !(mlpOnly ?? []).contains(l) && experts > 0 && (l + 1) % max(1, step ?? 1) == 0
    }

    static func checkSparseFields(_ url: URL, step: Int?, mlpOnly: [Int]?, layers: Int, slidingWindow: Bool?) throws {
        if let s = step, s <= 0 { throw ModelError.config(url, field: "decoder_sparse_step", "must be positive, got \(s)") }
        if let bad = mlpOnly?.first(where: { $0 < 0 || $0 >= layers }) {
            throw ModelError.config(url, field: "mlp_only_layers", "layer \(bad) outside 0..<\(layers)")
        }
        if slidingWindow == true { throw ModelError.config(url, field: "use_sliding_window", "true is not supported (full causal attention only)") }
    }

    static func load(_ src: ModelSource) throws -> MoEDecoderModel {
        let c = try src.decode(DecoderConfig.self), f = try src.decode(Config.self), url = src.configURL
        try c.validate(url)
        try DecoderConfig.validateExperts(url, experts: f.numExperts, expertsField: "num_experts", topK: f.numExpertsPerTok)
        try DecoderConfig.requirePositive(url, [("intermediate_size", f.intermediateSize), ("moe_intermediate_size", f.moeIntermediateSize),
                                                ("shared_expert_intermediate_size", f.sharedExpertIntermediateSize)])
        try checkSparseFields(url, step: f.decoderSparseStep, mlpOnly: f.mlpOnlyLayers, layers: c.numHiddenLayers, slidingWindow: f.useSlidingWindow)

        let spec = c.spec(family: modelType, qkNorm: .none, clipQKV: nil, experts: f.numExperts, topK: f.numExpertsPerTok,
                          normalizeTopK: f.normTopKProb ?? false, defaultEps: 1e-6)
        let h = c.hiddenSize
        return try c.build(src, spec: spec, bias: f.qkvBias ?? true, what: "Qwen2-MoE") { r, l, p in
            guard isSparse(l, mlpOnly: f.mlpOnlyLayers, step: f.decoderSparseStep, experts: f.numExperts) else {
                return .dense(try r.mlp(p + "mlp.", hidden: h, inter: f.intermediateSize))
            }
            return .moe(MoEBlock(router: try r.matrix(p + "mlp.gate.weight", f.numExperts, h),
                                 experts: try r.experts(p + "mlp.experts.", count: f.numExperts, hidden: h, inter: f.moeIntermediateSize),
                                 shared: try r.mlp(p + "mlp.shared_expert.", hidden: h, inter: f.sharedExpertIntermediateSize),
                                 sharedGate: try r.matrix(p + "mlp.shared_expert_gate.weight", 1, h)))
        }
    }
}
