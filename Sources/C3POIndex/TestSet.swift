import C3POCore
import Foundation

/// Test sets in either form `c3po-apply --test` reads: the dataset schema (JSONL,
/// Datasets/README.md), or the published evaluation format: a JSON object `case_id → record`
/// in the reference record format (c3po-method.md), or an archive (.zip, .tar, .tar.gz) of such
/// files, read by the archive reader with its rules.
public enum TestSet {
    public struct Loaded: Sendable {
        public var questions: [MCQuestion]
        /// The answer each record says the model gave (`model_answer`), by question id; empty for JSONL.
        public var recordedAnswers: [String: String]
    }

    /// Whether `url` is in the published format (by its name: .json or an archive).
    public static func isOfficial(_ url: URL) -> Bool {
        let name = url.lastPathComponent.lowercased()
        return [".json", ".zip", ".tar", ".tar.gz", ".tgz"].contains { name.hasSuffix($0) }
    }

    public static func load(_ url: URL) throws -> Loaded {
        guard isOfficial(url) else { return Loaded(questions: try MCDataset.load(url), recordedAnswers: [:]) }
        var set = ReferenceSet()
        let note: (String) -> Void = { _ in }
        if url.lastPathComponent.lowercased().hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: url.path) else { throw FileError.missing(url, "test file") }
            let name = url.lastPathComponent
            let read = try ReferenceArchive.readFile(data, file: name, task: ReferenceArchive.task(ofFileNamed: name) ?? "test",
                                                     options: .init(), into: &set, note: note)
            guard read > 0 else { throw ReferenceIndexError.invalid(url, "no records (expected an object case_id → record)") }
        } else {
            set = try IndexBuilder.load(archives: [url], options: .init(), note: note)
        }
        var questions: [MCQuestion] = [], recorded: [String: String] = [:]
        for r in set.records {
            // The published code reads letters A-D; a prompt's own option lines give its label set.
            let labels = r.labels ?? ["A", "B", "C", "D"]
            guard let gold = labels.firstIndex(of: r.gold.uppercased()) else {
                throw ReferenceIndexError.invalid(url, "record '\(r.id)' (\(r.source)): 'correct_answer' \"\(r.gold)\" is none of the prompt's labels \(labels.joined(separator: ", "))")
            }
            questions.append(MCQuestion(id: r.id, task: r.task, split: "test", question: r.question, choices: labels, labels: labels,
                                        answerIndex: gold, prompt: r.prompt ?? r.question))
            if let a = r.modelAnswer { recorded[r.id] = a.trimmingCharacters(in: .whitespaces).uppercased() }
        }
        guard !questions.isEmpty else { throw ReferenceIndexError.invalid(url, "no test records") }
        return Loaded(questions: questions, recordedAnswers: recorded)
    }
}
