import C3POCore
import C3POIndex
import C3POMixing
import Foundation

// What a report is made of: the `--out` JSONL of one or several runs on the same test set,
// and (optionally) the index the runs drew their neighbours from.

public enum ReportError: Error, CustomStringConvertible {
    case noRuns
    case emptyRun(String)
    case invalidIndex(URL, String)

    public var description: String {
        switch self {
        case .noRuns: return "no run files given (the --out JSONL of c3po-apply runs)"
        case .emptyRun(let path): return "\(path): holds no result rows"
        case let .invalidIndex(url, why): return "\(url.path): \(why)"
        }
    }
}

/// One run: the rows of a `c3po-apply --out` file under a label.
public struct ReportRun: Sendable {
    public var label: String
    /// Where the rows came from (a path), shown on the page.
    public var source: String
    public var results: [SampleResult]

    public init(label: String, source: String, results: [SampleResult]) {
        self.label = label; self.source = source; self.results = results
    }

    /// Reads `url` (one `SampleResult` per line); the label defaults to the file's name
    /// without extension (`Scripts/demo` writes `kernel.jsonl`, `oracle.jsonl`, ...).
    public static func load(_ url: URL, label: String? = nil) throws -> ReportRun {
        let rows = try SampleResult.readJSONLines(url)
        guard !rows.isEmpty else { throw ReportError.emptyRun(url.path) }
        return ReportRun(label: label ?? url.deletingPathExtension().lastPathComponent, source: url.path, results: rows)
    }

    /// The method the rows name (`method` holds `MixingMethod.displayName`); nil for a name
    /// this version does not know.
    public var method: MixingMethod? {
        guard let name = results.first(where: { $0.skipped == nil })?.method ?? results.first?.method else { return nil }
        return MixingMethod.allCases.first { $0.displayName == name || $0.rawValue == name }
    }

    /// The rows that were scored.
    public var scored: [SampleResult] { results.filter { $0.skipped == nil } }
}

/// The parts of an index folder the report reads (Index/README.md): the manifest, the
/// records (neighbour questions) and `pathways.npy` (neighbour pathways). The faiss index
/// and the embeddings are not needed.
public struct ReportIndex: Sendable {
    public var directory: String
    public var manifest: IndexManifest
    public var records: [ReferenceRecord]
    /// [count, layers, experts], row-major.
    public var pathways: [Float]
    private var rowOfID: [String: Int]

    public init(directory: String, manifest: IndexManifest, records: [ReferenceRecord], pathways: [Float]) {
        self.directory = directory; self.manifest = manifest; self.records = records; self.pathways = pathways
        var rows: [String: Int] = [:]
        for r in records where rows[r.id] == nil { rows[r.id] = r.row }
        rowOfID = rows
    }

    /// An index already loaded for a run.
    public init(_ index: ReferenceIndex) {
        self.init(directory: index.directory.path, manifest: index.manifest, records: index.records, pathways: index.pathways)
    }

    /// Reads `manifest.json`, `records.jsonl` and `pathways.npy` of the folder `url`.
    public init(directory url: URL) throws {
        func file(_ name: String) throws -> URL {
            let f = url.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: f.path) else {
                throw ReportError.invalidIndex(url, "no \(name): not an index folder (c3po-index build writes one)")
            }
            return f
        }
        let manifest = try IndexFolder.readManifest(try file(IndexFolder.manifestFile))
        // The checks every reader of an index folder makes first (sizes and SHA-256 of the manifest).
        try IndexFolder.verifyFiles(manifest, in: url)
        let records = try IndexFolder.readRecords(try file(IndexFolder.recordsFile), count: manifest.count, tasks: manifest.tasks)
        let pathURL = try file(IndexFolder.pathwaysFile)
        let (header, values) = try NPY.readFloats(pathURL)
        guard header.shape == [records.count, manifest.layers, manifest.experts] else {
            throw ReportError.invalidIndex(pathURL, "shape \(header.shape), expected [\(records.count), \(manifest.layers), \(manifest.experts)] (records, manifest 'layers', 'experts')")
        }
        self.init(directory: url.path, manifest: manifest, records: records, pathways: values)
    }

    public func record(id: String) -> ReferenceRecord? { rowOfID[id].map { records[$0] } }

    /// The reference's routing of `layer` ([experts]); nil for an unknown id or layer.
    public func pathway(id: String, layer: Int) -> ArraySlice<Float>? {
        guard let row = rowOfID[id], layer >= 0, layer < manifest.layers else { return nil }
        let e = manifest.experts
        let start = (row * manifest.layers + layer) * e
        return pathways[start..<(start + e)]
    }
}
