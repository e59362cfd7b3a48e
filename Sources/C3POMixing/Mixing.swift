// Re-mixing of routing pathways (kernel regression, mode finding, task weights, oracle).
//
// Shared vocabulary of the re-mixing methods. A *pathway* is, per layer, the router's
// softmax distribution over all experts at the last prompt position ([layers][experts]),
// exactly what `PrefillState.routerProbs` and the index's `pathways.npy` hold.
import C3POCore
import C3POIndex
import C3POModel
import Foundation

/// A reference sample as the re-mixing methods see it: how similar its question is to
/// the test question (cosine of the sentence embeddings) and its recorded pathway.
public struct PathwayNeighbor: Sendable, Equatable {
    /// Cosine similarity of the question embeddings, in [-1, 1].
    public var similarity: Float
    /// [layers][experts]: the reference's last-position routing, every layer.
    public var pathway: [[Float]]
    /// The reference's task (used by `--alpha index` and `--method task`); may be empty.
    public var task: String

    public init(similarity: Float, pathway: [[Float]], task: String = "") {
        self.similarity = similarity; self.pathway = pathway; self.task = task
    }
}

public enum MixingError: Error, CustomStringConvertible {
    case layerOutOfRange(Int, layers: Int)
    case shapeMismatch(String)
    case invalidParameter(String)

    public var description: String {
        switch self {
        case .layerOutOfRange(let l, let n): return "critical layer \(l) is out of range (the model has \(n) layers)"
        case .shapeMismatch(let s): return "pathway shape mismatch: \(s)"
        case .invalidParameter(let s): return s
        }
    }
}

/// The knobs shared by kernel regression and mode finding.
public struct MixingParameters: Sendable, Equatable {
    /// Layers re-mixed (the paper's *critical layers*: the last 5 of OLMoE's 16).
    public var criticalLayers: [Int]
    /// Experts re-weighted per layer (the paper's *core experts*: top-20 of 64).
    public var coreExperts: Int
    /// ω ← α ω + (1 − α) ω̂: α = 1 keeps the sample's own pathway, α = 0 takes the estimate.
    public var alpha: Float
    public var kernel: MixingKernel
    /// Kernel bandwidth h (in units of the distance d = 1 − cosine similarity).
    public var bandwidth: Float

    public init(criticalLayers: [Int], coreExperts: Int = 20, alpha: Float = MixingDefaults.alpha,
                kernel: MixingKernel = .gaussian, bandwidth: Float = MixingDefaults.bandwidth) {
        self.criticalLayers = criticalLayers; self.coreExperts = coreExperts; self.alpha = alpha
        self.kernel = kernel; self.bandwidth = bandwidth
    }

    public func validate(layers: Int, experts: Int) throws {
        guard !criticalLayers.isEmpty else { throw MixingError.invalidParameter("no critical layers") }
        for l in criticalLayers where !(0..<layers).contains(l) { throw MixingError.layerOutOfRange(l, layers: layers) }
        guard coreExperts >= 1 else { throw MixingError.invalidParameter("core experts must be at least 1 (got \(coreExperts))") }
        guard alpha.isFinite, (0...1).contains(alpha) else { throw MixingError.invalidParameter("alpha must be in [0, 1] (got \(alpha))") }
        guard bandwidth.isFinite, bandwidth > 0 else { throw MixingError.invalidParameter("bandwidth must be positive (got \(bandwidth))") }
        _ = experts
    }
}

/// Documented defaults, used when an index carries no per-task values (an index built
/// from archives alone: `mixing.source = "defaults"` in its manifest).
public enum MixingDefaults {
    /// The index format's documented defaults (`IndexManifest.Mixing.defaults`, written
    /// into the manifest of an index built from archives alone): α = 0 takes the
    /// neighbours' estimate outright on the core experts, as the published code does
    /// (it replaces the routing with no α); h = 0.25 in d = 1 − cos, so a neighbour at
    /// cosine 0.75 weighs exp(−0.5) ≈ 0.61 of a perfect match, one at 0.25 exp(−4.5) ≈ 0.011.
    public static let alpha = Float(IndexManifest.Mixing.defaults.alpha)
    public static let bandwidth = Float(IndexManifest.Mixing.defaults.bandwidth)
    public static let coreExperts = 20
    public static let criticalLayerCount = CriticalLayers.defaultCount
    public static let k = 3
    public static let maxSimilarity: Float = 0.95
}

public enum CoreExperts {
    /// The `count` experts with the highest weight in `probs`, highest first; ties go to
    /// the lower index (a stable order, so the same sample always gets the same set).
    public static func select(_ probs: [Float], count: Int) -> [Int] {
        let order = probs.indices.sorted { a, b in
            probs[a] != probs[b] ? probs[a] > probs[b] : a < b
        }
        return Array(order.prefix(max(0, count)))
    }

    /// Moves only the core entries of `sample` toward `target`:
    /// ω_new[c] = α ω[c] + (1 − α) ω̂'[c] for c in `core`, where ω̂' is `target`
    /// restricted to the core set and rescaled to the sample's own mass on that set
    /// (Σ_c ω̂'[c] = Σ_c ω[c]). Non-core entries keep their weights, so the total mass
    /// stays that of `sample` (1 for a router distribution). This is our reading of
    /// "only the core experts are re-weighted; the others keep their weights": without
    /// the rescaling, mixing the core part of a distribution that puts more mass on the
    /// core (the neighbours') would silently shrink the non-core experts relative to it.
    /// When `target` has no mass on the core set there is nothing to move toward: the
    /// sample's weights are returned.
    public static func mix(sample: [Float], target: [Float], core: [Int], alpha: Float) -> [Float] {
        var out = sample
        var sampleMass: Float = 0, targetMass: Float = 0
        for c in core { sampleMass += sample[c]; targetMass += target[c] }
        guard targetMass > 0, targetMass.isFinite else { return out }
        let scale = sampleMass / targetMass
        for c in core { out[c] = alpha * sample[c] + (1 - alpha) * target[c] * scale }
        return out
    }
}

extension RoutingOverride {
    /// The override that leaves every listed layer at the sample's own routing (α = 1).
    public static func identity(pathway: [[Float]], layers: [Int]) -> RoutingOverride {
        var out = RoutingOverride()
        for l in layers { out.layers[l] = pathway[l] }
        return out
    }
}

func checkPathway(_ p: [[Float]], layers: [Int], experts: Int, what: String) throws {
    for l in layers {
        guard l >= 0, l < p.count else { throw MixingError.shapeMismatch("\(what) has \(p.count) layers, layer \(l) requested") }
        guard p[l].count == experts else {
            throw MixingError.shapeMismatch("\(what) layer \(l) has \(p[l].count) experts, expected \(experts)")
        }
    }
}
