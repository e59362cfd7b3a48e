import ArgumentParser
import C3POCore
import C3POIndex
import Foundation

/// `c3po-index info`: what an index folder holds (validated on load).
public struct InfoCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Describe a reference index: counts per task, embedder, pathway shape, faiss type, size on disk."
    )

    @OptionGroup public var indexOptions: IndexOptions

    @Flag(help: "Print one JSON object on stdout.")
    public var json = false

    public init() {}

    struct Report: Encodable {
        var count: Int
        var dimension: Int
        var embedder: String
        var layers: Int
        var experts: Int
        var tasks: [String: Int]
        var factory: String
        var metric: String
        var formatVersion: Int
        var created: String
        var sizeBytes: Int64
        var criticalLayers: [Int]
        var mixing: IndexManifest.Mixing
        var model: ModelIdentity?
        var sources: [IndexManifest.Source]
        var filters: IndexManifest.Filters
        var searchParameters: [String: Double]
        var taskWeights: Bool
        /// The stored states' shape (`build --cache-states`); null when none.
        var states: IndexManifest.States?
        /// What this machine's products run on (not a property of the index): BLASCore.summary.
        var runtime: String

        enum CodingKeys: String, CodingKey {
            case count, dimension, embedder, layers, experts, tasks, factory, metric, created, mixing, model, sources, filters, runtime, states
            case formatVersion = "format_version", sizeBytes = "size_bytes", criticalLayers = "critical_layers"
            case searchParameters = "search_parameters", taskWeights = "task_weights"
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(count, forKey: .count); try c.encode(dimension, forKey: .dimension)
            try c.encode(embedder, forKey: .embedder); try c.encode(layers, forKey: .layers)
            try c.encode(experts, forKey: .experts); try c.encode(tasks, forKey: .tasks)
            try c.encode(factory, forKey: .factory); try c.encode(metric, forKey: .metric)
            try c.encode(formatVersion, forKey: .formatVersion); try c.encode(created, forKey: .created)
            try c.encode(sizeBytes, forKey: .sizeBytes); try c.encode(criticalLayers, forKey: .criticalLayers)
            try c.encode(mixing, forKey: .mixing); try c.encode(model, forKey: .model)
            try c.encode(sources, forKey: .sources); try c.encode(filters, forKey: .filters)
            try c.encode(searchParameters, forKey: .searchParameters); try c.encode(taskWeights, forKey: .taskWeights)
            try c.encode(states, forKey: .states); try c.encode(runtime, forKey: .runtime)
        }
    }

    /// "model (olmoe, config sha256 e3f8e38d9473…, top-2)": `id` is the checkpoint's
    /// `_name_or_path`, else its folder's name; the index is matched to a model by the sha256.
    static func describe(_ m: ModelIdentity) -> String {
        let family = m.family ?? "olmoe"
        let dense = m.routedLayers.map { r in ", routed layers \(r.map(String.init).joined(separator: ","))" } ?? ""
        return "\(m.id) (\(family), config sha256 \(m.configSHA256.prefix(12))…, top-\(m.topK)\(dense))"
    }

    /// 16 for 16.0, else the shortest exact form.
    static func number(_ x: Double) -> String {
        x.rounded() == x && abs(x) < 1e15 ? String(Int64(x)) : "\(x)"
    }

    static func sizeOnDisk(_ dir: URL) -> Int64 {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.reduce(Int64(0)) { total, name in
            let attrs = try? FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent(name).path)
            return total + ((attrs?[.size] as? NSNumber)?.int64Value ?? 0)
        }
    }

    public func run() throws {
        let dir = try indexOptions.directory()
        let idx = try indexOptions.load()
        let m = idx.manifest
        let hasWeights = idx.taskWeights != nil
        let report = Report(count: idx.count, dimension: m.embedder.dimension, embedder: m.embedder.id, layers: m.layers,
                            experts: m.experts, tasks: m.tasks, factory: m.factory, metric: m.metric,
                            formatVersion: m.formatVersion, created: m.created, sizeBytes: Self.sizeOnDisk(dir),
                            criticalLayers: m.criticalLayers, mixing: m.mixing, model: m.model, sources: m.sources,
                            filters: m.filters, searchParameters: m.searchParameters, taskWeights: hasWeights,
                            states: m.states, runtime: BLASCore.summary)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try enc.encode(report), as: UTF8.self))
            return
        }
        print("index      \(dir.path) (format \(m.formatVersion), created \(m.created))")
        print("records    \(idx.count)")
        for (task, n) in m.tasks.sorted(by: { $0.key < $1.key }) { print("  \(task.padding(toLength: 16, withPad: " ", startingAt: 0)) \(n)") }
        print("embedder   \(m.embedder.id), dimension \(m.embedder.dimension)")
        print("pathways   \(m.layers) layers x \(m.experts) experts, critical layers \(m.criticalLayers.map(String.init).joined(separator: ","))")
        print("model      \(m.model.map(Self.describe) ?? "none (pathways from archives)")")
        let params = m.searchParameters.isEmpty ? "" : " " + m.searchParameters.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.number($0.value))" }.joined(separator: " ")
        print("faiss      \(m.factory), \(m.metric)\(params)")
        // Per task, α and h come from small grids (AlphaSelection: α in steps of 0.25, h in {0.1, 0.25, 0.5});
        // the manifest holds their count-weighted average over tasks: two decimals say all there is.
        print("mixing     \(m.mixing.source) (alpha \(String(format: "%.2f", m.mixing.alpha)), bandwidth \(String(format: "%.2f", m.mixing.bandwidth)))\(hasWeights ? ", task_weights.json" : "")")
        let f = m.filters
        print("filters    include incorrect \(f.includeIncorrect), skipped incorrect \(f.skippedIncorrect), skipped invalid \(f.skippedInvalid), dedup \(f.dedup.map { String(format: "%.4g", $0) } ?? "off") (\(f.deduplicated) dropped)")
        if let st = m.states {
            let bytes = StoredStates.files.compactMap { m.files?[$0]?.bytes }.reduce(0, +)
            print("states     \(st.references) references, \(st.tokens) tokens, layers \(st.fromLayer)-\(st.fromLayer + st.layers - 1), keys and values in \(st.dtype) (\(String(format: "%.1f", Double(bytes) / 1_048_576)) MiB; --method ngd prefills no neighbour)")
        }
        for s in m.sources { print("source     \(s.path) (\(s.kind), \(s.records) records, sha256 \(s.sha256.prefix(12))…)") }
        print("size       \(String(format: "%.1f", Double(Self.sizeOnDisk(dir)) / 1_048_576)) MiB on disk")
        print("runtime    \(BLASCore.summary)")
    }
}
