import C3POCore
import C3POIndex
import Foundation
import XCTest

/// A full disk: `c3po-index build` into a small tmpfs that cannot hold a second folder beside the
/// first ends with a clear error (exit status non-zero, "No space left" and the file named), the
/// previous index at --out intact and verified, and nothing left behind. Needs root to mount the
/// tmpfs; skipped with a message otherwise.
final class DiskFullTests: PIQAWorkspaceCase {
    static let model = PIQAWorkspace.root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32").path
    var mount: URL?

    override func setUpWithError() throws { try makeWorkspace("c3po-diskfull", bench: 0..<40, test: 40..<41) }

    override func tearDownWithError() throws {
        if let mount {
            _ = try? Subprocess.run(URL(fileURLWithPath: "/bin/umount"), [mount.path])
            try? FileManager.default.removeItem(at: mount)
        }
        try super.tearDownWithError()
    }

    func testAFullDiskEndsTheBuildAndKeepsThePreviousIndex() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root") }
        let m = dir.appendingPathComponent("small")
        try FileManager.default.createDirectory(at: m, withIntermediateDirectories: true)
        let mounted = try Subprocess.run(URL(fileURLWithPath: "/bin/mount"), ["-t", "tmpfs", "-o", "size=2m", "tmpfs", m.path])
        guard mounted.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mounted.stderr)") }
        mount = m
        let out = m.appendingPathComponent("idx")
        func build() throws -> Binaries.Result {
            try Binaries.run("c3po-index", ["build", "--model", Self.model, "--benchmark", path("bench.jsonl"), "--out", out.path, "--quiet"])
        }
        let first = try build()
        XCTAssertEqual(first.status, 0, first.stderr)
        let before = try ReferenceIndex(directory: out).manifest
        // Leave less room than one more folder needs.
        let used = try FileManager.default.contentsOfDirectory(atPath: out.path).reduce(0) { acc, name in
            acc + ((try? FileManager.default.attributesOfItem(atPath: out.appendingPathComponent(name).path)[.size] as? Int) ?? 0)
        }
        let free = try XCTUnwrap(try FileManager.default.attributesOfFileSystem(forPath: m.path)[.systemFreeSize] as? Int)
        let filler = m.appendingPathComponent("filler")
        FileManager.default.createFile(atPath: filler.path, contents: Data(count: max(0, free - used / 2)))

        let second = try build()
        XCTAssertNotEqual(second.status, 0, "a build that cannot write its folder fails")
        XCTAssertTrue(second.stderr.contains("\(out.path): cannot write: "), "the error names the folder: \(second.stderr)")
        XCTAssertTrue(second.stderr.contains(": No space left on device; the previous folder is left as it was"), second.stderr)
        // The previous index is intact and passes the full check; nothing half-written is left beside it.
        let after = try ReferenceIndex(directory: out)
        XCTAssertEqual(after.manifest.created, before.created)
        XCTAssertEqual(after.count, before.count)
        let verify = try Binaries.run("c3po-index", ["verify", "--index", out.path])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        let left = try FileManager.default.contentsOfDirectory(atPath: m.path).filter { $0.hasPrefix(".idx.") && $0 != ".idx.lock" && $0 != ".idx.work" }
        XCTAssertEqual(left, [], "no temporary folder is left behind")
    }
}
