import C3POCommands
import C3POCore
import Foundation
import XCTest

final class EmbedCommandTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-embed-cmd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    private var fixtures: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/embedder")
    }

    /// A file of the golden sentences chosen by `pick` (given their count), one per line, and
    /// sentence-transformers' rows for all of them.
    private func goldenInput(_ pick: (Int) -> [Int]) throws -> (picked: [Int], reference: [Float], input: URL) {
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("golden.json"))) as? [String: Any]
        let sentences = try XCTUnwrap(golden?["sentences"] as? [String])
        let (_, reference) = try NPY.readFloats(fixtures.appendingPathComponent("embeddings.npy"))
        let picked = pick(sentences.count)
        let input = scratch.appendingPathComponent("questions.txt")
        try Data((picked.map { sentences[$0] }.joined(separator: "\n") + "\n").utf8).write(to: input)
        return (picked, reference, input)
    }

    /// The lowest cosine between row r of `values` and reference row picked[r] (both normalised).
    private func lowestCosine(_ values: [Float], _ reference: [Float], _ picked: [Int]) -> Float {
        var worst: Float = 1
        for (row, i) in picked.enumerated() {
            var dot: Float = 0
            for k in 0..<384 { dot += values[row * 384 + k] * reference[i * 384 + k] }
            worst = min(worst, dot)
        }
        return worst
    }

    /// The binary embeds real questions in input order, matching sentence-transformers' rows.
    func testBinaryEmbedsLinesInOrder() throws {
        // The last 6 sentences are dataset questions (single-line); reversed to test ordering.
        let (picked, reference, input) = try goldenInput { Array(($0 - 6)..<$0).reversed() }
        let output = scratch.appendingPathComponent("out.npy")
        let r = try Binaries.run("c3po-index", ["embed", "--input", input.path, "--output", output.path, "--batch-size", "4", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\"rows\":6"), r.stdout)
        let (header, values) = try NPY.readFloats(output)
        XCTAssertEqual(header.dtype, .float32)
        XCTAssertEqual(header.shape, [6, 384])
        let worst = lowestCosine(values, reference, picked)
        print("embed binary: lowest cosine with sentence-transformers \(worst)")
        XCTAssertGreaterThanOrEqual(worst, 0.9999)
    }

    /// --report-latency embeds each line alone: the rows still match sentence-transformers' in
    /// order, and the summary carries the latency per text.
    func testReportLatencyEmbedsEachLineAloneAndReportsPercentiles() throws {
        let (picked, reference, input) = try goldenInput { Array(($0 - 4)..<$0) }
        let output = scratch.appendingPathComponent("out.npy")
        let r = try Binaries.run("c3po-index", ["embed", "--input", input.path, "--output", output.path, "--report-latency", "--json", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("latency over 4 texts, each alone: p50"), r.stderr)
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let latency = try XCTUnwrap(summary["latency_ms"] as? [String: Double], r.stdout)
        let (p50, p99) = (try XCTUnwrap(latency["p50"]), try XCTUnwrap(latency["p99"]))
        XCTAssertGreaterThan(p50, 0)
        XCTAssertLessThanOrEqual(p50, p99)
        let (header, values) = try NPY.readFloats(output)
        XCTAssertEqual(header.shape, [4, 384])
        XCTAssertGreaterThanOrEqual(lowestCosine(values, reference, picked), 0.9999)
    }

    func testBinaryRejectsNonUTF8NamingTheLineAndKeepsOldOutput() throws {
        let input = scratch.appendingPathComponent("bad.txt")
        // Line 2 is valid (ÿ encoded in UTF-8); line 3 holds raw bytes 0xFF 0xFE.
        try Data(Array("fine line\nvalid \u{FF}\n".utf8) + [0x66, 0xff, 0xfe, 0x0a]).write(to: input)
        let output = scratch.appendingPathComponent("out.npy")
        try Data("previous".utf8).write(to: output)
        let r = try Binaries.run("c3po-index", ["embed", "--input", input.path, "--output", output.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.lowercased().contains("error:") && r.stderr.contains("bad.txt:3") && r.stderr.contains("UTF-8"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: output), Data("previous".utf8), "previous output must be left intact")
    }

    func testBinaryRejectsEmptyInputAndMissingModel() throws {
        let empty = scratch.appendingPathComponent("empty.txt")
        try Data("\n  \n".utf8).write(to: empty)
        let output = scratch.appendingPathComponent("out.npy")
        var r = try Binaries.run("c3po-index", ["embed", "--input", empty.path, "--output", output.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("no texts"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))

        let input = scratch.appendingPathComponent("one.txt")
        try Data("hello\n".utf8).write(to: input)
        let missing = scratch.appendingPathComponent("no-model")
        r = try Binaries.run("c3po-index", ["embed", "--input", input.path, "--output", output.path, "--embedder", missing.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(missing.path), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
        // C3PO_EMBEDDER is the default when --embedder is absent.
        r = try Binaries.run("c3po-index", ["embed", "--input", input.path, "--output", output.path], environment: ["C3PO_EMBEDDER": missing.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(missing.path), r.stderr)
    }

    func testReadTextsPlainAndJSONL() throws {
        let plain = scratch.appendingPathComponent("plain.txt")
        try Data("a\r\n\nb \tc\nlast".utf8).write(to: plain)
        XCTAssertEqual(try EmbedCommand.readTexts(plain, jsonlField: nil), ["a", "", "b \tc", "last"], "every line is a row")

        let jsonl = scratch.appendingPathComponent("q.jsonl")
        try Data("{\"question\": \"Why?\", \"id\": 1}\n\n{\"question\": \"How?\"}\n".utf8).write(to: jsonl)
        XCTAssertEqual(try EmbedCommand.readTexts(jsonl, jsonlField: "question"), ["Why?", "How?"])
        XCTAssertThrowsError(try EmbedCommand.readTexts(jsonl, jsonlField: "id")) { error in
            XCTAssertTrue("\(error)".contains("q.jsonl:1") && "\(error)".contains("'id'"), "\(error)")
        }
        try Data("{\"question\": \"Why?\"}\n{\"text\": 1}\n".utf8).write(to: jsonl)
        XCTAssertThrowsError(try EmbedCommand.readTexts(jsonl, jsonlField: "question")) { error in
            XCTAssertTrue("\(error)".contains("q.jsonl:2") && "\(error)".contains("missing field 'question'"), "\(error)")
        }
    }

    func testBatchSizeMustBePositive() {
        XCTAssertThrowsError(try EmbedCommand.parse(["--input", "a", "--output", "b", "--batch-size", "0"]))
    }
}
