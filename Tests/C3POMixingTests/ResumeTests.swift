import C3POCore
import C3POMixing
import C3POModel
import Foundation
import XCTest

/// An interrupted `c3po-index build --model` continues where it stopped and ends with
/// exactly the records an uninterrupted build produces.
final class ResumeTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testInterruptedRecordingResumesToTheSameRecords() throws {
        let model = try ModelLoader.load(directory: root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32"))
        // PIQA: two labels, " A" and " B", are single tokens of the fixture's tokenizer.
        let source = "piqa_validation.jsonl"
        let questions = try MCDataset.load(root.appendingPathComponent("Datasets/\(source)")).prefix(12).map { ($0, source) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("resume-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        let whole = try PathwayRecorder.record(model: model, questions: questions,
                                               workFile: dir.appendingPathComponent("a.jsonl"), progress: false)
        XCTAssertEqual(whole.count, 12)
        let recorded = whole.filter { $0.skipped == nil }
        XCTAssertGreaterThanOrEqual(recorded.count, 8, "most questions must really run: \(whole.compactMap(\.skipped))")
        XCTAssertTrue(recorded.allSatisfy { $0.pathway.count == model.layerCount })

        // First run stops after 5 questions, killed in the middle of writing the 6th line.
        let work = dir.appendingPathComponent("b.jsonl")
        _ = try PathwayRecorder.record(model: model, questions: Array(questions.prefix(5)), workFile: work, progress: false)
        let handle = try FileHandle(forWritingTo: work)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"id": "torn", "pathw"#.utf8))
        try handle.close()
        XCTAssertEqual(PathwayRecorder.readWork(work).count, 5, "the torn line must be dropped")

        let counting = CountingModel(model)
        let resumed = try PathwayRecorder.record(model: counting, questions: questions, workFile: work, progress: false)
        let expected = whole.suffix(7).filter { $0.skipped == nil }.count
        XCTAssertGreaterThan(expected, 0)
        XCTAssertEqual(counting.prefills, expected, "only the unrecorded questions may be run again")
        XCTAssertEqual(resumed.map(\.id), whole.map(\.id))
        XCTAssertEqual(resumed, whole, "resumed records (pathways included) must equal an uninterrupted run's")
        XCTAssertEqual(PathwayRecorder.readWork(work).count, 12)
    }
}

/// Forwards to a real model and counts full passes.
final class CountingModel: RoutedMoEModel {
    let inner: RoutedMoEModel
    var prefills = 0
    init(_ inner: RoutedMoEModel) { self.inner = inner }
    var identity: ModelIdentity { inner.identity }
    var layerCount: Int { inner.layerCount }
    var expertCount: Int { inner.expertCount }
    var topK: Int { inner.topK }
    var vocabularySize: Int { inner.vocabularySize }
    var maxContext: Int { inner.maxContext }
    func encode(_ text: String) throws -> [Int] { try inner.encode(text) }
    func labelTokenIDs(_ labels: [String]) throws -> [Int] { try inner.labelTokenIDs(labels) }
    func prefill(_ tokens: [Int], override: RoutingOverride?) throws -> PrefillState {
        prefills += 1
        return try inner.prefill(tokens, override: override)
    }
    func reevaluateTail(_ state: PrefillState, fromLayer: Int, override: RoutingOverride?, rows: [Int]?) throws -> [Float] {
        try inner.reevaluateTail(state, fromLayer: fromLayer, override: override, rows: rows)
    }
}
