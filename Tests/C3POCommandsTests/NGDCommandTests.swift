import C3POCore
import Foundation
import XCTest

/// `c3po-apply --method ngd` end to end on the engine's tiny checkpoint and PIQA questions: the
/// neighbours' loss never ends above its start, zero steps give the start's (kernel regression's)
/// answers, and the options are validated.
final class NGDCommandTests: PIQAWorkspaceCase {
    static let model = PIQAWorkspace.root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path

    override func setUpWithError() throws {
        try makeWorkspace("c3po-ngd", bench: 0..<40, test: 40..<52)
        let b = try Binaries.run("c3po-index", ["build", "--model", Self.model, "--benchmark", path("bench.jsonl"), "--out", path("idx"), "--quiet"])
        XCTAssertEqual(b.status, 0, b.stderr)
    }

    func run(_ extra: [String], out: String) throws -> [[String: Any]] {
        let r = try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", path("test.jsonl"),
                                                "--json", "--quiet", "--out", path(out)] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try String(contentsOfFile: path(out), encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    func testLossNeverEndsAboveTheStartAndZeroStepsIsTheKernelAnswer() throws {
        let ngd = try run(["--method", "ngd", "--ngd-init", "own", "--ngd-lr", "30"], out: "ngd.jsonl")
        var moved = 0
        for r in ngd where r["skipped"] == nil {
            let loss = try XCTUnwrap(r["ngd_loss"] as? [Double], "\(r["id"] ?? "")")
            XCTAssertEqual(loss.count, 2)
            XCTAssertLessThanOrEqual(loss[1], loss[0] + 1e-7, "the result is the best iterate")
            if loss[1] < loss[0] - 1e-4 { moved += 1 }
            XCTAssertEqual(r["method"] as? String, "ngd")
        }
        XCTAssertGreaterThan(moved, ngd.filter { $0["skipped"] == nil }.count / 2, "the steps lower the neighbours' loss for most questions")
        let zero = try run(["--method", "ngd", "--ngd-steps", "0"], out: "zero.jsonl")
        let kernel = try run(["--method", "kernel"], out: "kernel.jsonl")
        XCTAssertEqual(zero.map { $0["c3po_answer"] as? String }, kernel.map { $0["c3po_answer"] as? String },
                       "with no step NGD answers with its start, kernel regression's pathway")
        XCTAssertEqual(zero.map { $0["c3po_pathway"] as? [String: [Double]] }, kernel.map { $0["c3po_pathway"] as? [String: [Double]] })
    }

    func testOptionsAreValidated() throws {
        for (args, message) in [(["--ngd-lr", "0"], "--ngd-lr must be positive"), (["--ngd-steps=-1"], "--ngd-steps must not be negative"),
                                (["--state-cache-mb=-5"], "--state-cache-mb must not be negative")] {
            let r = try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", path("test.jsonl"), "--method", "ngd"] + args)
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
        }
    }
}
