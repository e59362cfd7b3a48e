import Foundation

/// One multiple-choice question in the schema of `Datasets/README.md`.
public struct MCQuestion: Codable, Sendable, Equatable {
    public var id: String
    public var task: String
    public var split: String
    /// The question stem alone (what the embedder sees).
    public var question: String
    public var choices: [String]
    public var labels: [String]
    public var answerIndex: Int
    /// The OLMES letter prompt (`Question: ...\n A. ...\nAnswer:`), what the model sees.
    public var prompt: String

    enum CodingKeys: String, CodingKey {
        case id, task, split, question, choices, labels, prompt
        case answerIndex = "answer_index"
    }

    public init(id: String, task: String, split: String, question: String, choices: [String], labels: [String], answerIndex: Int, prompt: String) {
        self.id = id; self.task = task; self.split = split; self.question = question
        self.choices = choices; self.labels = labels; self.answerIndex = answerIndex; self.prompt = prompt
    }

    public var goldLabel: String { labels[answerIndex] }
}

public enum MCDataset {
    /// Loads and validates a dataset file: ids unique, labels one per choice,
    /// answer_index in range.
    public static func load(_ url: URL) throws -> [MCQuestion] {
        let items = try JSONLines.decode(MCQuestion.self, from: url)
        guard !items.isEmpty else { throw JSONLines.LineError(url: url, line: 1, reason: "no questions in file") }
        var seen = Set<String>()
        for (i, q) in items.enumerated() {
            func fail(_ why: String) -> JSONLines.LineError {
                JSONLines.LineError(url: url, line: i + 1, reason: "question '\(q.id)': \(why)")
            }
            guard seen.insert(q.id).inserted else { throw fail("duplicate id") }
            guard q.labels.count == q.choices.count, !q.choices.isEmpty else {
                throw fail("\(q.labels.count) labels for \(q.choices.count) choices")
            }
            guard q.labels.indices.contains(q.answerIndex) else { throw fail("answer_index \(q.answerIndex) out of range") }
        }
        return items
    }
}
