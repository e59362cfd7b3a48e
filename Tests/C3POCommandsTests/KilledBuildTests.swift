import C3POCore
import C3POIndex
import Foundation
import XCTest

/// Faults survived: `c3po-index build` killed (SIGKILL) at random points of recording, embedding
/// and writing leaves the previous index at --out intact and readable, and a rerun resumes and
/// finishes with the folder an uninterrupted build writes; two builds of one --out never mix.
/// On the engine's tiny checkpoint and PIQA questions.
final class KilledBuildTests: PIQAWorkspaceCase {
    static let model = PIQAWorkspace.root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path
    static let dataFiles = ["embeddings.npy", "pathways.npy", "index.faiss", "records.jsonl", "task_weights.json"]

    override func setUpWithError() throws { try makeWorkspace("c3po-kill", bench: 0..<40, test: 40..<41) }
    func arguments(_ out: String) -> [String] {
        ["build", "--model", Self.model, "--benchmark", path("bench.jsonl"), "--out", path(out), "--quiet"]
    }

    func start(_ out: String) throws -> Process {
        let p = Process()
        p.executableURL = Binaries.directory.appendingPathComponent("c3po-index")
        p.arguments = arguments(out)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    func assertSameData(_ a: String, _ b: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for name in Self.dataFiles {
            XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("\(a)/\(name)")),
                           try Data(contentsOf: dir.appendingPathComponent("\(b)/\(name)")), "\(what): \(name)", file: file, line: line)
        }
    }

    func testKilledBuildsLeaveThePreviousIndexAndResume() throws {
        // The uninterrupted build, timed: the kills fall anywhere in such a run.
        let t0 = Date()
        XCTAssertEqual(try Binaries.run("c3po-index", arguments("want")).status, 0)
        let duration = Date().timeIntervalSince(t0)
        XCTAssertEqual(try Binaries.run("c3po-index", arguments("idx")).status, 0)
        let previous = try ReferenceIndex(directory: dir.appendingPathComponent("idx")).manifest
        var rng = SplitMix64(seed: 20_261_201)
        var completed = 0
        for i in 0..<20 {
            let p = try start("idx")
            usleep(UInt32((0.02 + rng.uniform() * duration) * 1_000_000))
            if p.isRunning { kill(p.processIdentifier, SIGKILL) } else { completed += 1 }
            p.waitUntilExit()
            // Whatever the instant, --out holds a complete index with the same data (the inputs are the same).
            let idx = try ReferenceIndex(directory: dir.appendingPathComponent("idx"))
            XCTAssertEqual(idx.count, previous.count, "kill \(i)")
            try assertSameData("idx", "want", "after kill \(i)")
        }
        XCTAssertLessThan(completed, 20, "the kills must land inside runs")
        // A rerun resumes (the recorded questions kept in .idx.work) and finishes with the uninterrupted folder.
        XCTAssertEqual(try Binaries.run("c3po-index", arguments("idx")).status, 0)
        try assertSameData("idx", "want", "after the rerun")
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".idx.") && $0 != ".idx.lock" }
        XCTAssertEqual(left, [], "no temporary folder or work file is left behind")
    }

    func testTwoBuildsOfOneOutNeverMix() throws {
        let a = try start("idx")
        usleep(100_000)
        let b = try Binaries.run("c3po-index", arguments("idx"))
        a.waitUntilExit()
        XCTAssertEqual(a.terminationStatus, 0)
        XCTAssertNotEqual(b.status, 0, "the second build is refused while the first writes")
        XCTAssertTrue(b.stderr.contains("another build is writing it"), b.stderr)
        XCTAssertEqual(try Binaries.run("c3po-index", arguments("want")).status, 0)
        try assertSameData("idx", "want", "the first build's folder")
    }
}
