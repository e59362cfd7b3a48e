import C3POCore
import C3POIndex
import C3POModel
import Foundation

/// The build-time tuning of an index built with a model (`c3po-index build --model`):
/// per task, α and the kernel bandwidth by leave-one-out (`AlphaSelection`) and the
/// task-level surrogate pathway (`TaskSurrogate`), both by tail re-evaluation of the
/// task's questions. `IndexBuilder` calls it on the build's pool.
public struct LeaveOneOutTuner: IndexTuner {
    public var model: RoutedMoEModel
    public var k = MixingDefaults.k
    public var coreExperts = MixingDefaults.coreExperts
    public var surrogateBudget = 60
    /// How the per-task surrogate pathway is searched.
    public var surrogate: TaskSurrogate.Optimiser = defaultSurrogate
    /// The optimiser that measured better on the testbeds (Datasets/testbed/README.md).
    public static let defaultSurrogate: TaskSurrogate.Optimiser = .gradient

    public init(model: RoutedMoEModel) { self.model = model }

    public func tune(_ contents: IndexContents, criticalLayers critical: [Int], note: (String) -> Void) throws -> TaskWeights {
        let pool = try ReferencePool(contents: contents)
        let records = contents.records
        let E = model.expertCount
        var weights = TaskWeights()
        for task in Set(records.map(\.task)).sorted() {
            let rows = AlphaSelection.subsample(records.indices.filter { records[$0].task == task }, limit: AlphaSelection.maxQuestionsPerTask)
            note("tuning \(task): \(rows.count) questions")
            var samples: [TuningSample] = []
            for r in rows {
                let q = records[r]
                guard let prompt = q.prompt, let labels = q.labels, let g = labels.firstIndex(of: q.gold) else { continue }
                samples.append(TuningSample(row: r, state: try model.prefill(try model.encode(prompt), override: nil),
                                            labelIDs: try model.labelTokenIDs(labels), gold: g, task: task))
            }
            guard let choice = try AlphaSelection.choose(model: model, samples: samples, pool: pool, criticalLayers: critical,
                                                         coreExperts: coreExperts, k: k) else { continue }
            // surrogate start: the mean pathway of the task's successful references
            let good = records.indices.filter { records[$0].task == task && records[$0].correct }
            var start: [[Float]] = critical.map { _ in [Float](repeating: 1 / Float(E), count: E) }
            if !good.isEmpty {
                start = critical.map { l in
                    (0..<E).map { e in good.reduce(Float(0)) { $0 + pool.pathways[($1 * pool.layers + l) * E + e] } / Float(good.count) }
                }
            }
            let sur = surrogate == .es
                ? try TaskSurrogate.optimize(model: model, samples: samples, start: start, criticalLayers: critical,
                                             coreExperts: coreExperts, budget: surrogateBudget)
                : try TaskSurrogate.optimizeByGradient(model: model, samples: samples, start: start, criticalLayers: critical,
                                                       coreExperts: coreExperts)
            weights.tasks[task] = .init(count: good.count, alpha: choice.alpha, bandwidth: choice.bandwidth,
                                        criticalLayers: critical, coreExperts: coreExperts, pathway: sur.pathway,
                                        lossBefore: sur.lossBefore, lossAfter: sur.lossAfter,
                                        looAccuracyBase: choice.accuracyBase, looAccuracyMixed: choice.accuracyMixed,
                                        looQuestions: choice.questions)
            note(String(format: "  α %.2f, bandwidth %.2f, LOO accuracy %.3f → %.3f; surrogate loss %.4f → %.4f",
                        choice.alpha, choice.bandwidth, choice.accuracyBase, choice.accuracyMixed, sur.lossBefore, sur.lossAfter))
        }
        return weights
    }
}
