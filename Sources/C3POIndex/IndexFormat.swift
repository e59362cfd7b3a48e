import C3POCore
import Foundation

// The on-disk reference index (format of Index/README.md, version 1): its records, its manifest,
// the names of its files and their parsers, which touch neither faiss nor the embedder (so that
// the fuzz target `index_folder` runs them alone).

/// One reference sample: line `row` of `records.jsonl`, row `row` of every array.
public struct ReferenceRecord: Codable, Sendable, Equatable {
    public var row: Int
    /// `<task>_<case_id>` for archive records, the dataset id for benchmark records.
    public var id: String
    public var task: String
    /// The text that was embedded (rule: Index/README.md, "Which text is embedded").
    public var question: String
    /// The gold answer label ("C").
    public var gold: String
    /// The label the model answered, when known.
    public var modelAnswer: String?
    public var correct: Bool
    /// Where the record came from: `<archive file name>:<entry path>` or a dataset file.
    public var source: String
    /// The full prompt the model saw (`input_text`), when known.
    public var prompt: String?
    /// The answer labels the model chose among ("A", "B", ...), when known: the dataset's
    /// for a benchmark record, the prompt's option letters for an archive record.
    public var labels: [String]?

    enum CodingKeys: String, CodingKey {
        case row, id, task, question, gold, correct, source, prompt, labels
        case modelAnswer = "model_answer"
    }

    public init(row: Int = 0, id: String, task: String, question: String, gold: String, modelAnswer: String? = nil,
                correct: Bool = true, source: String = "", prompt: String? = nil, labels: [String]? = nil) {
        self.row = row; self.id = id; self.task = task; self.question = question; self.gold = gold
        self.modelAnswer = modelAnswer; self.correct = correct; self.source = source; self.prompt = prompt
        self.labels = labels
    }
}

/// Which text of a record is embedded (`build --embed-text`): the question part of its prompt
/// (the default, Index/README.md "Which text is embedded"), or the whole prompt, as the
/// published code does.
public enum EmbedText: String, Codable, Sendable, CaseIterable {
    case question, prompt
}

/// `manifest.json`: what an index folder is.
public struct IndexManifest: Codable, Sendable, Equatable {
    public static let formatName = "c3po-index"
    public static let currentVersion = 1
    public static let toolName = "c3po-index 0.1.0"

    public struct Embedder: Codable, Sendable, Equatable {
        public var id: String
        public var dimension: Int
        public init(id: String, dimension: Int) { self.id = id; self.dimension = dimension }
    }

    public struct Source: Codable, Sendable, Equatable {
        public var path: String
        /// "archive", "benchmark" or "embeddings".
        public var kind: String
        public var sha256: String
        /// Records read from this source (before the correctness and dedup filters).
        public var records: Int
        public init(path: String, kind: String, sha256: String, records: Int) {
            self.path = path; self.kind = kind; self.sha256 = sha256; self.records = records
        }
    }

    public struct Filters: Codable, Sendable, Equatable {
        public var includeIncorrect: Bool
        public var skipInvalid: Bool
        public var skippedInvalid: Int
        public var skippedIncorrect: Int
        /// The dedup cosine threshold, nil when dedup was off.
        public var dedup: Double?
        public var deduplicated: Int

        enum CodingKeys: String, CodingKey {
            case includeIncorrect = "include_incorrect", skipInvalid = "skip_invalid"
            case skippedInvalid = "skipped_invalid", skippedIncorrect = "skipped_incorrect"
            case dedup, deduplicated
        }

        public init(includeIncorrect: Bool = false, skipInvalid: Bool = false, skippedInvalid: Int = 0,
                    skippedIncorrect: Int = 0, dedup: Double? = nil, deduplicated: Int = 0) {
            self.includeIncorrect = includeIncorrect; self.skipInvalid = skipInvalid
            self.skippedInvalid = skippedInvalid; self.skippedIncorrect = skippedIncorrect
            self.dedup = dedup; self.deduplicated = deduplicated
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(includeIncorrect, forKey: .includeIncorrect)
            try c.encode(skipInvalid, forKey: .skipInvalid)
            try c.encode(skippedInvalid, forKey: .skippedInvalid)
            try c.encode(skippedIncorrect, forKey: .skippedIncorrect)
            try c.encode(dedup, forKey: .dedup) // explicit null when off
            try c.encode(deduplicated, forKey: .deduplicated)
        }
    }

    public struct Mixing: Codable, Sendable, Equatable {
        /// "defaults" (no model seen) or "leave-one-out" (chosen at build time, task_weights.json).
        public var source: String
        public var alpha: Double
        public var bandwidth: Double
        public init(source: String, alpha: Double, bandwidth: Double) {
            self.source = source; self.alpha = alpha; self.bandwidth = bandwidth
        }
        public static let defaults = Mixing(source: "defaults", alpha: 0.0, bandwidth: 0.25)
    }

    public var format: String
    public var formatVersion: Int
    public var created: String
    public var tool: String
    public var embedder: Embedder
    public var model: ModelIdentity?
    public var layers: Int
    public var experts: Int
    public var criticalLayers: [Int]
    public var factory: String
    public var metric: String
    public var count: Int
    public var tasks: [String: Int]
    public var sources: [Source]
    public var filters: Filters
    public var mixing: Mixing
    /// faiss search-time parameters applied on load ("nprobe", "efSearch"); empty for Flat.
    public var searchParameters: [String: Double]
    /// Set when the index was merged from shards (`c3po-index merge`); absent otherwise.
    public var shards: Shards?
    /// `prompt` when the whole prompts were embedded (`build --embed-text prompt`); absent: the questions.
    public var embedText: EmbedText?
    /// Size and SHA-256 of every other file of the folder (absent in folders written before them).
    public var files: [String: FileEntry]?

    public struct FileEntry: Codable, Sendable, Equatable {
        public var bytes: Int
        public var sha256: String
        public init(bytes: Int, sha256: String) { self.bytes = bytes; self.sha256 = sha256 }
        public init(of url: URL) throws {
            let size = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? -1
            self.init(bytes: size, sha256: try SHA256Hasher.hexDigest(ofFile: url))
        }
    }
    /// `c3po-index build --cache-states`: the shape of the stored states (StoredStates.swift).
    public struct States: Codable, Sendable, Equatable {
        /// The lowest layer stored (the lowest critical layer); `layers` from it up.
        public var fromLayer: Int
        public var layers: Int
        /// Keys (and values) per position in a layer: kv heads × head dim.
        public var keyValueWidth: Int
        public var hidden: Int
        /// References with a state, and their tokens in all.
        public var references: Int
        public var tokens: Int
        /// The keys' and values' precision.
        public var dtype: String = "float16"
        /// The checkpoint whose prefills they are (the manifest's `model` for a `--model` build,
        /// `--states-model` for an archive build): a run with another model does not use them.
        public var model: ModelIdentity?

        enum CodingKeys: String, CodingKey {
            case layers, hidden, references, tokens, dtype, model
            case fromLayer = "from_layer", keyValueWidth = "kv_width"
        }

        public init(fromLayer: Int, layers: Int, keyValueWidth: Int, hidden: Int, references: Int, tokens: Int) {
            self.fromLayer = fromLayer; self.layers = layers; self.keyValueWidth = keyValueWidth; self.hidden = hidden
            self.references = references; self.tokens = tokens
        }
    }
    /// Set when the index stores its references' prefix states; absent otherwise.
    public var states: States?

    /// What queries must embed to match this index.
    public var embeddedText: EmbedText { embedText ?? .question }

    public struct Shards: Codable, Sendable, Equatable {
        public var count: Int
        public init(count: Int) { self.count = count }
    }

    enum CodingKeys: String, CodingKey {
        case format, created, tool, embedder, model, layers, experts, factory, metric, count, tasks, sources, filters, mixing
        case formatVersion = "format_version"
        case criticalLayers = "critical_layers"
        case searchParameters = "search_parameters"
        case shards
        case embedText = "embed_text"
        case files, states
    }

    public init(format: String = IndexManifest.formatName, formatVersion: Int = IndexManifest.currentVersion,
                created: String, tool: String = IndexManifest.toolName, embedder: Embedder, model: ModelIdentity?,
                layers: Int, experts: Int, criticalLayers: [Int], factory: String, metric: String = "inner_product",
                count: Int, tasks: [String: Int], sources: [Source], filters: Filters, mixing: Mixing,
                searchParameters: [String: Double] = [:]) {
        self.format = format; self.formatVersion = formatVersion; self.created = created; self.tool = tool
        self.embedder = embedder; self.model = model; self.layers = layers; self.experts = experts
        self.criticalLayers = criticalLayers; self.factory = factory; self.metric = metric; self.count = count
        self.tasks = tasks; self.sources = sources; self.filters = filters; self.mixing = mixing
        self.searchParameters = searchParameters
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(String.self, forKey: .format)
        formatVersion = try c.decode(Int.self, forKey: .formatVersion)
        created = try c.decode(String.self, forKey: .created)
        tool = try c.decode(String.self, forKey: .tool)
        embedder = try c.decode(Embedder.self, forKey: .embedder)
        model = try c.decodeIfPresent(ModelIdentity.self, forKey: .model)
        layers = try c.decode(Int.self, forKey: .layers)
        experts = try c.decode(Int.self, forKey: .experts)
        criticalLayers = try c.decode([Int].self, forKey: .criticalLayers)
        factory = try c.decode(String.self, forKey: .factory)
        metric = try c.decode(String.self, forKey: .metric)
        count = try c.decode(Int.self, forKey: .count)
        tasks = try c.decode([String: Int].self, forKey: .tasks)
        sources = try c.decode([Source].self, forKey: .sources)
        filters = try c.decode(Filters.self, forKey: .filters)
        mixing = try c.decode(Mixing.self, forKey: .mixing)
        searchParameters = try c.decodeIfPresent([String: Double].self, forKey: .searchParameters) ?? [:]
        shards = try c.decodeIfPresent(Shards.self, forKey: .shards)
        embedText = try c.decodeIfPresent(EmbedText.self, forKey: .embedText)
        files = try c.decodeIfPresent([String: FileEntry].self, forKey: .files)
        states = try c.decodeIfPresent(States.self, forKey: .states)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(formatVersion, forKey: .formatVersion)
        try c.encode(created, forKey: .created)
        try c.encode(tool, forKey: .tool)
        try c.encode(embedder, forKey: .embedder)
        try c.encode(model, forKey: .model) // explicit null for archive-only indices
        try c.encode(layers, forKey: .layers)
        try c.encode(experts, forKey: .experts)
        try c.encode(criticalLayers, forKey: .criticalLayers)
        try c.encode(factory, forKey: .factory)
        try c.encode(metric, forKey: .metric)
        try c.encode(count, forKey: .count)
        try c.encode(tasks, forKey: .tasks)
        try c.encode(sources, forKey: .sources)
        try c.encode(filters, forKey: .filters)
        try c.encode(mixing, forKey: .mixing)
        try c.encode(searchParameters, forKey: .searchParameters)
        try c.encodeIfPresent(shards, forKey: .shards)
        try c.encodeIfPresent(embedText, forKey: .embedText)
        try c.encodeIfPresent(files, forKey: .files)
        try c.encodeIfPresent(states, forKey: .states)
    }
}

extension IndexManifest {
    /// The time stamp of `created`: now, ISO 8601 in UTC, to the second.
    public static func timestamp() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date())
    }
}

/// Errors of a loaded or written index, naming the file and field at fault.
public enum ReferenceIndexError: Error, CustomStringConvertible, Equatable {
    case missingFile(URL)
    case invalid(URL, String)
    case embedderMismatch(index: URL, expected: String, got: String)
    case trainingFailed(factory: String, count: Int, faissMessage: String)
    case badArgument(String)

    public var description: String {
        switch self {
        case let .missingFile(url): return "\(url.path): missing (not a complete index folder)"
        case let .invalid(url, why): return "\(url.path): \(why)"
        case let .embedderMismatch(index, expected, got):
            return "\(index.path): index was built with embedder \(expected), refusing embedder \(got) (rebuild the index or pass the matching --embedder)"
        case let .trainingFailed(factory, count, message):
            return "faiss train failed for factory \"\(factory)\" on \(count) records: \(message) (an IVF<n> index needs at least n records; use Flat or fewer lists)"
        case let .badArgument(why): return why
        }
    }
}


/// The files of an index folder and their readers: what every reader of a folder (the runtime,
/// the report, the verifier) checks first, in one place.
public enum IndexFolder {
    public static let manifestFile = "manifest.json"
    public static let embeddingsFile = "embeddings.npy"
    public static let faissFile = "index.faiss"
    public static let pathwaysFile = "pathways.npy"
    public static let recordsFile = "records.jsonl"
    public static let taskWeightsFile = "task_weights.json"
    /// The files a manifest lists with their size and SHA-256 (`files`).
    public static let dataFiles = [embeddingsFile, faissFile, pathwaysFile, recordsFile, taskWeightsFile] + StoredStates.files
    public static let requiredFiles: Set<String> = [embeddingsFile, faissFile, pathwaysFile, recordsFile]

    /// Checks every file the manifest lists, before anything parses it: present, of the size and
    /// SHA-256 recorded (a folder written before checksums lists none: nothing to check). Returns
    /// what was checked.
    /// With `deep` false (a load), the stored states' two large files are checked by size only
    /// (each state by its own checksum when it is read, StoredStates.swift); `deep` (c3po-index
    /// verify) hashes every file.
    @discardableResult
    public static func verifyFiles(_ manifest: IndexManifest, in directory: URL, deep: Bool = false) throws -> [(name: String, bytes: Int)] {
        guard let files = manifest.files else { return [] }
        let manifestURL = directory.appendingPathComponent(manifestFile)
        if let missing = requiredFiles.subtracting(files.keys).sorted().first {
            throw ReferenceIndexError.invalid(manifestURL, "field 'files' lists no '\(missing)'")
        }
        var checked: [(String, Int)] = []
        for (name, want) in files.sorted(by: { $0.key < $1.key }) {
            guard dataFiles.contains(name) else { throw ReferenceIndexError.invalid(manifestURL, "field 'files' lists '\(name)', not a file of the format") }
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else { throw ReferenceIndexError.missingFile(url) }
            let size = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? -1
            guard size == want.bytes else {
                throw ReferenceIndexError.invalid(url, "\(size) bytes, manifest 'files.\(name).bytes' is \(want.bytes) (truncated or replaced)")
            }
            if !deep, StoredStates.checkedByEntry.contains(name) {
                checked.append((name, size))
                continue
            }
            let got = try IndexManifest.FileEntry(of: url)
            guard got.sha256 == want.sha256 else {
                throw ReferenceIndexError.invalid(url, "SHA-256 \(got.sha256.prefix(12))…, manifest 'files.\(name).sha256' is \(want.sha256.prefix(12))… (edited or swapped)")
            }
            checked.append((name, got.bytes))
        }
        for name in [taskWeightsFile] + StoredStates.files where files[name] == nil {
            let url = directory.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) { throw ReferenceIndexError.invalid(url, "not listed in the manifest's 'files' (added to the folder)") }
        }
        if manifest.states != nil, let missing = StoredStates.files.first(where: { files[$0] == nil }) {
            throw ReferenceIndexError.invalid(manifestURL, "field 'states' is set but 'files' lists no '\(missing)'")
        }
        return checked
    }

    /// The largest `manifest.json` read (real ones: a few KB; one line per source and task).
    public static let maxManifestBytes = 64 << 20
    /// The longest line of `records.jsonl`: one record, prompt included (real ones: a few KB).
    /// A file longer than `count` such lines is refused before it is read.
    public static let maxRecordBytes = 1 << 20

    /// `manifest.json`, decoded and checked field by field, naming the field at fault.
    public static func readManifest(_ url: URL) throws -> IndexManifest {
        let manifest: IndexManifest
        do {
            let data = try FileError.read(url, limit: maxManifestBytes, what: "a manifest.json")
            manifest = try JSONDecoding.decode(IndexManifest.self, from: data)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ReferenceIndexError.invalid(url, "missing field '\((ctx.codingPath + [key]).map(\.stringValue).joined(separator: "."))'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw ReferenceIndexError.invalid(url, "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw ReferenceIndexError.invalid(url, "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' is null")
        } catch let e as FileError {
            throw e
        } catch {
            throw ReferenceIndexError.invalid(url, "not valid JSON: \(error)")
        }
        guard manifest.format == IndexManifest.formatName else {
            throw ReferenceIndexError.invalid(url, "field 'format' is \"\(manifest.format)\", expected \"\(IndexManifest.formatName)\"")
        }
        guard manifest.formatVersion == IndexManifest.currentVersion else {
            throw ReferenceIndexError.invalid(url, "field 'format_version' is \(manifest.formatVersion), this tool reads version \(IndexManifest.currentVersion)")
        }
        guard manifest.layers > 0, manifest.experts > 0, manifest.embedder.dimension > 0, manifest.count >= 0 else {
            throw ReferenceIndexError.invalid(url, "fields 'layers', 'experts', 'embedder.dimension' must be positive")
        }
        guard manifest.metric == "inner_product" else {
            throw ReferenceIndexError.invalid(url, "field 'metric' is \"\(manifest.metric)\", expected \"inner_product\"")
        }
        if let bad = manifest.criticalLayers.first(where: { !(0..<manifest.layers).contains($0) }) {
            throw ReferenceIndexError.invalid(url, "field 'critical_layers' holds \(bad), outside 0..<\(manifest.layers)")
        }
        return manifest
    }

    /// `records.jsonl` of an index whose manifest says `count` records of `tasks`: one record a
    /// line, line i holding row i (unless `rowsAreLines` is false: a shard's rows are positions
    /// in the unsharded input), the tasks counted as the manifest says. `countField` names where
    /// the count came from in messages.
    public static func readRecords(_ url: URL, count: Int, tasks: [String: Int]? = nil, rowsAreLines: Bool = true,
                                   countField: String = "manifest 'count'") throws -> [ReferenceRecord] {
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
        let (most, over) = max(count, 1).multipliedReportingOverflow(by: maxRecordBytes + 1)
        guard over || size <= most else {
            throw ReferenceIndexError.invalid(url, "\(size) bytes for \(count) records (\(countField)): more than \(maxRecordBytes) bytes a record, refused before it is read")
        }
        let records = try JSONLines.decode(ReferenceRecord.self, from: url, maxLineBytes: maxRecordBytes)
        guard records.count == count else {
            throw ReferenceIndexError.invalid(url, "\(records.count) records, \(countField) is \(count)")
        }
        var perTask: [String: Int] = [:]
        for (i, r) in records.enumerated() {
            guard r.row == i || !rowsAreLines else { throw ReferenceIndexError.invalid(url, "line \(i + 1): field 'row' is \(r.row), expected \(i)") }
            perTask[r.task, default: 0] += 1
        }
        if let tasks, perTask != tasks {
            throw ReferenceIndexError.invalid(url.deletingLastPathComponent().appendingPathComponent(manifestFile),
                                              "field 'tasks' \(tasks) disagrees with records.jsonl \(perTask)")
        }
        return records
    }
}
