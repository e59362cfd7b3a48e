import C3POCore
import C3POEmbedding
import Foundation

/// Chooses the mixing hyper-parameters of an index at build time (C3POMixing's
/// leave-one-out tuner, which runs the model). Given to `IndexBuilder.build` by a
/// source that has a model.
public protocol IndexTuner {
    /// `pool`: the build's references (after dedup) and the incorrectly answered records it
    /// left out of the index (the questions leave-one-out scores), in source order, each
    /// with its unit embedding and pathway (`correct` marks the successful ones).
    func tune(_ pool: IndexContents, criticalLayers: [Int], note: (String) -> Void) throws -> TaskWeights
}

/// The one build path of an index folder, whatever the source: records with pathways
/// (a `ReferenceSet`: read from archives by `ReferenceArchive`, or recorded by running a
/// model over benchmark files) → correctness filter → embeddings → dedup → FAISS →
/// tuning (when a model is there) → the folder, written atomically (`IndexWriter`).
/// Every option means the same for every source.
public enum IndexBuilder {
    public struct Options: Sendable {
        /// faiss factory string ("Flat", "IVF1024,Flat", "HNSW32"), or "auto" (`IndexWriter.resolve`).
        public var factory = "auto"
        /// Cosine above which a record duplicates an earlier kept record of its task; nil: off.
        public var dedup: Float?
        /// Keep records the model answered incorrectly too (flag stored per record).
        public var includeIncorrect = false
        /// Recorded in the manifest: whether invalid records were skipped rather than stopping
        /// the build (the source applies it).
        public var skipInvalid = false
        public var batchSize = 64
        public var searchParameters: [String: Double] = [:]
        public var progress = true
        /// The records' text that is embedded.
        public var embedText: EmbedText = .question
        public init(factory: String = "auto", dedup: Float? = nil, includeIncorrect: Bool = false, skipInvalid: Bool = false,
                    batchSize: Int = 64, searchParameters: [String: Double] = [:], progress: Bool = true) {
            self.factory = factory; self.dedup = dedup; self.includeIncorrect = includeIncorrect; self.skipInvalid = skipInvalid
            self.batchSize = batchSize; self.searchParameters = searchParameters; self.progress = progress
        }
    }

    /// Where the vectors come from.
    public enum Vectors {
        case embedder(SentenceEmbedder)
        /// [kept records, dimension], one row per record kept by the correctness filter, in
        /// row order (`build --embeddings`); `source` is listed in the manifest.
        case precomputed([Float], dimension: Int, id: String, source: IndexManifest.Source)
    }

    /// What a build produces before it is written: the index's contents, and the pool a
    /// tuner scores (nil when no tuning was asked for).
    public struct Assembled {
        public var contents: IndexContents
        public var tuningPool: IndexContents?
    }

    /// Reads archives into one reference set: every valid record, correct or not
    /// (validation of `ReferenceArchive`; the correctness filter is the builder's); with
    /// `shard`, only the records of that shard.
    public static func load(archives: [URL], options: ReferenceArchive.Options, shard: ShardSpec? = nil,
                            note: (String) -> Void = { StandardError.write($0 + "\n") }) throws -> ReferenceSet {
        var set = ReferenceSet(shard: shard)
        for url in archives {
            note("reading \(url.path)")
            try ReferenceArchive.read(url, options: options, into: &set, note: note)
        }
        return set
    }

    /// Filter, embed, deduplicate: the contents of the index (and, `forTuning`, the pool of
    /// every record left after dedup, the incorrect ones included, for a tuner).
    public static func assemble(_ set: ReferenceSet, vectors: Vectors, model: ModelIdentity? = nil, options: Options,
                                forTuning: Bool = false) throws -> Assembled {
        let keep = set.records.map { $0.correct || options.includeIncorrect }
        let keptCount = keep.filter { $0 }.count
        guard keptCount > 0 else {
            throw ReferenceArchive.Error.noRecords("no reference records to index: \(set.count - keptCount) of \(set.count) answered incorrectly"
                + (set.skippedInvalid > 0 ? ", \(set.skippedInvalid) invalid records skipped" : "")
                + (options.includeIncorrect ? "" : " (no successful pathways; --include-incorrect keeps them all)"))
        }
        guard let layers = set.layers, let experts = set.experts else {
            throw ReferenceArchive.Error.noRecords("no pathway shape known")
        }
        // Rows embedded: the kept records, or every record when a tuner scores them all.
        let embedded = forTuning ? Array(set.records.indices) : set.records.indices.filter { keep[$0] }
        var unit: [Float]
        let dimension: Int, embedderID: String
        var sources = set.sources
        switch vectors {
        case .embedder(let embedder):
            let questions = try embedded.map { r -> String in
                let record = set.records[r]
                guard options.embedText == .prompt else { return record.question }
                guard let prompt = record.prompt else {
                    throw ReferenceIndexError.badArgument("--embed-text prompt: record '\(record.id)' (\(record.source)) has no prompt")
                }
                return prompt
            }
            let progress = ProgressReporter("embedding", total: questions.count, enabled: options.progress)
            unit = try embedder.embed(questions, batchSize: options.batchSize, progress: progress)
            dimension = embedder.dimension; embedderID = embedder.identifier
        case let .precomputed(values, d, id, source):
            guard !forTuning else { throw ReferenceIndexError.badArgument("precomputed embeddings cannot be used for build-time tuning") }
            guard d > 0, values.count == embedded.count * d else {
                throw ReferenceIndexError.badArgument("embeddings hold \(values.count) values, \(embedded.count) records of dimension \(d) need \(embedded.count * d)")
            }
            unit = values; dimension = d; embedderID = id
            sources.append(source)
        }
        try normalizeRows(&unit, dimension: dimension)

        // Dedup among the rows that go into the index; a dropped row leaves the pool too.
        let keptRows = embedded.indices.filter { keep[embedded[$0]] } // positions in `embedded`
        var dropped = Set<Int>()
        if let threshold = options.dedup {
            let keptUnit = keptRows.flatMap { unit[($0 * dimension)..<(($0 + 1) * dimension)] }
            let survivors = Set(deduplicate(keptUnit, dimension: dimension, tasks: keptRows.map { set.records[embedded[$0]].task },
                                            threshold: threshold))
            dropped = Set(keptRows.indices.filter { !survivors.contains($0) }.map { keptRows[$0] })
        }
        let filters = IndexManifest.Filters(includeIncorrect: options.includeIncorrect, skipInvalid: options.skipInvalid,
                                            skippedInvalid: set.skippedInvalid, skippedIncorrect: set.count - keptCount,
                                            dedup: options.dedup.map { Double($0) }, deduplicated: dropped.count)
        let size = layers * experts
        func gather(_ positions: [Int]) -> IndexContents {
            var records: [ReferenceRecord] = [], pathways: [Float] = [], vecs: [Float] = []
            for p in positions {
                let r = embedded[p]
                var record = set.records[r]
                record.row = records.count
                records.append(record)
                pathways.append(contentsOf: set.pathways[(r * size)..<((r + 1) * size)])
                vecs.append(contentsOf: unit[(p * dimension)..<((p + 1) * dimension)])
            }
            return IndexContents(records: records, pathways: pathways, embeddings: vecs, layers: layers, experts: experts,
                                 embedderID: embedderID, dimension: dimension, sources: sources, model: model,
                                 criticalLayers: defaultCriticalLayers(model: model, layers: layers),
                                 filters: filters, searchParameters: options.searchParameters)
        }
        var contents = gather(keptRows.filter { !dropped.contains($0) })
        contents.embedText = options.embedText == .prompt ? .prompt : nil
        let pool = forTuning ? gather(embedded.indices.filter { !dropped.contains($0) }) : nil
        return Assembled(contents: contents, tuningPool: pool)
    }

    /// The whole build: `assemble`, `tuner` (when given) on the pool, then the folder at
    /// `out`, written atomically, with the references' stored states when `states` is given.
    /// Returns the manifest.
    @discardableResult
    public static func build(_ set: ReferenceSet, vectors: Vectors, model: ModelIdentity? = nil, tuner: IndexTuner? = nil,
                             states: IndexStateRecorder? = nil, out: URL, options: Options, shards: Int? = nil,
                             note: (String) -> Void = { StandardError.write($0 + "\n") }) throws -> IndexManifest {
        var a = try assemble(set, vectors: vectors, model: model, options: options, forTuning: tuner != nil)
        a.contents.shards = shards.map { IndexManifest.Shards(count: $0) }
        if let tuner, let pool = a.tuningPool {
            let weights = try tuner.tune(pool, criticalLayers: a.contents.criticalLayers ?? [], note: note)
            if let mixing = weights.manifestMixing {
                a.contents.taskWeights = weights
                a.contents.mixing = mixing
            }
        }
        if options.progress { note("building faiss index \"\(options.factory)\" over \(a.contents.count) vectors") }
        return try IndexWriter.write(a.contents, factory: options.factory, to: out, states: states)
    }

    /// The paper's critical layers: the last 5 routed layers of the model (every layer when
    /// no model is known), all of them when there are fewer.
    public static func defaultCriticalLayers(model: ModelIdentity?, layers: Int) -> [Int] {
        CriticalLayers.last(CriticalLayers.defaultCount, of: model?.routedLayers ?? Array(0..<layers))
    }

    /// Scales each row [dimension] to unit length; refuses zero or non-finite rows.
    static func normalizeRows(_ x: inout [Float], dimension: Int) throws {
        let n = x.count / max(dimension, 1)
        for r in 0..<n {
            var s: Float = 0
            for j in 0..<dimension { s += x[r * dimension + j] * x[r * dimension + j] }
            guard s.isFinite, s > 0 else { throw ReferenceIndexError.badArgument("embedding of row \(r) is zero or not finite") }
            let inv = 1 / s.squareRoot()
            for j in 0..<dimension { x[r * dimension + j] *= inv }
        }
    }

    /// Near-duplicate removal, greedy in row order: a record is dropped when its
    /// embedding has cosine > `threshold` with an earlier *kept* record of the same task
    /// (so the first of a group of duplicates survives, and a record is never dropped
    /// because of one that was itself dropped). Returns the kept rows, ascending.
    public static func deduplicate(_ unit: [Float], dimension d: Int, tasks: [String], threshold: Float) -> [Int] {
        var byTask: [String: [Int]] = [:]
        for (i, t) in tasks.enumerated() { byTask[t, default: []].append(i) }
        var kept: [Int] = []
        let block = 256
        for (_, rows) in byTask {
            var keptRows: [Int] = []
            var keptVecs: [Float] = [] // [keptRows.count, d]
            var start = 0
            while start < rows.count {
                let end = min(rows.count, start + block)
                let b = end - start
                var blockVecs = [Float](repeating: 0, count: b * d) // [b, d]
                for (j, r) in rows[start..<end].enumerated() {
                    blockVecs.replaceSubrange((j * d)..<((j + 1) * d), with: unit[(r * d)..<((r + 1) * d)])
                }
                // Similarity of the block to everything kept before it: [b, kept] = block · keptᵀ.
                var dropped = [Bool](repeating: false, count: b)
                let m = keptRows.count
                if m > 0 {
                    var sims = [Float](repeating: 0, count: b * m)
                    blockVecs.withUnsafeBufferPointer { a in
                        keptVecs.withUnsafeBufferPointer { k in
                            sims.withUnsafeMutableBufferPointer { c in
                                BLAS.sgemm(transB: true, m: b, n: m, k: d, a: a.baseAddress!, lda: d,
                                           b: k.baseAddress!, ldb: d, c: c.baseAddress!, ldc: m)
                            }
                        }
                    }
                    for j in 0..<b where sims[(j * m)..<((j + 1) * m)].contains(where: { $0 > threshold }) { dropped[j] = true }
                }
                // Within the block, sequentially against the block's kept rows.
                var blockKept: [Int] = []
                for j in 0..<b where !dropped[j] {
                    for q in blockKept {
                        var s: Float = 0
                        for x in 0..<d { s += blockVecs[j * d + x] * blockVecs[q * d + x] }
                        if s > threshold { dropped[j] = true; break }
                    }
                    if !dropped[j] { blockKept.append(j) }
                }
                for j in blockKept {
                    keptRows.append(rows[start + j])
                    keptVecs.append(contentsOf: blockVecs[(j * d)..<((j + 1) * d)])
                }
                start = end
            }
            kept.append(contentsOf: keptRows)
        }
        return kept.sorted()
    }
}
