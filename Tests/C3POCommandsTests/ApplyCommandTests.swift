import C3POCore
import Foundation
import XCTest

/// `c3po-index build --model/--benchmark` and `c3po-apply` end to end, as subprocesses, on
/// the MoE engine's tiny committed checkpoint (Tests/Fixtures/moe/olmoe-f32: 2 layers ×
/// 8 experts, top-2) and the first PIQA validation questions (labels A/B are single
/// tokens in its tokenizer). Needs the default embedder (C3POPaths.defaultEmbedder).
final class ApplyCommandTests: XCTestCase {
    static let root = PIQAWorkspace.root
    static let model = root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path
    static let otherModel = root.appendingPathComponent("Tests/Fixtures/moe/gqa-f32").path

    /// One index for the whole class (built once: the build runs the model and tunes).
    nonisolated(unsafe) static var shared: URL?
    var dir: URL { Self.shared ?? URL(fileURLWithPath: "/nonexistent") }

    override func setUpWithError() throws {
        try PIQAWorkspace.requireEmbedder()
        if Self.shared != nil { return }
        Self.shared = try PIQAWorkspace.make("c3po-apply", bench: 0..<40, test: 40..<52, indexModel: Self.model)
    }

    override class func tearDown() { if let d = shared { try? FileManager.default.removeItem(at: d) }; shared = nil }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func results(_ name: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path(name), encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    func testIndexCarriesModelIdentityAndTaskWeights() throws {
        let m = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("idx/manifest.json"))) as? [String: Any])
        let model = try XCTUnwrap(m["model"] as? [String: Any])
        XCTAssertEqual(model["layers"] as? Int, 2)
        XCTAssertEqual((model["config_sha256"] as? String)?.count, 64)
        XCTAssertEqual((m["mixing"] as? [String: Any])?["source"] as? String, "leave-one-out")
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("idx/task_weights.json")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path(".idx.work")), "the work file is removed after success")
    }

    func testAlphaOneAnswersEqualBase() throws {
        let r = try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", path("test.jsonl"),
                                                "--alpha", "1", "--out", path("out.jsonl"), "--json", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try results("out.jsonl")
        XCTAssertFalse(rows.filter { $0["skipped"] == nil }.isEmpty)
        for row in rows where row["skipped"] == nil {
            XCTAssertEqual(row["c3po_answer"] as? String, row["base_answer"] as? String, "\(row["id"] ?? "")")
        }
        let s = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(s["base_accuracy"] as? Double, s["c3po_accuracy"] as? Double)
        for key in ["total", "improved", "worsened", "by_task", "seconds_per_sample", "c3po_overhead_ratio", "method"] {
            XCTAssertNotNil(s[key], key)
        }
    }

    func testOracleIsLabelledAndEmitsWeights() throws {
        let r = try Binaries.run("c3po-apply", ["run", "--index", path("idx"), "--model", Self.model, "--test", path("test.jsonl"),
                                                "--method", "oracle", "--emit-weights", path("w.json"), "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("oracle (uses gold answers: upper bound, analysis only)"), r.stdout)
        let w = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("w.json")))) as? [String: Any])
        for (_, v) in w {
            let layers = try XCTUnwrap((v as? [String: Any])?["layers"] as? [[String: Any]])
            XCTAssertFalse(layers.isEmpty)
            XCTAssertEqual((layers[0]["routing_weights"] as? [String: Any])?.count, 8)
        }
    }

    func testIndexOfAnotherModelIsRefused() throws {
        let r = try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.otherModel, "--test", path("test.jsonl"), "--quiet"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("refusing"), r.stderr)
        XCTAssertTrue(r.stderr.contains("manifest.json"), r.stderr)
    }

    func testBadInputIsAClearError() throws {
        try Data().write(to: dir.appendingPathComponent("empty.jsonl"))
        let r = try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", path("empty.jsonl"), "--quiet"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("empty.jsonl"), r.stderr)
    }

    /// The emitted pathway of each sample, fed to `c3po-apply inspect --routing` with the
    /// sample's prompt, gives the C3PO answer (label ids from the checkpoint's own vocab).
    func testEmittedWeightsReproduceTheAnswerThroughInspect() throws {
        let r = try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", path("test.jsonl"),
                                                "--alpha", "0", "--out", path("k.jsonl"), "--emit-weights", path("k.json"), "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let vocab = try XCTUnwrap(((JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.model + "/tokenizer.json"))) as? [String: Any])?["model"] as? [String: Any])?["vocab"] as? [String: Int])
        let labelIDs = try ["ĠA", "ĠB"].map { try XCTUnwrap(vocab[$0]) }
        let prompts = Dictionary(uniqueKeysWithValues: try String(contentsOfFile: path("test.jsonl"), encoding: .utf8).split(separator: "\n").map {
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            return (try XCTUnwrap(o["id"] as? String), try XCTUnwrap(o["prompt"] as? String))
        })
        let weights = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("k.json")))) as? [String: Any])
        var checked = 0
        for row in try results("k.jsonl") where row["skipped"] == nil {
            let id = try XCTUnwrap(row["id"] as? String)
            let w = try XCTUnwrap(weights[id], "no emitted weights for \(id)")
            let file = path("w-\(id).json")
            try JSONSerialization.data(withJSONObject: w).write(to: URL(fileURLWithPath: file))
            let i = try Binaries.run("c3po-apply", ["inspect", "--model", Self.model, "--text", try XCTUnwrap(prompts[id]), "--routing", file, "--json"])
            XCTAssertEqual(i.status, 0, i.stderr)
            let logits = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(i.stdout.utf8)) as? [String: Any])?["logits"] as? [Double])
            let answer = logits[labelIDs[1]] > logits[labelIDs[0]] ? "B" : "A"
            XCTAssertEqual(answer, row["c3po_answer"] as? String, "\(id): logits A \(logits[labelIDs[0]]), B \(logits[labelIDs[1]])")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0)
    }
}
