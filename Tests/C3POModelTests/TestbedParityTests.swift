import C3POCore
import C3POModel
import Foundation
import XCTest

/// The committed testbed checkpoint loads in our engine and answers the test split as
/// transformers does (golden predictions written by Scripts/testbed/golden: letter logits
/// in float32 after loading the bf16 checkpoint).
final class TestbedParityTests: XCTestCase {
    struct Golden: Decodable {
        struct Row: Decodable {
            let id: String
            let token_ids: [Int]
            let letter_logits: [Float]
            let predicted_index: Int
            let answer_index: Int
        }
        let letter_token_ids: [Int]
        let accuracy: Double
        let predictions: [Row]
    }

    let testbed = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Datasets/testbed")

    func testTestAccuracyMatchesTransformers() throws {
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: testbed.appendingPathComponent("golden_predictions.json")))
        let model = try ModelLoader.load(directory: testbed.appendingPathComponent("model"))
        let questions = Dictionary(uniqueKeysWithValues: try MCDataset.load(testbed.appendingPathComponent("test.jsonl")).map { ($0.id, $0) })
        XCTAssertEqual(try model.labelTokenIDs(["A", "B", "C", "D"]), golden.letter_token_ids)

        var maxDiff: Float = 0, correct = 0, samePrediction = 0, nearTies = 0
        for row in golden.predictions {
            guard let q = questions[row.id] else { return XCTFail("golden id \(row.id) not in test.jsonl") }
            let ids = try model.encode(q.prompt)
            XCTAssertEqual(ids, row.token_ids, "token ids of \(row.id)")
            let state = try model.prefill(ids, override: nil)
            let logits = golden.letter_token_ids.map { state.logits[$0] }
            for (a, b) in zip(logits, row.letter_logits) { maxDiff = max(maxDiff, abs(a - b)) }
            let predicted = logits.indices.max { logits[$0] < logits[$1] } ?? 0
            if predicted == row.predicted_index { samePrediction += 1 } else {
                // A different argmax is only excusable where transformers' top two are within tolerance.
                let sorted = row.letter_logits.sorted(by: >)
                if sorted[0] - sorted[1] < 1e-3 { nearTies += 1 } else {
                    XCTFail("\(row.id): predicted \(predicted), transformers \(row.predicted_index), logits \(logits) vs \(row.letter_logits)")
                }
            }
            if predicted == row.answer_index { correct += 1 }
        }
        print("testbed parity: \(golden.predictions.count) questions, max |letter logit diff| \(maxDiff), same prediction \(samePrediction), near ties \(nearTies)")
        XCTAssertLessThan(maxDiff, 1e-4, "letter logits must match transformers (float32 compute)")
        let accuracy = Double(correct) / Double(golden.predictions.count)
        XCTAssertEqual(accuracy, golden.accuracy, accuracy: Double(nearTies) / Double(golden.predictions.count) + 1e-9)
    }
}
