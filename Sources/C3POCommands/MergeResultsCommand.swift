import ArgumentParser
import C3POCore
import C3POIndex
import C3POMixing
import Foundation

/// `PART.jsonl.shard.json`: what one part of a sharded run is (`c3po-apply --shard K/N --out PART.jsonl`).
public struct ResultPart: Codable, Sendable, Equatable {
    public static let formatName = "c3po-apply-part"
    public static let suffix = ".shard.json"

    public struct Test: Codable, Sendable, Equatable {
        public var path: String
        public var sha256: String
        /// Questions of the whole (limited) test set, every part's included.
        public var questions: Int
    }

    public var format = ResultPart.formatName
    public var formatVersion = 1
    public var shard: ShardSpec
    public var test: Test
    public var indexManifestSHA256: String
    /// The model's config sha256.
    public var model: String
    /// The options that make runs the same run (RunCommand.runIdentity).
    public var run: String
    public var method: MixingMethod
    public var similarityFloor: Float
    public var neighborDraw: NeighborDraw
    /// The tasks the index holds successful references of (for the merged run's warnings).
    public var heldTasks: [String]
    /// Position in the test set of each row of PART.jsonl, in order.
    public var positions: [Int]

    enum CodingKeys: String, CodingKey {
        case format, shard, test, model, run, method, positions
        case formatVersion = "format_version", indexManifestSHA256 = "index_manifest_sha256"
        case similarityFloor = "similarity_floor", neighborDraw = "neighbor_draw", heldTasks = "held_tasks"
    }

    init(shard: ShardSpec, test: Test, indexManifestSHA256: String, model: String, run: String, method: MixingMethod,
         similarityFloor: Float, neighborDraw: NeighborDraw, heldTasks: [String], positions: [Int]) {
        self.shard = shard; self.test = test; self.indexManifestSHA256 = indexManifestSHA256; self.model = model; self.run = run
        self.method = method; self.similarityFloor = similarityFloor; self.neighborDraw = neighborDraw
        self.heldTasks = heldTasks; self.positions = positions
    }

    static func url(besides out: URL) -> URL { URL(fileURLWithPath: out.path + suffix) }

    func write(besides out: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try AtomicWrite.write(enc.encode(self), to: Self.url(besides: out))
    }
}

/// `c3po-apply merge-results`: the parts of a sharded run → the summary (and rows) one run
/// would have given.
public struct MergeResultsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "merge-results",
        abstract: "Join the parts of a sharded run (c3po-apply --shard K/N --out PART.jsonl) into one run's summary and rows.",
        discussion: """
        Each PART.jsonl needs its PART.jsonl.shard.json. The parts must come from one run (the same test file \
        by sha256, index manifest, model, method and options, the same N) and cover every shard once; \
        otherwise the merge is refused, naming the part and field. The summary table, --json and the \
        warnings are those a single run prints (seconds apart).
        """
    )

    @Argument(help: ArgumentHelp("The --out files of the parts.", valueName: "part.jsonl"))
    public var parts: [PathArgument]

    @Option(help: ArgumentHelp("Write the merged rows here (JSONL, in test-set order).", valueName: "file"))
    public var out: PathArgument?

    @Option(help: ArgumentHelp("The test file, when it has moved since the parts ran (checked by sha256).", valueName: "file"))
    public var test: PathArgument?

    @Flag(help: "Print the summary as JSON on stdout.")
    public var json = false

    public init() {}

    public func run() throws {
        var loaded: [(PathArgument, ResultPart, [SampleResult])] = []
        for p in parts {
            let sideURL = ResultPart.url(besides: p.url)
            guard FileManager.default.fileExists(atPath: sideURL.path) else {
                throw UsageError("\(p.typed): no \(p.typed)\(ResultPart.suffix) beside it (not the --out of a c3po-apply --shard run)")
            }
            let part: ResultPart
            do { part = try JSONDecoding.decode(ResultPart.self, from: Data(contentsOf: sideURL)) }
            catch { throw UsageError("\(sideURL.path): not a part description: \(error)") }
            let rows = try JSONLines.decode(SampleResult.self, from: try InputPaths.file(p, "part file"))
            guard rows.count == part.positions.count else {
                throw UsageError("\(p.typed): \(rows.count) rows, \(sideURL.lastPathComponent) lists \(part.positions.count)")
            }
            loaded.append((p, part, rows))
        }
        guard let (firstPath, first, _) = loaded.first else { throw UsageError("give the parts' --out files") }
        var seen: [Int: String] = [:]
        for (p, part, _) in loaded {
            func check(_ same: Bool, _ field: String) throws {
                guard same else { throw UsageError("\(p.typed)\(ResultPart.suffix): field '\(field)' differs from \(firstPath.typed)'s: parts of different runs") }
            }
            try check(part.shard.count == first.shard.count, "shard.count")
            try check(part.test.sha256 == first.test.sha256 && part.test.questions == first.test.questions, "test")
            try check(part.indexManifestSHA256 == first.indexManifestSHA256, "index_manifest_sha256")
            try check(part.model == first.model, "model")
            try check(part.run == first.run, "run")
            if let other = seen[part.shard.index] { throw UsageError("\(p.typed): shard \(part.shard) given twice (also \(other))") }
            seen[part.shard.index] = p.typed
        }
        let n = first.shard.count
        let missing = (0..<n).filter { seen[$0] == nil }
        guard missing.isEmpty else {
            throw UsageError("parts missing: \(missing.map { "\($0)/\(n)" }.joined(separator: ", ")) (\(seen.count) of \(n) given)")
        }
        // The test set, as the parts saw it, for the warnings that read prompts.
        let testURL = try test.map { try InputPaths.file($0, "test file") } ?? InputPaths.file(first.test.path, "test file")
        guard try SHA256Hasher.hexDigest(ofFile: testURL) == first.test.sha256 else {
            throw UsageError("\(testURL.path): not the test file the parts ran on (sha256 differs)")
        }
        let questions = Array(try TestSet.load(testURL).questions.prefix(first.test.questions))
        var byPosition: [Int: SampleResult] = [:]
        for (_, part, rows) in loaded { for (p, r) in zip(part.positions, rows) { byPosition[p] = r } }
        guard byPosition.count == questions.count, questions.indices.allSatisfy({ byPosition[$0]?.id == questions[$0].id }) else {
            throw UsageError("the parts hold \(byPosition.count) rows for \(questions.count) questions of \(testURL.path), or rows of other questions")
        }
        let results = questions.indices.map { byPosition[$0]! }

        // The warnings of a single run, in its order.
        var warnings: [String] = []
        if let w = C3PORunner.promptEndWarning(questions) { warnings.append(w) }
        if C3PORunner.needsNeighbours(first.method) {
            if let w = C3PORunner.absentTaskWarning(questions, held: Set(first.heldTasks)) { warnings.append(w) }
            if first.neighborDraw == .similar {
                let hits = results.map { $0.neighbors.map { Neighbor(row: 0, similarity: $0.similarity) } }
                if let w = C3PORunner.similarityWarning(hits, floor: first.similarityFloor) { warnings.append(w) }
            }
        }
        if let w = C3PORunner.skippedWarning(results) { warnings.append(w) }
        for w in warnings { StandardError.warning(w) }

        if let out {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            var lines = Data()
            for r in results { lines.append(try enc.encode(r)); lines.append(0x0A) }
            try AtomicWrite.write(lines, to: out.url)
        }
        let summary = RunSummary(results: results, method: first.method, warnings: warnings)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try enc.encode(summary), as: UTF8.self))
        } else {
            print(RunCommand.table(summary))
        }
    }
}
