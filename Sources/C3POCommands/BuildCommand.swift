import ArgumentParser
import C3POCore
import C3POEmbedding
import C3POIndex
import C3POMixing
import C3POModel
import Foundation

extension TaskSurrogate.Optimiser: ExpressibleByArgument {}

/// `c3po-index build`: official reference archives, or a model run on benchmark files → an
/// index folder (Index/README.md).
public struct BuildCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build a reference index: from official C3PO reference archives (--reference), or by running a model on benchmark files (--model with --benchmark).",
        usage: """
            c3po-index build --model <dir> --benchmark <file> ... --out <dir> [<options>]
            c3po-index build --reference <archive> ... --out <dir> [<options>]
            """,
        discussion: """
        With --model and --benchmark (what Scripts/demo does), every benchmark question is run through the \
        model; the pathways of the questions it answers correctly become the references, and the mixing \
        hyper-parameters (alpha, bandwidth, task pathways) are chosen per task from them by leave-one-out. \
        With --reference, the JSON files of each archive in the official format \
        (<prefix>_<task>_..._routing_results*.json, each an object case_id -> record) are read and the \
        correctly answered records kept. Either way their question text is embedded and the folder is \
        written atomically: a failed build leaves an older index at --out untouched.
        """
    )

    @Option(name: .customLong("reference"), parsing: .upToNextOption,
            help: ArgumentHelp("Reference archive(s) of recorded routing in the official format (.zip, .tar, .tar.gz).", valueName: "archive"))
    public var references: [PathArgument] = []

    @Option(help: ArgumentHelp("MoE checkpoint folder: its pathways are recorded by running it on the --benchmark questions.", valueName: "dir"))
    public var model: PathArgument?

    @Option(name: .customLong("benchmark"), parsing: .upToNextOption,
            help: ArgumentHelp("Benchmark file(s) in the dataset schema (Datasets/README.md), with --model: every question is run, the correctly answered ones are kept. An interrupted build resumes: the questions already run are kept in .NAME.work/ beside --out, and the same command run again continues from them (the folder is removed once the index is written).", valueName: "file"))
    public var benchmarks: [PathArgument] = []

    @Option(help: ArgumentHelp("Output index folder, e.g. Index/NAME (replaced atomically).", valueName: "dir"))
    public var out: PathArgument

    @OptionGroup public var embedderOptions: EmbedderOptions

    @Option(name: .customLong("embed-text"), help: ArgumentHelp("What is embedded: question (the question part of each prompt; Index/README.md, Which text is embedded) or prompt (the whole prompt / input_text, as the published code does; c3po-apply --preset official needs it). Recorded in the manifest; query and c3po-apply embed the same.", valueName: "question|prompt"))
    public var embedText: EmbedText = .question

    @Option(help: ArgumentHelp("faiss index factory string: auto (exact search up to 1,000,000 references, HNSW32 with efSearch 64 above: docs/benchmarks.md), Flat (exact), IVF<n>,Flat or HNSW<m> (approximate).", valueName: "string"))
    public var factory: String = "auto"

    @Option(help: ArgumentHelp("Drop a record whose question has cosine similarity above this with an earlier kept record of the same task (e.g. 0.95); off by default.", valueName: "s"))
    public var dedup: Float?

    @Flag(help: "Keep records the model answered incorrectly too (flag stored per record).")
    public var includeIncorrect = false

    @Flag(help: "Skip invalid records (named on stderr, counted in the manifest) instead of stopping.")
    public var skipInvalid = false

    @Option(help: ArgumentHelp("Largest uncompressed size, in bytes, of one archive in total, and so of any entry (with --reference; default 4 GiB).", valueName: "bytes"))
    public var maxArchiveBytes: Int64?

    @Option(help: ArgumentHelp("Largest uncompressed size, in bytes, of one archive entry, which is held in memory while it is parsed (with --reference; default 512 MiB; an entry above it is refused before it is read whole).", valueName: "bytes"))
    public var maxEntryBytes: Int64?

    @Option(help: ArgumentHelp("Precomputed float32 .npy embeddings [records, dimension], one row per record kept after the correctness and validity filters, in row order; skips the embedder (with --reference).", valueName: "file"))
    public var embeddings: PathArgument?

    @Option(help: ArgumentHelp("Embedder id to record with --embeddings (queries must then use --vectors or an embedder with this id).", valueName: "id"))
    public var embedderId: String?

    @Option(name: .customLong("search-parameter"), help: ArgumentHelp("faiss search parameter stored in the index, NAME=VALUE (e.g. nprobe=16, efSearch=64); repeatable.", valueName: "name=value"))
    public var searchParameters: [String] = []

    @Option(help: ArgumentHelp("Build one shard of a build split across machines: K/N (0-based), auto (a Slurm job array: SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT) or auto/N (the task index from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX). Records go to shard stableHash(id) mod N; the shard's records and pathways are written to OUT/shard-K-of-N/ (resumable), and `c3po-index merge OUT --out DIR` makes the index (Index/README.md, Shards).", valueName: "K/N|auto"))
    public var shard: String?

    @Option(name: .customLong("task-surrogate"), help: ArgumentHelp("With --model: how each task's surrogate pathway (--method task) is searched: es (a (1+1) evolution strategy on forward passes) or gradient (gradient descent with the exact tail gradients of --method ngd).", valueName: "es|gradient"))
    public var taskSurrogate: TaskSurrogate.Optimiser = LeaveOneOutTuner.defaultSurrogate

    @Flag(help: "With --model: store each reference's prefix state (the keys and values of the critical layers in float16, Index/README.md, Stored states), so that c3po-apply --method ngd runs no prefill of a neighbour. One more prefill a reference at build time; about 2 × critical layers × tokens × kv width × 2 bytes a reference.")
    public var cacheStates = false

    @Option(name: .customLong("states-model"), help: ArgumentHelp("With --reference and --cache-states: the checkpoint whose prefills are stored (the model the archive's pathways were recorded with; its layer and expert counts must be the archive's). A run with another model prefills instead.", valueName: "dir"))
    public var statesModel: PathArgument?

    @Flag(help: "No progress lines on stderr.")
    public var quiet = false

    public init() {}

    public func validate() throws {
        if model != nil || !benchmarks.isEmpty {
            guard model != nil, !benchmarks.isEmpty else { throw ValidationError("--model and --benchmark go together") }
            guard references.isEmpty else { throw ValidationError("--model/--benchmark cannot be combined with --reference: an index holds the pathways of one source") }
            // Options that have no meaning for a model run over benchmark files are refused, never ignored.
            let archiveOnly = [(embeddings != nil, "--embeddings (build-time tuning embeds every recorded question itself)"),
                               (embedderId != nil, "--embedder-id"),
                               (maxArchiveBytes != nil, "--max-archive-bytes (no archive is read)"),
                               (maxEntryBytes != nil, "--max-entry-bytes (no archive is read)"),
                               (skipInvalid, "--skip-invalid (a benchmark line that is not valid stops the build when the file is read; a question the model cannot run is always skipped, named on stderr and counted in filters.skipped_invalid)")]
                .filter(\.0).map(\.1)
            guard archiveOnly.isEmpty else { throw ValidationError("not with --model: \(archiveOnly.joined(separator: "; ")); these apply to --reference builds") }
        } else {
            guard !references.isEmpty else { throw ValidationError("give at least one --reference archive (or --model with --benchmark)") }
            if let file = references.first(where: { $0.typed.hasSuffix(".jsonl") }) {
                throw ValidationError("--reference takes archives of recorded routing (.zip, .tar, .tar.gz); '\(file)' looks like a benchmark file: record it with --model DIR --benchmark \(file)")
            }
        }
        if cacheStates {
            guard model != nil || statesModel != nil else {
                throw ValidationError("--cache-states needs --model, or --states-model DIR with --reference: the states are a model's prefills of the references' prompts")
            }
            guard shard == nil else { throw ValidationError("--cache-states cannot be sharded yet: build the index in one run") }
        }
        if statesModel != nil {
            guard cacheStates, model == nil else { throw ValidationError("--states-model goes with --reference and --cache-states (a --model build stores that model's states)") }
        }
        if let d = dedup, !(d > 0 && d <= 1) { throw ValidationError("--dedup must be in (0, 1], got \(d)") }
        if let m = maxArchiveBytes, m <= 0 { throw ValidationError("--max-archive-bytes must be positive") }
        if let m = maxEntryBytes, m <= 0 { throw ValidationError("--max-entry-bytes must be positive") }
        if shard != nil {
            _ = try shardSpec()
            guard embeddings == nil else { throw ValidationError("--embeddings cannot be sharded: the merge embeds every record in one pass, as a single build does") }
        }
        if embedderId != nil && embeddings == nil { throw ValidationError("--embedder-id needs --embeddings") }
        _ = try parsedSearchParameters()
    }

    func parsedSearchParameters() throws -> [String: Double] {
        try Self.parseSearchParameters(searchParameters)
    }

    /// `NAME=VALUE` strings (`--search-parameter`, also used by `query`) → a dictionary.
    static func parseSearchParameters(_ list: [String]) throws -> [String: Double] {
        var out: [String: Double] = [:]
        for p in list {
            let parts = p.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let v = Double(parts[1]) else {
                throw ValidationError("--search-parameter expects NAME=VALUE, got '\(p)'")
            }
            out[String(parts[0])] = v
        }
        return out
    }

    var archiveOptions: ReferenceArchive.Options {
        let total = maxArchiveBytes ?? ArchiveReader.Limits.defaultMaxTotalBytes
        let entry = min(maxEntryBytes ?? ArchiveReader.Limits.defaultMaxEntryBytes, total)
        return ReferenceArchive.Options(skipInvalid: skipInvalid, limits: .init(maxEntryBytes: entry, maxTotalBytes: total))
    }

    var builderOptions: IndexBuilder.Options {
        get throws {
            var o = IndexBuilder.Options(factory: factory, dedup: dedup, includeIncorrect: includeIncorrect, skipInvalid: skipInvalid,
                                         batchSize: embedderOptions.batchSize, searchParameters: try parsedSearchParameters(), progress: !quiet)
            o.embedText = embedText
            return o
        }
    }

    func shardSpec() throws -> ShardSpec? { try ShardSpec.option(shard) }

    /// The vectors of an archive build: `--embeddings`, else the embedder.
    func vectors() throws -> IndexBuilder.Vectors {
        guard let path = embeddings else { return .embedder(try embedderOptions.load()) }
        let url = try InputPaths.file(path, "embeddings file")
        let (header, values) = try NPY.readFloats(url)
        guard header.shape.count == 2, header.shape[1] > 0 else {
            throw ReferenceIndexError.invalid(url, "shape \(header.shape), expected [records, dimension] (one row per kept record)")
        }
        return .precomputed(values, dimension: header.shape[1], id: embedderId ?? "precomputed:\(url.lastPathComponent)",
                            source: .init(path: url.lastPathComponent, kind: "embeddings",
                                          sha256: try SHA256Hasher.hexDigest(ofFile: url), records: header.shape[0]))
    }

    public func run() throws {
        let start = Date()
        let note: (String) -> Void = quiet ? { _ in } : { StandardError.write($0 + "\n") }
        let shard = try shardSpec()
        // A shard goes to OUT/shard-K-of-N (its work folder, when resuming, beside it).
        let outURL = shard.map { out.url.appendingPathComponent($0.name) } ?? out.url
        // One build per output folder at a time (a second one is refused, naming the first).
        let lock = try BuildLock(for: outURL)
        defer { withExtendedLifetime(lock) {} }
        lock.removeLeftovers(of: outURL)
        // Step 1, the source: records with pathways, from archives or from the model.
        let set: ReferenceSet, vectors: IndexBuilder.Vectors
        var model: RoutedMoEModel?
        if let path = self.model {
            let m = try ModelOptions.load(path)
            let benchmarkURLs = try benchmarks.map { try InputPaths.file($0, "benchmark file") }
            vectors = .embedder(try embedderOptions.load())
            set = try PathwayRecorder.referenceSet(model: m, benchmarks: benchmarkURLs, out: outURL, shard: shard, progress: !quiet, note: note)
            model = m
        } else {
            set = try IndexBuilder.load(archives: references.map(\.url), options: archiveOptions, shard: shard, note: note)
            note("records: \(set.count) valid (\(set.records.filter(\.correct).count) correct), \(set.skippedInvalid) invalid skipped")
            vectors = try self.vectors()
        }
        if let shard {
            guard case .embedder(let embedder) = vectors else { return }
            let manifest = ShardManifest(created: IndexManifest.timestamp(), shard: shard, kind: model == nil ? "archive" : "benchmark",
                                         sources: set.sources, model: model?.identity, embedder: embedder.identifier,
                                         build: .init(try builderOptions), offered: set.offered, count: set.count,
                                         skippedInvalid: set.skippedInvalid, layers: set.layers ?? model?.layerCount,
                                         experts: set.experts ?? model?.expertCount)
            try ShardFolder.write(set, manifest: manifest, to: outURL)
            if model != nil { try? FileManager.default.removeItem(at: PathwayRecorder.workDirectory(for: outURL)) }
            print("wrote \(outURL.path): shard \(shard) holds \(set.count) of \(set.offered) records, \(String(format: "%.1f", Date().timeIntervalSince(start))) s; when every shard is done: c3po-index merge \(out.typed) --out DIR")
            return
        }
        // Step 2, the same for both: filter, embed, dedup, FAISS, tuning (with a model), atomic write.
        let tuner = model.map { m -> LeaveOneOutTuner in
            var t = LeaveOneOutTuner(model: m)
            t.surrogate = taskSurrogate
            return t
        }
        var states: PrefillStateRecorder?
        if cacheStates, let m = try model ?? statesModel.map({ try ModelOptions.load($0) }) {
            if let l = set.layers, let e = set.experts, l != m.layerCount || e != m.expertCount {
                throw UsageError("--states-model \(statesModel?.typed ?? ""): the model has \(m.layerCount) layers × \(m.expertCount) experts; the archive's pathways have \(l) × \(e)")
            }
            states = PrefillStateRecorder(model: m, progress: !quiet)
        }
        let manifest = try IndexBuilder.build(set, vectors: vectors, model: model?.identity, tuner: tuner, states: states,
                                              out: outURL, options: try builderOptions, note: note)
        if model != nil { try? FileManager.default.removeItem(at: PathwayRecorder.workDirectory(for: outURL)) }
        let tasks = manifest.tasks.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let stored = manifest.states.map { ", states of \($0.references) references (\($0.tokens) tokens, layers \($0.fromLayer)-\($0.fromLayer + $0.layers - 1))" } ?? ""
        print("wrote \(outURL.path): \(manifest.count) records (\(tasks)), dimension \(manifest.embedder.dimension), \(manifest.layers)x\(manifest.experts) pathways, \(manifest.factory), mixing \(manifest.mixing.source)\(stored), \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
    }
}
