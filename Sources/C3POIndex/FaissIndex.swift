import CFaissShim
import Foundation

/// A FAISS index owned by Swift. Errors from faiss arrive as `FaissIndex.Error`
/// carrying faiss's own message.
public final class FaissIndex: @unchecked Sendable {
    public enum Metric: Sendable { case innerProduct, l2 }

    public struct Error: Swift.Error, CustomStringConvertible {
        public let operation: String
        public let message: String
        public var description: String { "faiss \(operation) failed: \(message)" }
    }

    private let handle: OpaquePointer

    private static func check(_ status: Int32, _ operation: String) throws {
        guard status == 0 else { throw Error(operation: operation, message: String(cString: c3po_faiss_last_error())) }
    }

    /// An empty index from a factory string ("Flat", "IVF64,Flat", "HNSW32", ...).
    public init(dimension: Int, factory: String, metric: Metric = .innerProduct) throws {
        var out: OpaquePointer?
        let m = metric == .l2 ? C3PO_FAISS_METRIC_L2 : C3PO_FAISS_METRIC_INNER_PRODUCT
        try Self.check(c3po_faiss_create(Int32(dimension), factory, m, &out), "index_factory(\(dimension), \"\(factory)\")")
        guard let out else { throw Error(operation: "index_factory", message: "no index returned") }
        handle = out
    }

    /// Reads an index written by `write(to:)`.
    public init(contentsOf url: URL) throws {
        var out: OpaquePointer?
        try Self.check(c3po_faiss_read(url.path, &out), "read_index(\(url.path))")
        guard let out else { throw Error(operation: "read_index", message: "no index returned") }
        handle = out
    }

    deinit { c3po_faiss_free(handle) }

    public var count: Int { Int(c3po_faiss_ntotal(handle)) }
    public var dimension: Int { Int(c3po_faiss_dimension(handle)) }

    public var isTrained: Bool {
        var t: Int32 = 0
        _ = c3po_faiss_is_trained(handle, &t)
        return t != 0
    }

    private func checkShape(_ vectors: [Float], _ what: String) throws -> Int {
        guard dimension > 0, vectors.count % dimension == 0 else {
            throw Error(operation: what, message: "\(vectors.count) values are not a whole number of \(dimension)-dimensional vectors")
        }
        return vectors.count / dimension
    }

    /// Trains on row-major vectors [n, dimension].
    public func train(_ vectors: [Float]) throws {
        let n = try checkShape(vectors, "train")
        try Self.check(vectors.withUnsafeBufferPointer { c3po_faiss_train(handle, Int64(n), $0.baseAddress) }, "train")
    }

    /// Adds row-major vectors [n, dimension]; they get ids count ..< count + n.
    public func add(_ vectors: [Float]) throws {
        let n = try checkShape(vectors, "add")
        try Self.check(vectors.withUnsafeBufferPointer { c3po_faiss_add(handle, Int64(n), $0.baseAddress) }, "add")
    }

    /// k-nearest neighbours of row-major queries [n, dimension]: for each query, (id, score)
    /// pairs best first; ids of -1 (fewer than k vectors) are dropped.
    public func search(_ queries: [Float], k: Int) throws -> [[(id: Int, score: Float)]] {
        let n = try checkShape(queries, "search")
        guard k > 0 else { throw Error(operation: "search", message: "k must be positive, got \(k)") }
        var distances = [Float](repeating: 0, count: n * k)
        var labels = [Int64](repeating: -1, count: n * k)
        let status = queries.withUnsafeBufferPointer { q in
            distances.withUnsafeMutableBufferPointer { d in
                labels.withUnsafeMutableBufferPointer { l in
                    c3po_faiss_search(handle, Int64(n), q.baseAddress, Int64(k), d.baseAddress, l.baseAddress)
                }
            }
        }
        try Self.check(status, "search")
        return (0..<n).map { i in
            (0..<k).compactMap { j in labels[i * k + j] >= 0 ? (Int(labels[i * k + j]), distances[i * k + j]) : nil }
        }
    }

    /// Sets a search parameter by name, as faiss::ParameterSpace does ("nprobe", "efSearch").
    public func setParameter(_ name: String, _ value: Double) throws {
        try Self.check(c3po_faiss_set_parameter(handle, name, value), "set \(name)=\(value)")
    }

    public func write(to url: URL) throws {
        try Self.check(c3po_faiss_write(handle, url.path), "write_index(\(url.path))")
    }
}
