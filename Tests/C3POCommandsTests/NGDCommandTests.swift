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
        // Questions stepped together (--ngd-batch, the default 8 above) answer as one at a time, in
        // the same order, with the same losses up to the rounding of products over more rows.
        for batch in ["1", "5"] {
            let other = try run(["--method", "ngd", "--ngd-init", "own", "--ngd-lr", "30", "--ngd-batch", batch], out: "ngd-\(batch).jsonl")
            XCTAssertEqual(other.map { $0["id"] as? String }, ngd.map { $0["id"] as? String }, "--ngd-batch \(batch)")
            XCTAssertEqual(other.map { $0["c3po_answer"] as? String }, ngd.map { $0["c3po_answer"] as? String }, "--ngd-batch \(batch)")
            for (a, b) in zip(other, ngd) where b["skipped"] == nil {
                let la = try XCTUnwrap(a["ngd_loss"] as? [Double]), lb = try XCTUnwrap(b["ngd_loss"] as? [Double])
                for (x, y) in zip(la, lb) { XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(y)), "--ngd-batch \(batch): \(a["id"] ?? "")") }
            }
        }
        let zero = try run(["--method", "ngd", "--ngd-steps", "0"], out: "zero.jsonl")
        let kernel = try run(["--method", "kernel"], out: "kernel.jsonl")
        XCTAssertEqual(zero.map { $0["c3po_answer"] as? String }, kernel.map { $0["c3po_answer"] as? String },
                       "with no step NGD answers with its start, kernel regression's pathway")
        XCTAssertEqual(zero.map { $0["c3po_pathway"] as? [String: [Double]] }, kernel.map { $0["c3po_pathway"] as? [String: [Double]] })
    }

    /// `c3po-index build --cache-states`: the folder stores every reference's prefix state, and
    /// ngd over it answers as over the same index without states, with no prefill of a neighbour
    /// (the keys and values in float16: the losses agree to float16's precision). A damaged
    /// states file is refused by name before it is used.
    func testStoredStatesServeNGDWithoutAPrefill() throws {
        let b = try Binaries.run("c3po-index", ["build", "--model", Self.model, "--benchmark", path("bench.jsonl"), "--out", path("idx-states"),
                                                "--cache-states", "--quiet"])
        XCTAssertEqual(b.status, 0, b.stderr)
        let manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("idx-states/manifest.json")))) as? [String: Any])
        let states = try XCTUnwrap(manifest["states"] as? [String: Any])
        XCTAssertEqual(states["references"] as? Int, manifest["count"] as? Int, "every reference has a prompt the model runs")
        XCTAssertEqual(states["dtype"] as? String, "float16")
        let files = try XCTUnwrap(manifest["files"] as? [String: Any])
        for f in ["states_rows.npy", "states_tokens.npy", "states_kv.npy", "states_inputs.npy"] { XCTAssertNotNil(files[f], f) }
        XCTAssertEqual(try Binaries.run("c3po-index", ["verify", "--index", path("idx-states")]).status, 0)

        func ngd(_ index: String) throws -> ([[String: Any]], String) {
            let out = path("\(index).jsonl")
            let r = try Binaries.run("c3po-apply", ["--index", path(index), "--model", Self.model, "--test", path("test.jsonl"),
                                                    "--method", "ngd", "--json", "--out", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map {
                try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
            return (rows, r.stderr)
        }
        let (stored, storedLog) = try ngd("idx-states")
        let (computed, computedLog) = try ngd("idx")
        XCTAssertTrue(storedLog.contains("read from the index's stored states, 0 by prefill"), storedLog)
        XCTAssertTrue(computedLog.contains("neighbour states: 0 read from the index's stored states"), computedLog)
        XCTAssertEqual(stored.map { $0["c3po_answer"] as? String }, computed.map { $0["c3po_answer"] as? String })
        for (a, b) in zip(stored, computed) {
            guard let la = a["ngd_loss"] as? [Double], let lb = b["ngd_loss"] as? [Double] else { continue }
            for (x, y) in zip(la, lb) { XCTAssertEqual(x, y, accuracy: 2e-3 * max(1, abs(y)), "\(a["id"] ?? "")") }
        }

        // A value of a state edited in place: a load checks the large states files by size, the
        // state's own checksum refuses it when it is read, and verify's SHA-256 names the file.
        let kv = URL(fileURLWithPath: path("idx-states/states_kv.npy"))
        let original = try Data(contentsOf: kv)
        var edited = original
        for i in stride(from: 128, to: edited.count, by: 2) { edited[i] ^= 0x01 } // every state's low bits
        try edited.write(to: kv)
        let e = try Binaries.run("c3po-apply", ["--index", path("idx-states"), "--model", Self.model, "--test", path("test.jsonl"), "--method", "ngd"])
        XCTAssertNotEqual(e.status, 0)
        XCTAssertTrue(e.stderr.contains("states_kv.npy: the stored state of row"), e.stderr)
        let v = try Binaries.run("c3po-index", ["verify", "--index", path("idx-states")])
        XCTAssertEqual(v.status, 1, v.stderr)
        XCTAssertTrue(v.stderr.contains("states_kv.npy: SHA-256"), v.stderr)
        try original.write(to: kv)

        // A states file cut short: refused by name, before anything reads it.
        let h = try FileHandle(forWritingTo: kv)
        try h.truncate(atOffset: try h.seekToEnd() - 2)
        try h.close()
        let r = try Binaries.run("c3po-apply", ["--index", path("idx-states"), "--model", Self.model, "--test", path("test.jsonl"), "--method", "ngd"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("states_kv.npy") && r.stderr.contains("truncated or replaced"), r.stderr)

        let refused = try Binaries.run("c3po-index", ["build", "--reference", path("none.zip"), "--out", path("x"), "--cache-states"])
        XCTAssertEqual(refused.status, 64, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--cache-states needs --model"), refused.stderr)
    }

    func testOptionsAreValidated() throws {
        for (args, message) in [(["--ngd-lr", "0"], "--ngd-lr must be positive"), (["--ngd-steps=-1"], "--ngd-steps must not be negative"),
                                (["--state-cache-mb=-5"], "--state-cache-mb must not be negative"), (["--ngd-batch", "0"], "--ngd-batch must be at least 1")] {
            let r = try Binaries.run("c3po-apply", ["--index", path("idx"), "--model", Self.model, "--test", path("test.jsonl"), "--method", "ngd"] + args)
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
        }
    }
}
