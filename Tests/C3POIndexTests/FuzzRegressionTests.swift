import C3POCore
import C3POIndex
import Foundation
import XCTest

/// Every input the fuzz targets `archive` and `index_folder` once failed on
/// (Tests/Fuzz/regressions), read the way the target reads it: each is refused with an error
/// of ours, not a trap or a leak (`Scripts/fuzz --smoke` runs them under the sanitizers too).
final class FuzzRegressionTests: XCTestCase {
    let regressions = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/regressions")

    func inputs(_ target: String) throws -> [(name: String, choice: UInt8, body: Data)] {
        let dir = regressions.appendingPathComponent(target)
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted().map {
            let data = try Data(contentsOf: dir.appendingPathComponent($0))
            return ($0, data.first ?? 0, data.dropFirst())
        }
    }

    /// A gzip stream that libarchive fails to open without setting a message: the reader made a
    /// Swift string of its nil C string and trapped.
    func testArchives() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let found = try inputs("archive")
        XCTAssertFalse(found.isEmpty)
        for (name, choice, body) in found {
            let url = dir.appendingPathComponent("reference.zip")
            try body.write(to: url)
            var set = ReferenceSet()
            XCTAssertThrowsError(try ReferenceArchive.read(url, options: .init(skipInvalid: choice % 2 == 1), into: &set, note: { _ in }), name) {
                XCTAssertTrue($0 is ArchiveReader.Error || $0 is ReferenceArchive.Error, "\(name): \($0)")
                XCTAssertTrue("\($0)".hasPrefix("reference.zip") || "\($0)".contains("/reference.zip"), "\(name): \($0)")
            }
        }
    }

    /// An empty task_weights.json (the first find: read through Data(contentsOf:), which leaks).
    func testIndexFolderFiles() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let found = try inputs("index_folder")
        XCTAssertFalse(found.isEmpty)
        for (name, choice, body) in found {
            let file = [IndexFolder.manifestFile, IndexFolder.recordsFile, IndexFolder.taskWeightsFile][Int(choice) % 3]
            let url = dir.appendingPathComponent(file)
            try body.write(to: url)
            XCTAssertThrowsError(try {
                switch file {
                case IndexFolder.manifestFile: _ = try IndexFolder.readManifest(url)
                case IndexFolder.recordsFile: _ = try IndexFolder.readRecords(url, count: 1)
                default: _ = try TaskWeights.load(url)
                }
            }(), name) { XCTAssertTrue("\($0)".contains(file), "\(name): \($0)") }
        }
    }
}
