import Foundation

/// Softmax router with top-k selection (OlmoeTopKRouter): the softmax over all experts in
/// f32, the k largest kept (ties: the lower expert index first), renormalised to sum 1
/// only when the config says (`norm_topk_prob`).
struct TopKRouter {
    let experts: Int
    let topK: Int
    let normalizeTopK: Bool

    /// The top-k (expert, weight) pairs of one softmax row.
    func select(_ probs: UnsafePointer<Float>) -> [(expert: Int, weight: Float)] {
        var chosen: [(expert: Int, weight: Float)] = []
        chosen.reserveCapacity(topK)
        for e in 0..<experts {
            let p = probs[e]
            if chosen.count < topK {
                chosen.append((e, p))
                chosen.sort { $0.weight > $1.weight || ($0.weight == $1.weight && $0.expert < $1.expert) }
            } else if let last = chosen.last, p > last.weight {
                chosen[topK - 1] = (e, p)
                chosen.sort { $0.weight > $1.weight || ($0.weight == $1.weight && $0.expert < $1.expert) }
            }
        }
        if normalizeTopK {
            let s = chosen.reduce(Float(0)) { $0 + $1.weight }
            if s > 0 { for i in chosen.indices { chosen[i].weight /= s } }
        }
        return chosen
    }

    /// The override of one layer as the published C3PO code applies it: the distribution
    /// replaced by `weights / sum(weights)` before top-k.
    static func normalizedOverride(_ weights: [Float]) -> [Float] {
        let s = weights.reduce(Float(0), +)
        return weights.map { $0 / s }
    }
}
