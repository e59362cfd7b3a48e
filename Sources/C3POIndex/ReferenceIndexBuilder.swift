import C3POCore
import C3POEmbedding
import Foundation

/// archive(s) → records and pathways → embeddings → dedup → `IndexContents` → folder.
/// Each step is public so that callers can add records from other sources (e.g. a
/// benchmark run through a model) before embedding.
public enum ReferenceIndexBuilder {
    public struct Options: Sendable {
        /// faiss factory string ("Flat", "IVF1024,Flat", "HNSW32").
        public var factory = "Flat"
        /// Cosine above which a record duplicates an earlier kept record of its task; nil: off.
        public var dedup: Float?
        public var batchSize = 64
        public var searchParameters: [String: Double] = [:]
        public var progress = true
        public init(factory: String = "Flat", dedup: Float? = nil, batchSize: Int = 64,
                    searchParameters: [String: Double] = [:], progress: Bool = true) {
            self.factory = factory; self.dedup = dedup; self.batchSize = batchSize
            self.searchParameters = searchParameters; self.progress = progress
        }
    }

    /// Reads archives into one reference set (validation and filters of `ReferenceArchive`).
    public static func load(archives: [URL], options: ReferenceArchive.Options,
                            note: (String) -> Void = { StandardError.write($0 + "\n") }) throws -> ReferenceSet {
        var set = ReferenceSet()
        for url in archives {
            note("reading \(url.path)")
            try ReferenceArchive.read(url, options: options, into: &set, note: note)
        }
        return set
    }

    /// Embeds the questions of `set` with `embedder` and assembles the contents.
    public static func contents(of set: ReferenceSet, embedder: SentenceEmbedder, options: Options,
                                filters: IndexManifest.Filters) throws -> IndexContents {
        let questions = set.records.map(\.question)
        let progress = ProgressReporter("embedding", total: questions.count, enabled: options.progress)
        let embeddings = questions.isEmpty ? [] : try embedder.embed(questions, batchSize: options.batchSize, progress: progress)
        return try contents(of: set, embeddings: embeddings, embedderID: embedder.identifier,
                            dimension: embedder.dimension, options: options, filters: filters)
    }

    /// Assembles the contents from precomputed embeddings [set.count, dimension]
    /// (re-normalised to unit length), applying dedup.
    public static func contents(of set: ReferenceSet, embeddings: [Float], embedderID: String, dimension: Int,
                                options: Options, filters: IndexManifest.Filters) throws -> IndexContents {
        guard set.count > 0 else {
            throw ReferenceArchive.Error.noRecords("no reference records to index (\(set.skippedIncorrect) incorrect and \(set.skippedInvalid) invalid records were skipped)")
        }
        guard let layers = set.layers, let experts = set.experts else {
            throw ReferenceArchive.Error.noRecords("no pathway shape known")
        }
        guard embeddings.count == set.count * dimension else {
            throw ReferenceIndexError.badArgument("embeddings hold \(embeddings.count) values, \(set.count) records of dimension \(dimension) need \(set.count * dimension)")
        }
        var unit = embeddings
        try normalizeRows(&unit, dimension: dimension)
        var records = set.records
        var pathways = set.pathways
        var filters = filters
        filters.skippedInvalid = set.skippedInvalid
        filters.skippedIncorrect = set.skippedIncorrect
        filters.dedup = options.dedup.map { Double($0) }
        if let threshold = options.dedup {
            let kept = deduplicate(unit, dimension: dimension, tasks: records.map(\.task), threshold: threshold)
            filters.deduplicated = records.count - kept.count
            if kept.count < records.count {
                let size = layers * experts
                records = kept.map { records[$0] }
                pathways = kept.flatMap { pathways[($0 * size)..<(($0 + 1) * size)] }
                unit = kept.flatMap { unit[($0 * dimension)..<(($0 + 1) * dimension)] }
            }
        }
        for i in records.indices { records[i].row = i }
        return IndexContents(records: records, pathways: pathways, embeddings: unit, layers: layers, experts: experts,
                             embedderID: embedderID, dimension: dimension, sources: set.sources,
                             filters: filters, searchParameters: options.searchParameters)
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
