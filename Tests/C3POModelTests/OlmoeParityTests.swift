import C3POModel
import Foundation
import XCTest

/// Parity with transformers' OlmoeForCausalLM (float32, eager attention) on the tiny random
/// checkpoints written by Scripts/make-moe-fixtures.
final class OlmoeParityTests: XCTestCase {
    struct Golden: Decodable {
        struct Prompt: Decodable {
            var text: String
            var ids: [Int]
            var logits: [Float]
            var router_probs: [[Float]]
            var override: [String: [Float]]
            var override_logits: [Float]
        }
        var prompts: [Prompt]
    }

    static let tolerance: Float = 1e-4

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    func override(_ p: Golden.Prompt) -> RoutingOverride {
        RoutingOverride(layers: Dictionary(uniqueKeysWithValues: p.override.map { (Int($0.key)!, $0.value) }))
    }

    func checkParity(_ name: String) throws {
        let dir = MoEFixtures.directory.appendingPathComponent(name)
        let model = try ModelLoader.load(directory: dir)
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: dir.appendingPathComponent("golden.json")))
        var worstLogit: Float = 0, worstProb: Float = 0, worstOverride: Float = 0, worstTail: Float = 0
        for p in golden.prompts {
            let ids = try model.encode(p.text)
            XCTAssertEqual(ids, p.ids, "\(name): token ids of \(p.text.debugDescription)")
            let state = try model.prefill(p.ids, override: nil)
            worstLogit = max(worstLogit, maxDiff(state.logits, p.logits))
            XCTAssertEqual(state.routerProbs.count, p.router_probs.count)
            for (a, b) in zip(state.routerProbs, p.router_probs) { worstProb = max(worstProb, maxDiff(a, b)) }
            let o = override(p)
            let overridden = try model.prefill(p.ids, override: o)
            worstOverride = max(worstOverride, maxDiff(overridden.logits, p.override_logits))
            // The router distribution is recorded before the override replaces it: up to the first
            // overridden layer it is the un-overridden one (above, the hidden state has changed).
            let first = try XCTUnwrap(o.firstLayer)
            XCTAssertEqual(Array(overridden.routerProbs[...first]), Array(state.routerProbs[...first]))
            // Tail re-evaluation from the lowest overridden layer equals the full pass.
            let tail = try model.reevaluateTail(state, fromLayer: try XCTUnwrap(o.firstLayer), override: o, rows: nil)
            worstTail = max(worstTail, maxDiff(tail, overridden.logits))
            let rows = [0, 5, model.vocabularySize - 1]
            let some = try model.reevaluateTail(state, fromLayer: 0, override: o, rows: rows)
            XCTAssertLessThanOrEqual(maxDiff(some, rows.map { overridden.logits[$0] }), 1e-5)
        }
        print("\(name): max |Δ| logits \(worstLogit), router probs \(worstProb), override logits \(worstOverride), tail vs full \(worstTail)")
        XCTAssertLessThanOrEqual(worstLogit, Self.tolerance, "\(name): logits differ from transformers by \(worstLogit)")
        XCTAssertLessThanOrEqual(worstProb, Self.tolerance, "\(name): router probabilities differ by \(worstProb)")
        XCTAssertLessThanOrEqual(worstOverride, Self.tolerance, "\(name): override logits differ by \(worstOverride)")
        XCTAssertLessThanOrEqual(worstTail, 1e-5, "\(name): tail re-evaluation differs from the full pass by \(worstTail)")
    }

    func testGQANormTopKF32() throws { try checkParity("gqa-f32") }
    func testGQANormTopKBF16() throws { try checkParity("gqa-bf16") }
    func testOLMoELikeF32() throws { try checkParity("olmoe-f32") }
    func testOLMoELikeBF16() throws { try checkParity("olmoe-bf16") }

    func testLabelTokensAreSingleTokens() throws {
        let model = try ModelLoader.load(directory: MoEFixtures.directory.appendingPathComponent("olmoe-f32"))
        let ids = try model.labelTokenIDs(["A", "B"])
        XCTAssertEqual(ids, [try model.encode(" A"), try model.encode(" B")].map { $0[0] })
        XCTAssertThrowsError(try model.labelTokenIDs(["Zebra crossing"])) { XCTAssertTrue("\($0)".contains("Zebra")) }
    }
}
