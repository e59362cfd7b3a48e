import C3POCore
import C3POEmbedding
import C3POIndex
import C3POModel
import Foundation

/// `c3po-index build --model DIR --benchmark FILE...`: successful pathways from
/// benchmarks, recorded by our own engine, plus the per-task mixing hyper-parameters
/// (leave-one-out) and task-level surrogate pathways, written as one index folder.
public enum BenchmarkIndexBuilder {
    public struct Options: Sendable {
        public var includeIncorrect = false
        public var factory = "Flat"
        public var batchSize = 32
        public var progress = true
        /// Choose α/bandwidth and the task surrogate per task (forward passes; the costly part).
        public var tune = true
        public var k = MixingDefaults.k
        public var coreExperts = MixingDefaults.coreExperts
        public var surrogateBudget = 60
        public init() {}
    }

    @discardableResult
    public static func build(model: RoutedMoEModel, embedder: SentenceEmbedder, benchmarks: [URL], out: URL,
                             options: Options) throws -> IndexManifest {
        let note: (String) -> Void = options.progress ? { StandardError.write($0 + "\n") } : { _ in }
        var questions: [(question: MCQuestion, source: String)] = []
        var sources: [IndexManifest.Source] = []
        for url in benchmarks {
            let qs = try MCDataset.load(url)
            questions += qs.map { ($0, url.lastPathComponent) }
            sources.append(.init(path: url.lastPathComponent, kind: "benchmark", sha256: try SHA256Hasher.hexDigest(ofFile: url), records: qs.count))
        }
        let work = PathwayRecorder.workDirectory(for: out)
        let recorded = try PathwayRecorder.record(model: model, questions: questions,
                                                  workFile: work.appendingPathComponent("records.jsonl"), progress: options.progress)
        let usable = recorded.filter { $0.skipped == nil }
        for r in recorded where r.skipped != nil { StandardError.warning("skipped \(r.id): \(r.skipped ?? "")") }
        note("recorded \(usable.count) questions: \(usable.filter(\.correct).count) correct, \(recorded.count - usable.count) skipped")
        guard usable.contains(where: \.correct) || options.includeIncorrect, !usable.isEmpty else {
            throw ReferenceArchive.Error.noRecords("the model answered none of the \(usable.count) benchmark questions correctly: no successful pathways to index")
        }

        // Every usable question is embedded once: the kept ones go into the index, all of
        // them are scored by the leave-one-out choice.
        let progress = ProgressReporter("embedding", total: usable.count, enabled: options.progress)
        let emb = try embedder.embed(usable.map(\.question), batchSize: options.batchSize, progress: progress)
        let L = model.layerCount, E = model.expertCount
        let pool = try ReferencePool(
            references: usable.map { .init(id: $0.id, task: $0.task, question: $0.question, prompt: $0.prompt, gold: $0.gold,
                                           labels: $0.labels, correct: $0.correct) },
            embeddings: emb, dimension: embedder.dimension, pathways: usable.flatMap { $0.pathway.flatMap { $0 } },
            layers: L, experts: E)
        let critical = MixingDefaults.criticalLayers(routedLayers: model.routedLayers)

        var taskWeights = TaskWeights()
        if options.tune {
            for task in Set(usable.map(\.task)).sorted() {
                let rows = AlphaSelection.subsample(usable.indices.filter { usable[$0].task == task }, limit: AlphaSelection.maxQuestionsPerTask)
                note("tuning \(task): \(rows.count) questions")
                var samples: [TuningSample] = []
                for r in rows {
                    let q = usable[r]
                    guard let g = q.labels.firstIndex(of: q.gold) else { continue }
                    samples.append(TuningSample(row: r, state: try model.prefill(try model.encode(q.prompt), override: nil),
                                                labelIDs: try model.labelTokenIDs(q.labels), gold: g, task: task))
                }
                guard let choice = try AlphaSelection.choose(model: model, samples: samples, pool: pool, criticalLayers: critical,
                                                             coreExperts: options.coreExperts, k: options.k) else { continue }
                // surrogate start: the mean pathway of the task's successful references
                let good = usable.indices.filter { usable[$0].task == task && usable[$0].correct }
                var start: [[Float]] = critical.map { _ in [Float](repeating: 1 / Float(E), count: E) }
                if !good.isEmpty {
                    start = critical.map { l in
                        (0..<E).map { e in good.reduce(Float(0)) { $0 + usable[$1].pathway[l][e] } / Float(good.count) }
                    }
                }
                let sur = try TaskSurrogate.optimize(model: model, samples: samples, start: start, criticalLayers: critical,
                                                     coreExperts: options.coreExperts, budget: options.surrogateBudget)
                taskWeights.tasks[task] = .init(count: good.count, alpha: choice.alpha, bandwidth: choice.bandwidth,
                                                criticalLayers: critical, coreExperts: options.coreExperts, pathway: sur.pathway,
                                                lossBefore: sur.lossBefore, lossAfter: sur.lossAfter,
                                                looAccuracyBase: choice.accuracyBase, looAccuracyMixed: choice.accuracyMixed,
                                                looQuestions: choice.questions)
                note(String(format: "  α %.2f, bandwidth %.2f, LOO accuracy %.3f → %.3f; surrogate loss %.4f → %.4f",
                            choice.alpha, choice.bandwidth, choice.accuracyBase, choice.accuracyMixed, sur.lossBefore, sur.lossAfter))
            }
        }

        var set = ReferenceSet()
        var keptEmb: [Float] = []
        var skippedIncorrect = 0
        for (i, r) in usable.enumerated() {
            guard r.correct || options.includeIncorrect else { skippedIncorrect += 1; continue }
            try set.append(ReferenceRecord(row: set.count, id: r.id, task: r.task, question: r.question, gold: r.gold,
                                           modelAnswer: r.modelAnswer, correct: r.correct, source: r.source, prompt: r.prompt),
                           pathway: r.pathway.flatMap { $0 }, layers: L, experts: E)
            keptEmb.append(contentsOf: emb[(i * embedder.dimension)..<((i + 1) * embedder.dimension)])
        }
        set.sources = sources
        set.skippedIncorrect = skippedIncorrect
        let filters = IndexManifest.Filters(includeIncorrect: options.includeIncorrect, skippedIncorrect: skippedIncorrect)
        var contents = try ReferenceIndexBuilder.contents(
            of: set, embeddings: keptEmb, embedderID: embedder.identifier, dimension: embedder.dimension,
            options: .init(factory: options.factory, batchSize: options.batchSize, progress: options.progress), filters: filters)
        let id = model.identity
        contents.model = id
        contents.criticalLayers = critical
        var extra: [String: Data] = [:]
        if options.tune, !taskWeights.tasks.isEmpty {
            // manifest-level values: the tasks' choices weighted by their reference counts
            let ts = taskWeights.tasks.values
            let n = Float(max(ts.reduce(0) { $0 + $1.count }, 1))
            contents.mixing = .init(source: "leave-one-out",
                                    alpha: Double(ts.reduce(Float(0)) { $0 + $1.alpha * Float($1.count) } / n),
                                    bandwidth: Double(ts.reduce(Float(0)) { $0 + $1.bandwidth * Float($1.count) } / n))
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            extra[TaskWeights.fileName] = try enc.encode(taskWeights)
        }
        let manifest = try IndexWriter.write(contents, factory: options.factory, to: out, extraFiles: extra)
        try? FileManager.default.removeItem(at: work)
        return manifest
    }
}
