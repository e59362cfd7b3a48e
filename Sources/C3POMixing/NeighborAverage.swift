import C3POModel
import Foundation

/// The published C3PO code's re-mixing, reproduced for comparison: for each of the
/// last 5 layers, the similarity-weighted mean of the neighbours' last-token
/// distributions over *all* experts, renormalised to sum 1. No α (the sample's own
/// routing is replaced outright), no core experts, raw cosine similarities as weights.
public enum NeighborAverage {
    /// Nil when the similarities sum to zero or less (no meaningful average).
    public static func override(neighbors: [PathwayNeighbor], layers: [Int], experts: Int) throws -> RoutingOverride? {
        var total: Double = 0
        for n in neighbors {
            try checkPathway(n.pathway, layers: layers, experts: experts, what: "neighbour pathway")
            total += Double(n.similarity)
        }
        guard total > 0, total.isFinite else { return nil }
        var out = RoutingOverride()
        for l in layers {
            var acc = [Double](repeating: 0, count: experts)  // [experts]
            for n in neighbors {
                for e in 0..<experts { acc[e] += Double(n.similarity) * Double(n.pathway[l][e]) }
            }
            let avg = acc.map { $0 / total }
            let mass = avg.reduce(0, +)
            guard mass > 0 else { return nil }
            out.layers[l] = avg.map { Float($0 / mass) }
        }
        return out
    }
}
