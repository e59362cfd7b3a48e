import C3POCore
import Foundation
import XCTest

/// The temporary folder the command-line tests work in: `bench.jsonl` and `test.jsonl` cut from
/// Datasets/piqa_validation.jsonl (labels A/B are single tokens in the fixtures' tokenizers),
/// optionally with an index built from `bench.jsonl` at `idx/`.
enum PIQAWorkspace {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Skips the calling test when the default embedder is not installed.
    static func requireEmbedder() throws {
        guard FileManager.default.fileExists(atPath: C3POPaths.defaultEmbedder.path) else {
            throw XCTSkip("default embedder not installed at \(C3POPaths.defaultEmbedder.path)")
        }
    }

    /// A new folder with the PIQA lines `bench` and `test` (after `keep` filters them); with
    /// `indexModel`, also `idx/` built by `c3po-index build --model`.
    static func make(_ prefix: String, bench: Range<Int>, test: Range<Int>, keep: (Substring) -> Bool = { _ in true },
                     indexModel: String? = nil) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let lines = try String(contentsOf: root.appendingPathComponent("Datasets/piqa_validation.jsonl"), encoding: .utf8)
            .split(separator: "\n").filter(keep)
        try (lines[bench].joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("bench.jsonl"), atomically: true, encoding: .utf8)
        try (lines[test].joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("test.jsonl"), atomically: true, encoding: .utf8)
        if let indexModel {
            let b = try Binaries.run("c3po-index", ["build", "--model", indexModel, "--benchmark", dir.appendingPathComponent("bench.jsonl").path,
                                                    "--out", dir.appendingPathComponent("idx").path, "--quiet"])
            XCTAssertEqual(b.status, 0, b.stderr)
        }
        return dir
    }
}

/// A test case that works in a fresh PIQA workspace (`PIQAWorkspace.make`), removed afterwards.
class PIQAWorkspaceCase: XCTestCase {
    var dir: URL!

    /// Skips the test when the default embedder is not installed.
    func makeWorkspace(_ prefix: String, bench: Range<Int>, test: Range<Int>) throws {
        try PIQAWorkspace.requireEmbedder()
        dir = try PIQAWorkspace.make(prefix, bench: bench, test: test)
    }

    override func tearDownWithError() throws { if let dir { try? FileManager.default.removeItem(at: dir) } }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
}
