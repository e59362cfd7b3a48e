import C3POCore

/// Turns texts into unit-length vectors whose inner product is cosine similarity.
public protocol SentenceEmbedder: Sendable {
    /// Stable identity recorded in index manifests, e.g. "sentence-transformers/all-MiniLM-L6-v2".
    var identifier: String { get }
    var dimension: Int { get }
    /// Embeddings [texts.count, dimension], row-major, each row L2-normalised.
    func embed(_ texts: [String], batchSize: Int, progress: ProgressReporter?) throws -> [Float]
}
