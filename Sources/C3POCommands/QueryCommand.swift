import ArgumentParser
import C3POCore
import C3POEmbedding
import C3POIndex
import Foundation

/// `c3po-index query`: nearest reference records of questions.
public struct QueryCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Find the k nearest reference records (cosine similarity) of one or more questions."
    )

    @OptionGroup public var indexOptions: IndexOptions

    @Option(help: ArgumentHelp("Neighbours per query.", valueName: "n"))
    public var k: Int = 3

    @Option(help: ArgumentHelp("Drop neighbours more similar than this to the query (the paper's overlap rule uses 0.95).", valueName: "s"))
    public var maxSimilarity: Float?

    @Flag(help: "Print {\"results\": [{\"query\", \"neighbors\": [...]}]} on stdout.")
    public var json = false

    @Option(help: ArgumentHelp("Read queries from this file: one per line, or JSON Lines with --jsonl.", valueName: "file"))
    public var file: PathArgument?

    @Option(help: ArgumentHelp("With --file: the file is JSON Lines and this string field holds each query (e.g. question).", valueName: "field"))
    public var jsonl: String?

    @Option(help: ArgumentHelp("Precomputed float32 .npy query embeddings [queries, dimension]; skips the embedder.", valueName: "file"))
    public var vectors: PathArgument?

    @Flag(help: "Search queries one at a time and report latency p50/p99 on stderr.")
    public var reportLatency = false

    @Option(name: .customLong("search-parameter"), help: ArgumentHelp("faiss search parameter for this run, NAME=VALUE (e.g. nprobe=32, efSearch=128), overriding the one stored in the index; repeatable.", valueName: "name=value"))
    public var searchParameters: [String] = []

    @OptionGroup public var embedderOptions: EmbedderOptions

    @Argument(help: ArgumentHelp("Query text(s). A full prompt is reduced to its question part as references are (taken whole for an index built with --embed-text prompt).", valueName: "text"))
    public var text: [String] = []

    public init() {}

    public func validate() throws {
        guard k > 0 else { throw ValidationError("--k must be positive") }
        let sources = [!text.isEmpty, file != nil, vectors != nil].filter { $0 }.count
        guard sources == 1 else { throw ValidationError("give exactly one of: query TEXT, --file, --vectors") }
        if jsonl != nil && file == nil { throw ValidationError("--jsonl needs --file") }
        _ = try BuildCommand.parseSearchParameters(searchParameters)
    }

    struct Output: Encodable {
        struct Hit: Encodable { var id: String; var task: String; var similarity: Float; var question: String; var gold: String; var row: Int }
        struct Result: Encodable { var query: String; var neighbors: [Hit] }
        var results: [Result]
    }

    /// The query texts, as the index embedded its records' (`embedText`, from its manifest).
    func queries(_ embedText: EmbedText) throws -> [String] {
        // An index of whole prompts (build --embed-text prompt) is queried with the texts as given.
        let extract: (String) -> String = embedText == .prompt ? { $0 } : QuestionText.extract(from:)
        guard let path = file else { return text.map(extract) }
        let url = path.url
        guard let field = jsonl else { return try JSONLines.lines(of: url).map { extract(String($0.text)) } }
        return try JSONLines.lines(of: url).map { number, line in
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw JSONLines.LineError(url: url, line: number, reason: JSONLines.malformedReason(line))
            }
            guard let value = obj[field] as? String else {
                throw JSONLines.LineError(url: url, line: number, reason: "field '\(field)' missing or not a string")
            }
            return value
        }
    }

    public func run() throws {
        let idx = try indexOptions.load()
        for (name, value) in try BuildCommand.parseSearchParameters(searchParameters).sorted(by: { $0.key < $1.key }) {
            try idx.setSearchParameter(name, value)
        }
        var labels: [String]
        let matrix: [Float] // [queries, dimension]
        if let path = vectors {
            let url = path.url
            let (header, values) = try NPY.readFloats(url)
            guard header.shape.count == 2, header.shape[1] == idx.dimension else {
                throw ReferenceIndexError.invalid(url, "shape \(header.shape), expected [queries, \(idx.dimension)] (the index's dimension)")
            }
            matrix = values
            labels = (0..<header.shape[0]).map { "vector \($0)" }
        } else {
            let embedder = try embedderOptions.load()
            try idx.checkCompatible(embedder)
            labels = try queries(idx.manifest.embeddedText)
            matrix = try embedder.embed(labels, batchSize: embedderOptions.batchSize,
                                        progress: labels.count > 1000 ? ProgressReporter("embedding", total: labels.count) : nil)
        }
        let n = labels.count
        var results: [[Neighbor]]
        if reportLatency {
            var times: [Double] = []
            results = []
            let d = idx.dimension
            for q in 0..<n {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let r = try idx.search(Array(matrix[(q * d)..<((q + 1) * d)]), k: k, maxSimilarity: maxSimilarity)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                results.append(r[0])
            }
            let latency = LatencySummary(milliseconds: times)
            StandardError.write(String(format: "latency over %d queries (k=%d): p50 %.4f ms, p99 %.4f ms, mean %.4f ms\n",
                                       n, k, latency.p50, latency.p99, latency.mean))
        } else {
            results = try idx.search(matrix, k: k, maxSimilarity: maxSimilarity)
        }
        let out = Output(results: zip(labels, results).map { query, hits in
            .init(query: query, neighbors: hits.map { h in
                let r = idx.records[h.row]
                return .init(id: r.id, task: r.task, similarity: h.similarity, question: r.question, gold: r.gold, row: h.row)
            })
        })
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try enc.encode(out), as: UTF8.self))
            return
        }
        for result in out.results {
            print("query: \(result.query)")
            if result.neighbors.isEmpty { print("  (no neighbours)") }
            for (i, h) in result.neighbors.enumerated() {
                print(String(format: "  %d. %.4f  ", i + 1, h.similarity) + "\(h.task)  \(h.id)  gold \(h.gold)  \(h.question.replacingOccurrences(of: "\n", with: " "))")
            }
        }
    }
}
