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
/// `optimizeByGradient` minimises the same loss by gradient descent instead, with the exact
/// tail gradients NGD uses (`tailGradient`) chained through the core-expert mixing.
public enum TaskSurrogate {
    /// How the surrogate pathway is searched (`c3po-index build --task-surrogate`).
    public enum Optimiser: String, CaseIterable, Sendable {
        /// (1+1) evolution strategy, forward passes only.
        case es
        /// Gradient descent on softmax logits of the target, exact tail gradients.
        case gradient
    }

    public struct Result: Sendable {
        /// [critical layer][experts], in `criticalLayers` order.
        public var pathway: [[Float]]
        /// Mean cross-entropy with the router's own routing.
        public var lossBefore: Float
        /// Mean cross-entropy with `pathway` applied.
        public var lossAfter: Float
    }

    /// Mean cross-entropy with the router's own routing (the prefill's logits).
    static func baseLoss(_ samples: [TuningSample]) -> Float {
        samples.reduce(Float(0)) { acc, s in
            acc + MCScoring.crossEntropy(s.labelIDs.map { s.state.logits[$0] }, gold: s.gold)
        } / Float(max(samples.count, 1))
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
        let before = baseLoss(samples)
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

    /// The target as T = softmax(φ) per critical layer, φ ← φ − η ∂L/∂φ for `steps` steps,
    /// L the mean cross-entropy above. A question's override moves its core experts C to T
    /// rescaled to its own core mass M: ω_c = M T_c / Σ_{c'∈C} T_c', so
    /// ∂L/∂T_j = (M / S) (∂L/∂ω_j − Σ_{c∈C} T_c ∂L/∂ω_c / S) for j ∈ C (S = Σ_{c∈C} T_c), and
    /// ∂L/∂φ = T ⊙ (∂L/∂T − Σ T ∂L/∂T). The lowest-loss iterate is returned (the start included).
    public static func optimizeByGradient(model: RoutedMoEModel, samples: [TuningSample], start: [[Float]], criticalLayers: [Int],
                                          coreExperts: Int, steps: Int = 20, learningRate: Float = 10) throws -> Result {
        let before = baseLoss(samples)
        let core = min(coreExperts, model.expertCount)
        let p = MixingParameters(criticalLayers: criticalLayers, coreExperts: core, alpha: 0)
        var phi = start.map { layer in layer.map { Float(log(Double(max($0, 1e-8)))) } }
        func target(_ phi: [[Float]]) -> [[Float]] {
            phi.map { row in
                var t = row
                t.withUnsafeMutableBufferPointer { MatMul.softmax($0.baseAddress!, count: $0.count) }
                return t
            }
        }
        /// Mean loss at T and ∂/∂T per critical layer.
        func evaluate(_ T: [[Float]]) throws -> (Float, [[Float]]) {
            var byLayer: [Int: [Float]] = [:]
            for (i, l) in criticalLayers.enumerated() { byLayer[l] = T[i] }
            var loss: Float = 0
            var dT = T.map { [Float](repeating: 0, count: $0.count) }
            for s in samples {
                let o = KernelRegression.mixToward(sample: s.state.routerProbs, target: byLayer, parameters: p)
                let g = try model.tailGradient(s.state, override: o, rows: s.labelIDs, target: s.gold)
                loss += g.loss
                for (i, l) in criticalLayers.enumerated() {
                    guard let dw = g.omega[l] else { continue }
                    let c = CoreExperts.select(s.state.routerProbs[l], count: core)
                    let mass = c.reduce(Float(0)) { $0 + s.state.routerProbs[l][$1] }
                    let sum = c.reduce(Float(0)) { $0 + T[i][$1] }
                    guard sum > 0 else { continue }
                    let mean = c.reduce(Float(0)) { $0 + T[i][$1] * dw[$1] } / sum
                    for j in c { dT[i][j] += mass / sum * (dw[j] - mean) }
                }
            }
            let n = Float(max(samples.count, 1))
            return (loss / n, dT.map { $0.map { $0 / n } })
        }
        var T = target(phi)
        var (loss, grad) = try evaluate(T)
        var best = (T, loss)
        for _ in 0..<steps {
            for i in phi.indices {
                let mean = zip(T[i], grad[i]).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                for j in phi[i].indices { phi[i][j] -= learningRate * T[i][j] * (grad[i][j] - mean) }
            }
            T = target(phi)
            (loss, grad) = try evaluate(T)
            if loss < best.1 { best = (T, loss) }
        }
        return Result(pathway: best.0, lossBefore: before, lossAfter: best.1)
    }
}

