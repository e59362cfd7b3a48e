import C3POModel
import Foundation

/// Kernels over question similarity. The distance is d = 1 − cos(E(x), E(x_i)) (in
/// [0, 2]; 0 for the same question), the natural distance of the unit-length
/// sentence embeddings whose inner product the index searches with.
public enum MixingKernel: String, CaseIterable, Sendable, Codable {
    /// K = exp(−d² / (2h²)), the paper's best kernel.
    case gaussian
    /// K = max(cos, 0): the similarity itself (the published code's weighting), clipped
    /// so that an anti-similar neighbour never pulls with negative weight.
    case cosine
    /// K = 1: a plain mean over the neighbours.
    case uniform

    public func weight(similarity: Float, bandwidth: Float) -> Float {
        switch self {
        case .gaussian:
            let d = 1 - similarity
            return Float(exp(-Double(d * d) / (2 * Double(bandwidth) * Double(bandwidth))))
        case .cosine: return max(similarity, 0)
        case .uniform: return 1
        }
    }
}

/// C3PO kernel regression (paper §3.2): ω̂ = Σ K(x_i, x) ω_i / Σ K(x_i, x) over the
/// neighbours, then ω ← α ω + (1 − α) ω̂ on the core experts of the critical layers,
/// at the last position only (the override is last-position by construction).
public enum KernelRegression {
    /// ω̂ per layer in `layers`: the kernel-weighted mean of the neighbours' pathways.
    /// Nil when the neighbours carry no kernel weight at all (no neighbours, or all
    /// weights zero): there is then no estimate to move toward.
    public static func estimate(neighbors: [PathwayNeighbor], layers: [Int], experts: Int,
                                kernel: MixingKernel, bandwidth: Float) throws -> [Int: [Float]]? {
        var weights: [Double] = []
        for n in neighbors {
            try checkPathway(n.pathway, layers: layers, experts: experts, what: "neighbour pathway")
            weights.append(Double(kernel.weight(similarity: n.similarity, bandwidth: bandwidth)))
        }
        let total = weights.reduce(0, +)
        guard total > 0, total.isFinite else { return nil }
        var out: [Int: [Float]] = [:]
        for l in layers {
            var acc = [Double](repeating: 0, count: experts)  // [experts]
            for (n, w) in zip(neighbors, weights) where w > 0 {
                for e in 0..<experts { acc[e] += w * Double(n.pathway[l][e]) }
            }
            out[l] = acc.map { Float($0 / total) }
        }
        return out
    }

    /// The re-mixed routing of the critical layers for a sample whose own routing is
    /// `sample` ([layers][experts], the router's distribution before any override).
    /// Falls back to the sample's own routing (the base answer) when there is no estimate.
    public static func override(sample: [[Float]], neighbors: [PathwayNeighbor],
                                parameters p: MixingParameters) throws -> RoutingOverride {
        let experts = sample.first?.count ?? 0
        try p.validate(layers: sample.count, experts: experts)
        try checkPathway(sample, layers: p.criticalLayers, experts: experts, what: "sample pathway")
        guard let target = try estimate(neighbors: neighbors, layers: p.criticalLayers, experts: experts,
                                        kernel: p.kernel, bandwidth: p.bandwidth)
        else { return .identity(pathway: sample, layers: p.criticalLayers) }
        return mixToward(sample: sample, target: target, parameters: p)
    }

    /// α-mix of the sample toward `target` ([layer: [experts]]) on its core experts.
    public static func mixToward(sample: [[Float]], target: [Int: [Float]], parameters p: MixingParameters) -> RoutingOverride {
        var out = RoutingOverride()
        for l in p.criticalLayers {
            guard let t = target[l] else { out.layers[l] = sample[l]; continue }
            let core = CoreExperts.select(sample[l], count: p.coreExperts)
            out.layers[l] = CoreExperts.mix(sample: sample[l], target: t, core: core, alpha: p.alpha)
        }
        return out
    }
}
