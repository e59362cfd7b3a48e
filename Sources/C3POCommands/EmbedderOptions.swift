import ArgumentParser
import C3POCore
import C3POEmbedding
import Foundation

/// The sentence embedder shared by every command that embeds text.
public struct EmbedderOptions: ParsableArguments {
    @Option(name: .customLong("embedder"),
            help: ArgumentHelp(
                "Sentence-transformers model folder (config.json, model.safetensors, vocab.txt or tokenizer.json, 1_Pooling/config.json, sentence_bert_config.json).",
                discussion: "Default: $C3PO_EMBEDDER, else $C3PO_HOME/models/all-MiniLM-L6-v2 (C3PO_HOME defaults to ~/.cache/c3po).",
                valueName: "dir"))
    public var embedder: String?

    @Option(name: .customLong("batch-size"), help: "Sentences per encoder batch (sorted by length into batches).")
    public var batchSize: Int = 32

    public init() {}

    public mutating func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
    }

    /// The folder in use: --embedder, else C3POPaths.defaultEmbedder.
    public var directory: URL {
        embedder.map { URL(fileURLWithPath: $0) } ?? C3POPaths.defaultEmbedder
    }

    public func load() throws -> SentenceTransformer {
        try SentenceTransformer(directory: directory)
    }
}
