import Foundation
import XCTest

/// `c3po-apply inspect` run as a subprocess on the tiny OLMoE fixture; expectations come from
/// transformers' goldens (Scripts/make-moe-fixtures).
final class InspectCommandTests: XCTestCase {
    static var fixture: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/moe/olmoe-f32")
    }

    struct Golden: Decodable {
        struct Prompt: Decodable { var text: String; var ids: [Int]; var logits: [Float]; var router_probs: [[Float]]; var override: [String: [Float]]; var override_logits: [Float] }
        var prompts: [Prompt]
    }
    struct Output: Decodable { var token_ids: [Int]; var logits: [Float]; var router_probs: [[Float]] }

    func golden() throws -> Golden.Prompt {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: Self.fixture.appendingPathComponent("golden.json"))).prompts[0]
    }

    func testJSONMatchesTransformers() throws {
        let g = try golden()
        let r = try Binaries.run("c3po-apply", ["inspect", "--model", Self.fixture.path, "--text", g.text, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try JSONDecoder().decode(Output.self, from: Data(r.stdout.utf8))
        XCTAssertEqual(out.token_ids, g.ids)
        let d = zip(out.logits, g.logits).map { abs($0 - $1) }.max() ?? .infinity
        print("inspect --json: max |Δ| logits \(d)")
        XCTAssertLessThanOrEqual(d, 1e-4)
        XCTAssertEqual(out.router_probs.count, g.router_probs.count)
    }

    func testRoutingFileAppliesTheOverride() throws {
        let g = try golden()
        // The override semantics normalise each layer to sum 1 (c3po-method.md); the official form must sum to 1.
        let layers = g.override.map { l, w -> [String: Any] in
            let sum = w.reduce(0, +)
            return ["layer": Int(l)!, "routing_weights": Dictionary(uniqueKeysWithValues: w.enumerated().map { ("expert_\($0.offset)", Double($0.element) / Double(sum)) })]
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("routing-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: ["layers": layers]).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let r = try Binaries.run("c3po-apply", ["inspect", "--model", Self.fixture.path, "--text", g.text, "--routing", file.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try JSONDecoder().decode(Output.self, from: Data(r.stdout.utf8))
        let d = zip(out.logits, g.override_logits).map { abs($0 - $1) }.max() ?? .infinity
        print("inspect --routing: max |Δ| override logits \(d)")
        XCTAssertLessThanOrEqual(d, 1e-4)
    }

    func testBadRoutingFileNamesTheKey() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("routing-\(UUID().uuidString).json")
        try Data(#"{"layers": [{"layer": 1, "routing_weights": {"expert_8": 1}}]}"#.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let r = try Binaries.run("c3po-apply", ["inspect", "--model", Self.fixture.path, "--text", "hi", "--routing", file.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.lowercased().contains("error:") && r.stderr.contains("expert_8"), r.stderr)
    }

    func testHumanReadableOutput() throws {
        let r = try Binaries.run("c3po-apply", ["inspect", "--model", Self.fixture.path, "--text", "The quick brown fox", "--top", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("layer 1:") && r.stdout.contains("expert_"), r.stdout)
    }
}
