import C3POModel
import Foundation
import XCTest

/// Parity of every MoE family with its reference implementation (transformers 5 for
/// qwen2_moe, qwen3_moe, mixtral; the published modeling_deepseek.py for deepseek) on the tiny
/// random bf16 checkpoints written by Scripts/make-family-fixtures: logits, router
/// probabilities of every routed layer, and logits under a routing override, all at the last
/// position; dense layers have no router (null in the golden, a zero row here).
final class FamilyParityTests: XCTestCase {
    struct Golden: Decodable {
        struct Prompt: Decodable {
            var text: String
            var ids: [Int]
            var logits: [Float]
            var router_probs: [[Float]?]
            var override: [String: [Float]]
            var override_logits: [Float]
        }
        var family: String
        var routed_layers: [Int]
        var prompts: [Prompt]
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/families")

    static let logitTolerance: Float = 1e-3
    static let routerTolerance: Float = 1e-4

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    func checkParity(_ name: String, family: String) throws {
        let dir = Self.directory.appendingPathComponent(name)
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: dir.appendingPathComponent("golden.json")))
        XCTAssertEqual(golden.family, family)
        let model = try ModelLoader.load(directory: dir)
        XCTAssertEqual(model.identity.family, family)
        XCTAssertEqual(model.routedLayers, golden.routed_layers, "\(name): which layers have a router")
        var worstLogit: Float = 0, worstProb: Float = 0, worstOverride: Float = 0, worstTail: Float = 0
        for p in golden.prompts {
            XCTAssertEqual(try model.encode(p.text), p.ids, "\(name): token ids of \(p.text.debugDescription)")
            let state = try model.prefill(p.ids, override: nil)
            worstLogit = max(worstLogit, maxDiff(state.logits, p.logits))
            XCTAssertEqual(state.routerProbs.count, p.router_probs.count, "\(name): one router row per decoder layer")
            for (l, (ours, theirs)) in zip(state.routerProbs, p.router_probs).enumerated() {
                if let theirs {
                    worstProb = max(worstProb, maxDiff(ours, theirs))
                } else {
                    XCTAssertFalse(model.routedLayers.contains(l), "\(name): layer \(l) is dense in the reference")
                    XCTAssertTrue(ours.allSatisfy { $0 == 0 }, "\(name): a dense layer's row is zeros")
                }
            }
            let o = RoutingOverride(layers: Dictionary(uniqueKeysWithValues: p.override.map { (Int($0.key)!, $0.value) }))
            let overridden = try model.prefill(p.ids, override: o)
            worstOverride = max(worstOverride, maxDiff(overridden.logits, p.override_logits))
            let first = try XCTUnwrap(o.firstLayer)
            let tail = try model.reevaluateTail(state, fromLayer: first, override: o, rows: nil)
            worstTail = max(worstTail, maxDiff(tail, overridden.logits))
        }
        print("\(name): max |Δ| logits \(worstLogit), router probs \(worstProb), override logits \(worstOverride), tail vs full \(worstTail)")
        XCTAssertLessThanOrEqual(worstLogit, Self.logitTolerance, "\(name): logits")
        XCTAssertLessThanOrEqual(worstProb, Self.routerTolerance, "\(name): router probabilities")
        XCTAssertLessThanOrEqual(worstOverride, Self.logitTolerance, "\(name): logits under the override")
        XCTAssertLessThanOrEqual(worstTail, 1e-4, "\(name): tail re-evaluation equals the full pass")

        // An override naming a dense layer is refused, by layer.
        if let dense = (0..<model.layerCount).first(where: { !model.routedLayers.contains($0) }) {
            let bad = RoutingOverride(layers: [dense: [Float](repeating: 1, count: model.expertCount)])
            XCTAssertThrowsError(try model.prefill(golden.prompts[0].ids, override: bad)) { e in
                XCTAssertTrue("\(e)".contains("layer \(dense) is a dense layer"), "\(e)")
            }
        }
    }

    func testQwen2Moe() throws { try checkParity("qwen2_moe", family: "qwen2_moe") }
    func testQwen3Moe() throws { try checkParity("qwen3_moe", family: "qwen3_moe") }
    func testMixtral() throws { try checkParity("mixtral", family: "mixtral") }
    func testDeepseekMoe() throws { try checkParity("deepseek", family: "deepseek") }
}
