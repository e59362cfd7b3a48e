import C3POCore
import C3POIndex
import Foundation
import XCTest

/// One build path for both sources of `c3po-index build` (IndexBuilder): a `--model` build
/// deduplicates like an archive build, and an archive holding exactly the pathways a
/// `--model` build recorded gives the same folder, apart from what the sources carry.
/// On the engine's tiny checkpoint (Tests/Fixtures/moe/olmoe-f32) and PIQA questions
/// (their prompts show options A./B., so an archive record's labels are the dataset's).
final class BuildSourcesTests: PIQAWorkspaceCase {
    static let model = PIQAWorkspace.root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path

    override func setUpWithError() throws { try makeWorkspace("c3po-sources", bench: 0..<24, test: 24..<25) }

    func build(_ arguments: [String]) throws {
        let r = try Binaries.run("c3po-index", ["build"] + arguments + ["--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func manifest(_ index: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("\(index)/manifest.json")))) as? [String: Any])
    }

    func testModelBuildDeduplicates() throws {
        // The first 8 questions again under other ids: exact copies (cosine 1), later in row order.
        let lines = try String(contentsOfFile: path("bench.jsonl"), encoding: .utf8).split(separator: "\n")
        let copies = try lines.prefix(8).map { line -> String in
            var obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            obj["id"] = "\(obj["id"] ?? "")-copy"
            return String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self)
        }
        try ((lines.map(String.init) + copies).joined(separator: "\n") + "\n").write(toFile: path("dup.jsonl"), atomically: true, encoding: .utf8)
        try build(["--model", Self.model, "--benchmark", path("dup.jsonl"), "--out", path("plain")])
        try build(["--model", Self.model, "--benchmark", path("dup.jsonl"), "--out", path("dedup"), "--dedup", "0.95"])

        let plain = try ReferenceIndex(directory: dir.appendingPathComponent("plain"))
        let dedup = try ReferenceIndex(directory: dir.appendingPathComponent("dedup"))
        let copiesKept = plain.records.filter { $0.id.hasSuffix("-copy") }.count
        XCTAssertGreaterThan(copiesKept, 0, "some copies of correctly answered questions are references without dedup")
        XCTAssertEqual(dedup.records.filter { $0.id.hasSuffix("-copy") }.count, 0, "every copy of a kept question is dropped")
        XCTAssertEqual(dedup.count, plain.count - copiesKept)
        XCTAssertEqual(dedup.records.map(\.id), plain.records.filter { !$0.id.hasSuffix("-copy") }.map(\.id))
        XCTAssertEqual(dedup.manifest.filters.deduplicated, copiesKept)
        XCTAssertEqual(dedup.manifest.filters.dedup ?? 0, 0.95, accuracy: 1e-6)
        XCTAssertEqual(plain.manifest.filters.deduplicated, 0)
        XCTAssertNil(plain.manifest.filters.dedup)
        // The surviving rows keep their pathways and vectors.
        for (row, r) in dedup.records.enumerated() {
            let p = try XCTUnwrap(plain.records.firstIndex { $0.id == r.id })
            XCTAssertEqual(Array(dedup.pathway(row: row)), Array(plain.pathway(row: p)), r.id)
        }
    }

    func testArchiveOfTheRecordedPathwaysGivesTheSameFolder() throws {
        // Every recorded question is kept (--include-incorrect), so the model build's folder holds
        // all of them; they are written back as an official archive and built with --reference.
        // Both with their references' prefix states: the model build's own, the archive build's by --states-model.
        try build(["--model", Self.model, "--benchmark", path("bench.jsonl"), "--out", path("from-model"), "--include-incorrect", "--cache-states"])
        let built = try ReferenceIndex(directory: dir.appendingPathComponent("from-model"))
        var file: [String: Any] = [:]
        for (row, r) in built.records.enumerated() {
            let pathway = built.pathway(row: row)
            let layers: [[String: Any]] = (0..<built.layers).map { l in
                let w = pathway[(pathway.startIndex + l * built.experts)..<(pathway.startIndex + (l + 1) * built.experts)]
                return ["layer": l, "routing_weights": Dictionary(uniqueKeysWithValues: w.enumerated().map { ("expert_\($0.offset)", Double($0.element)) })]
            }
            file[String(row)] = ["input_text": r.prompt ?? "", "correct_answer": r.gold, "model_answer": r.modelAnswer ?? NSNull(),
                                 "is_correct": r.correct, "last_token_routing": ["layers": layers]] as [String: Any]
        }
        let archive = dir.appendingPathComponent("reference.zip")
        try ArchiveWriter.write([("instruct_piqa_routing_results.json", try JSONSerialization.data(withJSONObject: file))], to: archive, format: .zip)
        try build(["--reference", archive.path, "--out", path("from-archive"), "--include-incorrect", "--cache-states", "--states-model", Self.model])

        // The data files are byte-identical: same rows, vectors, pathways, FAISS index and stored states.
        let stateFiles = ["states_rows.npy", "states_tokens.npy", "states_kv.npy", "states_inputs.npy"]
        for name in ["embeddings.npy", "pathways.npy", "index.faiss"] + stateFiles {
            XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("from-model/\(name)")),
                           try Data(contentsOf: dir.appendingPathComponent("from-archive/\(name)")), name)
        }
        // Records differ only in id and source (labels: the prompt's options are the dataset's A/B).
        let fromArchive = try ReferenceIndex(directory: dir.appendingPathComponent("from-archive"))
        XCTAssertEqual(fromArchive.count, built.count)
        for (a, b) in zip(built.records, fromArchive.records) {
            var x = a, y = b
            x.id = ""; y.id = ""; x.source = ""; y.source = ""
            XCTAssertEqual(x, y, "\(a.id) / \(b.id)")
        }
        // The manifests differ only in what the sources carry.
        var m1 = try manifest("from-model"), m2 = try manifest("from-archive")
        // `files`: records.jsonl (ids, sources) and task_weights.json differ; the data files' entries agree.
        let files1 = try XCTUnwrap(m1["files"] as? [String: Any]), files2 = try XCTUnwrap(m2["files"] as? [String: Any])
        for name in ["embeddings.npy", "pathways.npy", "index.faiss"] + stateFiles {
            XCTAssertEqual(NSDictionary(dictionary: try XCTUnwrap(files1[name] as? [String: Any])),
                           NSDictionary(dictionary: try XCTUnwrap(files2[name] as? [String: Any])), name)
        }
        for key in ["created", "model", "sources", "mixing", "files"] { m1[key] = nil; m2[key] = nil }
        // The questions the model could not run (prompts past the tiny checkpoint's context) are
        // counted by the model source; the archive written from the folder never held them.
        var f1 = try XCTUnwrap(m1["filters"] as? [String: Any]), f2 = try XCTUnwrap(m2["filters"] as? [String: Any])
        XCTAssertEqual(f2["skipped_invalid"] as? Int, 0)
        XCTAssertEqual((f1["skipped_invalid"] as? Int ?? 0) + built.count, 24, "every question recorded or counted as skipped")
        f1["skipped_invalid"] = nil; f2["skipped_invalid"] = nil
        m1["filters"] = f1; m2["filters"] = f2
        XCTAssertEqual(NSDictionary(dictionary: m1), NSDictionary(dictionary: m2))
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("from-model/task_weights.json")), "the model build tunes")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("from-archive/task_weights.json")), "no model, no tuning")
    }
}
