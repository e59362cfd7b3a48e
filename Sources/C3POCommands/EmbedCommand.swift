import ArgumentParser
import C3POCore
import C3POEmbedding
import Foundation

/// `c3po-index embed`: texts (one per line, or a string field of JSONL records) → float32 .npy [n, dim].
public struct EmbedCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Embed texts with the sentence embedder into a float32 .npy [n, dim].",
        discussion: """
            Each input line is one text, blank lines included, so row i of the output is line i + 1 \
            (with --jsonl FIELD: FIELD of each non-blank JSON line). Rows are L2-normalised. The output is written \
            atomically: on any error no partial file is left and an existing one is kept.
            """
    )

    public enum Failure: Error, CustomStringConvertible {
        case emptyInput(URL)
        case badField(URL, Int, String)

        public var description: String {
            switch self {
            case let .emptyInput(url): return "\(url.path): no texts to embed (the file is empty or blank)"
            case let .badField(url, line, why): return "\(url.path):\(line): \(why)"
            }
        }
    }

    @Option(name: .customLong("input"), help: ArgumentHelp("Input text file, UTF-8, one text per line (blank lines are rows too).", valueName: "file"))
    var input: PathArgument

    @Option(name: .customLong("output"), help: ArgumentHelp("Output .npy file (float32, C order, [n, dim]).", valueName: "file"))
    var output: PathArgument

    @Option(name: .customLong("jsonl"), help: ArgumentHelp("Read --input as JSON Lines and embed this string field of each record.", valueName: "field"))
    var jsonlField: String?

    @Flag(name: .customLong("quiet"), help: "No progress lines on stderr.")
    var quiet = false

    @Flag(name: .customLong("json"), help: "Print a JSON summary on stdout.")
    var json = false

    @Flag(name: .customLong("report-latency"), help: ArgumentHelp(
        "Embed the texts one at a time (each alone in its batch) and report the latency per text, p50/p99/mean, on stderr (and in --json)."))
    var reportLatency = false

    @OptionGroup var embedderOptions: EmbedderOptions

    public init() {}

    /// The texts of `url` in order. Plain text: every line is a row (blank ones too, so row i
    /// is line i + 1; a final newline ends the last line). JSONL: FIELD of each non-blank line.
    public static func readTexts(_ url: URL, jsonlField: String?) throws -> [String] {
        var texts: [String] = []
        if let field = jsonlField {
            for (number, text) in try JSONLines.lines(of: url) {
                guard let obj = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                    throw Failure.badField(url, number, JSONLines.malformedReason(text))
                }
                guard let value = obj[field] else { throw Failure.badField(url, number, "missing field '\(field)'") }
                guard let s = value as? String else { throw Failure.badField(url, number, "field '\(field)' is not a string") }
                texts.append(s)
            }
        } else {
            guard FileManager.default.fileExists(atPath: url.path) else { throw FileError.missing(url, "input file") }
            let data = try Data(contentsOf: url)
            var start = 0, number = 0
            let bytes = [UInt8](data)
            while start < bytes.count {
                number += 1
                let end = bytes[start...].firstIndex(of: 0x0a) ?? bytes.count
                var line = bytes[start..<end]
                if line.last == 0x0d { line = line.dropLast() }
                guard let text = String(validating: line, as: UTF8.self) else {
                    throw JSONLines.LineError(url: url, line: number, reason: "not valid UTF-8")
                }
                texts.append(text)
                start = end + 1
            }
            if texts.allSatisfy({ $0.allSatisfy(\.isWhitespace) }) { texts = [] }
        }
        guard !texts.isEmpty else { throw Failure.emptyInput(url) }
        return texts
    }

    public func run() throws {
        let inputURL = input.url
        let outputURL = output.url
        let texts = try Self.readTexts(inputURL, jsonlField: jsonlField)
        let model = try embedderOptions.load()
        if !quiet { StandardError.write("embedding \(texts.count) texts with \(model.identifier) (dim \(model.dimension))\n") }
        let start = Date()
        let progress = ProgressReporter("embedded", total: texts.count, enabled: !quiet)
        var vectors: [Float]
        var latency: LatencySummary?
        if reportLatency {
            // Each text alone, as a tool that embeds one question at a time sees it.
            var times: [Double] = []
            vectors = []
            vectors.reserveCapacity(texts.count * model.dimension)
            for (i, text) in texts.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                vectors += try model.embed([text], batchSize: 1, progress: nil)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                progress.update(i + 1)
            }
            let summary = LatencySummary(milliseconds: times)
            latency = summary
            StandardError.write(String(format: "latency over %d texts, each alone: p50 %.3f ms, p99 %.3f ms, mean %.3f ms\n",
                                       times.count, summary.p50, summary.p99, summary.mean))
        } else {
            vectors = try model.embed(texts, batchSize: embedderOptions.batchSize, progress: progress)
        }
        try NPY.write(float32: vectors, shape: [texts.count, model.dimension], to: outputURL)
        let seconds = Date().timeIntervalSince(start)
        if json {
            var summary: [String: Any] = [
                "output": outputURL.path, "rows": texts.count, "dimension": model.dimension,
                "embedder": model.identifier, "seconds": seconds,
            ]
            if let latency { summary["latency_ms"] = ["p50": latency.p50, "p99": latency.p99, "mean": latency.mean] }
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("\(outputURL.path): [\(texts.count), \(model.dimension)] float32 (\(String(format: "%.1f", Double(texts.count) / max(seconds, 1e-9))) texts/s)")
        }
    }
}
