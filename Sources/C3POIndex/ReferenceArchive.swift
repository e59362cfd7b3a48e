import C3POCore
import Foundation

/// Reference records gathered for an index from one kind of source, before embedding:
/// every valid record (correct or not) in row order, their pathways, with the sources and
/// the count of invalid records skipped that the manifest reports.
public struct ReferenceSet: Sendable {
    public var records: [ReferenceRecord] = []
    /// [records.count, layers, experts], row-major.
    public var pathways: [Float] = []
    /// Set by the first record; every later record must agree.
    public var layers: Int?
    public var experts: Int?
    public var sources: [IndexManifest.Source] = []
    public var skippedInvalid = 0
    /// When set, only the records of this shard are kept (`build --shard`); the others are
    /// passed over unread.
    public var shard: ShardSpec?
    /// Records offered so far, in source order, whatever their shard: a record's position in
    /// the unsharded sequence, which a shard stores as its `row` so that a merge restores the
    /// order of a single build.
    public private(set) var offered = 0
    private var ids: [String: String] = [:] // id -> source, to refuse duplicates

    public init(shard: ShardSpec? = nil) { self.shard = shard }

    public var count: Int { records.count }

    /// Counts one record of the source; its position when it belongs to this set's shard
    /// (always, unsharded), nil when another shard holds it.
    public mutating func claim(_ id: String) -> Int? {
        defer { offered += 1 }
        return shard.map { $0.contains(id) } ?? true ? offered : nil
    }

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
        if shard == nil { r.row = records.count } // a shard keeps the position it was given
        records.append(r)
        pathways.append(contentsOf: pathway)
    }
}

/// Reads official C3PO `reference.zip` archives (also `.tar`, `.tar.gz`): JSON files
/// `<prefix>_<task>_..._routing_results*.json`, each an object `case_id → record`
/// (format: c3po-method.md, "The reference record format").
public enum ReferenceArchive {
    public struct Options: Sendable {
        /// Skip invalid records (named on stderr, counted) instead of stopping.
        public var skipInvalid = false
        public var limits = ArchiveReader.Limits()
        /// Tolerance on the sum of a layer's routing weights.
        public var sumTolerance: Double = 1e-3
        public init(skipInvalid: Bool = false, limits: ArchiveReader.Limits = .init()) {
            self.skipInvalid = skipInvalid; self.limits = limits
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

    /// One record as parsed, its first problem kept (not thrown) so that a bad record can
    /// be skipped without losing the file.
    struct ParsedRecord {
        var inputText: String?
        var correctAnswer: String?
        var modelAnswer: String?
        var isCorrect: Bool?
        var layers: [OfficialRouting.Layer]?
        /// Fields in the official format's order; the first problem in this order is reported
        /// (the order in which JSONDecoder, used before, checked them).
        static let fields = ["input_text", "correct_answer", "model_answer", "is_correct", "last_token_routing"]
        var seen = [Bool](repeating: false, count: 5)
        var problems = [String?](repeating: nil, count: 5)

        mutating func note(_ slot: Int, _ problem: String) {
            if problems[slot] == nil { problems[slot] = problem }
        }

        /// The first problem, or a missing required field (`model_answer` is optional).
        var problem: String? {
            for slot in 0..<5 {
                if let p = problems[slot] { return p }
                if !seen[slot] && slot != 2 { return "missing field '\(Self.fields[slot])'" }
            }
            return nil
        }
    }

    /// Parses one record object (the scanner at its `{`).
    static func parseRecord(_ s: inout JSONScanner) throws -> ParsedRecord {
        var r = ParsedRecord()
        var c = try s.beginObject()
        while let key = try s.nextKey(&c) {
            if key.equals("input_text") {
                r.seen[0] = true
                if try s.expect(.string, field: "input_text", problem: &r.problems[0]) { r.inputText = try s.readString() }
            } else if key.equals("correct_answer") {
                r.seen[1] = true
                if try s.expect(.string, field: "correct_answer", problem: &r.problems[1]) { r.correctAnswer = try s.readString() }
            } else if key.equals("model_answer") {
                r.seen[2] = true
                if try s.expect(.string, field: "model_answer", nullable: true, problem: &r.problems[2]) { r.modelAnswer = try s.readString() }
            } else if key.equals("is_correct") {
                r.seen[3] = true
                if try s.expect(.bool, field: "is_correct", problem: &r.problems[3]) { r.isCorrect = try s.readBool() }
            } else if key.equals("last_token_routing") {
                r.seen[4] = true
                try parseRouting(&s, into: &r)
            } else {
                try s.skipValue()
            }
        }
        return r
    }

    /// `last_token_routing`, by the one parser of the official form (`OfficialRouting`).
    static func parseRouting(_ s: inout JSONScanner, into r: inout ParsedRecord) throws {
        var problem: String?
        r.layers = try OfficialRouting.parse(&s, field: "last_token_routing", problem: &problem)
        if let problem { r.note(4, problem) }
    }

    /// Orders case ids numerically when they are all integers, else as strings, so that
    /// row order does not depend on hashing.
    static func sortedIDs(_ ids: some Collection<String>) -> [String] {
        let ints = ids.compactMap { Int($0) }
        if ints.count == ids.count { return ids.sorted { Int($0)! < Int($1)! } }
        return ids.sorted()
    }

    /// Returns the number of records in the file. The whole file is parsed (syntax and
    /// shape) before any record is validated or added, so a malformed file adds nothing.
    static func readFile(_ data: Data, file: String, task: String, options: Options, into set: inout ReferenceSet,
                         note: (String) -> Void) throws -> Int {
        var parsed: [String: ParsedRecord] = [:] // duplicate case ids: the last wins, as in Python's json
        var current: String? // case id being parsed, named in syntax errors
        do {
            try data.withUnsafeBytes { raw in
                var s = JSONScanner(raw)
                // A shape error is thrown after the whole text parsed: malformed JSON is reported first.
                var shapeError: Error?
                guard try s.peek() == .object else {
                    try s.skipValue(); try s.finish()
                    throw Error.wrongShape(file: file, field: "(top level)", reason: "expected an object case_id → record")
                }
                var c = try s.beginObject()
                while let key = try s.nextKey(&c) {
                    let caseID = key.string
                    current = caseID
                    guard try s.peek() == .object else {
                        if shapeError == nil { shapeError = .wrongShape(file: file, field: caseID, reason: "expected an object (a record)") }
                        try s.skipValue()
                        continue
                    }
                    parsed[caseID] = try parseRecord(&s)
                }
                current = nil
                try s.finish()
                if let shapeError { throw shapeError }
            }
        } catch let e as JSONScanner.Error {
            let inRecord = current.map { ", in record '\(task)_\($0)'" } ?? ""
            throw Error.wrongShape(file: file, field: "(top level)", reason: "not valid JSON: \(e)\(inRecord)")
        }
        for caseID in sortedIDs(parsed.keys) {
            guard let raw = parsed[caseID] else { continue }
            let id = "\(task)_\(caseID)"
            guard let position = set.claim(id) else { continue } // another shard's record
            do {
                if let problem = raw.problem { throw RecordProblem(problem) }
                guard let inputText = raw.inputText, let correctAnswer = raw.correctAnswer, let isCorrect = raw.isCorrect,
                      let layers = raw.layers else { throw RecordProblem("incomplete record") }
                let (pathway, L, E) = try pathway(of: layers, tolerance: options.sumTolerance)
                let record = ReferenceRecord(
                    row: position, id: id, task: task, question: QuestionText.extract(from: inputText),
                    gold: correctAnswer.trimmingCharacters(in: .whitespaces), modelAnswer: raw.modelAnswer,
                    correct: isCorrect, source: file, prompt: inputText, labels: QuestionText.labels(in: inputText))
                try set.append(record, pathway: pathway, layers: L, experts: E)
            } catch let p as RecordProblem {
                guard options.skipInvalid else { throw Error.invalidRecord(file: file, id: id, reason: p.reason) }
                set.skippedInvalid += 1
                note("skipped: \(file): record '\(id)': \(p.reason)")
            }
        }
        return parsed.count
    }

    /// `last_token_routing.layers` → dense [layers, experts], by the rules of
    /// `OfficialRouting.check`: every layer 0..<L and expert 0..<E exactly once, weights
    /// finite, ≥ 0, summing to 1.
    static func pathway(of layers: [OfficialRouting.Layer], tolerance: Double) throws -> ([Float], Int, Int) {
        let dense: OfficialRouting.Dense
        do { dense = try OfficialRouting.check(layers, experts: nil, layers: .all, tolerance: tolerance) }
        catch let p as OfficialRouting.Problem { throw RecordProblem(p.reason) }
        let L = layers.count
        return ((0..<L).flatMap { dense.layers[$0]! }, L, dense.experts)
    }
}
