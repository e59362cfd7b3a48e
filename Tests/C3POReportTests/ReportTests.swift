import C3POCore
import C3POEmbedding
import C3POIndex
import C3POMixing
import C3POReport
import Foundation
import XCTest

/// The report's HTML as a reader's browser gets it: its sections, one SVG per chart, and
/// numbers that are the runs' own summaries (`RunSummary`, what `c3po-apply --json` prints).
final class ReportTests: XCTestCase {
    var cleanup: [URL] = []
    override func tearDown() { for u in cleanup { try? FileManager.default.removeItem(at: u) } }

    func written(_ s: SyntheticRun, seed: UInt64 = 1) throws -> SyntheticRun.Written {
        let w = try s.write(seed: seed)
        cleanup.append(w.directory)
        return w
    }

    func render(_ w: SyntheticRun.Written, options: ReportOptions = ReportOptions()) throws -> (String, [ReportRun]) {
        let runs = try w.runFiles.map { try ReportRun.load($0) }
        let html = try HTMLReport.render(runs: runs, index: try ReportIndex(directory: w.index), options: options)
        return (html, runs)
    }

    // MARK: a small HTML reader: opening tags and their attributes

    struct Tag { var name: String; var attributes: [String: String] }

    static func tags(_ html: String, named name: String, class cls: String? = nil) -> [Tag] {
        let pattern = "<\(name)\\b([^>]*)>"
        let re = try! NSRegularExpression(pattern: pattern)
        let attr = try! NSRegularExpression(pattern: "([A-Za-z][\\w-]*)=\"([^\"]*)\"")
        let ns = html as NSString
        return re.matches(in: html, range: NSRange(location: 0, length: ns.length)).compactMap { m in
            let inner = ns.substring(with: m.range(at: 1))
            var attrs: [String: String] = [:]
            for a in attr.matches(in: inner, range: NSRange(location: 0, length: (inner as NSString).length)) {
                attrs[(inner as NSString).substring(with: a.range(at: 1))] = (inner as NSString).substring(with: a.range(at: 2))
                    .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
                    .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&#39;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
            }
            if let cls, attrs["class"] != cls { return nil }
            return Tag(name: name, attributes: attrs)
        }
    }

    static func count(_ needle: String, in html: String) -> Int { html.components(separatedBy: needle).count - 1 }

    // MARK: tests

    func testPageIsSelfContainedWithEverySection() throws {
        let (html, _) = try render(try written(SyntheticRun()))
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"), "not an HTML5 page")
        XCTAssertTrue(html.contains("<meta charset=\"utf-8\">"))
        for forbidden in ["<script", "<link", "src=", "http://", "https://", "@import", "url("] {
            XCTAssertFalse(html.contains(forbidden), "the page must open from disk with nothing fetched, no script: found \(forbidden)")
        }
        for id in HTMLReport.sectionIDs {
            XCTAssertEqual(Self.count("<section id=\"\(id)\">", in: html), 1, "section \(id) missing or repeated")
        }
        XCTAssertEqual(Self.count("<svg", in: html), Self.count("</svg>", in: html), "unbalanced svg elements")
        XCTAssertEqual(Self.count("<details", in: html), Self.count("</details>", in: html))
        XCTAssertEqual(Self.count("<table", in: html), Self.count("</table>", in: html))
        XCTAssertTrue(html.contains("What is question q-0 &lt;of&gt; alpha?"), "question text is shown, escaped")
        XCTAssertFalse(html.contains("<of>"), "unescaped question text")
    }

    func testOneSVGPerChartAndOneBarPerSeries() throws {
        let s = SyntheticRun()
        let (html, _) = try render(try written(s))
        let accCharts = Self.count("<svg class=\"chart acc\"", in: html)
        XCTAssertEqual(accCharts, s.tasks.count + 1, "one accuracy chart per task plus all tasks")
        XCTAssertEqual(Self.count("<svg class=\"chart timing\"", in: html), 1)
        // Series side by side: base, kernel, neighbors, oracle (the none run is the base).
        let bars = Self.tags(html, named: "rect", class: "bar")
        XCTAssertEqual(bars.count, accCharts * 4)
        XCTAssertEqual(Array(bars.prefix(4)).map { $0.attributes["data-series"] ?? "" }, ["base", "kernel", "neighbors", "oracle"])
        XCTAssertEqual(Array(bars.prefix(4)).map { $0.attributes["data-task"] ?? "" }, Array(repeating: "all", count: 4))
    }

    func testNumbersEqualEachRunsSummary() throws {
        let (html, runs) = try render(try written(SyntheticRun(questions: 90)))
        let bars = Self.tags(html, named: "rect", class: "bar")
        func bar(_ series: String, _ task: String) -> Double? {
            bars.first { $0.attributes["data-series"] == series && $0.attributes["data-task"] == task }
                .flatMap { $0.attributes["data-accuracy"] }.flatMap(Double.init)
        }
        let cells = Self.tags(html, named: "td")
        for run in runs {
            let method = try XCTUnwrap(run.method, run.label)
            let summary = RunSummary(results: run.results, method: method)
            if method == .none {
                XCTAssertEqual(bar("base", "all"), summary.baseAccuracy, "base bar is not the runs' base accuracy")
                continue
            }
            XCTAssertEqual(bar(run.label, "all"), summary.c3poAccuracy, "\(run.label): bar over all tasks")
            for (task, t) in summary.byTask {
                XCTAssertEqual(bar(run.label, task), t.c3poAccuracy, "\(run.label) on \(task)")
                XCTAssertEqual(bar("base", task), t.baseAccuracy, "base on \(task)")
            }
            let counts = try XCTUnwrap(cells.first { $0.attributes["data-series"] == run.label && $0.attributes["data-task"] == "all" && $0.attributes["data-improved"] != nil })
            XCTAssertEqual(counts.attributes["data-improved"].flatMap(Int.init), summary.improved, run.label)
            XCTAssertEqual(counts.attributes["data-worsened"].flatMap(Int.init), summary.worsened, run.label)
            let overhead = try XCTUnwrap(cells.first { $0.attributes["data-run"] == run.label && $0.attributes["data-overhead"] != nil })
            XCTAssertEqual(try XCTUnwrap(overhead.attributes["data-overhead"].flatMap(Double.init)), summary.c3poOverheadRatio, accuracy: 1e-12, run.label)
            XCTAssertTrue(html.contains(">\(String(format: "%.1f", 100 * summary.c3poAccuracy))</text>"), "\(run.label): the bar's printed value")
        }
        // The share of the oracle gap: gain of kernel over gain of the oracle.
        let kernel = RunSummary(results: runs[1].results, method: .kernel), oracle = RunSummary(results: runs[3].results, method: .oracle)
        let share = try XCTUnwrap(cells.first { $0.attributes["data-series"] == "kernel" && $0.attributes["data-task"] == "all" && $0.attributes["data-gap-recovered"] != nil })
        XCTAssertEqual(try XCTUnwrap(share.attributes["data-gap-recovered"].flatMap(Double.init)),
                       (kernel.c3poAccuracy - kernel.baseAccuracy) / (oracle.c3poAccuracy - oracle.baseAccuracy), accuracy: 1e-12)
    }

    func testFlippedQuestionsWithNeighboursAndHeatmaps() throws {
        let s = SyntheticRun()
        let (html, runs) = try render(try written(s))
        let ids = Set(runs[0].results.map(\.id))
        var gained = Set<String>(), lost = Set<String>()
        for run in runs { for r in run.scored {
            if !r.baseCorrect && r.c3poCorrect { gained.insert(r.id) }
            if r.baseCorrect && !r.c3poCorrect { lost.insert(r.id) }
        } }
        XCTAssertFalse(gained.isEmpty); XCTAssertFalse(lost.isEmpty)
        XCTAssertTrue(gained.isDisjoint(with: lost))
        let details = Self.tags(html, named: "details")
        XCTAssertEqual(details.filter { $0.attributes["id"]?.hasPrefix("gained-") == true }.count, gained.count)
        XCTAssertEqual(details.filter { $0.attributes["id"]?.hasPrefix("lost-") == true }.count, lost.count)
        XCTAssertTrue(html.contains("<h3 id=\"gained\">Gained: wrong at base, right under a run (\(gained.count))</h3>"))
        XCTAssertLessThanOrEqual(gained.count + lost.count, ids.count)
        // Neighbour tables name the neighbours' questions from the index.
        XCTAssertTrue(html.contains("Reference question"), "neighbour questions come from the index's records")
        // Heat-maps: per task base, neighbours, kernel, neighbors, oracle (the none run has
        // no re-mixed routing); per flipped question base + neighbours + the runs that re-mixed.
        let maps = Self.count("<svg class=\"hm\"", in: html)
        XCTAssertEqual(Self.count("<figure class=\"maps tavg\"", in: html), s.tasks.count)
        XCTAssertEqual(Self.count("<figure class=\"maps qmaps\"", in: html), gained.count + lost.count)
        XCTAssertGreaterThanOrEqual(maps, s.tasks.count * 5 + (gained.count + lost.count) * (1 + s.k))
        XCTAssertEqual(Self.count("<svg class=\"scale\"", in: html), s.tasks.count + gained.count + lost.count, "one colour scale per figure")
        XCTAssertTrue(html.contains("class=\"core\""), "core experts are marked")
    }

    func testHeatmapCapListsTheRestWithoutMaps() throws {
        var o = ReportOptions()
        o.maxHeatmaps = 2
        let (html, _) = try render(try written(SyntheticRun(questions: 60)), options: o)
        XCTAssertEqual(Self.count("<figure class=\"maps qmaps\"", in: html), 4, "2 gained + 2 lost")
        XCTAssertEqual(Self.count("<table class=\"more\">", in: html), 2)
    }

    func testRowsWithoutPathwaysStillRender() throws {
        // Rows written before the report existed: no pathways, no question text.
        let line = #"{"alpha":0,"base_answer":"A","base_correct":false,"bandwidth":0.25,"c3po_answer":"B","c3po_correct":true,"gold":"B","id":"x1","method":"kernel","neighbors":[],"seconds_base":0.01,"seconds_c3po":0.02,"task":"t"}"#
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-report-old-\(UUID().uuidString).jsonl")
        cleanup.append(dir)
        try Data((line + "\n").utf8).write(to: dir)
        let html = try HTMLReport.render(runs: [try ReportRun.load(dir)], index: nil)
        XCTAssertTrue(html.contains("records no pathways"))
        XCTAssertEqual(Self.count("<svg class=\"hm\"", in: html), 0)
        XCTAssertEqual(Self.count("<details class=\"q\"", in: html), 1)
    }

    func testIndexWithWrongPathwayShapeIsRefused() throws {
        let w = try written(SyntheticRun())
        try NPY.write(float32: [Float](repeating: 0.125, count: 8 * 3), shape: [3, 8], to: w.index.appendingPathComponent(IndexFolder.pathwaysFile))
        XCTAssertThrowsError(try ReportIndex(directory: w.index)) { e in
            XCTAssertTrue("\(e)".contains("pathways.npy"), "\(e)")
        }
    }

    /// Issue #15's bound: 10,000 questions, 64 experts × 16 layers (5 critical), a method
    /// and the oracle (which flips every question the base gets wrong), stays under 20 MB.
    func testLargeRunStaysUnder20MB() throws {
        var s = SyntheticRun()
        s.questions = 10_000; s.tasks = (0..<12).map { "task\($0)" }
        s.layers = 16; s.experts = 64; s.criticalLayers = [11, 12, 13, 14, 15]; s.references = 2000; s.coreExperts = 20
        s.baseWrong = 0.25
        s.runs = [("kernel", "kernel", 0.5, 0.03), ("neighbors", "neighbors", 0.45, 0.05),
                  ("oracle", "oracle (uses gold answers: upper bound, analysis only)", 1, 0)]
        let w = try written(s)
        let start = Date()
        let runs = try w.runFiles.map { try ReportRun.load($0) }
        let loaded = Date()
        let html = try HTMLReport.render(runs: runs, index: try ReportIndex(directory: w.index))
        let bytes = html.utf8.count
        print(String(format: "large report: %.1f MB; JSONL read %.2f s, page %.2f s", Double(bytes) / 1e6, loaded.timeIntervalSince(start), Date().timeIntervalSince(loaded)))
        XCTAssertLessThan(bytes, 20_000_000, "the page of a 10,000-question run must stay under 20 MB")
        XCTAssertEqual(Self.count("<figure class=\"maps qmaps\"", in: html), 2 * ReportOptions().maxHeatmaps, "heat-maps only for the capped flipped lists")
        XCTAssertEqual(Self.count("<svg class=\"chart acc\"", in: html), s.tasks.count + 1)
    }
}

/// The report's streaming reader of `--out` rows against `Codable`, on rows `JSONEncoder`
/// wrote (as `c3po-apply run` does).
final class RunRowsTests: XCTestCase {
    func testStreamingReaderAgreesWithCodable() throws {
        let w = try SyntheticRun(questions: 12).write(seed: 3)
        defer { try? FileManager.default.removeItem(at: w.directory) }
        // Through Codable and back out with JSONEncoder: the exact form `run --out` writes.
        let viaCodable = try JSONLines.decode(SampleResult.self, from: w.runFiles[1])
        var rows = viaCodable
        rows[0].skipped = "why \"quoted\" \\ and\nnewline"; rows[0].alpha = nil; rows[1].question = nil; rows[2].c3poPathway = nil
        let file = w.directory.appendingPathComponent("encoded.jsonl")
        try JSONLines.encode(rows).write(to: file)
        let streamed = try ReportRun.load(file).results
        let expected = try JSONLines.decode(SampleResult.self, from: file)
        XCTAssertEqual(streamed.count, expected.count)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        for (a, b) in zip(streamed, expected) {
            XCTAssertEqual(String(decoding: try enc.encode(a), as: UTF8.self), String(decoding: try enc.encode(b), as: UTF8.self), a.id)
        }
        XCTAssertEqual(streamed[0].skipped, "why \"quoted\" \\ and\nnewline")
        XCTAssertNotNil(streamed[3].basePathway?[3])
    }

    func testBrokenLineIsNamed() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-rows-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: file) }
        let good = #"{"base_correct":true,"c3po_correct":true,"gold":"A","id":"a","method":"none","neighbors":[],"seconds_base":0,"seconds_c3po":0,"task":"t"}"#
        try Data((good + "\n\n" + #"{"id": "b", "task": "t"}"# + "\n").utf8).write(to: file)
        XCTAssertThrowsError(try ReportRun.load(file)) { e in
            XCTAssertTrue("\(e)".hasSuffix(":3: missing field 'gold'"), "\(e)")
        }
        try Data((good + "\n{\"id\": }\n").utf8).write(to: file)
        XCTAssertThrowsError(try ReportRun.load(file)) { e in XCTAssertTrue("\(e)".contains(":2: not valid JSON"), "\(e)") }
    }
}

/// The report reads an index folder with the checks of every reader: sizes and SHA-256 first.
final class ReportIndexVerificationTests: XCTestCase {
    struct LengthEmbedder: SentenceEmbedder {
        let identifier = "test/length"
        let dimension = 2
        func embed(_ texts: [String], batchSize: Int, progress: ProgressReporter?) throws -> [Float] {
            texts.flatMap { t -> [Float] in let a = Float(t.count % 7 + 1), b = Float(t.count % 5 + 1); let n = (a * a + b * b).squareRoot(); return [a / n, b / n] }
        }
    }

    func testAnEditedPathwaysFileIsRefusedByName() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-report-verify-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var set = ReferenceSet()
        for i in 0..<3 {
            try set.append(ReferenceRecord(id: "q\(i)", task: "t", question: "question \(String(repeating: "x", count: i))", gold: "A"),
                           pathway: [0.25, 0.75, 0.5, 0.5], layers: 2, experts: 2)
        }
        let out = dir.appendingPathComponent("idx")
        try IndexBuilder.build(set, vectors: .embedder(LengthEmbedder()), out: out, options: .init(progress: false), note: { _ in })
        XCTAssertEqual(try ReportIndex(directory: out).records.count, 3)
        var npy = try Data(contentsOf: out.appendingPathComponent("pathways.npy"))
        npy[npy.count - 1] ^= 0x01
        try npy.write(to: out.appendingPathComponent("pathways.npy"))
        XCTAssertThrowsError(try ReportIndex(directory: out)) {
            XCTAssertTrue("\($0)".contains("pathways.npy") && "\($0)".contains("edited or swapped"), "\($0)")
        }
    }
}
