import C3POCore
import C3POIndex
import Foundation
import XCTest

final class FaissShimTests: XCTestCase {
    func testAddSearchWriteReadRoundTrip() throws {
        let index = try FaissIndex(dimension: 3, factory: "Flat", metric: .innerProduct)
        // Three unit vectors along the axes.
        try index.add([1, 0, 0, 0, 1, 0, 0, 0, 1])
        XCTAssertEqual(index.count, 3)
        let hits = try index.search([0, 0.6, 0.8], k: 2)
        XCTAssertEqual(hits[0].map(\.id), [2, 1])
        XCTAssertEqual(hits[0][0].score, 0.8, accuracy: 1e-6)
        XCTAssertEqual(hits[0][1].score, 0.6, accuracy: 1e-6)

        let url = FileManager.default.temporaryDirectory.appendingPathComponent("faiss-\(UUID()).index")
        defer { try? FileManager.default.removeItem(at: url) }
        try index.write(to: url)
        let back = try FaissIndex(contentsOf: url)
        XCTAssertEqual(back.count, 3)
        XCTAssertEqual(back.dimension, 3)
        XCTAssertEqual(try back.search([0, 0.6, 0.8], k: 2)[0].map(\.id), [2, 1])
    }

    func testFaissErrorsSurfaceWithFaissMessage() {
        XCTAssertThrowsError(try FaissIndex(dimension: 8, factory: "NoSuchIndexType")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("index_factory"), text)
            XCTAssertTrue(text.lowercased().contains("could not parse") || text.contains("NoSuchIndexType"), text)
        }
        XCTAssertThrowsError(try FaissIndex(contentsOf: URL(fileURLWithPath: "/nonexistent/x.faiss"))) { error in
            XCTAssertTrue("\(error)".contains("read_index"), "\(error)")
        }
    }
}

final class LibarchiveTests: XCTestCase {
    func testReadsZipMadeByTheTest() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("t-\(UUID()).zip")
        defer { try? FileManager.default.removeItem(at: url) }
        try ArchiveWriter.write([("a/one.json", Data("{\"x\": 1}".utf8)), ("two.txt", Data("hello".utf8))], to: url, format: .zip)
        var seen: [String: String] = [:]
        try ArchiveReader(url: url).forEachFile { path, data in seen[path] = String(decoding: data, as: UTF8.self) }
        XCTAssertEqual(seen, ["a/one.json": "{\"x\": 1}", "two.txt": "hello"])
    }

    func testRefusesParentDirectoryEntries() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("t-\(UUID()).tar")
        defer { try? FileManager.default.removeItem(at: url) }
        try ArchiveWriter.write([("ok.json", Data("{}".utf8)), ("../evil.json", Data("{}".utf8))], to: url, format: .tar)
        XCTAssertThrowsError(try ArchiveReader(url: url).forEachFile { _, _ in }) { error in
            XCTAssertEqual(error as? ArchiveReader.Error, .unsafePath(url.path, "../evil.json"))
        }
    }
}
