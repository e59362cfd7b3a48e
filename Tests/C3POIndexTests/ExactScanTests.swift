import C3POCore
import C3POIndex
import XCTest

/// The exact scan that answers Flat indices gives faiss's IndexFlatIP answer: the same rows in
/// the same order and the same scores, for one query and for a batch spanning several row blocks
/// and query groups; ties go to the lower row.
final class ExactScanTests: XCTestCase {
    func unitVectors(_ n: Int, _ d: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        var v = (0..<(n * d)).map { _ in Float(rng.uniform() * 2 - 1) }
        for i in 0..<n {
            var norm: Float = 0
            for j in 0..<d { norm += v[i * d + j] * v[i * d + j] }
            for j in 0..<d { v[i * d + j] /= norm.squareRoot() }
        }
        return v
    }

    func testMatchesFaissFlat() throws {
        let (d, count) = (48, 9_000) // 3 row blocks of 4,096
        let rows = unitVectors(count, d, seed: 1)
        let faiss = try FaissIndex(dimension: d, factory: "Flat")
        try faiss.add(rows)
        for n in [1, 70] { // one query; two query groups
            let queries = unitVectors(n, d, seed: UInt64(n) + 7)
            let theirs = try faiss.search(queries, k: 10)
            let ours = ExactScan.search(queries, rows: rows, dimension: d, k: 10)
            XCTAssertEqual(ours.count, n)
            for q in 0..<n {
                XCTAssertEqual(ours[q].map(\.id), theirs[q].map(\.id), "query \(q) of \(n)")
                for (a, b) in zip(ours[q], theirs[q]) { XCTAssertEqual(a.score, b.score, accuracy: 1e-5) }
            }
        }
    }

    func testTiesGoToTheLowerRowAndKIsCappedByTheCount() {
        let rows: [Float] = [1, 0, 0, 1, 1, 0, 1, 0] // rows 0, 2, 3 equal
        let hits = ExactScan.search([1, 0], rows: rows, dimension: 2, k: 9)
        XCTAssertEqual(hits[0].map(\.id), [0, 2, 3, 1])
    }
}
