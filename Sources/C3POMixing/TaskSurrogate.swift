import C3POCore
import C3POModel
import Foundation

/// The paper's task-level surrogate, precomputed at build time: per task, one
/// critical-layer routing target that minimises the average cross-entropy of the task's
/// questions, found with forward passes only (tail re-evaluation from cached states).
///
/// The target T (per critical layer, a distribution over experts) is applied to a
/// question as `--method task` applies it: the question's core experts move to T
/// (α = 0 in `KernelRegression.mixToward`). Optimiser: a (1+1) evolution strategy on
/// log-weights with the 1/5th success rule, a fixed evaluation budget and a fixed seed
/// (deterministic). Start: the mean pathway of the task's successful references.
public enum TaskSurrogate {
    public struct Result: Sendable {
        /// [critical layer][experts], in `criticalLayers` order.
        public var pathway: [[Float]]
        /// Mean cross-entropy with the router's own routing.
        public var lossBefore: Float
        /// Mean cross-entropy with `pathway` applied.
        public var lossAfter: Float
    }

    public static func loss(model: RoutedMoEModel, samples: [TuningSample], target: [[Float]], criticalLayers: [Int],
                            coreExperts: Int) throws -> Float {
        var t: [Int: [Float]] = [:]
        for (i, l) in criticalLayers.enumerated() { t[l] = target[i] }
        let p = MixingParameters(criticalLayers: criticalLayers, coreExperts: min(coreExperts, model.expertCount), alpha: 0)
        var sum: Float = 0
        for s in samples {
            let o = KernelRegression.mixToward(sample: s.state.routerProbs, target: t, parameters: p)
            sum += MCScoring.crossEntropy(try model.reevaluateTail(s.state, fromLayer: criticalLayers.min() ?? 0, override: o, rows: s.labelIDs), gold: s.gold)
        }
        return sum / Float(max(samples.count, 1))
    }

    public static func optimize(model: RoutedMoEModel, samples: [TuningSample], start: [[Float]], criticalLayers: [Int],
                                coreExperts: Int, budget: Int = 60, seed: UInt64 = 0x5EED) throws -> Result {
        let before = samples.reduce(Float(0)) { acc, s in
            acc + MCScoring.crossEntropy(s.labelIDs.map { s.state.logits[$0] }, gold: s.gold)
        } / Float(max(samples.count, 1))
        var current = start
        var currentLoss = try loss(model: model, samples: samples, target: current, criticalLayers: criticalLayers, coreExperts: coreExperts)
        var sigma: Float = 0.5
        var rng = SplitMix64(seed: seed)
        for _ in 0..<budget {
            let candidate = current.map { layer -> [Float] in
                let w = layer.map { max($0, 1e-8) * Float(exp(Double(sigma) * rng.gaussian())) }
                let s = w.reduce(0, +)
                return w.map { $0 / s }
            }
            let l = try loss(model: model, samples: samples, target: candidate, criticalLayers: criticalLayers, coreExperts: coreExperts)
            if l < currentLoss {
                current = candidate; currentLoss = l
                sigma *= 1.5  // 1/5th rule: grow on success, shrink by 1.5^(-1/4) on failure
            } else {
                sigma *= Float(pow(1.5, -0.25))
            }
        }
        return Result(pathway: current, lossBefore: before, lossAfter: currentLoss)
    }
}

