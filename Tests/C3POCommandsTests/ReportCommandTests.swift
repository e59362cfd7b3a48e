import C3POCore
import Foundation
import XCTest

/// `c3po-apply run --out/--report` and `c3po-apply report` as subprocesses, on the MoE
/// engine's tiny committed checkpoint (2 layers × 8 experts) and the first PIQA questions, as
/// in ApplyCommandTests: the rows carry what the page needs, and the page agrees with `--json`.
final class ReportCommandTests: XCTestCase {
    static let root = PIQAWorkspace.root
    static let model = root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path

    nonisolated(unsafe) static var shared: URL?
    var dir: URL { Self.shared ?? URL(fileURLWithPath: "/nonexistent") }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    override func setUpWithError() throws {
        try PIQAWorkspace.requireEmbedder()
        if Self.shared != nil { return }
        let dir = try PIQAWorkspace.make("c3po-report-cli", bench: 0..<40, test: 40..<56, indexModel: Self.model)
        for method in ["kernel", "oracle"] {
            var args = ["--index", dir.appendingPathComponent("idx").path, "--model", Self.model, "--test", dir.appendingPathComponent("test.jsonl").path,
                        "--method", method, "--out", dir.appendingPathComponent("\(method).jsonl").path, "--json", "--quiet"]
            if method == "kernel" { args += ["--report", dir.appendingPathComponent("kernel.html").path] }
            let r = try Binaries.run("c3po-apply", args)
            XCTAssertEqual(r.status, 0, r.stderr)
            try Data(r.stdout.utf8).write(to: dir.appendingPathComponent("\(method).json"))
        }
        Self.shared = dir
    }

    override class func tearDown() { if let d = shared { try? FileManager.default.removeItem(at: d) }; shared = nil }

    func rows(_ name: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path(name), encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    func summary(_ name: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path(name)))) as? [String: Any])
    }

    /// `data-accuracy` of the bar of `series` over all tasks.
    func bar(_ html: String, _ series: String) -> Double? {
        let re = try! NSRegularExpression(pattern: "<rect class=\"bar\"[^>]*data-series=\"\(NSRegularExpression.escapedPattern(for: series))\" data-task=\"all\" data-accuracy=\"([^\"]+)\"")
        let ns = html as NSString
        return re.firstMatch(in: html, range: NSRange(location: 0, length: ns.length)).flatMap { Double(ns.substring(with: $0.range(at: 1))) }
    }

    func testRowsCarryPathwaysOfTheCriticalLayers() throws {
        for row in try rows("kernel.jsonl") where row["skipped"] == nil {
            let id = row["id"] as? String ?? "?"
            XCTAssertEqual(row["critical_layers"] as? [Int], [0, 1], "a 2-layer model: both layers are critical (\(id))")
            XCTAssertNotNil(row["question"] as? String, id)
            for key in ["base_pathway", "c3po_pathway"] {
                let p = try XCTUnwrap(row[key] as? [String: [Double]], "\(id): \(key)")
                XCTAssertEqual(p.keys.sorted(), ["0", "1"], "\(id): \(key) holds the critical layers")
                for (l, w) in p {
                    XCTAssertEqual(w.count, 8, "\(id): \(key)[\(l)] has one weight per expert")
                    XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-3, "\(id): \(key)[\(l)] is a distribution")
                }
            }
            let core = try XCTUnwrap(row["core_experts"] as? [String: [Int]], id)
            XCTAssertEqual(core["0"]?.count, 8, "core experts = min(20, 8)")
        }
        var flippedByOracle = 0
        for row in try rows("oracle.jsonl") where row["skipped"] == nil {
            XCTAssertNil(row["core_experts"], "the oracle re-weights no core experts")
            XCTAssertNotNil(row["base_pathway"])
            let fixed = row["base_correct"] as? Bool == false && row["c3po_correct"] as? Bool == true
            if fixed { flippedByOracle += 1 }
            XCTAssertEqual(row["c3po_pathway"] != nil, fixed, "the oracle's routing is recorded exactly where it changed the answer (\(row["id"] ?? ""))")
        }
        XCTAssertGreaterThan(flippedByOracle, 0)
    }

    func testRunReportAgreesWithItsSummary() throws {
        let html = try String(contentsOfFile: path("kernel.html"), encoding: .utf8)
        let s = try summary("kernel.json")
        for id in ["accuracy", "timing", "pathways", "flipped"] { XCTAssertTrue(html.contains("<section id=\"\(id)\">"), id) }
        XCTAssertEqual(bar(html, "kernel"), s["c3po_accuracy"] as? Double)
        XCTAssertEqual(bar(html, "base"), s["base_accuracy"] as? Double)
    }

    func testReportOverSeveralRunsShowsThemSideBySide() throws {
        let r = try Binaries.run("c3po-apply", ["report", "--index", path("idx"), "--test", path("test.jsonl"), "--out", path("both.html"),
                                                path("kernel.jsonl"), "upper=" + path("oracle.jsonl")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("report: \(path("both.html"))"), r.stdout)
        let html = try String(contentsOfFile: path("both.html"), encoding: .utf8)
        XCTAssertEqual(bar(html, "kernel"), try summary("kernel.json")["c3po_accuracy"] as? Double)
        XCTAssertEqual(bar(html, "upper"), try summary("oracle.json")["c3po_accuracy"] as? Double, "LABEL=FILE names the run")
        let kernelAt = try XCTUnwrap(html.range(of: "data-series=\"kernel\" data-task=\"all\"")), upperAt = try XCTUnwrap(html.range(of: "data-series=\"upper\" data-task=\"all\""))
        XCTAssertLessThan(kernelAt.lowerBound, upperAt.lowerBound, "the oracle's bar comes after the methods'")
        XCTAssertTrue(html.contains("oracle gap recovered"))
    }

    func testMissingRunFileIsNamed() throws {
        let r = try Binaries.run("c3po-apply", ["report", "--out", path("x.html"), path("nope.jsonl")])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("nope.jsonl"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("x.html")))
    }
}
