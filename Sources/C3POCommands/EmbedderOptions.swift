import ArgumentParser
import C3POCore
import C3POEmbedding
import Foundation

/// The sentence embedder shared by every command that embeds text.
public struct EmbedderOptions: ParsableArguments {
    @Option(name: .customLong("embedder"),
            help: ArgumentHelp(
                // The default stands in the help line itself: an ArgumentHelp discussion is
                // printed outside the help column.
                "Sentence-transformers model folder (config.json, model.safetensors, vocab.txt or tokenizer.json, 1_Pooling/config.json, sentence_bert_config.json). (default: $C3PO_EMBEDDER, else $C3PO_HOME/models/all-MiniLM-L6-v2; C3PO_HOME defaults to ~/.cache/c3po)",
                valueName: "dir"))
    public var embedder: PathArgument?

    @Option(name: .customLong("batch-size"), help: ArgumentHelp("Sentences per encoder batch (sorted by length into batches).", valueName: "n"))
    public var batchSize: Int = 32

    public init() {}

    public mutating func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
    }

    /// The folder in use: --embedder, else C3POPaths.defaultEmbedder.
    public var directory: URL {
        embedder?.url ?? C3POPaths.defaultEmbedder
    }

    public func load() throws -> SentenceTransformer {
        let dir = directory
        if !FileManager.default.fileExists(atPath: dir.path) {
            throw UsageError(embedder == nil
                ? "\(dir.path): no embedder folder there (the default; Scripts/bootstrap installs all-MiniLM-L6-v2 into it, or give --embedder DIR)"
                : "\(dir.path): no such embedder folder")
        }
        return try SentenceTransformer(directory: dir)
    }
}
