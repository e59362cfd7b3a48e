import ArgumentParser
import C3POCore
import C3POIndex
import C3POMixing
import C3POModel
import Foundation

/// `c3po-index merge`: the shards of a sharded build (`build --shard K/N`) → one index folder,
/// through the same builder steps as a single build.
public struct MergeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge the shards of a sharded build (c3po-index build --shard K/N) into one index folder.",
        usage: "c3po-index merge <shard>... --out <dir> [--model <dir>] [<options>]",
        discussion: """
        The shards must come from one build: the same inputs (sha256), model, embedder and build options, \
        the same N, and every shard 0..N-1 exactly once; otherwise the merge is refused, naming the shard \
        and field. The records are put back in the order of a single build and go through its steps: \
        embedding (in one pass), dedup across shards, FAISS over all rows, leave-one-out tuning over all \
        references (with --model, which shards recorded with a model need), atomic write. The folder equals \
        a single build of the same inputs, but for time stamps and a "shards" entry in the manifest.
        """
    )

    @Argument(help: ArgumentHelp("Shard folders (OUT/shard-K-of-N), or the folder that holds them (the --out of the shard builds).", valueName: "shard"))
    public var shards: [PathArgument]

    @Option(help: ArgumentHelp("Output index folder (replaced atomically).", valueName: "dir"))
    public var out: PathArgument

    @Option(help: ArgumentHelp("The checkpoint the shards were recorded with (needed for build-time tuning when they were; checked against their config sha256).", valueName: "dir"))
    public var model: PathArgument?

    @OptionGroup public var embedderOptions: EmbedderOptions

    @Flag(help: "No progress lines on stderr.")
    public var quiet = false

    public init() {}

    public func run() throws {
        let start = Date()
        let note: (String) -> Void = quiet ? { _ in } : { StandardError.write($0 + "\n") }
        let lock = try BuildLock(for: out.url)
        defer { withExtendedLifetime(lock) {} }
        lock.removeLeftovers(of: out.url)
        let folders = try ShardFolder.expand(shards.map(\.url))
        let (set, first) = try ShardFolder.merge(folders)
        note("merging \(folders.count) shards: \(set.count) records of \(first.offered)")
        var loaded: RoutedMoEModel?
        switch (first.model, model) {
        case (let recorded?, let path?):
            let m = try ModelOptions.load(path)
            var a = recorded, b = m.identity
            a.id = ""; b.id = "" // a label only: the folder may have moved
            guard a == b else {
                throw UsageError("\(path.typed): not the checkpoint the shards were recorded with ('\(recorded.id)', config sha256 \(recorded.configSHA256.prefix(12))…; this one is \(m.identity.configSHA256.prefix(12))…)")
            }
            loaded = m
        case (let recorded?, nil):
            throw UsageError("the shards were recorded with model '\(recorded.id)': give it with --model DIR, for the build-time tuning a single build does")
        case (nil, _?):
            throw UsageError("--model: these shards hold archive records (no model recorded them), which are not tuned")
        case (nil, nil):
            break
        }
        let embedder = try embedderOptions.load()
        guard embedder.identifier == first.embedder else {
            throw UsageError("the shards were built for embedder \(first.embedder); the one given is \(embedder.identifier) (pass --embedder DIR)")
        }
        var options = first.build.options
        options.progress = !quiet
        let manifest = try IndexBuilder.build(set, vectors: .embedder(embedder), model: loaded?.identity,
                                              tuner: loaded.map { LeaveOneOutTuner(model: $0) }, out: out.url, options: options,
                                              shards: first.shard.count, note: note)
        print("wrote \(out.url.path): \(manifest.count) records from \(folders.count) shards, \(manifest.layers)x\(manifest.experts) pathways, \(manifest.factory), mixing \(manifest.mixing.source), \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
    }
}
