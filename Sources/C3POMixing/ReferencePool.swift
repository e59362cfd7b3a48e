import C3POCore
import C3POIndex
import Foundation

/// The reference samples the runtime mixes from, in memory: what an index folder holds
/// (records, embeddings, pathways), decoupled from how it is stored and searched.
/// Row i of every array is one reference record.
public struct ReferencePool: Sendable {
    /// The index's records: `correct` marks the successful ones, `prompt`, `gold` and
    /// `labels` (when known) let `--alpha search` and build-time leave-one-out run the model
    /// on a reference.
    public var references: [ReferenceRecord]
    /// [count, dimension], rows L2-normalised.
    public var embeddings: [Float]
    public var dimension: Int
    /// [count, layers, experts]: per layer the router's distribution at the last prompt token.
    public var pathways: [Float]
    public var layers: Int
    public var experts: Int

    public var count: Int { references.count }
    /// Nearest-neighbour search to use instead of the exact scan (the index's FAISS
    /// search when loaded from an index folder): (queries, k, maxSimilarity) → hits of
    /// successful references.
    public var searcher: (@Sendable ([Float], Int, Float) throws -> [[Neighbor]])?
    /// The references' stored prefix states (an index built with `--cache-states`).
    public var states: StoredStates.Reader?

    public init(references: [ReferenceRecord], embeddings: [Float], dimension: Int, pathways: [Float], layers: Int, experts: Int) throws {
        let n = references.count
        guard embeddings.count == n * dimension else {
            throw MixingError.shapeMismatch("\(embeddings.count) embedding values for \(n) references × \(dimension)")
        }
        guard pathways.count == n * layers * experts else {
            throw MixingError.shapeMismatch("\(pathways.count) pathway values for \(n) references × \(layers) layers × \(experts) experts")
        }
        self.references = references; self.embeddings = embeddings; self.dimension = dimension
        self.pathways = pathways; self.layers = layers; self.experts = experts
    }

    /// An index's contents before they are written (build-time leave-one-out); neighbours
    /// by the exact scan.
    public init(contents c: IndexContents) throws {
        try self.init(references: c.records, embeddings: c.embeddings, dimension: c.dimension,
                      pathways: c.pathways, layers: c.layers, experts: c.experts)
    }

    /// The records, embeddings and pathways of a loaded index folder; neighbours come
    /// from its FAISS search (successful records only).
    public init(index: ReferenceIndex) throws {
        try self.init(references: index.records, embeddings: index.embeddings, dimension: index.dimension,
                      pathways: index.pathways, layers: index.layers, experts: index.experts)
        states = index.storedStates
        let correct = index.records.map(\.correct)
        searcher = { queries, k, maxSimilarity in
            try index.search(queries, k: k, maxSimilarity: maxSimilarity, exclude: { !correct[$0] })
        }
    }

    /// Neighbours of each query among the successful references: `searcher` when set,
    /// else the exact scan.
    public func neighbors(_ queries: [Float], k: Int, maxSimilarity: Float) throws -> [[Neighbor]] {
        if let searcher { return try searcher(queries, k, maxSimilarity) }
        return search(queries, k: k, maxSimilarity: maxSimilarity)
    }

    /// The ablation of retrieval: for each query, `k` successful references drawn uniformly
    /// at random (without replacement; those above `maxSimilarity` left out, as in the
    /// search), each with its true similarity to the query, most similar first. Seeded per
    /// query (`seed`, query index), so a run is reproducible.
    public func randomNeighbors(_ queries: [Float], k: Int, maxSimilarity: Float, seed: UInt64) -> [[Neighbor]] {
        let all = search(queries, k: count, maxSimilarity: maxSimilarity)
        return all.enumerated().map { qi, candidates in
            var pool = candidates
            var rng = SplitMix64(seed: seed &+ UInt64(qi) &* 0x9E37_79B9)
            var picked: [Neighbor] = []
            while picked.count < k, !pool.isEmpty {
                let j = rng.below(pool.count)
                pool.swapAt(j, pool.count - 1)
                picked.append(pool.removeLast())
            }
            return picked.sorted { $0.similarity != $1.similarity ? $0.similarity > $1.similarity : $0.row < $1.row }
        }
    }

    /// [layers][experts] of reference `row`.
    public func pathway(_ row: Int) -> [[Float]] {
        let base = row * layers * experts
        return (0..<layers).map { l in Array(pathways[(base + l * experts)..<(base + (l + 1) * experts)]) }
    }

    /// The successful pathways restricted to `layers`, concatenated ([rows.count, layers.count × experts]),
    /// the space mode finding works in.
    public func flattened(rows: [Int], layers sel: [Int]) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(rows.count * sel.count * experts)
        for r in rows {
            for l in sel {
                let base = (r * layers + l) * experts
                out.append(contentsOf: pathways[base..<(base + experts)])
            }
        }
        return out
    }

    /// Exact inner-product search (= cosine on unit rows) of each query row: the `k`
    /// most similar references with similarity ≤ `maxSimilarity` (the paper drops
    /// near-duplicates of the test question, > 0.95), optionally only `successfulOnly`
    /// ones, excluding `exclude(queryIndex)`. Ties go to the lower row.
    public func search(_ queries: [Float], k: Int, maxSimilarity: Float, successfulOnly: Bool = true,
                       exclude: ((Int) -> Set<Int>)? = nil) -> [[Neighbor]] {
        let q = dimension > 0 ? queries.count / dimension : 0
        guard q > 0, count > 0, k > 0 else { return Array(repeating: [], count: q) }
        var sims = [Float](repeating: 0, count: q * count)  // [queries, references]
        BLAS.sgemm(transA: false, transB: true, m: q, n: count, k: dimension, alpha: 1,
                   a: queries, lda: dimension, b: embeddings, ldb: dimension, beta: 0, c: &sims, ldc: count)
        return (0..<q).map { qi in
            let ex = exclude?(qi) ?? []
            var hits: [Neighbor] = []
            for r in 0..<count where !ex.contains(r) && (!successfulOnly || references[r].correct) {
                let s = sims[qi * count + r]
                if s <= maxSimilarity { hits.append(Neighbor(row: r, similarity: s)) }
            }
            hits.sort { $0.similarity != $1.similarity ? $0.similarity > $1.similarity : $0.row < $1.row }
            return Array(hits.prefix(k))
        }
    }
}
