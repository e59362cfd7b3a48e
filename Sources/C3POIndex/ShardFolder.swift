import C3POCore
import Foundation

/// `shard.json`: what one part of a sharded build is (Index/README.md, "Shards").
public struct ShardManifest: Codable, Sendable, Equatable {
    public static let formatName = "c3po-shard"
    public static let currentVersion = 1

    /// The build options every shard of one build must share (the merge applies them).
    public struct Build: Codable, Sendable, Equatable {
        public var factory: String
        public var dedup: Double?
        public var includeIncorrect: Bool
        public var skipInvalid: Bool
        public var searchParameters: [String: Double]
        public var batchSize: Int
        /// Absent: the questions.
        public var embedText: EmbedText?

        enum CodingKeys: String, CodingKey {
            case factory, dedup
            case includeIncorrect = "include_incorrect", skipInvalid = "skip_invalid"
            case searchParameters = "search_parameters", batchSize = "batch_size", embedText = "embed_text"
        }

        public init(_ o: IndexBuilder.Options) {
            factory = o.factory; dedup = o.dedup.map { Double($0) }; includeIncorrect = o.includeIncorrect
            skipInvalid = o.skipInvalid; searchParameters = o.searchParameters; batchSize = o.batchSize
            embedText = o.embedText == .prompt ? .prompt : nil
        }

        public var options: IndexBuilder.Options {
            var o = IndexBuilder.Options(factory: factory, dedup: dedup.map { Float($0) }, includeIncorrect: includeIncorrect,
                                         skipInvalid: skipInvalid, batchSize: batchSize, searchParameters: searchParameters)
            o.embedText = embedText ?? .question
            return o
        }
    }

    public var format = ShardManifest.formatName
    public var formatVersion = ShardManifest.currentVersion
    public var created: String
    public var tool = IndexManifest.toolName
    public var shard: ShardSpec
    /// "archive" (`--reference`) or "benchmark" (`--model --benchmark`).
    public var kind: String
    /// The inputs, whole (every shard reads the same files): path, sha256, records.
    public var sources: [IndexManifest.Source]
    public var model: ModelIdentity?
    /// The embedder id the merge must embed with.
    public var embedder: String
    public var build: Build
    /// Records of the whole input sequence, every shard's included: the same in every shard.
    public var offered: Int
    /// Records this shard holds (`records.jsonl`, `pathways.npy`).
    public var count: Int
    public var skippedInvalid: Int
    public var layers: Int?
    public var experts: Int?

    enum CodingKeys: String, CodingKey {
        case format, created, tool, shard, kind, sources, model, embedder, build, offered, count, layers, experts
        case formatVersion = "format_version", skippedInvalid = "skipped_invalid"
    }

    public init(created: String, shard: ShardSpec, kind: String, sources: [IndexManifest.Source], model: ModelIdentity?,
                embedder: String, build: Build, offered: Int, count: Int, skippedInvalid: Int, layers: Int?, experts: Int?) {
        self.created = created; self.shard = shard; self.kind = kind; self.sources = sources; self.model = model
        self.embedder = embedder; self.build = build; self.offered = offered; self.count = count
        self.skippedInvalid = skippedInvalid; self.layers = layers; self.experts = experts
    }
}

/// One shard of a sharded build (`c3po-index build --shard K/N --out DIR` writes
/// `DIR/shard-K-of-N/`): the records of the shard's share of the inputs with their pathways,
/// before embedding. `row` of each record is its position in the unsharded input sequence.
public enum ShardFolder {
    public static let manifestFile = "shard.json"
    public static let recordsFile = "records.jsonl"
    public static let pathwaysFile = "pathways.npy"

    /// Writes the shard atomically (a temporary sibling renamed into place; the manifest last).
    public static func write(_ set: ReferenceSet, manifest: ShardManifest, to directory: URL) throws {
        let L = set.layers ?? manifest.layers ?? 0, E = set.experts ?? manifest.experts ?? 0
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(manifest)
        try FileManager.default.createDirectory(at: directory.deletingLastPathComponent(), withIntermediateDirectories: true)
        try AtomicWrite.buildDirectory(at: directory) { tmp in
            try JSONLines.encode(set.records).write(to: tmp.appendingPathComponent(recordsFile))
            try NPY.encode(float32: set.pathways, shape: [set.count, L, E]).write(to: tmp.appendingPathComponent(pathwaysFile))
            try data.write(to: tmp.appendingPathComponent(manifestFile))
        }
    }

    /// Reads and checks one shard folder: manifest, records and pathways agree.
    public static func read(_ directory: URL) throws -> (manifest: ShardManifest, records: [ReferenceRecord], pathways: [Float]) {
        let manifestURL = directory.appendingPathComponent(manifestFile)
        guard FileManager.default.fileExists(atPath: manifestURL.path) else { throw ReferenceIndexError.missingFile(manifestURL) }
        let m: ShardManifest
        do { m = try JSONDecoding.decode(ShardManifest.self, from: FileError.read(manifestURL, limit: IndexFolder.maxManifestBytes, what: "a shard.json")) }
        catch { throw ReferenceIndexError.invalid(manifestURL, "not a shard manifest: \(error)") }
        guard m.format == ShardManifest.formatName, m.formatVersion == ShardManifest.currentVersion else {
            throw ReferenceIndexError.invalid(manifestURL, "field 'format' is \"\(m.format)\" version \(m.formatVersion), expected \"\(ShardManifest.formatName)\" version \(ShardManifest.currentVersion)")
        }
        let recordsURL = directory.appendingPathComponent(recordsFile)
        guard FileManager.default.fileExists(atPath: recordsURL.path) else { throw ReferenceIndexError.missingFile(recordsURL) }
        let records = try IndexFolder.readRecords(recordsURL, count: m.count, rowsAreLines: false, countField: "shard.json 'count'")
        let pathURL = directory.appendingPathComponent(pathwaysFile)
        guard FileManager.default.fileExists(atPath: pathURL.path) else { throw ReferenceIndexError.missingFile(pathURL) }
        let (header, pathways) = try NPY.readFloats(pathURL)
        let want = [m.count, m.layers ?? 0, m.experts ?? 0]
        guard header.shape == want else {
            throw ReferenceIndexError.invalid(pathURL, "shape \(header.shape), expected \(want) (shard.json 'count', 'layers', 'experts')")
        }
        return (m, records, pathways)
    }

    /// The shard folders named: a folder holding `shard.json` is one; any other folder
    /// stands for its `shard-*-of-*` subfolders.
    public static func expand(_ paths: [URL]) throws -> [URL] {
        var out: [URL] = []
        let fm = FileManager.default
        for p in paths {
            if fm.fileExists(atPath: p.appendingPathComponent(manifestFile).path) { out.append(p); continue }
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: p.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ReferenceIndexError.missingFile(p.appendingPathComponent(manifestFile))
            }
            let subs = try fm.contentsOfDirectory(atPath: p.path).filter { $0.hasPrefix("shard-") && !$0.hasPrefix(".") }.sorted()
            guard !subs.isEmpty else { throw ReferenceIndexError.invalid(p, "neither a shard folder (no shard.json) nor a folder of shard-K-of-N folders") }
            out += subs.map { p.appendingPathComponent($0) }
        }
        return out
    }

    /// The shards of one build as one reference set, in the order of a single build: checks
    /// that they agree (kind, inputs, model, embedder, build options, shape, N) and that
    /// every shard 0..<N is there exactly once, naming the shard and field otherwise.
    public static func merge(_ directories: [URL]) throws -> (set: ReferenceSet, manifest: ShardManifest) {
        guard !directories.isEmpty else { throw ReferenceIndexError.badArgument("no shard folders given") }
        var shards: [(URL, ShardManifest, [ReferenceRecord], [Float])] = []
        for d in directories {
            let (m, r, p) = try read(d)
            shards.append((d, m, r, p))
        }
        let (firstURL, first, _, _) = shards[0]
        var seen: [Int: URL] = [:]
        for (url, m, _, _) in shards {
            let at = url.appendingPathComponent(manifestFile)
            func differs(_ field: String, _ a: String, _ b: String) -> ReferenceIndexError {
                .invalid(at, "field '\(field)' is \(a), the shard \(firstURL.lastPathComponent) has \(b): shards of different builds")
            }
            guard m.shard.count == first.shard.count else { throw differs("shard.count", "\(m.shard.count)", "\(first.shard.count)") }
            guard m.kind == first.kind else { throw differs("kind", m.kind, first.kind) }
            guard m.sources == first.sources else {
                throw differs("sources", m.sources.map { "\($0.path) (\($0.sha256.prefix(12))…)" }.joined(separator: ", "),
                              first.sources.map { "\($0.path) (\($0.sha256.prefix(12))…)" }.joined(separator: ", "))
            }
            guard m.model == first.model else {
                throw differs("model", m.model.map { "'\($0.id)' (config sha256 \($0.configSHA256.prefix(12))…)" } ?? "null",
                              first.model.map { "'\($0.id)' (config sha256 \($0.configSHA256.prefix(12))…)" } ?? "null")
            }
            guard m.embedder == first.embedder else { throw differs("embedder", m.embedder, first.embedder) }
            guard m.build == first.build else { throw differs("build", "\(m.build)", "\(first.build)") }
            guard m.offered == first.offered else { throw differs("offered", "\(m.offered)", "\(first.offered)") }
            if let l = m.layers, let l0 = first.layers, l != l0 { throw differs("layers", "\(l)", "\(l0)") }
            if let e = m.experts, let e0 = first.experts, e != e0 { throw differs("experts", "\(e)", "\(e0)") }
            if let other = seen[m.shard.index] {
                throw ReferenceIndexError.invalid(at, "shard \(m.shard) given twice (also \(other.path))")
            }
            seen[m.shard.index] = url
        }
        let n = first.shard.count
        let missing = (0..<n).filter { seen[$0] == nil }
        guard missing.isEmpty else {
            throw ReferenceIndexError.badArgument("shards missing: \(missing.map { "\($0)/\(n)" }.joined(separator: ", ")) (\(seen.count) of \(n) given)")
        }
        // All records, by their position in the unsharded input: the single build's order.
        var rows: [(position: Int, shard: Int, index: Int)] = []
        for (s, (_, _, records, _)) in shards.enumerated() {
            for (i, r) in records.enumerated() { rows.append((r.row, s, i)) }
        }
        rows.sort { $0.position < $1.position }
        var set = ReferenceSet()
        set.sources = first.sources
        set.skippedInvalid = shards.reduce(0) { $0 + $1.1.skippedInvalid }
        for row in rows {
            let (url, m, records, pathways) = shards[row.shard]
            let size = (m.layers ?? 0) * (m.experts ?? 0)
            do {
                try set.append(records[row.index], pathway: Array(pathways[(row.index * size)..<((row.index + 1) * size)]),
                               layers: m.layers ?? 0, experts: m.experts ?? 0)
            } catch let p as ReferenceArchive.RecordProblem {
                throw ReferenceIndexError.invalid(url.appendingPathComponent(recordsFile), "record '\(records[row.index].id)': \(p.reason)")
            }
        }
        return (set, first)
    }
}
