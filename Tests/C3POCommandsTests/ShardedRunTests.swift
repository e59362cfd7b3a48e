import C3POCore
import C3POIndex
import Foundation
import XCTest

/// A build and a run split in shards, as subprocesses (what the array tasks of
/// Scripts/slurm run), against the same work done whole, on the engine's tiny checkpoint
/// and PIQA questions.
final class ShardedRunTests: PIQAWorkspaceCase {
    static let model = PIQAWorkspace.root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path

    override func setUpWithError() throws { try makeWorkspace("c3po-shards", bench: 0..<30, test: 30..<42) }

    @discardableResult
    func ok(_ tool: String, _ arguments: [String]) throws -> Binaries.Result {
        let r = try Binaries.run(tool, arguments)
        XCTAssertEqual(r.status, 0, "\(tool) \(arguments.joined(separator: " ")): \(r.stderr)")
        return r
    }

    func testShardedBuildAndRunEqualTheWholeOnes() throws {
        let build = ["build", "--model", Self.model, "--benchmark", path("bench.jsonl"), "--dedup", "0.95", "--quiet"]
        try ok("c3po-index", build + ["--out", path("single")])
        // The array tasks; the Slurm variables stand in for --shard K/N.
        for k in 0..<3 {
            let r = try Binaries.run("c3po-index", build + ["--out", path("parts"), "--shard", "auto"],
                                     environment: ["SLURM_ARRAY_TASK_ID": "\(k)", "SLURM_ARRAY_TASK_COUNT": "3"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        // Without the model the shards were recorded with, the merge is refused (it tunes).
        let noModel = try Binaries.run("c3po-index", ["merge", path("parts"), "--out", path("merged"), "--quiet"])
        XCTAssertNotEqual(noModel.status, 0)
        XCTAssertTrue(noModel.stderr.contains("give it with --model DIR"), noModel.stderr)
        try ok("c3po-index", ["merge", path("parts"), "--out", path("merged"), "--model", Self.model, "--quiet"])
        for name in ["embeddings.npy", "pathways.npy", "index.faiss", "records.jsonl", "task_weights.json"] {
            XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("merged/\(name)")),
                           try Data(contentsOf: dir.appendingPathComponent("single/\(name)")), name)
        }
        var a = try ReferenceIndex(directory: dir.appendingPathComponent("merged")).manifest
        var b = try ReferenceIndex(directory: dir.appendingPathComponent("single")).manifest
        XCTAssertEqual(a.shards?.count, 3)
        a.created = ""; b.created = ""; a.shards = nil
        XCTAssertEqual(a, b, "the manifests differ only in time stamps and the shards entry")

        // The test set in 2 parts; merge-results prints what one run prints.
        let run = ["--index", path("single"), "--model", Self.model, "--test", path("test.jsonl"), "--quiet"]
        let whole = try ok("c3po-apply", run + ["--json", "--out", path("whole.jsonl")])
        for k in 0..<2 { try ok("c3po-apply", run + ["--shard", "\(k)/2", "--out", path("part-\(k).jsonl")]) }
        let merged = try ok("c3po-apply", ["merge-results", path("part-0.jsonl"), path("part-1.jsonl"), "--json", "--out", path("joined.jsonl")])
        func withoutSeconds(_ json: String) throws -> NSDictionary {
            var o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            for k in ["seconds_per_sample", "base_seconds_per_sample", "c3po_overhead_ratio"] { o[k] = nil }
            return NSDictionary(dictionary: o)
        }
        XCTAssertEqual(try withoutSeconds(merged.stdout), try withoutSeconds(whole.stdout))
        func rows(_ name: String) throws -> [NSDictionary] {
            try String(contentsOfFile: path(name), encoding: .utf8).split(separator: "\n").map {
                var o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
                o["seconds_base"] = nil; o["seconds_c3po"] = nil
                return NSDictionary(dictionary: o)
            }
        }
        XCTAssertEqual(try rows("joined.jsonl"), try rows("whole.jsonl"), "every row as the whole run wrote it, seconds apart")
        // A missing or repeated part is refused.
        let missing = try Binaries.run("c3po-apply", ["merge-results", path("part-0.jsonl")])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("parts missing: 1/2"), missing.stderr)
        let twice = try Binaries.run("c3po-apply", ["merge-results", path("part-0.jsonl"), path("part-0.jsonl"), path("part-1.jsonl")])
        XCTAssertTrue(twice.stderr.contains("given twice"), twice.stderr)
    }
}
