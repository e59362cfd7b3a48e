import C3POCore
import C3POIndex
import C3POModel
import Foundation

/// One benchmark question run through the model at index-build time: its last-position
/// routing in every layer and whether the model's MC answer was right.
public struct RecordedQuestion: Codable, Sendable, Equatable {
    public var id: String
    public var task: String
    public var question: String
    public var prompt: String
    public var labels: [String]
    public var gold: String
    public var modelAnswer: String?
    public var correct: Bool
    /// [layers][experts]; empty when skipped.
    public var pathway: [[Float]]
    /// The dataset file it came from.
    public var source: String
    public var skipped: String?

    enum CodingKeys: String, CodingKey {
        case id, task, question, prompt, labels, gold, correct, pathway, source, skipped
        case modelAnswer = "model_answer"
    }
}

/// Runs the model on benchmark questions (prompt as stored; MC scoring of the label
/// tokens) and records pathways. Resumable: every question's record is appended to a
/// work file as soon as it is known (one JSON line, written through), and a restarted
/// build reads that file and continues after the last complete line.
public enum PathwayRecorder {
    /// `.NAME.work/records.jsonl` beside the index folder `out`: a stable name, so a
    /// restarted build of the same `--out` finds it.
    public static func workDirectory(for out: URL) -> URL {
        out.deletingLastPathComponent().appendingPathComponent(".\(out.lastPathComponent).work")
    }

    /// Records already in `workFile` (a torn last line, from a kill mid-write, is dropped).
    public static func readWork(_ workFile: URL) -> [RecordedQuestion] {
        guard let data = try? Data(contentsOf: workFile) else { return [] }
        var out: [RecordedQuestion] = []
        for line in data.split(separator: 0x0A) where !line.isEmpty {
            guard let r = try? JSONDecoding.decode(RecordedQuestion.self, from: Data(line)) else { break }
            out.append(r)
        }
        return out
    }

    /// The model source of an index build (`c3po-index build --model --benchmark`): every
    /// question of `benchmarks` run through `model` (resumably, in the work folder beside
    /// `out`), as a reference set for `IndexBuilder`. A question the model cannot run (an
    /// empty prompt, one longer than its context, labels that are not single tokens) is
    /// named on stderr and counted as an invalid record.
    public static func referenceSet(model: RoutedMoEModel, benchmarks: [URL], out: URL, shard: ShardSpec? = nil, progress: Bool = true,
                                    note: (String) -> Void = { StandardError.write($0 + "\n") }) throws -> ReferenceSet {
        var questions: [(question: MCQuestion, source: String)] = []
        var positions: [String: Int] = [:]
        var set = ReferenceSet(shard: shard)
        for url in benchmarks {
            let qs = try MCDataset.load(url)
            // With a shard, only its questions are run; each keeps its position in the whole sequence.
            for q in qs { if let p = set.claim(q.id) { questions.append((q, url.lastPathComponent)); positions[q.id] = p } }
            set.sources.append(.init(path: url.lastPathComponent, kind: "benchmark", sha256: try SHA256Hasher.hexDigest(ofFile: url), records: qs.count))
        }
        let recorded = try record(model: model, questions: questions,
                                  workFile: workDirectory(for: out).appendingPathComponent("records.jsonl"), progress: progress)
        for r in recorded {
            if let why = r.skipped {
                StandardError.warning("skipped \(r.id): \(why)")
                set.skippedInvalid += 1
                continue
            }
            let record = ReferenceRecord(row: positions[r.id] ?? 0, id: r.id, task: r.task, question: r.question, gold: r.gold, modelAnswer: r.modelAnswer,
                                         correct: r.correct, source: r.source, prompt: r.prompt, labels: r.labels)
            do {
                try set.append(record, pathway: r.pathway.flatMap { $0 }, layers: model.layerCount, experts: model.expertCount)
            } catch let p as ReferenceArchive.RecordProblem {
                throw ReferenceIndexError.badArgument("\(r.source): question '\(r.id)': \(p.reason)")
            }
        }
        note("recorded \(set.count) questions: \(set.records.filter(\.correct).count) correct, \(set.skippedInvalid) skipped")
        return set
    }

    public static func record(model: RoutedMoEModel, questions: [(question: MCQuestion, source: String)], workFile: URL,
                              progress: Bool = true) throws -> [RecordedQuestion] {
        let fm = FileManager.default
        try fm.createDirectory(at: workFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        // Only records of this build's questions (same id and prompt) are reused: a work
        // file left by an earlier, different build of the same --out is not trusted.
        let wanted = Dictionary(questions.map { ($0.question.id, $0.question.prompt) }, uniquingKeysWith: { a, _ in a })
        var done = readWork(workFile).filter { wanted[$0.id] == $0.prompt }
        // Rewrite the work file with the complete lines only, so appends follow a newline.
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var clean = Data()
        for r in done { clean.append(try enc.encode(r)); clean.append(0x0A) }
        try AtomicWrite.write(clean, to: workFile)
        let seen = Set(done.map(\.id))
        if !done.isEmpty, progress { StandardError.write("resuming: \(done.count) questions already recorded in \(workFile.path)\n") }
        guard let handle = FileHandle(forWritingAtPath: workFile.path) else {
            throw FileError.cannotWrite(workFile, "cannot open for appending")
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        let todo = questions.filter { !seen.contains($0.question.id) }
        let reporter = ProgressReporter("recording pathways", total: questions.count, enabled: progress)
        for (i, item) in todo.enumerated() {
            let q = item.question
            var r = RecordedQuestion(id: q.id, task: q.task, question: q.question, prompt: q.prompt, labels: q.labels,
                                     gold: q.goldLabel, modelAnswer: nil, correct: false, pathway: [], source: item.source, skipped: nil)
            do {
                let ids = try model.labelTokenIDs(q.labels)
                let tokens = try model.encode(q.prompt)
                if tokens.isEmpty {
                    r.skipped = "empty prompt"
                } else if tokens.count > model.maxContext {
                    r.skipped = "prompt of \(tokens.count) tokens is longer than the model's context (\(model.maxContext))"
                } else {
                    let state = try model.prefill(tokens, override: nil)
                    let answer = MCScoring.argmax(ids.map { state.logits[$0] })
                    r.modelAnswer = q.labels[answer]
                    r.correct = answer == q.answerIndex
                    r.pathway = state.routerProbs
                }
            } catch {
                r.skipped = "\(error)"
            }
            var line = try enc.encode(r)
            line.append(0x0A)
            try handle.write(contentsOf: line)
            done.append(r)
            reporter.update(seen.count + i + 1)
        }
        return done
    }
}
