import C3POCore
import Foundation
import XCTest

/// `c3po-index build --model` + `c3po-apply` end to end, as subprocesses, on the small
/// Qwen2-MoE (sharded, released layout, one dense layer) and Mixtral checkpoints of
/// Tests/Fixtures/families, over the first PIQA validation questions.
final class FamilyEndToEndTests: PIQAWorkspaceCase {
    static let root = PIQAWorkspace.root
    static func model(_ name: String) -> String { root.appendingPathComponent("Tests/Fixtures/families/\(name)").path }

    override func setUpWithError() throws { try makeWorkspace("c3po-family", bench: 0..<30, test: 30..<40) }

    /// Builds an index for `name`, runs kernel regression and the oracle on it; returns the manifest.
    func buildAndApply(_ name: String) throws -> [String: Any] {
        let b = try Binaries.run("c3po-index", ["build", "--model", Self.model(name), "--benchmark", path("bench.jsonl"),
                                                "--out", path("idx-\(name)"), "--quiet"])
        XCTAssertEqual(b.status, 0, "\(name): \(b.stderr)")
        for method in ["kernel", "oracle"] {
            let r = try Binaries.run("c3po-apply", ["--index", path("idx-\(name)"), "--model", Self.model(name), "--test", path("test.jsonl"),
                                                    "--method", method, "--out", path("\(name)-\(method).jsonl"), "--json", "--quiet"])
            XCTAssertEqual(r.status, 0, "\(name) \(method): \(r.stderr)")
            let s = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            // A prompt longer than the tiny checkpoint's 256 positions is skipped (and said so), never scored.
            XCTAssertEqual((s["total"] as? Int ?? 0) + (s["skipped"] as? Int ?? 0), 10, "\(name) \(method)")
            XCTAssertGreaterThanOrEqual(s["total"] as? Int ?? 0, 8, "\(name) \(method): questions answered")
            if method == "oracle" {
                XCTAssertGreaterThanOrEqual(s["c3po_accuracy"] as? Double ?? 0, s["base_accuracy"] as? Double ?? 1)
            }
        }
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("idx-\(name)/manifest.json")))) as? [String: Any])
    }

    func testQwen2MoeWithADenseLayer() throws {
        let m = try buildAndApply("qwen2_moe")
        let model = try XCTUnwrap(m["model"] as? [String: Any])
        XCTAssertEqual(model["family"] as? String, "qwen2_moe")
        let routed = try XCTUnwrap(model["routed_layers"] as? [Int], "an index records which layers have routing")
        XCTAssertFalse(routed.contains(1), "layer 1 is dense (mlp_only_layers)")
        let critical = try XCTUnwrap(m["critical_layers"] as? [Int])
        XCTAssertTrue(Set(critical).isSubset(of: routed), "critical layers are routed layers: \(critical)")
        // The index of one family is refused for another.
        let r = try Binaries.run("c3po-apply", ["--index", path("idx-qwen2_moe"), "--model", Self.model("mixtral"), "--test", path("test.jsonl"), "--quiet"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("refusing"), r.stderr)
    }

    func testInspectShowsDenseLayersAsNullAndRefusesOverridingThem() throws {
        let r = try Binaries.run("c3po-apply", ["inspect", "--model", Self.model("qwen2_moe"), "--text", "Question: What is 2+2?\nAnswer:", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let probs = try XCTUnwrap(obj["router_probs"] as? [Any])
        XCTAssertEqual(probs.count, 4, "one entry per decoder layer")
        XCTAssertTrue(probs[1] is NSNull, "layer 1 is dense: null")
        XCTAssertEqual((probs[0] as? [Double])?.count, 8)
        // An official-form override naming the dense layer is refused, by layer.
        let weights = Dictionary(uniqueKeysWithValues: (0..<8).map { ("expert_\($0)", 0.125) })
        let routing = ["layers": [["layer": 1, "routing_weights": weights]]]
        try JSONSerialization.data(withJSONObject: routing).write(to: dir.appendingPathComponent("dense.json"))
        let bad = try Binaries.run("c3po-apply", ["inspect", "--model", Self.model("qwen2_moe"), "--text", "Hello", "--routing", path("dense.json")])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("layer 1 is a dense layer"), bad.stderr)
    }

    func testMixtral() throws {
        let m = try buildAndApply("mixtral")
        XCTAssertEqual((m["model"] as? [String: Any])?["family"] as? String, "mixtral")
        XCTAssertNil((m["model"] as? [String: Any])?["routed_layers"], "every layer routed: nothing to list")
        XCTAssertEqual(((m["model"] as? [String: Any])?["tokenizer_sha256"] as? String)?.count, 64)
        // The same checkpoint with another tokenizer.json (here: one more line break) is refused.
        let copy = dir.appendingPathComponent("mixtral-copy")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.model("mixtral")), to: copy)
        let tok = copy.appendingPathComponent("tokenizer.json")
        try (try Data(contentsOf: tok) + Data("\n".utf8)).write(to: tok)
        let r = try Binaries.run("c3po-apply", ["--index", path("idx-mixtral"), "--model", copy.path, "--test", path("test.jsonl"), "--quiet"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("another tokenizer.json"), r.stderr)
    }
}
