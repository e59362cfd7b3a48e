import C3POCore
import C3POIndex
import Foundation
import XCTest

/// The Swift side of `Scripts/bench-scan`: one query against C3PO_BENCH_SCAN references (e.g.
/// 100000) of dimension 384, by the exact scan that answers Flat indices and by faiss's
/// IndexFlatIP, beside a memory-bound pass over the same embeddings (their sum, SIMD, the same
/// threads). Skipped unless C3PO_BENCH_SCAN is set; prints one `BENCH {json}` line.
final class ScanBenchmarkTests: XCTestCase {
    func testOneQueryAgainstAMemoryBoundScan() throws {
        guard let s = ProcessInfo.processInfo.environment["C3PO_BENCH_SCAN"], let count = Int(s) else {
            throw XCTSkip("set C3PO_BENCH_SCAN=<references> to run the scan benchmark")
        }
        let d = 384, threads = Parallel.defaultThreads
        var rng = SplitMix64(seed: 1)
        let rows = (0..<(count * d)).map { _ in Float(rng.uniform() * 2 - 1) / 20 }
        let query = Array(rows[0..<d])
        func median(_ f: () -> Void) -> Double {
            f()
            var t: [Double] = []
            for _ in 0..<21 { let t0 = Date(); f(); t.append(Date().timeIntervalSince(t0)) }
            return t.sorted()[t.count / 2]
        }
        var sink: Float = 0
        let pass = median {
            // Read every float once, split over the workers: the memory-bound floor.
            let parts = UnsafeMutablePointer<Float>.allocate(capacity: threads)
            defer { parts.deallocate() }
            rows.withUnsafeBufferPointer { rb in
                Parallel.forEach(threads, threads: threads) { w in
                    let lo = rb.count * w / threads / 16 * 16, hi = w == threads - 1 ? rb.count : rb.count * (w + 1) / threads / 16 * 16
                    // Four accumulators, so that the adds do not wait on each other.
                    var a0 = SIMD16<Float>(), a1 = a0, a2 = a0, a3 = a0
                    var i = lo
                    let raw = UnsafeRawPointer(rb.baseAddress!)
                    while i + 64 <= hi {
                        a0 += raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
                        a1 += raw.loadUnaligned(fromByteOffset: 4 * (i + 16), as: SIMD16<Float>.self)
                        a2 += raw.loadUnaligned(fromByteOffset: 4 * (i + 32), as: SIMD16<Float>.self)
                        a3 += raw.loadUnaligned(fromByteOffset: 4 * (i + 48), as: SIMD16<Float>.self)
                        i += 64
                    }
                    while i + 16 <= hi { a0 += raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self); i += 16 }
                    parts[w] = (a0 + a1 + a2 + a3).sum()
                }
            }
            for w in 0..<threads { sink += parts[w] }
        }
        var best = 0
        let scan = median { best = ExactScan.search(query, rows: rows, dimension: d, k: 3)[0][0].id }
        let faiss = try FaissIndex(dimension: d, factory: "Flat")
        try faiss.add(rows)
        let viaFaiss = median { _ = try? faiss.search(query, k: 3) }
        XCTAssertEqual(best, 0)
        let bytes = Double(rows.count * 4)
        let obj: [String: Any] = ["what": "scan", "references": count, "dimension": d, "threads": threads,
                                  "memory_pass_ms": pass * 1e3, "memory_pass_gb_per_s": bytes / pass / 1e9,
                                  "exact_scan_ms": scan * 1e3, "faiss_flat_ms": viaFaiss * 1e3,
                                  "scan_over_memory_pass": scan / pass, "faiss_over_memory_pass": viaFaiss / pass, "sink": Double(sink)]
        print("BENCH " + String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
    }
}
