import C3POCore
import C3POModel
import Foundation
import XCTest

/// The engine's KV-cached decoding step against transformers' greedy `generate`
/// (Tests/Fixtures/moe/*/generate.json, Scripts/make-generate-fixtures), without and with a
/// routing override applied at the last position of every forward call, as the published
/// C3PO code applies its custom routing.
final class GenerationTests: XCTestCase {
    struct Golden: Decodable {
        struct Case: Decodable { var ids: [Int]; var override: [String: [Float]]?; var generated: [Int]; var text: String }
        var max_new_tokens: Int
        var cases: [Case]
    }

    func check(_ name: String) throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/moe/\(name)")
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: dir.appendingPathComponent("generate.json")))
        let model = try ModelLoader.load(directory: dir)
        var overridden = 0
        for (i, c) in golden.cases.enumerated() {
            let o = c.override.map { RoutingOverride(layers: Dictionary(uniqueKeysWithValues: $0.map { (Int($0.key)!, $0.value) })) }
            if o != nil { overridden += 1 }
            let ids = try model.generate(c.ids, maxNewTokens: golden.max_new_tokens, override: o)
            XCTAssertEqual(ids, c.generated, "\(name) case \(i)\(o == nil ? "" : " (override)")")
            XCTAssertEqual(model.text(of: ids), c.text, "\(name) case \(i)")
        }
        XCTAssertGreaterThan(overridden, 0)
        // The override changes what is generated in at least one case (the goldens can tell).
        let pairs = stride(from: 0, to: golden.cases.count - 1, by: 2).map { (golden.cases[$0].generated, golden.cases[$0 + 1].generated) }
        XCTAssertTrue(pairs.contains { $0.0 != $0.1 }, "\(name): no case where the override changes the generated tokens")
    }

    func testGreedyDecodingMatchesTransformersF32() throws { try check("olmoe-f32") }
    func testGreedyDecodingMatchesTransformersBF16() throws { try check("olmoe-bf16") }

    func testDecodeStepEqualsAPrefillOfTheLongerPrompt() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/moe/olmoe-f32")
        let model = try ModelLoader.load(directory: dir)
        let prompt = [5, 17, 42, 9, 3]
        let stepped = try model.decode(try model.prefill(prompt, override: nil), token: 77, override: nil)
        let whole = try model.prefill(prompt + [77], override: nil)
        let d = zip(stepped.logits, whole.logits).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(d, 1e-4, "decode step vs prefill: max |Δ| logits \(d)")
        XCTAssertEqual(stepped.tokens, prompt + [77])
        for (a, b) in zip(stepped.routerProbs, whole.routerProbs) {
            XCTAssertLessThanOrEqual(zip(a, b).map { abs($0 - $1) }.max() ?? 1, 1e-5)
        }
    }
}
