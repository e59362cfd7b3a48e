import C3POCore
import C3POModel
import Foundation
import XCTest

/// The committed testbed checkpoints load in our engine and answer their test splits as
/// transformers does (golden predictions written by Scripts/testbed/golden: the labels'
/// logits in float32 after loading the bf16 checkpoint). Datasets/testbed is the shipped
/// testbed (cloze: labels are the options' own number tokens); Datasets/testbed-control the
/// first one (letters), kept as the control.
final class TestbedParityTests: XCTestCase {
    struct Golden: Decodable {
        struct Row: Decodable {
            let id: String
            let token_ids: [Int]
            /// Per question (every golden file since the cloze testbed); the control's file has one letter set.
            let label_token_ids: [Int]?
            let label_logits: [Float]?
            let letter_logits: [Float]?
            let predicted_index: Int
            let answer_index: Int
        }
        let letter_token_ids: [Int]?
        let accuracy: Double
        let predictions: [Row]
    }

    static let datasets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Datasets")

    func testShippedTestbedMatchesTransformers() throws { try checkParity(Self.datasets.appendingPathComponent("testbed")) }

    func testControlTestbedMatchesTransformers() throws { try checkParity(Self.datasets.appendingPathComponent("testbed-control")) }

    /// The shipped testbed's promises (Datasets/testbed/README.md): held-out splits disjoint by
    /// question text from training and from each other; cloze labels that are the options'
    /// own single tokens, one shared answer vocabulary (1-9), four distinct options.
    func testShippedTestbedSplitsAndLabels() throws {
        let testbed = Self.datasets.appendingPathComponent("testbed")
        let model = try ModelLoader.load(directory: testbed.appendingPathComponent("model"))
        func texts(_ split: String) throws -> [MCQuestion] { try MCDataset.load(testbed.appendingPathComponent("\(split).jsonl")) }
        let train = try texts("train"), reference = try texts("reference"), test = try texts("test")
        let trainTexts = Set(train.map(\.question)), refTexts = Set(reference.map(\.question))
        XCTAssertTrue(trainTexts.isDisjoint(with: refTexts), "reference questions must be held out from training")
        XCTAssertTrue(trainTexts.isDisjoint(with: test.map(\.question)), "test questions must be held out from training")
        XCTAssertTrue(refTexts.isDisjoint(with: test.map(\.question)), "test and reference questions must differ")
        XCTAssertEqual(Set(test.map(\.question)).count, test.count)
        let vocabulary = Set((1...9).map(String.init))
        for q in reference + test {
            XCTAssertEqual(q.labels, q.choices, q.id)
            XCTAssertEqual(Set(q.choices).count, 4, "\(q.id): four distinct options")
            XCTAssertTrue(Set(q.choices).isSubset(of: vocabulary), "\(q.id): one shared answer vocabulary")
            XCTAssertEqual(q.prompt, "Question: \(q.question)\nAnswer:", q.id)
            XCTAssertEqual(try model.labelTokenIDs(q.labels).count, 4, q.id)
        }
        // A label that is more than one token is refused by name.
        XCTAssertThrowsError(try model.labelTokenIDs(["7", "Zorblat's"])) { e in
            XCTAssertTrue("\(e)".contains("Zorblat's") && "\(e)".contains("expected exactly one"), "\(e)")
        }
    }

    func checkParity(_ testbed: URL) throws {
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: testbed.appendingPathComponent("golden_predictions.json")))
        let model = try ModelLoader.load(directory: testbed.appendingPathComponent("model"))
        let questions = Dictionary(uniqueKeysWithValues: try MCDataset.load(testbed.appendingPathComponent("test.jsonl")).map { ($0.id, $0) })
        XCTAssertFalse(golden.predictions.isEmpty)

        var maxDiff: Float = 0, correct = 0, samePrediction = 0, nearTies = 0
        for row in golden.predictions {
            guard let q = questions[row.id] else { return XCTFail("golden id \(row.id) not in test.jsonl") }
            guard let expectedIDs = row.label_token_ids ?? golden.letter_token_ids,
                  let expected = row.label_logits ?? row.letter_logits else { return XCTFail("\(row.id): no label ids or logits") }
            XCTAssertEqual(try model.labelTokenIDs(q.labels), expectedIDs, "label token ids of \(row.id)")
            let ids = try model.encode(q.prompt)
            XCTAssertEqual(ids, row.token_ids, "token ids of \(row.id)")
            let state = try model.prefill(ids, override: nil)
            let logits = expectedIDs.map { state.logits[$0] }
            for (a, b) in zip(logits, expected) { maxDiff = max(maxDiff, abs(a - b)) }
            let predicted = logits.indices.max { logits[$0] < logits[$1] } ?? 0
            if predicted == row.predicted_index { samePrediction += 1 } else {
                // A different argmax is only excusable where transformers' top two are within tolerance.
                let sorted = expected.sorted(by: >)
                if sorted[0] - sorted[1] < 1e-3 { nearTies += 1 } else {
                    XCTFail("\(row.id): predicted \(predicted), transformers \(row.predicted_index), logits \(logits) vs \(expected)")
                }
            }
            if predicted == row.answer_index { correct += 1 }
        }
        print("\(testbed.lastPathComponent) parity: \(golden.predictions.count) questions, max |label logit diff| \(maxDiff), same prediction \(samePrediction), near ties \(nearTies)")
        XCTAssertLessThan(maxDiff, 1e-4, "label logits must match transformers (float32 compute)")
        let accuracy = Double(correct) / Double(golden.predictions.count)
        XCTAssertEqual(accuracy, golden.accuracy, accuracy: Double(nearTies) / Double(golden.predictions.count) + 1e-9)
    }
}
