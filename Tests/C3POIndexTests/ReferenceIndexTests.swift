import C3POCore
import C3POIndex
import Foundation
import XCTest

final class ReferenceArchiveTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// What a build keeps of an archive: the reader's valid records through the builder's
    /// correctness filter (`IndexBuilder.assemble`), with the counts the manifest reports.
    struct Kept {
        var records: [ReferenceRecord], pathways: [Float], layers: Int, experts: Int, sources: [IndexManifest.Source]
        var skippedInvalid: Int, skippedIncorrect: Int
        var count: Int { records.count }
    }

    func load(_ url: URL, _ options: ReferenceArchive.Options = .init(), includeIncorrect: Bool = false) throws -> (Kept, [String]) {
        var notes: [String] = []
        let set = try IndexBuilder.load(archives: [url], options: options, note: { notes.append($0) })
        let c = try IndexBuilder.assemble(set, vectors: .embedder(HashEmbedder()),
                                          options: .init(includeIncorrect: includeIncorrect, progress: false)).contents
        return (Kept(records: c.records, pathways: c.pathways, layers: c.layers, experts: c.experts, sources: c.sources,
                     skippedInvalid: c.filters.skippedInvalid, skippedIncorrect: c.filters.skippedIncorrect), notes)
    }

    func testReadsOfficialLayoutFromZipTarAndTarGz() throws {
        for (name, format) in [("r.zip", ArchiveWriter.Format.zip), ("r.tar", .tar), ("r.tar.gz", .tarGzip)] {
            let url = try Fixtures.archive(Fixtures.standardEntries(), in: dir, name: name, format: format)
            let (set, notes) = try load(url)
            // Only correct records by default: sciq 0 and 2, openbookqa 7 and 12, in entry order then case id order.
            XCTAssertEqual(set.records.map(\.id), ["sciq_0", "sciq_2", "openbookqa_7", "openbookqa_12"], name)
            XCTAssertEqual(set.records.map(\.row), [0, 1, 2, 3])
            XCTAssertEqual(set.skippedIncorrect, 1)
            XCTAssertEqual(set.layers, 4); XCTAssertEqual(set.experts, 8)
            XCTAssertTrue(notes.contains { $0.contains("README.txt") && $0.contains("skipped") }, "\(notes)")
            XCTAssertEqual(set.records[0].question, Fixtures.sciq[0].question)
            XCTAssertEqual(set.records[0].gold, "B")
            XCTAssertEqual(set.records[0].source, "\(name):reference/instruct_sciq_correct_routing_results.json")
            XCTAssertEqual(set.sources.first?.records, 5)
            XCTAssertEqual(set.sources.first?.sha256, try SHA256Hasher.hexDigest(ofFile: url))
            // Dense pathway in expert order, although the JSON lists experts by weight.
            let want = Fixtures.openbookqa[1].weights.flatMap { $0.map(Float.init) }
            let got = Array(set.pathways[(3 * 32)..<(4 * 32)])
            XCTAssertEqual(zip(want, got).map { abs($0 - $1) }.max() ?? 1, 0, accuracy: 1e-7)
        }
    }

    func testIncludeIncorrectKeepsAllWithFlag() throws {
        let url = try Fixtures.archive(Fixtures.standardEntries(), in: dir)
        let (set, _) = try load(url, includeIncorrect: true)
        XCTAssertEqual(set.count, 5)
        XCTAssertEqual(set.records.first { $0.id == "sciq_1" }?.correct, false)
        XCTAssertEqual(set.records.first { $0.id == "sciq_1" }?.modelAnswer, "A")
        XCTAssertEqual(set.skippedIncorrect, 0)
    }

    func testTaskIsSecondWordOfFileName() {
        XCTAssertEqual(ReferenceArchive.task(ofFileNamed: "instruct_sciq_correct_routing_results.json"), "sciq")
        XCTAssertEqual(ReferenceArchive.task(ofFileNamed: "a/b/base_arc_routing_results_2.json"), "arc")
        XCTAssertNil(ReferenceArchive.task(ofFileNamed: "results.json"))
    }

    /// Builds an archive with the sciq file replaced by `records` and expects a stop naming `fragment`.
    func assertInvalid(_ records: [OfficialRecord], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = try Fixtures.archive([("x_sciq_routing_results.json", Fixtures.file(records))], in: dir, name: "bad-\(UUID()).zip")
        XCTAssertThrowsError(try load(url), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("x_sciq_routing_results.json") && text.contains("sciq_") && text.contains(fragment),
                          text, file: file, line: line)
        }
        // --skip-invalid: the bad record is skipped, named and counted.
        let (set, notes) = try load(url, .init(skipInvalid: true))
        XCTAssertEqual(set.skippedInvalid, 1, file: file, line: line)
        XCTAssertEqual(set.count, records.count - 1, file: file, line: line)
        XCTAssertTrue(notes.contains { $0.hasPrefix("skipped:") && $0.contains(fragment) }, "\(notes)", file: file, line: line)
    }

    func testWeightsNotSummingToOneStop() throws {
        var bad = Fixtures.sciq[0]; bad.caseID = "9"
        bad.weights[2][3] += 0.01
        try assertInvalid([Fixtures.sciq[2], bad], "sum to")
    }

    func testNaNWeightStops() throws {
        var bad = Fixtures.sciq[0]; bad.caseID = "9"
        bad.rawWeight["1:0"] = "NaN"
        try assertInvalid([Fixtures.sciq[2], bad], "not finite")
    }

    func testNegativeWeightStops() throws {
        var bad = Fixtures.sciq[0]; bad.caseID = "9"
        bad.rawWeight["0:0"] = "-0.5"
        try assertInvalid([Fixtures.sciq[2], bad], "negative")
    }

    func testMissingExpertStops() throws {
        var bad = Fixtures.sciq[0]; bad.caseID = "9"
        bad.dropExpert = ["2:5"]
        try assertInvalid([Fixtures.sciq[2], bad], "layer 2 has 7 experts")
    }

    func testInconsistentLayerCountsStop() throws {
        var bad = Fixtures.sciq[0]; bad.caseID = "9"
        bad.weights = Fixtures.pathway(9, layers: 3)
        try assertInvalid([Fixtures.sciq[2], bad], "has 3 layers x 8 experts, earlier records have 4 x 8")
    }

    func testMissingFieldStops() throws {
        let good = Fixtures.sciq[2]
        let text = "{\"2\": \(good.json()), \"9\": {\"input_text\": \"q\", \"correct_answer\": \"A\", \"is_correct\": true}}"
        let url = try Fixtures.archive([("x_sciq_routing_results.json", Data(text.utf8))], in: dir)
        XCTAssertThrowsError(try load(url)) { error in
            XCTAssertTrue("\(error)".contains("record 'sciq_9': missing field 'last_token_routing'"), "\(error)")
        }
    }

    /// Field types, nulls, key forms and duplicate experts: each names the record and the
    /// field, and --skip-invalid skips only that record.
    func testFieldProblemsAreNamed() throws {
        let good = Fixtures.sciq[2]
        var bad = Fixtures.sciq[0]; bad.caseID = "9"
        let edits: [(String, String, String)] = [
            ("\"is_correct\": true", "\"is_correct\": \"yes\"", "field 'is_correct' is not a boolean"),
            ("\"correct_answer\": \"B\"", "\"correct_answer\": null", "field 'correct_answer' is null"),
            ("\"input_text\": ", "\"input_text\": 7, \"x\": ", "field 'input_text' is not a string"),
            ("\"expert_0\": ", "\"expert_00\": ", "layer 0: key 'expert_00' is not expert_<i>"),
            ("\"expert_1\": ", "\"expert_0\": ", "layer 0: expert 0 listed twice"),
            ("\"layer\": 1,", "\"layer\": 1.5,", "field 'last_token_routing.layers[1].layer' is not an integer"),
            ("\"layer\": 2,", "\"layer\": 7,", "'last_token_routing.layers[2].layer' is 7, outside 0..<4"),
            ("\"expert_3\": ", "\"expert_3\": null, \"y\": ", "field 'last_token_routing.layers[0].routing_weights.expert_3' is null"),
            ("\"layers\": [", "\"layers\": {}, \"z\": [", "field 'last_token_routing.layers' is not an array"),
        ]
        for (find, replace, fragment) in edits {
            let edited = bad.json().replacingOccurrences(of: find, with: replace)
            XCTAssertNotEqual(edited, bad.json(), find)
            let text = "{\"2\": \(good.json()), \"9\": \(edited)}"
            let url = try Fixtures.archive([("x_sciq_routing_results.json", Data(text.utf8))], in: dir, name: "f-\(UUID()).zip")
            XCTAssertThrowsError(try load(url)) { error in
                XCTAssertTrue("\(error)".contains("record 'sciq_9': \(fragment)"), "\(error)")
            }
            let (set, notes) = try load(url, .init(skipInvalid: true))
            XCTAssertEqual(set.skippedInvalid, 1, fragment)
            XCTAssertEqual(set.records.map(\.id), ["sciq_2"], fragment)
            XCTAssertTrue(notes.contains { $0.contains("sciq_9") && $0.contains(fragment) }, "\(notes)")
        }
    }

    /// A syntax error names the file, the record being read, the line and the byte offset.
    func testSyntaxErrorNamesRecordAndLine() throws {
        let text = "{\"2\": \(Fixtures.sciq[2].json()),\n\"9\": {\"input_text\": \"q\",\n \"is_correct\": tru}}"
        let url = try Fixtures.archive([("x_sciq_routing_results.json", Data(text.utf8))], in: dir)
        XCTAssertThrowsError(try load(url, .init(skipInvalid: true))) { error in
            let t = "\(error)"
            XCTAssertTrue(t.contains("x_sciq_routing_results.json") && t.contains("not valid JSON") && t.contains("line 3, column 16")
                          && t.contains("byte offset") && t.contains("in record 'sciq_9'"), t)
        }
    }

    func testWrongJSONShapeIsRefusedNamingFileAndField() throws {
        let cases: [(String, String)] = [
            ("[1, 2, 3]", "(top level)"),
            ("{\"0\": [1, 2]}", "'0'"),
            ("{\"0\": ", "not valid JSON"),
        ]
        for (text, fragment) in cases {
            let url = try Fixtures.archive([("x_sciq_routing_results.json", Data(text.utf8))], in: dir, name: "s-\(UUID()).zip")
            XCTAssertThrowsError(try load(url, .init(skipInvalid: true))) { error in
                let t = "\(error)"
                XCTAssertTrue(t.contains("x_sciq_routing_results.json") && t.contains("wrong JSON shape") && t.contains(fragment), t)
            }
        }
    }

    func testHostileArchivesAreRefused() throws {
        let body = Fixtures.file([Fixtures.sciq[0]])
        let dotdot = try Fixtures.archive([("../x_sciq_routing_results.json", body)], in: dir, name: "dotdot.tar", format: .tar)
        XCTAssertThrowsError(try load(dotdot)) { XCTAssertTrue("\($0)".contains("refused entry '../x_sciq_routing_results.json'"), "\($0)") }

        let absolute = try Fixtures.archive([("/tmp/x_sciq_routing_results.json", body)], in: dir, name: "abs.zip")
        XCTAssertThrowsError(try load(absolute)) { XCTAssertTrue("\($0)".contains("refused entry '/tmp/x_sciq_routing_results.json'"), "\($0)") }

        let big = try Fixtures.archive([("x_sciq_routing_results.json", body)], in: dir, name: "big.zip")
        XCTAssertThrowsError(try load(big, .init(limits: .init(maxEntryBytes: 1000, maxTotalBytes: 1000)))) {
            XCTAssertTrue("\($0)".contains("exceeds the entry size limit of 1000 bytes"), "\($0)")
        }

        // A zip cut in the middle of its only entry.
        let whole = try Data(contentsOf: try Fixtures.archive(Fixtures.standardEntries(), in: dir, name: "whole.zip"))
        let cut = dir.appendingPathComponent("cut.zip")
        try whole.prefix(whole.count / 2).write(to: cut)
        XCTAssertThrowsError(try load(cut)) { XCTAssertTrue("\($0)".contains("truncated or corrupt"), "\($0)") }
    }
}

final class QuestionTextTests: XCTestCase {
    func testPublishedInstructionPrefixAndOptionsAreRemoved() {
        let p = "Answer with only a single letter (A, B, C, or D) representing the correct option. Do not explain your reasoning. Just output the letter of the answer. Question: Which planet is red?\n A. Mars\n B. Venus\nAnswer:"
        XCTAssertEqual(QuestionText.extract(from: p), "Which planet is red?")
    }

    func testOnlyTheLastQuestionOfFewShotPromptsIsKept() {
        let p = "Question: What is 1+1?\n A. 2\n B. 3\nAnswer: A\n\nQuestion: What is 2+2?\n A. 4\n B. 5\nAnswer: A\n\nQuestion: Which gas do we breathe?\nA. oxygen\nB. helium\nAnswer:"
        XCTAssertEqual(QuestionText.extract(from: p), "Which gas do we breathe?")
    }

    func testPlainQuestionIsUnchanged() {
        XCTAssertEqual(QuestionText.extract(from: "  Why is the sky blue?\n"), "Why is the sky blue?")
    }

    /// Expected values come from Datasets/*.jsonl's `question` field, written by Scripts/fetch-benchmarks
    /// from the raw datasets, independently of this code.
    func testDatasetPromptsReduceToTheirQuestionField() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let files = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Datasets").path)
            .filter { $0.hasSuffix(".jsonl") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 12)
        var checked = 0, mismatches: [String] = []
        for f in files {
            for q in try MCDataset.load(root.appendingPathComponent("Datasets/\(f)")) {
                checked += 1
                if QuestionText.extract(from: q.prompt) != q.question, mismatches.count < 5 { mismatches.append("\(f) \(q.id)") }
            }
        }
        XCTAssertEqual(mismatches, [], "first mismatches of \(checked) prompts")
    }
}

final class ReferenceIndexTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// `--factory auto`: exact search up to the limit, HNSW32 with the measured efSearch above it;
    /// a build's own search parameter wins, and any other factory string is kept as it is.
    func testAutoFactoryResolution() {
        let limit = IndexWriter.autoExactLimit
        XCTAssertEqual(IndexWriter.resolve(factory: "auto", count: limit, searchParameters: [:]).0, "Flat")
        let above = IndexWriter.resolve(factory: "auto", count: limit + 1, searchParameters: [:])
        XCTAssertEqual(above.0, "HNSW32")
        XCTAssertEqual(above.1, ["efSearch": IndexWriter.autoEfSearch])
        XCTAssertEqual(IndexWriter.resolve(factory: "AUTO", count: limit + 1, searchParameters: ["efSearch": 200]).1, ["efSearch": 200])
        let kept = IndexWriter.resolve(factory: "IVF64,Flat", count: 10, searchParameters: ["nprobe": 8])
        XCTAssertEqual(kept.0, "IVF64,Flat")
        XCTAssertEqual(kept.1, ["nprobe": 8])
    }

    func buildStandard(factory: String = "Flat", at out: URL? = nil, dedup: Float? = nil) throws -> URL {
        let url = try Fixtures.archive(Fixtures.standardEntries(), in: dir, name: "ref-\(UUID()).zip")
        let set = try IndexBuilder.load(archives: [url], options: .init(), note: { _ in })
        let target = out ?? dir.appendingPathComponent("idx")
        try IndexBuilder.build(set, vectors: .embedder(HashEmbedder()), out: target,
                               options: .init(factory: factory, dedup: dedup, progress: false), note: { _ in })
        return target
    }

    func testBuildLoadSearchRoundTrip() throws {
        let out = try buildStandard()
        let idx = try ReferenceIndex(directory: out)
        XCTAssertEqual(idx.count, 4)
        XCTAssertEqual(idx.manifest.tasks, ["sciq": 2, "openbookqa": 2])
        XCTAssertEqual(idx.manifest.filters.skippedIncorrect, 1)
        XCTAssertEqual(idx.manifest.criticalLayers, [0, 1, 2, 3], "fewer than 5 layers: all are critical")
        XCTAssertEqual(idx.manifest.embedder, .init(id: "test/hashed-bag-of-words", dimension: 64))
        XCTAssertNil(idx.manifest.model)
        let manifestText = try String(contentsOf: out.appendingPathComponent("manifest.json"), encoding: .utf8)
        XCTAssertTrue(manifestText.contains("\"model\" : null"), manifestText)
        XCTAssertEqual(idx.pathway(row: 1).count, 32)
        let want = Fixtures.sciq[2].weights.flatMap { $0.map(Float.init) }
        XCTAssertEqual(zip(want, idx.pathway(row: 1)).map { abs($0 - $1) }.max() ?? 1, 0, accuracy: 1e-7)

        let embedder = HashEmbedder()
        for (row, record) in idx.records.enumerated() {
            let q = try embedder.embed([record.question], batchSize: 1, progress: nil)
            let hits = try idx.search(q, k: 3)[0]
            XCTAssertEqual(hits.first?.row, row)
            XCTAssertGreaterThanOrEqual(hits.first?.similarity ?? 0, 0.999)
            XCTAssertEqual(hits.count, 3)
            XCTAssertEqual(hits.map(\.similarity), hits.map(\.similarity).sorted(by: >))
            // The overlap rule drops the record itself yet still returns k neighbours.
            let pruned = try idx.search(q, k: 3, maxSimilarity: 0.95)[0]
            XCTAssertFalse(pruned.contains { $0.row == row })
            XCTAssertEqual(pruned.count, 3)
            let excluded = try idx.search(q, k: 2, exclude: { $0 == row || $0 == (row + 1) % 4 })[0]
            XCTAssertEqual(Set(excluded.map(\.row)), Set(0..<4).subtracting([row, (row + 1) % 4]))
        }
        XCTAssertThrowsError(try idx.checkCompatible(HashEmbedder(identifier: "other", dimension: 64))) {
            XCTAssertTrue("\($0)".contains("refusing embedder other"), "\($0)")
        }
    }

    func testApproximateFactoriesBuildAndFindSelf() throws {
        for factory in ["HNSW8", "IVF2,Flat"] {
            let idx = try ReferenceIndex(directory: buildStandard(factory: factory, at: dir.appendingPathComponent(factory)))
            XCTAssertEqual(idx.manifest.factory, factory)
            let q = try HashEmbedder().embed([idx.records[2].question], batchSize: 1, progress: nil)
            XCTAssertEqual(try idx.search(q, k: 1)[0].first?.row, 2, factory)
        }
    }

    func testFailedBuildLeavesOlderIndexIntactAndFaissErrorsSurface() throws {
        let out = try buildStandard()
        let before = try Data(contentsOf: out.appendingPathComponent("manifest.json"))
        XCTAssertThrowsError(try buildStandard(factory: "NoSuchFactory", at: out)) { error in
            XCTAssertTrue("\(error)".contains("index_factory") && "\(error)".contains("NoSuchFactory"), "\(error)")
        }
        // IVF64 on 4 vectors: faiss's k-means refuses; its message is kept.
        XCTAssertThrowsError(try buildStandard(factory: "IVF64,Flat", at: out)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("IVF64,Flat") && text.lowercased().contains("training points"), text)
        }
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("manifest.json")), before)
        XCTAssertEqual(try ReferenceIndex(directory: out).count, 4)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".idx") }
        XCTAssertEqual(leftovers, [])
    }

    /// The manifest without `files`, as folders written before checksums have it: the files'
    /// cross-checks are what stands between them and a damaged file.
    func dropChecksums(_ index: URL) throws {
        let url = index.appendingPathComponent("manifest.json")
        var j = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        j["files"] = nil
        try JSONSerialization.data(withJSONObject: j, options: [.prettyPrinted, .sortedKeys]).write(to: url)
    }

    func testLoadRefusesInconsistentFolders() throws {
        let out = try buildStandard()
        try dropChecksums(out)
        let records = out.appendingPathComponent("records.jsonl")
        let lines = try String(contentsOf: records, encoding: .utf8).split(separator: "\n")
        try (lines.dropLast().joined(separator: "\n") + "\n").write(to: records, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ReferenceIndex(directory: out)) {
            XCTAssertTrue("\($0)".contains("records.jsonl") && "\($0)".contains("3 records, manifest 'count' is 4"), "\($0)")
        }
        let out2 = try buildStandard(at: dir.appendingPathComponent("v2"))
        let m = out2.appendingPathComponent("manifest.json")
        let text = try String(contentsOf: m, encoding: .utf8).replacingOccurrences(of: "\"format_version\" : 1", with: "\"format_version\" : 2")
        try text.write(to: m, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ReferenceIndex(directory: out2)) { XCTAssertTrue("\($0)".contains("'format_version' is 2"), "\($0)") }
        let out3 = try buildStandard(at: dir.appendingPathComponent("nopath"))
        try FileManager.default.removeItem(at: out3.appendingPathComponent("pathways.npy"))
        XCTAssertThrowsError(try ReferenceIndex(directory: out3)) { XCTAssertTrue("\($0)".contains("pathways.npy: missing"), "\($0)") }
    }

    func testDedupKeepsFirstOfSameTaskOnly() {
        // Rows 0 and 1 (task a) nearly equal; row 2 (task b) equal to row 0; row 3 distinct.
        let v: [[Float]] = [[1, 0, 0], [0.999, 0.0447, 0], [1, 0, 0], [0, 1, 0]]
        let unit = v.flatMap { r -> [Float] in let n = (r.map { $0 * $0 }.reduce(0, +)).squareRoot(); return r.map { $0 / n } }
        XCTAssertEqual(IndexBuilder.deduplicate(unit, dimension: 3, tasks: ["a", "a", "b", "a"], threshold: 0.95), [0, 2, 3])
        XCTAssertEqual(IndexBuilder.deduplicate(unit, dimension: 3, tasks: ["a", "a", "b", "a"], threshold: 0.9999), [0, 1, 2, 3])
    }

    func testDedupInBuildIsCountedInManifest() throws {
        var dup = Fixtures.sciq[0]; dup.caseID = "5"
        let url = try Fixtures.archive([("x_sciq_routing_results.json", Fixtures.file([Fixtures.sciq[0], dup, Fixtures.sciq[2]]))], in: dir)
        let set = try IndexBuilder.load(archives: [url], options: .init(), note: { _ in })
        let c = try IndexBuilder.assemble(set, vectors: .embedder(HashEmbedder()), options: .init(dedup: 0.95, progress: false)).contents
        XCTAssertEqual(c.records.map(\.id), ["sciq_0", "sciq_2"])
        XCTAssertEqual(c.records.map(\.row), [0, 1])
        XCTAssertEqual(c.filters.deduplicated, 1)
        XCTAssertEqual(c.filters.dedup ?? 0, 0.95, accuracy: 1e-6)
        XCTAssertEqual(c.pathways.count, 2 * 32)
        XCTAssertEqual(Array(c.pathways[32..<64]), Fixtures.sciq[2].weights.flatMap { $0.map(Float.init) })
    }
}

/// Pathways are mixed only into the model that produced them (Index/README.md, `manifest.json`).
final class IndexCompatibilityTests: XCTestCase {
    let model = ModelIdentity(id: "m", configSHA256: String(repeating: "a", count: 64), layers: 4, experts: 8, topK: 2, family: "olmoe")

    func manifest(model: ModelIdentity?, layers: Int = 4, experts: Int = 8) -> IndexManifest {
        IndexManifest(created: "", embedder: .init(id: "e", dimension: 2), model: model, layers: layers, experts: experts,
                      criticalLayers: [3], factory: "Flat", count: 0, tasks: [:], sources: [], filters: .init(), mixing: .defaults)
    }

    func testShapeModelFamilyAndTokenizerAreChecked() throws {
        let dir = URL(fileURLWithPath: "/idx")
        XCTAssertNoThrow(try IndexCompatibility.check(manifest(model: model), directory: dir, model: model))
        // An archive-only index (no model) is checked for its shape only.
        XCTAssertNoThrow(try IndexCompatibility.check(manifest(model: nil), directory: dir, model: model))
        XCTAssertThrowsError(try IndexCompatibility.check(manifest(model: nil, experts: 16), directory: dir, model: model)) {
            XCTAssertTrue("\($0)".contains("/idx/manifest.json") && "\($0)".contains("4 layers × 16 experts"), "\($0)")
        }
        var other = model; other.configSHA256 = String(repeating: "b", count: 64)
        XCTAssertThrowsError(try IndexCompatibility.check(manifest(model: model), directory: dir, model: other)) {
            XCTAssertTrue("\($0)".contains("refusing to mix pathways of another model"), "\($0)")
        }
        var family = model; family.family = "mixtral"
        XCTAssertThrowsError(try IndexCompatibility.check(manifest(model: model), directory: dir, model: family)) {
            XCTAssertTrue("\($0)".contains("olmoe family"), "\($0)")
        }
        var tok = model; tok.tokenizerSHA256 = "1"
        var built = model; built.tokenizerSHA256 = "2"
        XCTAssertThrowsError(try IndexCompatibility.check(manifest(model: built), directory: dir, model: tok)) {
            XCTAssertTrue("\($0)".contains("another tokenizer.json"), "\($0)")
        }
    }
}

/// Index folders are verified before use: every file's size and SHA-256 against the manifest.
final class IndexVerificationTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func build(_ name: String, records: [OfficialRecord] = Fixtures.sciq + Fixtures.openbookqa) throws -> URL {
        let url = try Fixtures.archive([("x_sciq_routing_results.json", Fixtures.file(records))], in: dir, name: "\(name).zip")
        let out = dir.appendingPathComponent(name)
        try IndexBuilder.build(try IndexBuilder.load(archives: [url], options: .init(), note: { _ in }), vectors: .embedder(HashEmbedder()),
                               out: out, options: .init(includeIncorrect: true, progress: false), note: { _ in })
        return out
    }

    func assertRefused(_ index: URL, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ReferenceIndex(directory: index), file: file, line: line) { e in
            for f in fragments { XCTAssertTrue("\(e)".contains(f), "\(e)", file: file, line: line) }
        }
    }

    func testTruncatedSwappedEditedOrAddedFilesAreRefusedByName() throws {
        let a = try build("a"), b = try build("b", records: Array(Fixtures.sciq.prefix(2)) + Fixtures.openbookqa)
        let m = try ReferenceIndex(directory: a).manifest
        XCTAssertEqual(Set(m.files?.keys ?? [:].keys), ["embeddings.npy", "index.faiss", "pathways.npy", "records.jsonl"])
        XCTAssertEqual(try IndexFolder.verifyFiles(m, in: a).count, 4)
        let fm = FileManager.default
        func fresh() throws -> URL {
            let c = dir.appendingPathComponent("c-\(UUID())")
            try fm.copyItem(at: a, to: c)
            return c
        }
        // Truncated: one byte less (faiss never sees it).
        var c = try fresh()
        let faiss = try Data(contentsOf: c.appendingPathComponent("index.faiss"))
        try faiss.dropLast().write(to: c.appendingPathComponent("index.faiss"))
        assertRefused(c, ["index.faiss", "truncated or replaced", "files.index.faiss.bytes"])
        // Edited in place: the same size, one byte flipped.
        c = try fresh()
        var npy = try Data(contentsOf: c.appendingPathComponent("pathways.npy"))
        npy[npy.count - 1] ^= 0x40
        try npy.write(to: c.appendingPathComponent("pathways.npy"))
        assertRefused(c, ["pathways.npy", "edited or swapped"])
        // Swapped with another index's file of the same name.
        c = try fresh()
        try fm.removeItem(at: c.appendingPathComponent("records.jsonl"))
        try fm.copyItem(at: b.appendingPathComponent("records.jsonl"), to: c.appendingPathComponent("records.jsonl"))
        assertRefused(c, ["records.jsonl"])
        // Missing, and added.
        c = try fresh()
        try fm.removeItem(at: c.appendingPathComponent("embeddings.npy"))
        assertRefused(c, ["embeddings.npy: missing"])
        c = try fresh()
        try Data("{\"tasks\": {}}".utf8).write(to: c.appendingPathComponent("task_weights.json"))
        assertRefused(c, ["task_weights.json", "not listed"])
        // A manifest that stops listing a required file is refused too.
        c = try fresh()
        var j = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: c.appendingPathComponent("manifest.json"))) as? [String: Any])
        var files = try XCTUnwrap(j["files"] as? [String: Any]); files["index.faiss"] = nil; j["files"] = files
        try JSONSerialization.data(withJSONObject: j).write(to: c.appendingPathComponent("manifest.json"))
        assertRefused(c, ["manifest.json", "lists no 'index.faiss'"])
    }
}
