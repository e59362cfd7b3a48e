import C3POCore
import C3POIndex
import Foundation
import XCTest

/// `c3po-index build|query|info` run as subprocesses on archives in the official format.
final class IndexCommandTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-index-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    static let questions: [(task: String, id: String, q: String, correct: Bool)] = [
        ("sciq", "0", "What gas do plants absorb from the air for photosynthesis?", true),
        ("sciq", "1", "Which organ pumps blood through the human body?", false),
        ("sciq", "2", "What is the boiling point of water at sea level in Celsius?", true),
        ("openbookqa", "7", "A magnet attracts which kind of metal object?", true),
        ("openbookqa", "12", "Frogs lay their eggs in which habitat usually?", true),
    ]

    /// Official-format JSON for the records of `task`; `weights` overrides layer 0 of record "2".
    static func file(task: String, layer0: String? = nil) -> Data {
        let recs = questions.filter { $0.task == task }.map { r -> String in
            let layers = (0..<2).map { l -> String in
                let w = (l == 0 && r.id == "2" ? layer0 : nil) ?? "\"expert_1\": 0.7, \"expert_0\": 0.2, \"expert_2\": 0.1"
                return "{\"layer\": \(l), \"routing_weights\": {\(w)}}"
            }.joined(separator: ", ")
            let prompt = "Question: \(r.q)\\n A. one\\n B. two\\nAnswer:"
            return "\"\(r.id)\": {\"input_text\": \"\(prompt)\", \"correct_answer\": \"A\", \"model_answer\": \"\(r.correct ? "A" : "B")\", \"is_correct\": \(r.correct), \"last_token_routing\": {\"layers\": [\(layers)]}}"
        }
        return Data(("{" + recs.joined(separator: ", ") + "}").utf8)
    }

    func archive(_ name: String = "reference.zip", layer0: String? = nil, extra: [(String, Data)] = []) throws -> String {
        let url = dir.appendingPathComponent(name)
        try ArchiveWriter.write([("README.md", Data("hi".utf8)),
                                 ("instruct_sciq_correct_routing_results.json", Self.file(task: "sciq", layer0: layer0)),
                                 ("instruct_openbookqa_correct_routing_results.json", Self.file(task: "openbookqa"))] + extra,
                                to: url, format: name.hasSuffix(".zip") ? .zip : .tarGzip)
        return url.path
    }

    func requireEmbedder() throws {
        guard FileManager.default.fileExists(atPath: C3POPaths.defaultEmbedder.appendingPathComponent("model.safetensors").path) else {
            throw XCTSkip("all-MiniLM-L6-v2 not installed at \(C3POPaths.defaultEmbedder.path) (Scripts/bootstrap)")
        }
    }

    func testBuildQueryInfoWithRealEmbedder() throws {
        try requireEmbedder()
        let out = dir.appendingPathComponent("Index/ref").path
        let b = try Binaries.run("c3po-index", ["build", "--reference", try archive(), "--out", out])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertTrue(b.stderr.contains("README.md: skipped"), b.stderr)

        let info = try Binaries.run("c3po-index", ["info", "--index", out, "--json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
        // Per-task counts equal the number of correct records.
        XCTAssertEqual(obj["tasks"] as? [String: Int], ["sciq": 2, "openbookqa": 2])
        XCTAssertEqual(obj["count"] as? Int, 4)
        XCTAssertEqual(obj["dimension"] as? Int, 384)
        XCTAssertEqual(obj["layers"] as? Int, 2)
        XCTAssertEqual(obj["experts"] as? Int, 3)
        XCTAssertEqual(obj["factory"] as? String, "Flat")
        XCTAssertTrue((obj["embedder"] as? String ?? "").contains("all-MiniLM-L6-v2"), "\(obj)")
        XCTAssertEqual((obj["mixing"] as? [String: Any])?["source"] as? String, "defaults")

        let q = Self.questions[3].q
        let r = try Binaries.run("c3po-index", ["query", "--index", out, "--k", "3", "--json", q])
        XCTAssertEqual(r.status, 0, r.stderr)
        let res = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let first = try XCTUnwrap((res["results"] as? [[String: Any]])?.first)
        XCTAssertEqual(first["query"] as? String, q)
        let hits = try XCTUnwrap(first["neighbors"] as? [[String: Any]])
        XCTAssertEqual(hits.count, 3)
        XCTAssertEqual(hits[0]["id"] as? String, "openbookqa_7")
        XCTAssertEqual(hits[0]["task"] as? String, "openbookqa")
        XCTAssertEqual(hits[0]["gold"] as? String, "A")
        XCTAssertEqual(hits[0]["question"] as? String, q)
        XCTAssertGreaterThanOrEqual((hits[0]["similarity"] as? Double) ?? 0, 0.999)

        // The overlap rule drops the record itself.
        let pruned = try Binaries.run("c3po-index", ["query", "--index", out, "--max-similarity", "0.95", "--json", q])
        XCTAssertFalse(pruned.stdout.contains("openbookqa_7"), pruned.stdout)

        // An embedder with another identity is refused.
        let bad = try Binaries.run("c3po-index", ["query", "--index", out, "--embedder", dir.path, q])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.lowercased().contains("error:"), bad.stderr)

        // --search-parameter: malformed is refused; one faiss does not know for a Flat index
        // surfaces faiss's refusal.
        let malformed = try Binaries.run("c3po-index", ["query", "--index", out, "--search-parameter", "nprobe", q])
        XCTAssertNotEqual(malformed.status, 0)
        XCTAssertTrue(malformed.stderr.contains("NAME=VALUE"), malformed.stderr)
        let unknown = try Binaries.run("c3po-index", ["query", "--index", out, "--search-parameter", "bogus=3", q])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("bogus"), unknown.stderr)
    }

    /// Memory bounded by the work, not by the input: a 600 MB entry (compressed to well under 1 MB)
    /// is refused by its declared size before it is read whole, naming the flag that raises the cap.
    func testAHugeEntryIsRefusedBeforeItIsRead() throws {
        let big = dir.appendingPathComponent("bomb.zip")
        try ArchiveWriter.write([("x_sciq_routing_results.json", Data(count: 600 << 20))], to: big, format: .zip)
        XCTAssertLessThan(try FileManager.default.attributesOfItem(atPath: big.path)[.size] as? Int ?? .max, 4 << 20)
        let out = dir.appendingPathComponent("bomb-idx").path
        let time = URL(fileURLWithPath: "/usr/bin/time")
        let measured = FileManager.default.isExecutableFile(atPath: time.path)
        let args = ["build", "--reference", big.path, "--out", out, "--embeddings", dir.appendingPathComponent("none.npy").path]
        let r = measured
            ? try Subprocess.run(time, ["-f", "peak-rss-kb %M", Binaries.directory.appendingPathComponent("c3po-index").path] + args)
            : try Binaries.run("c3po-index", args)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("entry 'x_sciq_routing_results.json' exceeds the entry size limit of \(512 << 20) bytes")
                      && r.stderr.contains("--max-entry-bytes"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        if measured, let line = r.stderr.split(separator: "\n").last(where: { $0.hasPrefix("peak-rss-kb ") }),
           let kb = Int(line.dropFirst("peak-rss-kb ".count)) {
            print("600 MB entry refused: peak RSS \(kb / 1024) MB")
            XCTAssertLessThan(kb, 200 * 1024, "peak RSS \(kb / 1024) MB")
        }
    }

    func testHostileAndInvalidInputsFailAndLeaveOlderIndexIntact() throws {
        // An older index built from precomputed embeddings (no embedder needed).
        let out = dir.appendingPathComponent("idx").path
        let emb = dir.appendingPathComponent("e.npy")
        try NPY.write(float32: (0..<16).map { Float($0 % 5 == 0 ? 1 : 0) + 0.01 * Float($0) }, shape: [4, 4], to: emb)
        let ok = try Binaries.run("c3po-index", ["build", "--reference", try archive(), "--out", out, "--embeddings", emb.path, "--quiet"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let manifest = try Data(contentsOf: URL(fileURLWithPath: out).appendingPathComponent("manifest.json"))

        func refuse(_ args: [String], _ fragment: String, line: UInt = #line) throws {
            let r = try Binaries.run("c3po-index", ["build", "--out", out, "--embeddings", emb.path] + args)
            XCTAssertNotEqual(r.status, 0, line: line)
            XCTAssertTrue(r.stderr.lowercased().contains("error:") && r.stderr.contains(fragment), r.stderr, line: line)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out).appendingPathComponent("manifest.json")), manifest, line: line)
        }
        try refuse(["--reference", try archive("sum.zip", layer0: "\"expert_0\": 0.5, \"expert_1\": 0.2, \"expert_2\": 0.2")], "record 'sciq_2': layer 0: routing weights sum to")
        try refuse(["--reference", try archive("nan.zip", layer0: "\"expert_0\": NaN, \"expert_1\": 0.5, \"expert_2\": 0.5")], "not finite")
        try refuse(["--reference", try archive("miss.zip", layer0: "\"expert_0\": 0.5, \"expert_1\": 0.5")], "layer 0 has 2 experts")
        try refuse(["--reference", try archive("dotdot.tar.gz", extra: [("../evil.json", Data("{}".utf8))])], "refused entry '../evil.json'")
        try refuse(["--reference", try archive("abs.tar.gz", extra: [("/etc/evil.json", Data("{}".utf8))])], "refused entry '/etc/evil.json'")
        try refuse(["--reference", try archive("big.zip"), "--max-archive-bytes", "200"], "exceeds the entry size limit of 200 bytes")
        try refuse(["--reference", try archive("shape.zip", extra: [("x_arc_routing_results.json", Data("[]".utf8))])], "x_arc_routing_results.json: wrong JSON shape")
        let whole = try Data(contentsOf: URL(fileURLWithPath: try archive("whole.zip")))
        let cut = dir.appendingPathComponent("cut.zip")
        try whole.prefix(whole.count * 2 / 3).write(to: cut)
        try refuse(["--reference", cut.path], "truncated or corrupt")
        try refuse(["--reference", try archive(), "--factory", "IVF64,Flat"], "training points")
        try refuse(["--reference", try archive(), "--factory", "Bogus"], "Bogus")

        // --skip-invalid: the bad record is named on stderr and counted in the manifest.
        let emb3 = dir.appendingPathComponent("e3.npy")
        try NPY.write(float32: (0..<12).map { Float($0 % 4 == 0 ? 1 : 0) + 0.01 }, shape: [3, 4], to: emb3)
        let out2 = dir.appendingPathComponent("skip").path
        let s = try Binaries.run("c3po-index", ["build", "--reference", try archive("sum2.zip", layer0: "\"expert_0\": 0.9, \"expert_1\": 0.9, \"expert_2\": 0.1"),
                                                "--out", out2, "--embeddings", emb3.path, "--skip-invalid"])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stderr.contains("skipped:") && s.stderr.contains("sciq_2"), s.stderr)
        let info = try Binaries.run("c3po-index", ["info", "--index", out2, "--json"])
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((obj["filters"] as? [String: Any])?["skipped_invalid"] as? Int, 1)
        XCTAssertEqual(obj["tasks"] as? [String: Int], ["sciq": 1, "openbookqa": 2])
    }
}
