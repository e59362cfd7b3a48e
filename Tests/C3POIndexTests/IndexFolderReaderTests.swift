import C3POCore
import C3POIndex
import Foundation
import XCTest

/// The readers of an index folder's JSON files (`IndexFolder`, `TaskWeights`): sizes capped
/// before a byte is read, one over-long record refused by line, bad values refused by field.
final class IndexFolderReaderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func record(_ row: Int, task: String = "sciq", prompt: String? = nil) throws -> String {
        let r = ReferenceRecord(row: row, id: "\(task)_\(row)", task: task, question: "q\(row)", gold: "A", prompt: prompt)
        return String(decoding: try JSONLines.encode([r]), as: UTF8.self)
    }

    func testWellFormedRecordsAreRead() throws {
        let url = dir.appendingPathComponent("records.jsonl")
        try (try record(0) + record(1) + record(2, task: "piqa")).write(to: url, atomically: true, encoding: .utf8)
        let records = try IndexFolder.readRecords(url, count: 3, tasks: ["sciq": 2, "piqa": 1])
        XCTAssertEqual(records.map(\.id), ["sciq_0", "sciq_1", "piqa_2"])
        XCTAssertThrowsError(try IndexFolder.readRecords(url, count: 3, tasks: ["sciq": 3])) {
            XCTAssertTrue("\($0)".contains("manifest.json: field 'tasks'"), "\($0)")
        }
        XCTAssertThrowsError(try IndexFolder.readRecords(url, count: 4)) { XCTAssertTrue("\($0)".contains("3 records, manifest 'count' is 4"), "\($0)") }
    }

    func testARecordLongerThanTheCapIsRefusedByLine() throws {
        let url = dir.appendingPathComponent("records.jsonl")
        let long = String(repeating: "x", count: IndexFolder.maxRecordBytes)
        try (try record(0) + record(1, prompt: long)).write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try IndexFolder.readRecords(url, count: 2)) {
            let m = "\($0)"
            XCTAssertTrue(m.contains("records.jsonl:2: ") && m.hasSuffix("bytes, longer than the limit of \(IndexFolder.maxRecordBytes) bytes a line"), m)
        }
    }

    /// A records.jsonl far larger than its count of records (a sparse file: no byte is written)
    /// is refused before it is read.
    func testAnAbsurdRecordsFileIsRefusedBeforeItIsRead() throws {
        let url = dir.appendingPathComponent("records.jsonl")
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: nil))
        let h = try FileHandle(forWritingTo: url)
        try h.truncate(atOffset: 3 << 30)
        try h.close()
        XCTAssertThrowsError(try IndexFolder.readRecords(url, count: 2)) {
            XCTAssertTrue("\($0)".contains("\(3 << 30) bytes for 2 records (manifest 'count'): more than \(IndexFolder.maxRecordBytes) bytes a record, refused before it is read"), "\($0)")
        }
    }

    func testAbsurdManifestAndTaskWeightsAreRefusedBeforeTheyAreRead() throws {
        for (name, limit) in [("manifest.json", IndexFolder.maxManifestBytes), ("task_weights.json", TaskWeights.maxBytes)] {
            let url = dir.appendingPathComponent(name)
            XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: nil))
            let h = try FileHandle(forWritingTo: url)
            try h.truncate(atOffset: UInt64(limit) + 1)
            try h.close()
            let read: () throws -> Void = name == "manifest.json" ? { _ = try IndexFolder.readManifest(url) } : { _ = try TaskWeights.load(url) }
            XCTAssertThrowsError(try read()) {
                XCTAssertTrue("\($0)".contains("\(name): cannot open: \(limit + 1) bytes exceed the limit of \(limit) bytes for a \(name)"), "\($0)")
            }
        }
    }

    func testTaskWeightsWithANaNWeightAreRefusedByTask() throws {
        let url = dir.appendingPathComponent("task_weights.json")
        var t = TaskWeights.Task(count: 3, alpha: 0.5, bandwidth: 0.25, criticalLayers: [1], coreExperts: 2, pathway: [[0.5, 0.5]])
        try TaskWeights(tasks: ["sciq": t]).encoded().write(to: url)
        XCTAssertEqual(try TaskWeights.load(url).tasks["sciq"]?.pathway, [[0.5, 0.5]])
        t.pathway = [[0.5, -1]]
        try TaskWeights(tasks: ["sciq": t]).encoded().write(to: url)
        XCTAssertThrowsError(try TaskWeights.load(url)) {
            XCTAssertTrue("\($0)".contains("task 'sciq': pathway holds -1.0, not a finite non-negative weight"), "\($0)")
        }
        // NaN cannot be written by JSONEncoder; a hand-edited file says it as a string or 1e999.
        try Data(#"{"tasks":{"sciq":{"count":3,"alpha":0.5,"bandwidth":0.25,"critical_layers":[1],"core_experts":2,"pathway":[[1e999,0]]}}}"#.utf8).write(to: url)
        XCTAssertThrowsError(try TaskWeights.load(url)) { XCTAssertTrue("\($0)".contains("task_weights.json"), "\($0)") }
    }

    /// The fuzzer's first find: an empty file read through FileError.read leaked 4 KiB
    /// (Foundation's Data(contentsOf:)); it is read through our mapping now, and is empty.
    func testAnEmptyFileReadsAsNoBytes() throws {
        let url = dir.appendingPathComponent("task_weights.json")
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data()))
        XCTAssertEqual(try FileError.read(url, limit: 10, what: "a test file"), Data())
        XCTAssertThrowsError(try TaskWeights.load(url)) { XCTAssertTrue("\($0)".contains("cannot decode"), "\($0)") }
    }
}
