import C3POCore
import C3POEmbedding
import Foundation

// The loaded index with its neighbour search (the folder's format and its parsers: IndexFormat.swift).

/// One neighbour of a query: a row of the index and its cosine similarity.
public struct Neighbor: Sendable, Equatable {
    public var row: Int
    public var similarity: Float
    public init(row: Int, similarity: Float) { self.row = row; self.similarity = similarity }
}

/// An index folder loaded for querying. Loading validates that every file describes
/// the same records: version, presence, row counts, shapes and dimensions.
public final class ReferenceIndex: @unchecked Sendable {
    public let directory: URL
    public let manifest: IndexManifest
    public let records: [ReferenceRecord]
    /// [count, layers, experts], row-major.
    public let pathways: [Float]
    /// [count, dimension], row-major, each row L2-normalised.
    public let embeddings: [Float]
    /// `task_weights.json`, when the index was built with a model.
    public let taskWeights: TaskWeights?
    /// The references' prefix states, when the index was built with `--cache-states` (mapped).
    public let storedStates: StoredStates.Reader?
    /// The files checked against the manifest's sizes and SHA-256 when the folder was loaded
    /// (none for a folder written before checksums).
    public let verifiedFiles: [(name: String, bytes: Int)]
    private let faiss: FaissIndex

    public var count: Int { records.count }
    public var layers: Int { manifest.layers }
    public var experts: Int { manifest.experts }
    public var dimension: Int { manifest.embedder.dimension }

    /// `deep`: hash every file, the stored states' large files included (`c3po-index verify`); a
    /// load checks those by size, and each state by its checksum when it is read.
    public init(directory: URL, deep: Bool = false) throws {
        self.directory = directory
        let fm = FileManager.default
        func file(_ name: String) throws -> URL {
            let url = directory.appendingPathComponent(name)
            guard fm.fileExists(atPath: url.path) else { throw ReferenceIndexError.missingFile(url) }
            return url
        }
        let manifest = try IndexFolder.readManifest(try file(IndexFolder.manifestFile))
        let n = manifest.count
        // Sizes and checksums first: no parser sees a truncated, swapped or edited file.
        verifiedFiles = try IndexFolder.verifyFiles(manifest, in: directory, deep: deep)
        let records = try IndexFolder.readRecords(try file(IndexFolder.recordsFile), count: n, tasks: manifest.tasks)

        let embURL = try file(IndexFolder.embeddingsFile)
        let (eh, emb) = try NPY.readFloats(embURL)
        guard eh.shape == [n, manifest.embedder.dimension] else {
            throw ReferenceIndexError.invalid(embURL, "shape \(eh.shape), expected [\(n), \(manifest.embedder.dimension)] (manifest 'count', 'embedder.dimension')")
        }
        let pathURL = try file(IndexFolder.pathwaysFile)
        let (ph, paths) = try NPY.readFloats(pathURL)
        guard ph.shape == [n, manifest.layers, manifest.experts] else {
            throw ReferenceIndexError.invalid(pathURL, "shape \(ph.shape), expected [\(n), \(manifest.layers), \(manifest.experts)] (manifest 'count', 'layers', 'experts')")
        }
        let faissURL = try file(IndexFolder.faissFile)
        let faiss = try FaissIndex(contentsOf: faissURL)
        guard faiss.dimension == manifest.embedder.dimension else {
            throw ReferenceIndexError.invalid(faissURL, "dimension \(faiss.dimension), manifest 'embedder.dimension' is \(manifest.embedder.dimension)")
        }
        guard faiss.count == n else {
            throw ReferenceIndexError.invalid(faissURL, "holds \(faiss.count) vectors, manifest 'count' is \(n)")
        }
        for (name, value) in manifest.searchParameters.sorted(by: { $0.key < $1.key }) {
            try faiss.setParameter(name, value)
        }
        self.manifest = manifest
        self.records = records
        self.embeddings = emb
        self.pathways = paths
        self.faiss = faiss
        self.taskWeights = try TaskWeights.load(indexDirectory: directory)
        self.storedStates = try manifest.states.map { try StoredStates.Reader(directory: directory, shape: $0, count: n) }
    }

    /// Refuses a model other than the one whose pathways the index holds (`IndexCompatibility`).
    public func checkCompatible(model: ModelIdentity) throws {
        try IndexCompatibility.check(manifest, directory: directory, model: model)
    }

    /// Overrides a faiss search parameter for this session ("nprobe", "efSearch"), e.g. to
    /// trade recall for speed without rebuilding; the stored manifest is unchanged.
    public func setSearchParameter(_ name: String, _ value: Double) throws {
        try faiss.setParameter(name, value)
    }

    /// The pathway of `row`: [layers * experts], row-major (layer-major).
    public func pathway(row: Int) -> ArraySlice<Float> {
        let size = layers * experts
        return pathways[(row * size)..<((row + 1) * size)]
    }

    /// Refuses an embedder other than the one the index was built with.
    public func checkCompatible(_ embedder: SentenceEmbedder) throws {
        let want = "\(manifest.embedder.id) (dimension \(manifest.embedder.dimension))"
        let got = "\(embedder.identifier) (dimension \(embedder.dimension))"
        guard embedder.identifier == manifest.embedder.id, embedder.dimension == manifest.embedder.dimension else {
            throw ReferenceIndexError.embedderMismatch(index: directory, expected: want, got: got)
        }
    }

    /// The `k` nearest rows of each query (row-major [n, dimension], unit vectors), best
    /// first. Rows with similarity above `maxSimilarity` (the paper's overlap rule: a
    /// reference that is a near-copy of the test question is dropped) and rows for which
    /// `exclude` is true are skipped; the search widens until k remain or the index is
    /// exhausted.
    /// Whether searches skip faiss for the exact scan on our kernels (a `Flat` inner-product
    /// index: the same vectors, the same answer). `C3PO_FAISS_FLAT=1` keeps faiss (to compare).
    var exactScan: Bool {
        manifest.factory == "Flat" && manifest.metric == "inner_product"
            && ProcessInfo.processInfo.environment["C3PO_FAISS_FLAT"] != "1"
    }

    public func search(_ queries: [Float], k: Int, maxSimilarity: Float? = nil, exclude: ((Int) -> Bool)? = nil) throws -> [[Neighbor]] {
        guard k > 0 else { throw ReferenceIndexError.badArgument("k must be positive, got \(k)") }
        guard queries.count % dimension == 0 else {
            throw ReferenceIndexError.badArgument("query holds \(queries.count) values, not a whole number of \(dimension)-dimensional vectors")
        }
        let n = queries.count / dimension
        guard count > 0 else { return Array(repeating: [], count: n) }
        var out = [[Neighbor]](repeating: [], count: n)
        var pending = Array(0..<n)
        var width = min(count, maxSimilarity == nil && exclude == nil ? k : max(2 * k, k + 8))
        while !pending.isEmpty {
            var batch = [Float]()
            batch.reserveCapacity(pending.count * dimension)
            for q in pending { batch.append(contentsOf: queries[(q * dimension)..<((q + 1) * dimension)]) }
            // A Flat inner-product index is answered by our exact scan of the same vectors.
            let hits = exactScan ? ExactScan.search(batch, rows: embeddings, dimension: dimension, k: width)
                                 : try faiss.search(batch, k: width)
            var still: [Int] = []
            for (j, q) in pending.enumerated() {
                var kept: [Neighbor] = []
                for h in hits[j] {
                    if let m = maxSimilarity, h.score > m { continue }
                    if let exclude, exclude(h.id) { continue }
                    kept.append(Neighbor(row: h.id, similarity: h.score))
                    if kept.count == k { break }
                }
                // Fewer than `width` hits means the index (or the probed lists) ran out.
                if kept.count == k || hits[j].count < width || width >= count {
                    out[q] = kept
                } else {
                    still.append(q)
                }
            }
            pending = still
            width = min(count, width * 4)
        }
        return out
    }
}
