import C3POCore
import Foundation
import XCTest

/// Checks the committed benchmark files against Datasets/counts.json and the schema.
final class DatasetsTests: XCTestCase {
    let datasets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Datasets")

    func testEveryFileMatchesCountsAndSchema() throws {
        let counts = try JSONDecoder().decode([String: Int].self, from: Data(contentsOf: datasets.appendingPathComponent("counts.json")))
        let required: [String: Int] = [
            "arc_challenge_test.jsonl": 1172, "arc_easy_test.jsonl": 2376, "openbookqa_test.jsonl": 500,
            "openbookqa_validation.jsonl": 500, "sciq_validation.jsonl": 1000, "csqa_validation.jsonl": 1221,
            "piqa_validation.jsonl": 1838, "socialiqa_validation.jsonl": 1954, "winogrande_validation.jsonl": 1267,
            "hellaswag_validation.jsonl": 10042,
        ]
        for (name, n) in required { XCTAssertEqual(counts[name], n, name) }
        XCTAssertNotNil(counts["arc_challenge_validation.jsonl"])
        for (name, expected) in counts.sorted(by: { $0.key < $1.key }) {
            let items = try MCDataset.load(datasets.appendingPathComponent(name)) // unique ids, answer_index in range
            XCTAssertEqual(items.count, expected, name)
            for q in items {
                XCTAssertEqual(q.labels, Array(["A", "B", "C", "D", "E", "F"].prefix(q.choices.count)), "\(name) \(q.id)")
                XCTAssertTrue(q.prompt.hasPrefix("Question:") || q.prompt.contains("\n A. "), "\(name) \(q.id)")
                XCTAssertTrue(q.prompt.hasSuffix("Answer:"), "\(name) \(q.id)")
                for (label, choice) in zip(q.labels, q.choices) {
                    XCTAssertTrue(q.prompt.contains("\n \(label). \(choice)"), "\(name) \(q.id): choice \(label) not in prompt")
                }
                XCTAssertFalse(q.question.isEmpty, "\(name) \(q.id)")
            }
        }
    }
}
