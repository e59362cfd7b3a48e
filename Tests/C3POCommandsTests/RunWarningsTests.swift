import C3POCore
import C3POIndex
import Foundation
import XCTest

/// A run off target says so: on stderr as `warning: ...` and in the `--json` summary's
/// `warnings`; `c3po-index info` prints numbers at the precision that means something; and
/// Index/README.md shows what the code writes. On the tiny OLMoE checkpoint of
/// Tests/Fixtures/moe/olmoe-f32 and PIQA questions (labels A/B are single tokens there).
final class RunWarningsTests: XCTestCase {
    static let root = PIQAWorkspace.root
    static let model = root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path

    nonisolated(unsafe) static var shared: URL?
    var dir: URL { Self.shared ?? URL(fileURLWithPath: "/nonexistent") }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    override func setUpWithError() throws {
        try PIQAWorkspace.requireEmbedder()
        if Self.shared != nil { return }
        // short prompts only: the checkpoint has 256 positions
        Self.shared = try PIQAWorkspace.make("c3po-warnings", bench: 0..<24, test: 24..<30, keep: { $0.utf8.count < 600 }, indexModel: Self.model)
    }

    override class func tearDown() { if let d = shared { try? FileManager.default.removeItem(at: d) }; shared = nil }

    func summary(_ r: Binaries.Result) throws -> [String: Any] {
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
    }

    func testAnOnTargetRunHasNoTaskOrPromptWarnings() throws {
        let s = try summary(try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", path("test.jsonl"), "--json", "--quiet"]))
        let warnings = try XCTUnwrap(s["warnings"] as? [String], "the summary always has a warnings list")
        XCTAssertFalse(warnings.contains { $0.contains("tasks the index holds no references of") || $0.contains("do not end where") }, "\(warnings)")
    }

    func testAnOffTargetRunWarnsOnStderrAndInTheSummary() throws {
        // the same questions, under a task the index does not hold, one prompt ending in a space
        var rows = try String(contentsOfFile: path("test.jsonl"), encoding: .utf8).split(separator: "\n").map {
            var o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            o["task"] = "other_task"
            return o
        }
        rows[0]["prompt"] = (rows[0]["prompt"] as? String ?? "") + " "
        let file = dir.appendingPathComponent("off.jsonl")
        try Data(try rows.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
            .joined(separator: "\n").utf8).write(to: file)
        let r = try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", file.path,
                                                "--similarity-floor", "1.01", "--json", "--quiet"])
        let warnings = try XCTUnwrap(try summary(r)["warnings"] as? [String])
        let expected = [
            "6 of 6 questions are of tasks the index holds no references of: 'other_task' (6)",
            "6 of 6 questions (100%) have no neighbour with similarity 1.01 or more (their best: median ",
            "1 of 6 prompts do not end where the label is read (first: '\(rows[0]["id"] as? String ?? "")' ends with whitespace",
        ]
        for e in expected {
            XCTAssertTrue(warnings.contains { $0.hasPrefix(e) }, "no warning '\(e)...' in \(warnings)")
        }
        for w in warnings {
            XCTAssertTrue(r.stderr.contains("warning: \(w)\n"), "not on stderr: \(w)\n\(r.stderr)")
        }
        // a floor of 0: every neighbour is above it, no such warning
        let near = try summary(try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", path("test.jsonl"),
                                                               "--similarity-floor", "0", "--json", "--quiet"]))
        XCTAssertFalse((near["warnings"] as? [String] ?? []).contains { $0.contains("have no neighbour") }, "\(near)")
    }

    func testInfoPrintsTwoDecimalsAndTheModelFamily() throws {
        let r = try Binaries.run("c3po-index", ["info", "--index", path("idx")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let mixing = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("mixing") }, r.stdout)
        XCTAssertNotNil(mixing.range(of: #"^mixing +leave-one-out \(alpha [01]\.\d\d, bandwidth \d\.\d\d\), task_weights\.json$"#, options: .regularExpression), String(mixing))
        let model = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("model") }, r.stdout)
        XCTAssertNotNil(model.range(of: #"\(olmoe, config sha256 [0-9a-f]{12}…, top-2\)$"#, options: .regularExpression), String(model))
    }

    // MARK: Index/README.md against what the code writes

    /// The first ```json block after `heading` in Index/README.md.
    func documentedJSON(after heading: String) throws -> Any {
        let text = try String(contentsOf: Self.root.appendingPathComponent("Index/README.md"), encoding: .utf8)
        let section = try XCTUnwrap(text.range(of: heading), "Index/README.md has no '\(heading)'")
        let open = try XCTUnwrap(text.range(of: "```json\n", range: section.upperBound..<text.endIndex))
        let close = try XCTUnwrap(text.range(of: "\n```", range: open.upperBound..<text.endIndex))
        return try JSONSerialization.jsonObject(with: Data(text[open.upperBound..<close.lowerBound].utf8))
    }

    /// Key paths where `documented` and `written` differ (maps of names, e.g. tasks, are not compared).
    func keyDifferences(_ documented: Any, _ written: Any, at path: String = "") -> [String] {
        if ["tasks", "search_parameters"].contains(path) { return [] }
        if let d = documented as? [String: Any], let w = written as? [String: Any] {
            var out = Set(d.keys).symmetricDifference(w.keys).map { "\(path).\($0) (\(d[$0] == nil ? "written, not documented" : "documented, not written"))" }
            for k in Set(d.keys).intersection(w.keys) { out += keyDifferences(d[k]!, w[k]!, at: path.isEmpty ? k : "\(path).\(k)") }
            return out
        }
        if let d = documented as? [Any], let w = written as? [Any], let d0 = d.first, let w0 = w.first {
            return keyDifferences(d0, w0, at: path + "[]")
        }
        return []
    }

    func testIndexReadmeShowsTheManifestAndRecordsTheCodeWrites() throws {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("idx/manifest.json"))))
        XCTAssertEqual(keyDifferences(try documentedJSON(after: "## `manifest.json`"), manifest), [])
        let record = try JSONSerialization.jsonObject(with: Data(try String(contentsOfFile: path("idx/records.jsonl"), encoding: .utf8)
            .split(separator: "\n")[0].utf8))
        XCTAssertEqual(keyDifferences(try documentedJSON(after: "## `records.jsonl`"), record), [])
    }

    func testIndexReadmeNamesEverySourceKindTheCodeWrites() throws {
        // kinds of a --model build (here) and of an archive build with --embeddings
        let archive = dir.appendingPathComponent("ref.zip")
        try ArchiveWriter.write([("instruct_sciq_correct_routing_results.json", IndexCommandTests.file(task: "sciq")),
                                 ("instruct_openbookqa_correct_routing_results.json", IndexCommandTests.file(task: "openbookqa"))],
                                to: archive, format: .zip)
        let emb = dir.appendingPathComponent("e.npy")
        try NPY.write(float32: (0..<16).map { Float($0 % 5 == 0 ? 1 : 0) + 0.01 * Float($0) }, shape: [4, 4], to: emb)
        let b = try Binaries.run("c3po-index", ["build", "--reference", archive.path, "--embeddings", emb.path, "--out", path("arch"), "--quiet"])
        XCTAssertEqual(b.status, 0, b.stderr)
        var kinds = Set<String>()
        for index in ["idx", "arch"] {
            let m = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("\(index)/manifest.json")))) as? [String: Any])
            for s in try XCTUnwrap(m["sources"] as? [[String: Any]]) { kinds.insert(try XCTUnwrap(s["kind"] as? String)) }
        }
        XCTAssertEqual(kinds, ["benchmark", "archive", "embeddings"])
        let text = try String(contentsOf: Self.root.appendingPathComponent("Index/README.md"), encoding: .utf8)
        let bullet = try XCTUnwrap(text.components(separatedBy: "\n- ").first { $0.hasPrefix("`sources[].kind` is") })
        let documented = Set(bullet.components(separatedBy: "`").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)).subtracting(["sources[].kind"])
        XCTAssertTrue(kinds.isSubset(of: documented), "written \(kinds.sorted()), documented \(documented.sorted())")
    }
}
