import C3POCore
import Foundation

/// Everything an index folder holds, in memory, before it is written.
public struct IndexContents: Sendable {
    /// Rows in order; `records[i].row` is rewritten to `i` on write.
    public var records: [ReferenceRecord]
    /// [count, layers, experts], row-major.
    public var pathways: [Float]
    /// [count, dimension], row-major, each row L2-normalised.
    public var embeddings: [Float]
    public var layers: Int
    public var experts: Int
    public var embedderID: String
    public var dimension: Int
    public var sources: [IndexManifest.Source]
    public var model: ModelIdentity?
    /// nil: the paper's default (the last 5 layers).
    public var criticalLayers: [Int]?
    public var mixing: IndexManifest.Mixing
    /// Per-task mixing values chosen at build time (`task_weights.json`); nil: none.
    public var taskWeights: TaskWeights?
    public var filters: IndexManifest.Filters
    /// faiss search parameters stored in the manifest and applied on load ("nprobe").
    public var searchParameters: [String: Double]
    /// Set when merged from shards: the manifest's `shards` entry.
    public var shards: IndexManifest.Shards?
    /// What was embedded (nil: the questions, the default).
    public var embedText: EmbedText?

    public init(records: [ReferenceRecord], pathways: [Float], embeddings: [Float], layers: Int, experts: Int,
                embedderID: String, dimension: Int, sources: [IndexManifest.Source], model: ModelIdentity? = nil,
                criticalLayers: [Int]? = nil, mixing: IndexManifest.Mixing = .defaults, taskWeights: TaskWeights? = nil,
                filters: IndexManifest.Filters = IndexManifest.Filters(), searchParameters: [String: Double] = [:]) {
        self.records = records; self.pathways = pathways; self.embeddings = embeddings
        self.layers = layers; self.experts = experts; self.embedderID = embedderID; self.dimension = dimension
        self.sources = sources; self.model = model; self.criticalLayers = criticalLayers; self.mixing = mixing
        self.taskWeights = taskWeights; self.filters = filters; self.searchParameters = searchParameters
    }

    public var count: Int { records.count }

    /// Records per task.
    public var taskCounts: [String: Int] {
        records.reduce(into: [:]) { $0[$1.task, default: 0] += 1 }
    }
}

/// Writes an index folder (format of Index/README.md) atomically.
public enum IndexWriter {
    /// `--factory auto` (the default) is exact search (`Flat`, answered by `ExactScan`) up to this
    /// many references, HNSW32 above. From docs/benchmarks.md "Reference search": an exact scan
    /// costs about 50 ns a reference per query (1.0 ms at 21,644 real question embeddings, 4.7-6.2
    /// ms at 100,000), so 1,000,000 references are about 50 ms a query, under 3 % of one
    /// OLMoE-1B-7B question's prefill; HNSW32 at efSearch 64 found 99.7 % of the exact top 3 of
    /// real question embeddings in half the exact scan's time, and its cost grows with log N.
    public static let autoExactLimit = 1_000_000
    /// efSearch of `auto`'s HNSW32 unless the build sets one (recall@3 0.997 on real embeddings).
    public static let autoEfSearch = 64.0

    /// The factory and stored search parameters `factory` means for `count` references: `auto`
    /// resolved as above (a search parameter the build sets wins), any other string as it is.
    public static func resolve(factory: String, count: Int, searchParameters: [String: Double]) -> (String, [String: Double]) {
        guard factory.lowercased() == "auto" else { return (factory, searchParameters) }
        if count <= autoExactLimit { return ("Flat", searchParameters) }
        var p = searchParameters
        if p["efSearch"] == nil { p["efSearch"] = autoEfSearch }
        return ("HNSW32", p)
    }

    /// Builds the FAISS index from `factory` (training it on the embeddings when the type
    /// needs training, e.g. IVF), then writes every file into a temporary sibling of
    /// `directory` that replaces it only when complete. Returns the manifest.
    @discardableResult
    public static func write(_ contents: IndexContents, factory requested: String, to directory: URL,
                             states: IndexStateRecorder? = nil) throws -> IndexManifest {
        let n = contents.count, d = contents.dimension
        var contents = contents
        let factory: String
        (factory, contents.searchParameters) = resolve(factory: requested, count: n, searchParameters: contents.searchParameters)
        let bad = { (why: String) in ReferenceIndexError.badArgument("cannot write index \(directory.path): \(why)") }
        guard contents.layers > 0, contents.experts > 0, d > 0 else { throw bad("layers, experts and dimension must be positive") }
        guard contents.embeddings.count == n * d else {
            throw bad("embeddings hold \(contents.embeddings.count) values, \(n) records of dimension \(d) need \(n * d)")
        }
        guard contents.pathways.count == n * contents.layers * contents.experts else {
            throw bad("pathways hold \(contents.pathways.count) values, \(n) records of \(contents.layers)x\(contents.experts) need \(n * contents.layers * contents.experts)")
        }
        let critical = contents.criticalLayers ?? IndexBuilder.defaultCriticalLayers(model: contents.model, layers: contents.layers)
        if let l = critical.first(where: { !(0..<contents.layers).contains($0) }) {
            throw bad("critical layer \(l) outside 0..<\(contents.layers)")
        }
        // FAISS first: a factory error or too little training data fails before any file is written.
        let faiss = try FaissIndex(dimension: d, factory: factory, metric: .innerProduct)
        if !faiss.isTrained {
            do {
                try faiss.train(contents.embeddings)
            } catch let e as FaissIndex.Error {
                // faiss's k-means refuses fewer points than IVF lists; keep its message.
                throw ReferenceIndexError.trainingFailed(factory: factory, count: n, faissMessage: e.message)
            }
        }
        try faiss.add(contents.embeddings)
        for (name, value) in contents.searchParameters.sorted(by: { $0.key < $1.key }) {
            try faiss.setParameter(name, value)
        }

        var records = contents.records
        for i in records.indices { records[i].row = i }
        var manifest = IndexManifest(
            created: IndexManifest.timestamp(),
            embedder: .init(id: contents.embedderID, dimension: d), model: contents.model,
            layers: contents.layers, experts: contents.experts, criticalLayers: critical, factory: factory,
            count: n, tasks: contents.taskCounts, sources: contents.sources, filters: contents.filters,
            mixing: contents.mixing, searchParameters: contents.searchParameters)
        manifest.shards = contents.shards
        manifest.embedText = contents.embedText
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]

        try AtomicWrite.buildDirectory(at: directory) { tmp in
            try NPY.encode(float32: contents.embeddings, shape: [n, d])
                .write(to: tmp.appendingPathComponent(IndexFolder.embeddingsFile))
            try NPY.encode(float32: contents.pathways, shape: [n, contents.layers, contents.experts])
                .write(to: tmp.appendingPathComponent(IndexFolder.pathwaysFile))
            try faiss.write(to: tmp.appendingPathComponent(IndexFolder.faissFile))
            try JSONLines.encode(records).write(to: tmp.appendingPathComponent(IndexFolder.recordsFile))
            if let weights = contents.taskWeights {
                try weights.encoded().write(to: tmp.appendingPathComponent(IndexFolder.taskWeightsFile))
            }
            if let states {
                manifest.states = try states.writeStates(of: records, fromLayer: critical.min() ?? 0, into: tmp)
            }
            // Every file's size and SHA-256, verified by every reader before it parses the file.
            var files: [String: IndexManifest.FileEntry] = [:]
            for name in IndexFolder.dataFiles {
                let url = tmp.appendingPathComponent(name)
                guard FileManager.default.fileExists(atPath: url.path) else { continue }
                files[name] = try IndexManifest.FileEntry(of: url)
            }
            manifest.files = files
            // Foundation pretty-prints an empty object or array over several lines: write `{}` / `[]`
            // (a JSON string cannot hold a raw line break, so only empty containers match).
            let pretty = String(decoding: try encoder.encode(manifest), as: UTF8.self)
            let manifestData = Data(pretty.replacingOccurrences(of: #"\{\n\s*\}"#, with: "{}", options: .regularExpression)
                .replacingOccurrences(of: #"\[\n\s*\]"#, with: "[]", options: .regularExpression).utf8)
            // The manifest last: a folder with a manifest is a complete folder.
            try manifestData.write(to: tmp.appendingPathComponent(IndexFolder.manifestFile))
        }
        return manifest
    }
}
