import C3POCore
import C3POIndex
import Foundation
import XCTest

/// Sharded builds of archives: every shard reads its share, the merge gives the single build.
final class ShardTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// 40 records over two tasks and two archives, some incorrect.
    func archives() throws -> [URL] {
        func records(_ task: String, _ seeds: Range<Int>) -> [OfficialRecord] {
            seeds.map { OfficialRecord(caseID: "\($0)", question: "Question \($0) about \(task) number \($0 * 7 % 13)?", gold: "B",
                                       answer: $0 % 4 == 0 ? "A" : "B", correct: $0 % 4 != 0, weights: Fixtures.pathway($0)) }
        }
        return [
            try Fixtures.archive([("x_sciq_routing_results.json", Fixtures.file(records("sciq", 0..<15))),
                                  ("x_arc_routing_results.json", Fixtures.file(records("arc", 15..<25)))], in: dir, name: "a.zip"),
            try Fixtures.archive([("x_piqa_routing_results.json", Fixtures.file(records("piqa", 25..<40)))], in: dir, name: "b.tar", format: .tar),
        ]
    }

    let options = IndexBuilder.Options(dedup: 0.99, includeIncorrect: false, progress: false)

    func writeShards(_ n: Int, to parent: URL, options: IndexBuilder.Options? = nil, only: [Int]? = nil) throws {
        let urls = try archives()
        for k in only ?? Array(0..<n) {
            let shard = try ShardSpec(index: k, count: n)
            let set = try IndexBuilder.load(archives: urls, options: .init(), shard: shard, note: { _ in })
            let m = ShardManifest(created: "t", shard: shard, kind: "archive", sources: set.sources, model: nil,
                                  embedder: HashEmbedder().identifier, build: .init(options ?? self.options), offered: set.offered,
                                  count: set.count, skippedInvalid: set.skippedInvalid, layers: set.layers, experts: set.experts)
            try ShardFolder.write(set, manifest: m, to: parent.appendingPathComponent(shard.name))
        }
    }

    func testMergedShardsEqualTheSingleBuild() throws {
        let single = dir.appendingPathComponent("single")
        let whole = try IndexBuilder.load(archives: try archives(), options: .init(), note: { _ in })
        try IndexBuilder.build(whole, vectors: .embedder(HashEmbedder()), out: single, options: options, note: { _ in })
        let parts = dir.appendingPathComponent("parts")
        try writeShards(3, to: parts)
        let folders = try ShardFolder.expand([parts])
        XCTAssertEqual(folders.map(\.lastPathComponent), ["shard-0-of-3", "shard-1-of-3", "shard-2-of-3"])
        let counts = try folders.map { try ShardFolder.read($0).manifest.count }
        XCTAssertEqual(counts.reduce(0, +), 40)
        XCTAssertTrue(counts.allSatisfy { $0 > 0 && $0 < 40 }, "\(counts)")
        let (set, first) = try ShardFolder.merge(folders.reversed()) // the order given does not matter
        let merged = dir.appendingPathComponent("merged")
        try IndexBuilder.build(set, vectors: .embedder(HashEmbedder()), out: merged, options: first.build.options, shards: 3, note: { _ in })
        for name in ["embeddings.npy", "pathways.npy", "index.faiss", "records.jsonl"] {
            XCTAssertEqual(try Data(contentsOf: merged.appendingPathComponent(name)), try Data(contentsOf: single.appendingPathComponent(name)), name)
        }
        let a = try ReferenceIndex(directory: merged).manifest, b = try ReferenceIndex(directory: single).manifest
        XCTAssertEqual(a.shards?.count, 3)
        XCTAssertNil(b.shards)
        var x = a, y = b
        x.created = ""; y.created = ""; x.shards = nil
        XCTAssertEqual(x, y)
        XCTAssertEqual(a.filters.skippedIncorrect, 10)
    }

    func testInconsistentMissingOrRepeatedShardsAreRefusedByName() throws {
        let parts = dir.appendingPathComponent("parts")
        try writeShards(3, to: parts, only: [0, 2])
        XCTAssertThrowsError(try ShardFolder.merge(try ShardFolder.expand([parts]))) {
            XCTAssertTrue("\($0)".contains("shards missing: 1/3"), "\($0)")
        }
        XCTAssertThrowsError(try ShardFolder.merge([parts.appendingPathComponent("shard-0-of-3"), parts.appendingPathComponent("shard-0-of-3"),
                                                    parts.appendingPathComponent("shard-2-of-3")])) {
            XCTAssertTrue("\($0)".contains("shard-0-of-3/shard.json") && "\($0)".contains("given twice"), "\($0)")
        }
        // Shard 1 of another build (other options) is named with the field that differs.
        var other = options; other.dedup = nil
        try writeShards(3, to: parts, options: other, only: [1])
        XCTAssertThrowsError(try ShardFolder.merge(try ShardFolder.expand([parts]))) {
            XCTAssertTrue("\($0)".contains("shard-1-of-3/shard.json") && "\($0)".contains("field 'build'"), "\($0)")
        }
        // Another N.
        try FileManager.default.removeItem(at: parts.appendingPathComponent("shard-1-of-3"))
        try writeShards(4, to: parts, only: [1])
        XCTAssertThrowsError(try ShardFolder.merge(try ShardFolder.expand([parts]))) {
            XCTAssertTrue("\($0)".contains("field 'shard.count' is 4"), "\($0)")
        }
    }
}
