import C3POModel
import Foundation

/// C3PO mode finding (paper §3.2): neighbours taken in pathway space, a mean-shift
/// toward the densest region of successful pathways near the sample's own pathway.
///
/// The space is the critical layers' distributions concatenated ([critical × experts]).
/// Start at the sample's pathway; each iteration takes the k successful pathways
/// nearest (L2) to the current point and moves to their Gaussian-weighted mean,
/// weights exp(−d² / (2h²)) with h the mean of those k distances (an adaptive
/// bandwidth: pathway distances have no natural scale, unlike 1 − cosine). Stops when
/// the point moves less than `tolerance` (L2) or after `maxIterations`. The mode found
/// is then the target of the same core-expert α-mix as kernel regression.
public enum ModeFinding {
    public static let maxIterations = 10
    public static let tolerance: Float = 1e-6

    /// `references`: [count, critical.count × experts] row-major, the successful pathways
    /// restricted to `critical` layers in that order (see `flatten`). `excluded`: rows not
    /// to use (e.g. the overlaps with the test question). Returns the mode, same layout as a row.
    public static func mode(start: [Float], references: [Float], count: Int, k: Int,
                            excluded: Set<Int> = [], maxIterations: Int = ModeFinding.maxIterations) -> [Float] {
        let dim = start.count
        guard dim > 0, count > 0, references.count == count * dim, k > 0 else { return start }
        var point = start
        for _ in 0..<maxIterations {
            // squared L2 distance of every allowed reference to the current point
            var dist: [(Float, Int)] = []
            dist.reserveCapacity(count)
            references.withUnsafeBufferPointer { r in
                for i in 0..<count where !excluded.contains(i) {
                    var s: Float = 0
                    let base = i * dim
                    for j in 0..<dim { let d = r[base + j] - point[j]; s += d * d }
                    dist.append((s, i))
                }
            }
            guard !dist.isEmpty else { return point }
            dist.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            let near = dist.prefix(k)
            let h = near.map { Double($0.0).squareRoot() }.reduce(0, +) / Double(near.count)
            var next = [Double](repeating: 0, count: dim)
            var total: Double = 0
            for (d2, i) in near {
                // h == 0: every neighbour sits on the point; equal weights.
                let w = h > 0 ? exp(-Double(d2) / (2 * h * h)) : 1
                total += w
                for j in 0..<dim { next[j] += w * Double(references[i * dim + j]) }
            }
            let moved = next.map { Float($0 / total) }
            var shift: Float = 0
            for j in 0..<dim { let d = moved[j] - point[j]; shift += d * d }
            point = moved
            if shift.squareRoot() <= tolerance { break }
        }
        return point
    }

    /// The critical layers of a pathway concatenated: [critical.count × experts].
    public static func flatten(_ pathway: [[Float]], layers: [Int]) -> [Float] {
        layers.flatMap { pathway[$0] }
    }

    public static func override(sample: [[Float]], references: [Float], count: Int, k: Int,
                                excluded: Set<Int> = [], parameters p: MixingParameters) throws -> RoutingOverride {
        let experts = sample.first?.count ?? 0
        try p.validate(layers: sample.count, experts: experts)
        try checkPathway(sample, layers: p.criticalLayers, experts: experts, what: "sample pathway")
        guard references.count == count * p.criticalLayers.count * experts else {
            throw MixingError.shapeMismatch("\(references.count) reference values for \(count) × \(p.criticalLayers.count) layers × \(experts) experts")
        }
        let m = mode(start: flatten(sample, layers: p.criticalLayers), references: references, count: count, k: k, excluded: excluded)
        var target: [Int: [Float]] = [:]
        for (i, l) in p.criticalLayers.enumerated() { target[l] = Array(m[(i * experts)..<((i + 1) * experts)]) }
        return KernelRegression.mixToward(sample: sample, target: target, parameters: p)
    }
}
