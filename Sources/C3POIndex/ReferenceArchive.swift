import C3POCore
import Foundation

/// Reference records gathered for an index, before embedding: records in row order and
/// their pathways, with the counts the manifest reports.
public struct ReferenceSet: Sendable {
    public var records: [ReferenceRecord] = []
    /// [records.count, layers, experts], row-major.
    public var pathways: [Float] = []
    /// Set by the first record; every later record must agree.
    public var layers: Int?
    public var experts: Int?
    public var sources: [IndexManifest.Source] = []
    public var skippedInvalid = 0
    public var skippedIncorrect = 0
    private var ids: [String: String] = [:] // id -> source, to refuse duplicates

    public init() {}

    public var count: Int { records.count }

    /// Adds one record with its pathway [layers * experts]; the first record fixes the
    /// shape. Throws a reason (without file or id) when the record does not fit.
    public mutating func append(_ record: ReferenceRecord, pathway: [Float], layers: Int, experts: Int) throws {
        if let l = self.layers, let e = self.experts, l != layers || e != experts {
            throw ReferenceArchive.RecordProblem("has \(layers) layers x \(experts) experts, earlier records have \(l) x \(e)")
        }
        guard pathway.count == layers * experts else {
            throw ReferenceArchive.RecordProblem("pathway holds \(pathway.count) values, expected \(layers) x \(experts)")
        }
        if let first = ids[record.id] {
            throw ReferenceArchive.RecordProblem("duplicate id (first seen in \(first))")
        }
        ids[record.id] = record.source
        self.layers = layers
        self.experts = experts
        var r = record
        r.row = records.count
        records.append(r)
        pathways.append(contentsOf: pathway)
    }
}

/// Reads official C3PO `reference.zip` archives (also `.tar`, `.tar.gz`): JSON files
/// `<prefix>_<task>_..._routing_results*.json`, each an object `case_id → record`
/// (format: c3po-method.md, "The reference record format").
public enum ReferenceArchive {
    public struct Options: Sendable {
        /// Keep records with `is_correct: false` too (default: only the successful ones).
        public var includeIncorrect = false
        /// Skip invalid records (named on stderr, counted) instead of stopping.
        public var skipInvalid = false
        public var limits = ArchiveReader.Limits()
        /// Tolerance on the sum of a layer's routing weights.
        public var sumTolerance: Double = 1e-3
        public init(includeIncorrect: Bool = false, skipInvalid: Bool = false, limits: ArchiveReader.Limits = .init()) {
            self.includeIncorrect = includeIncorrect; self.skipInvalid = skipInvalid; self.limits = limits
        }
    }

    /// Why one record is unusable (file and id are added by the caller).
    public struct RecordProblem: Swift.Error, CustomStringConvertible {
        public let reason: String
        public init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        /// A record failed validation: file (archive:entry), record id, reason.
        case invalidRecord(file: String, id: String, reason: String)
        /// A file is not JSON or not an object of records: file, field, reason.
        case wrongShape(file: String, field: String, reason: String)
        case noRecords(String)

        public var description: String {
            switch self {
            case let .invalidRecord(file, id, reason):
                return "\(file): record '\(id)': \(reason) (use --skip-invalid to skip such records)"
            case let .wrongShape(file, field, reason):
                return "\(file): wrong JSON shape at '\(field)': \(reason)"
            case let .noRecords(what): return what
            }
        }
    }

    /// The task of a JSON file, by the official loader's rule: the second
    /// `_`-separated word of the file name (`instruct_sciq_correct_routing_results.json`
    /// → `sciq`). nil when the name has no second word.
    public static func task(ofFileNamed name: String) -> String? {
        let base = (name as NSString).lastPathComponent
        let stem = base.hasSuffix(".json") ? String(base.dropLast(5)) : base
        let words = stem.split(separator: "_", omittingEmptySubsequences: false)
        guard words.count >= 2, !words[1].isEmpty else { return nil }
        return String(words[1])
    }

    /// Reads every JSON file of `url` into `set`, entry by entry. Notes (skipped entries,
    /// skipped records) go to `note`.
    public static func read(_ url: URL, options: Options, into set: inout ReferenceSet,
                            note: (String) -> Void = { StandardError.write($0 + "\n") }) throws {
        let archiveName = url.lastPathComponent
        var read = 0
        var jsonBytes = 0
        var parseSeconds = 0.0
        let started = Date()
        try ArchiveReader(url: url, limits: options.limits).forEachFile { path, data in
            let base = (path as NSString).lastPathComponent
            let file = "\(archiveName):\(path)"
            // AppleDouble files of macOS-made zips carry a .json name but no JSON.
            if path.hasPrefix("__MACOSX/") || base.hasPrefix("._") {
                note("note: \(file): skipped (macOS resource fork)")
                return
            }
            guard base.lowercased().hasSuffix(".json") else {
                note("note: \(file): skipped (not a .json file)")
                return
            }
            guard let task = task(ofFileNamed: base) else {
                note("note: \(file): skipped (no task in the file name: expected <prefix>_<task>_..._routing_results.json)")
                return
            }
            let t = Date()
            read += try readFile(data, file: file, task: task, options: options, into: &set, note: note)
            parseSeconds += Date().timeIntervalSince(t)
            jsonBytes += data.count
        }
        // Ingestion throughput, for `Scripts/bench-index` and for users of large archives.
        let mb = Double(jsonBytes) / 1e6
        note("read \(archiveName): \(read) records, " + String(format: "%.1f MB of JSON parsed and validated in %.2f s (%.1f MB/s); %.2f s in all",
                    mb, parseSeconds, parseSeconds > 0 ? mb / parseSeconds : 0, Date().timeIntervalSince(started)))
        set.sources.append(.init(path: archiveName, kind: "archive", sha256: try SHA256Hasher.hexDigest(ofFile: url), records: read))
    }

    // MARK: one JSON file

    struct RawRouting: Decodable {
        let layers: [RawLayer]
    }

    struct RawLayer: Decodable {
        let layer: Int
        let routingWeights: [String: Double]
        enum CodingKeys: String, CodingKey { case layer, routingWeights = "routing_weights" }
    }

    struct RawRecord: Decodable {
        let inputText: String
        let correctAnswer: String
        let modelAnswer: String?
        let isCorrect: Bool
        let lastTokenRouting: RawRouting
        enum CodingKeys: String, CodingKey {
            case inputText = "input_text", correctAnswer = "correct_answer", modelAnswer = "model_answer"
            case isCorrect = "is_correct", lastTokenRouting = "last_token_routing"
        }
    }

    /// A record whose decoding failure is kept rather than thrown, so that one bad record
    /// can be skipped without losing the file.
    struct Slot: Decodable {
        let result: Result<RawRecord, Swift.Error>
        init(from decoder: Decoder) throws {
            // A value that is not an object is a wrong file shape, not a bad record.
            _ = try decoder.container(keyedBy: RawRecord.CodingKeys.self)
            do { result = .success(try RawRecord(from: decoder)) } catch { result = .failure(error) }
        }
    }

    static func fieldPath(_ path: [CodingKey]) -> String {
        // Array positions have a string value "Index <i>"; dictionary keys (case ids) may
        // also carry an int value, so the string decides.
        path.map { k in k.stringValue.hasPrefix("Index ") ? "[\(k.intValue ?? 0)]" : k.stringValue }
            .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }

    static func describe(_ error: Swift.Error, dropping prefix: Int) -> String {
        func path(_ p: [CodingKey]) -> String { fieldPath(Array(p.dropFirst(prefix))) }
        switch error {
        case let DecodingError.keyNotFound(key, ctx): return "missing field '\(path(ctx.codingPath + [key]))'"
        case let DecodingError.typeMismatch(type, ctx): return "field '\(path(ctx.codingPath))' is not \(type == Double.self ? "a number" : type == Bool.self ? "a boolean" : type == String.self ? "a string" : "of the expected type")"
        case let DecodingError.valueNotFound(_, ctx): return "field '\(path(ctx.codingPath))' is null"
        case let DecodingError.dataCorrupted(ctx): return "field '\(path(ctx.codingPath))': \(ctx.debugDescription)"
        default: return "\(error)"
        }
    }

    /// Orders case ids numerically when they are all integers, else as strings, so that
    /// row order does not depend on hashing.
    static func sortedIDs(_ ids: some Collection<String>) -> [String] {
        let ints = ids.compactMap { Int($0) }
        if ints.count == ids.count { return ids.sorted { Int($0)! < Int($1)! } }
        return ids.sorted()
    }

    /// Returns the number of records in the file.
    static func readFile(_ data: Data, file: String, task: String, options: Options, into set: inout ReferenceSet,
                         note: (String) -> Void) throws -> Int {
        let slots: [String: Slot]
        do {
            do {
                slots = try JSONDecoder().decode([String: Slot].self, from: data)
            } catch DecodingError.dataCorrupted {
                // Python's json.dump writes NaN/Infinity for non-finite floats: retry with
                // JSON5, which reads those tokens, so that such weights are reported as
                // non-finite rather than as malformed JSON (strict JSON first: faster).
                let json5 = JSONDecoder()
                json5.allowsJSON5 = true
                slots = try json5.decode([String: Slot].self, from: data)
            }
        } catch DecodingError.typeMismatch(_, let ctx) where ctx.codingPath.isEmpty {
            throw Error.wrongShape(file: file, field: "(top level)", reason: "expected an object case_id → record")
        } catch DecodingError.typeMismatch(_, let ctx) {
            throw Error.wrongShape(file: file, field: fieldPath(ctx.codingPath), reason: "expected an object (a record)")
        } catch {
            throw Error.wrongShape(file: file, field: "(top level)", reason: "not valid JSON")
        }
        for caseID in sortedIDs(slots.keys) {
            guard let slot = slots[caseID] else { continue }
            let id = "\(task)_\(caseID)"
            do {
                let raw: RawRecord
                switch slot.result {
                case let .success(r): raw = r
                case let .failure(e): throw RecordProblem(describe(e, dropping: 1))
                }
                let (pathway, layers, experts) = try pathway(of: raw.lastTokenRouting, tolerance: options.sumTolerance)
                if !raw.isCorrect && !options.includeIncorrect {
                    set.skippedIncorrect += 1
                    continue
                }
                let record = ReferenceRecord(
                    row: 0, id: id, task: task, question: QuestionText.extract(from: raw.inputText),
                    gold: raw.correctAnswer.trimmingCharacters(in: .whitespaces), modelAnswer: raw.modelAnswer,
                    correct: raw.isCorrect, source: file, prompt: raw.inputText)
                try set.append(record, pathway: pathway, layers: layers, experts: experts)
            } catch let p as RecordProblem {
                guard options.skipInvalid else { throw Error.invalidRecord(file: file, id: id, reason: p.reason) }
                set.skippedInvalid += 1
                note("skipped: \(file): record '\(id)': \(p.reason)")
            }
        }
        return slots.count
    }

    /// `last_token_routing.layers[*].routing_weights` → dense [layers, experts], checked:
    /// every layer 0..<L and expert 0..<E exactly once, weights finite, ≥ 0, summing to 1.
    static func pathway(of routing: RawRouting, tolerance: Double) throws -> ([Float], Int, Int) {
        let L = routing.layers.count
        guard L > 0 else { throw RecordProblem("'last_token_routing.layers' is empty") }
        // The widest layer sets the expert count, so a layer with a missing key is the one named.
        let E = routing.layers.map(\.routingWeights.count).max() ?? 0
        guard E > 0 else { throw RecordProblem("'last_token_routing.layers[*].routing_weights' are empty") }
        var dense = [Float](repeating: 0, count: L * E) // [layers, experts]
        var seenLayer = [Bool](repeating: false, count: L)
        for (i, entry) in routing.layers.enumerated() {
            let field = "last_token_routing.layers[\(i)]"
            guard (0..<L).contains(entry.layer) else {
                throw RecordProblem("'\(field).layer' is \(entry.layer), outside 0..<\(L) (\(L) layers listed)")
            }
            guard !seenLayer[entry.layer] else { throw RecordProblem("layer \(entry.layer) listed twice") }
            seenLayer[entry.layer] = true
            let weights = entry.routingWeights
            guard weights.count == E else {
                throw RecordProblem("layer \(entry.layer) has \(weights.count) experts, other layers have \(E) (missing expert)")
            }
            var seenExpert = [Bool](repeating: false, count: E)
            var sum = 0.0
            for (key, w) in weights {
                guard key.hasPrefix("expert_"), let e = Int(key.dropFirst(7)), String(e) == key.dropFirst(7) else {
                    throw RecordProblem("layer \(entry.layer): key '\(key)' is not expert_<i>")
                }
                guard (0..<E).contains(e) else {
                    throw RecordProblem("layer \(entry.layer): '\(key)' outside expert_0..expert_\(E - 1) (missing expert)")
                }
                guard !seenExpert[e] else { throw RecordProblem("layer \(entry.layer): expert \(e) listed twice") }
                seenExpert[e] = true
                guard w.isFinite else { throw RecordProblem("layer \(entry.layer): weight of '\(key)' is not finite (\(w))") }
                guard w >= 0 else { throw RecordProblem("layer \(entry.layer): weight of '\(key)' is negative (\(w))") }
                sum += w
                dense[entry.layer * E + e] = Float(w)
            }
            guard abs(sum - 1) <= tolerance else {
                throw RecordProblem("layer \(entry.layer): routing weights sum to \(sum), not 1 (tolerance \(tolerance))")
            }
        }
        return (dense, L, E)
    }
}
