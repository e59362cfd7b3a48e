import ArgumentParser
import C3POCore
import C3POIndex
import C3POMixing
import C3POReport
import Foundation

/// `c3po-apply report`: one self-contained HTML page from the `--out` JSONL of one or
/// several runs on the same test set (and the index they used).
public struct ReportCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write an HTML report of runs: accuracy per task, the questions that flipped, pathway heat-maps, timing.",
        discussion: """
        Reads the --out JSONL of c3po-apply runs on the same test set (one file per method; the file name without \
        .jsonl labels the run, or write LABEL=FILE) and writes one HTML file with inline SVG and CSS: it opens from disk \
        in any browser, with nothing fetched and no script. Sections: accuracy per task (base, each run, the oracle when \
        one of the runs is --method oracle; improved / worsened; share of the oracle gap recovered), time per question, \
        task-average pathway heat-maps of the critical layers, and the questions that flipped with their neighbours \
        (questions and pathways from --index) and heat-maps. Only the first --max-heatmaps flipped questions of each \
        direction get heat-maps; the next 500 are listed in a table and the rest counted, so the page of a large run \
        stays small.

        `c3po-apply run --report FILE.html` writes the same page for the run it has just done.
        """
    )

    @Argument(help: ArgumentHelp("The --out JSONL files of the runs, e.g. kernel.jsonl oracle.jsonl (or LABEL=FILE).", valueName: "run.jsonl"))
    public var runs: [String]

    @Option(help: ArgumentHelp("The index folder the runs used: neighbour questions and pathways (Index/README.md).", valueName: "dir"))
    public var index: PathArgument?

    @Option(help: ArgumentHelp("The test set (dataset schema, JSONL): question texts and choices for rows that lack them.", valueName: "file"))
    public var test: PathArgument?

    @Option(help: ArgumentHelp("The HTML file to write.", valueName: "file"))
    public var out: PathArgument

    @Option(name: .customLong("max-heatmaps"), help: ArgumentHelp("Flipped questions drawn with heat-maps, per direction (gained, lost).", valueName: "n"))
    public var maxHeatmaps: Int = ReportOptions().maxHeatmaps

    @Option(help: ArgumentHelp("The page's title.", valueName: "text"))
    public var title: String?

    @Flag(help: "Print nothing on success.")
    public var quiet = false

    public init() {}

    public func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give at least one run file (the --out JSONL of c3po-apply)") }
        guard maxHeatmaps >= 0 else { throw ValidationError("--max-heatmaps must be 0 or more, got \(maxHeatmaps)") }
    }

    public func run() throws {
        var loaded: [ReportRun] = []
        for arg in runs {
            var label: String?, path = arg
            if !FileManager.default.fileExists(atPath: arg), let eq = arg.firstIndex(of: "="), eq != arg.startIndex {
                label = String(arg[..<eq]); path = String(arg[arg.index(after: eq)...])
            }
            loaded.append(try ReportRun.load(try InputPaths.file(path, "run file"), label: label))
        }
        // Two files of the same name (a/kernel.jsonl, b/kernel.jsonl) get distinct labels.
        var counts: [String: Int] = [:]
        for i in loaded.indices {
            counts[loaded[i].label, default: 0] += 1
            if let n = counts[loaded[i].label], n > 1 { loaded[i].label += " #\(n)" }
        }
        let reportIndex = try index.map { try ReportIndex(directory: try InputPaths.index($0)) }
        let questions = try test.map { try TestSet.load(try InputPaths.file($0, "test file")).questions } ?? []
        var options = ReportOptions()
        options.maxHeatmaps = maxHeatmaps; options.title = title; options.testSet = test?.typed
        let url = out.url
        let bytes = try HTMLReport.write(runs: loaded, index: reportIndex, test: questions, options: options, to: url)
        if !quiet { print("report: \(out) (\(Self.size(bytes)))") }
    }

    /// The page of one run just done (`run --report`).
    static func write(results: [SampleResult], label: String, index: ReferenceIndex, test: String, questions: [MCQuestion], to url: URL) throws -> Int {
        var options = ReportOptions()
        options.testSet = test
        return try HTMLReport.write(runs: [ReportRun(label: label, source: "this run", results: results)], index: ReportIndex(index),
                                    test: questions, options: options, to: url)
    }

    static func size(_ bytes: Int) -> String {
        bytes >= 1 << 20 ? String(format: "%.1f MB", Double(bytes) / Double(1 << 20)) : String(format: "%.0f KB", Double(bytes) / 1024)
    }
}
