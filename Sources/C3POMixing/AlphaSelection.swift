import C3POCore
import C3POModel
import Foundation

/// A benchmark question with its cached full pass: the unit of build-time tuning.
/// Tail re-evaluation from this state makes every trial routing one last-position pass.
public struct TuningSample {
    public var row: Int
    public var state: PrefillState
    public var labelIDs: [Int]
    public var gold: Int
    public var task: String
}

/// Build-time choice of α and the kernel bandwidth, per task, by leave-one-out
/// (moving the paper's per-sample α search offline).
///
/// Scored on ALL of the task's questions (answered correctly or not): on successful
/// references alone, α = 1 (the router's own routing, already right) would trivially
/// win. Each question is re-mixed from its own k neighbours among the OTHER successful
/// references (itself and overlaps with similarity > maxSimilarity excluded) and scored
/// on its own gold answer by tail re-evaluation. The best grid point is the highest
/// accuracy; ties go to the lower mean cross-entropy, then to the larger α (closer to
/// the router) and the smaller bandwidth.
public enum AlphaSelection {
    public static let alphaGrid: [Float] = [0, 0.25, 0.5, 0.75, 1]
    public static let bandwidthGrid: [Float] = [0.1, 0.25, 0.5]
    /// Questions scored per task at most (evenly spaced subsample, for cost).
    public static let maxQuestionsPerTask = 200

    public struct Choice: Sendable, Equatable {
        public var alpha: Float
        public var bandwidth: Float
        public var accuracyBase: Float
        public var accuracyMixed: Float
        public var questions: Int
    }

    /// Evenly spaced subsample of at most `limit` elements, order kept (deterministic).
    public static func subsample<T>(_ xs: [T], limit: Int) -> [T] {
        guard xs.count > limit, limit > 0 else { return xs }
        return (0..<limit).map { xs[$0 * xs.count / limit] }
    }

    /// `samples`: the task's (subsampled) questions with cached states; `embeddings`:
    /// their rows in `pool` are `sample.row` (the pool holds every recorded question,
    /// `correct` marking the successful ones).
    public static func choose(model: RoutedMoEModel, samples: [TuningSample], pool: ReferencePool,
                              criticalLayers: [Int], coreExperts: Int, k: Int, kernel: MixingKernel = .gaussian,
                              maxSimilarity: Float = MixingDefaults.maxSimilarity) throws -> Choice? {
        guard !samples.isEmpty else { return nil }
        let fromLayer = criticalLayers.min() ?? 0
        var queries: [Float] = []
        for s in samples { queries.append(contentsOf: pool.embeddings[(s.row * pool.dimension)..<((s.row + 1) * pool.dimension)]) }
        let hits = pool.search(queries, k: k, maxSimilarity: maxSimilarity, exclude: { [samples] i in [samples[i].row] })
        let base = samples.filter { s in MCScoring.argmax(s.labelIDs.map { s.state.logits[$0] }) == s.gold }.count
        var best: (correct: Int, loss: Float, alpha: Float, bandwidth: Float)?
        for a in alphaGrid {
            // α = 1 is the router's own routing whatever the bandwidth: score it once.
            for h in (a == 1 ? [bandwidthGrid[0]] : bandwidthGrid) {
                let p = MixingParameters(criticalLayers: criticalLayers, coreExperts: min(coreExperts, model.expertCount),
                                         alpha: a, kernel: kernel, bandwidth: h)
                var correct = 0
                var loss: Float = 0
                for (s, hs) in zip(samples, hits) {
                    let ns = hs.map { PathwayNeighbor(similarity: $0.similarity, pathway: pool.pathway($0.row)) }
                    let o = try KernelRegression.override(sample: s.state.routerProbs, neighbors: ns, parameters: p)
                    let logits = try model.reevaluateTail(s.state, fromLayer: fromLayer, override: o, rows: s.labelIDs)
                    if MCScoring.argmax(logits) == s.gold { correct += 1 }
                    loss += MCScoring.crossEntropy(logits, gold: s.gold)
                }
                loss /= Float(samples.count)
                let better: Bool
                if let b = best {
                    better = correct > b.correct || (correct == b.correct && (loss < b.loss - 1e-6
                        || (abs(loss - b.loss) <= 1e-6 && (a > b.alpha || (a == b.alpha && h < b.bandwidth)))))
                } else { better = true }
                if better { best = (correct, loss, a, h) }
            }
        }
        guard let b = best else { return nil }
        let n = Float(samples.count)
        return Choice(alpha: b.alpha, bandwidth: b.bandwidth, accuracyBase: Float(base) / n,
                      accuracyMixed: Float(b.correct) / n, questions: samples.count)
    }
}
