import C3POCore
import Foundation
import XCTest

/// The published procedure's settings and formats, end to end on the engine's tiny checkpoint
/// and PIQA questions (their prompts show options A./B., the labels the published rules read):
/// `build --embed-text prompt`, `c3po-apply --preset official`, `--answer generate`, `--test`
/// in the published evaluation format.
final class FidelityTests: PIQAWorkspaceCase {
    static let model = PIQAWorkspace.root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path

    override func setUpWithError() throws {
        // The test set is part of the benchmark: without the overlap cut a question finds itself.
        try makeWorkspace("c3po-fidelity", bench: 0..<24, test: 0..<6)
        for (name, text) in [("prompt-idx", "prompt"), ("question-idx", "question")] {
            let b = try Binaries.run("c3po-index", ["build", "--model", Self.model, "--benchmark", path("bench.jsonl"),
                                                    "--out", path(name), "--embed-text", text, "--quiet"])
            XCTAssertEqual(b.status, 0, b.stderr)
        }
    }


    func json(_ r: Binaries.Result) throws -> [String: Any] {
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
    }

    func rows(_ name: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path(name), encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    func bench() throws -> [[String: Any]] { try rows("bench.jsonl") }

    func testEmbedTextIsRecordedAndHonouredByQuery() throws {
        let m = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("prompt-idx/manifest.json")))) as? [String: Any])
        XCTAssertEqual(m["embed_text"] as? String, "prompt")
        let q = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("question-idx/manifest.json")))) as? [String: Any])
        XCTAssertNil(q["embed_text"], "the default writes nothing new")
        // A question the model answered (a reference of both indices).
        let refs = try String(contentsOfFile: path("prompt-idx/records.jsonl"), encoding: .utf8).split(separator: "\n")
        let refID = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(try XCTUnwrap(refs.first).utf8)) as? [String: Any])?["id"] as? String)
        let first = try XCTUnwrap(bench().first { $0["id"] as? String == refID })
        let prompt = try XCTUnwrap(first["prompt"] as? String), question = try XCTUnwrap(first["question"] as? String)
        func top(_ index: String, _ text: String) throws -> Double {
            let o = try json(try Binaries.run("c3po-index", ["query", "--index", path(index), "--json", "--k", "1", text]))
            let hit = try XCTUnwrap(((o["results"] as? [[String: Any]])?.first?["neighbors"] as? [[String: Any]])?.first)
            XCTAssertEqual(hit["id"] as? String, first["id"] as? String)
            return try XCTUnwrap(hit["similarity"] as? Double)
        }
        // A prompt index embedded whole prompts: the prompt, as given, finds itself exactly; its question does not.
        XCTAssertGreaterThan(try top("prompt-idx", prompt), 0.9999)
        XCTAssertLessThan(try top("prompt-idx", question), 0.99)
        // A question index reduces the query prompt to its question: exact again.
        XCTAssertGreaterThan(try top("question-idx", prompt), 0.9999)
    }

    func testOfficialPresetSettingsAreEchoedOverridableAndNeedAPromptIndex() throws {
        let base = ["--model", Self.model, "--test", path("test.jsonl"), "--quiet", "--json"]
        let refused = try Binaries.run("c3po-apply", ["--index", path("question-idx"), "--preset", "official"] + base)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("--embed-text prompt"), refused.stderr)

        let s = try json(try Binaries.run("c3po-apply", ["--index", path("prompt-idx"), "--preset", "official", "--answer", "letter",
                                                         "--out", path("official.jsonl")] + base))
        let settings = try XCTUnwrap(s["settings"] as? [String: String])
        XCTAssertEqual(settings["preset"], "official"); XCTAssertEqual(settings["method"], "neighbors")
        XCTAssertEqual(settings["k"], "3"); XCTAssertEqual(settings["max_similarity"], "none")
        XCTAssertEqual(settings["answer"], "letter", "an option given overrides the preset's")
        XCTAssertTrue(settings["instruction"]?.hasPrefix("Answer with only a single letter") ?? false)
        // No overlap cut: every test question (also a reference, when answered correctly) finds itself first.
        for r in try rows("official.jsonl") {
            let neighbours = try XCTUnwrap(r["neighbors"] as? [[String: Any]])
            XCTAssertEqual(neighbours.count, 3)
            if neighbours.first?["id"] as? String == r["id"] as? String {
                XCTAssertGreaterThan(neighbours.first?["similarity"] as? Double ?? 0, 0.9999)
            }
        }
        XCTAssertTrue(try rows("official.jsonl").contains { ($0["neighbors"] as? [[String: Any]])?.first?["id"] as? String == $0["id"] as? String })
        // The default run cuts them (0.95).
        _ = try json(try Binaries.run("c3po-apply", ["--index", path("prompt-idx"), "--out", path("default.jsonl")] + base))
        for r in try rows("default.jsonl") {
            XCTAssertFalse((r["neighbors"] as? [[String: Any]] ?? []).contains { $0["id"] as? String == r["id"] as? String })
        }
    }

    func testGenerateReadsTheLetterFromTheText() throws {
        let s = try json(try Binaries.run("c3po-apply", ["--index", path("prompt-idx"), "--preset", "official", "--max-new-tokens", "4",
                                                         "--model", Self.model, "--test", path("test.jsonl"), "--quiet", "--json",
                                                         "--out", path("gen.jsonl")]))
        XCTAssertEqual((s["settings"] as? [String: String])?["answer"], "generate (up to 4 tokens)")
        for r in try rows("gen.jsonl") where r["skipped"] == nil {
            let text = try XCTUnwrap(r["c3po_text"] as? String), baseText = try XCTUnwrap(r["base_text"] as? String)
            XCTAssertTrue(text.hasPrefix("Answer with only a single letter"), text)
            XCTAssertTrue(["", "A", "B", "C", "D"].contains(r["c3po_answer"] as? String ?? "?"))
            XCTAssertTrue(baseText.hasPrefix("Answer with only a single letter"), baseText)
        }
    }

    func testPublishedEvaluationFormatAsTestSet() throws {
        // The test questions as a JSON object case_id -> record (uniform routing: it is not read).
        var file: [String: Any] = [:]
        let routing = ["layers": (0..<2).map { l in ["layer": l, "routing_weights": Dictionary(uniqueKeysWithValues: (0..<8).map { ("expert_\($0)", 0.125) })] }]
        for (i, q) in try rows("test.jsonl").enumerated() {
            let labels = try XCTUnwrap(q["labels"] as? [String]), gold = try XCTUnwrap(q["answer_index"] as? Int)
            file["\(i)"] = ["input_text": q["prompt"] ?? "", "correct_answer": labels[gold], "model_answer": "A",
                            "is_correct": labels[gold] == "A", "last_token_routing": routing] as [String: Any]
        }
        try JSONSerialization.data(withJSONObject: file).write(to: URL(fileURLWithPath: path("x_piqa_eval_routing_results.json")))
        let args = ["--index", path("question-idx"), "--model", Self.model, "--quiet", "--json"]
        let a = try json(try Binaries.run("c3po-apply", args + ["--test", path("x_piqa_eval_routing_results.json"), "--out", path("a.jsonl")]))
        let b = try json(try Binaries.run("c3po-apply", args + ["--test", path("test.jsonl"), "--out", path("b.jsonl")]))
        XCTAssertEqual((a["total"] as? Int ?? 0) + (a["skipped"] as? Int ?? 0), 6)
        XCTAssertEqual(a["total"] as? Int, b["total"] as? Int)
        XCTAssertEqual(a["base_accuracy"] as? Double, b["base_accuracy"] as? Double)
        let ra = try rows("a.jsonl"), rb = try rows("b.jsonl")
        XCTAssertEqual(ra.map { $0["id"] as? String }, (0..<6).map { "piqa_\($0)" })
        XCTAssertEqual(ra.map { $0["base_answer"] as? String }, rb.map { $0["base_answer"] as? String }, "the same prompts, labels and gold")
        XCTAssertEqual(ra.map { $0["gold"] as? String }, rb.map { $0["gold"] as? String })
        XCTAssertTrue(ra.allSatisfy { $0["recorded_answer"] as? String == "A" })
        XCTAssertTrue(rb.allSatisfy { $0["recorded_answer"] == nil })
    }
}
